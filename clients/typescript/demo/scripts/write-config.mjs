// `npm run demo:dev`: point the Vite dev server's page at the authz that `make run` started.
// Mints the demo users' tokens with that server's dev key (AUTHZ_DEV_DIR, default
// <repo>/.authz-dev) and writes config.json for the page.
//
//   node demo/scripts/write-config.mjs [--out demo/public/config.json] [--authz-url http://127.0.0.1:8080]

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { REPO, mintToken } from "../../scripts/authz-dev.mjs";
import { demoConfig } from "./users.mjs";

const { values } = parseArgs({
  options: {
    out: { type: "string", default: join(REPO, "clients", "typescript", "demo", "public", "config.json") },
    "authz-url": { type: "string", default: "http://127.0.0.1:8080" },
  },
});
const devDir = process.env.AUTHZ_DEV_DIR ?? join(REPO, ".authz-dev");
const config = await demoConfig(values["authz-url"], (claims) => mintToken(devDir, claims));
mkdirSync(dirname(values.out), { recursive: true });
writeFileSync(values.out, JSON.stringify(config, null, 2));
console.log(`wrote ${values.out} (authz at ${values["authz-url"]})`);
