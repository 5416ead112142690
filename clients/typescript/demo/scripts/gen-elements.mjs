// `npm run demo:elements`: regenerate src/authz-elements.ts from the policies with
// `authz policy elements --typescript`, the one source of the demo's element ids.

import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AUTHZ_BIN, REPO } from "../../scripts/authz-dev.mjs";

const ELEMENTS_FILE = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "authz-elements.ts");
const POLICY_DIR = join(REPO, "policies");

execFileSync(AUTHZ_BIN, ["policy", "elements", "--typescript", POLICY_DIR, "--output", ELEMENTS_FILE], {
  stdio: "inherit",
});
