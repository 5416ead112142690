// The demo's element ids come from the policies, and a misspelled id fails its build.

import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterEach, expect, it } from "vitest";
import { AUTHZ_BIN, REPO } from "../scripts/authz-dev.mjs";

const run = promisify(execFile);
const PKG = resolve(__dirname, "..");
const DEMO = join(PKG, "demo");
const TSC = join(PKG, "node_modules", ".bin", "tsc");

let scratch: string | undefined;
afterEach(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
});

/** A copy of the demo's sources beside it (so node_modules and the client source resolve). */
function demoCopy(): string {
  scratch = mkdtempSync(join(PKG, ".typo-check-"));
  cpSync(join(DEMO, "src"), join(scratch, "src"), { recursive: true });
  writeFileSync(join(scratch, "tsconfig.json"), JSON.stringify({ extends: "../demo/tsconfig.json", include: ["src"] }));
  return scratch;
}

async function typecheck(dir: string): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout } = await run(TSC, ["--noEmit", "-p", join(dir, "tsconfig.json")]);
    return { ok: true, output: stdout };
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    return { ok: false, output: stdout + stderr };
  }
}

it("keeps the committed element ids in step with the policies", async () => {
  const { stdout } = await run(AUTHZ_BIN, ["policy", "elements", "--typescript", join(REPO, "policies")]);
  expect(readFileSync(join(DEMO, "src", "authz-elements.ts"), "utf8")).toBe(stdout);
});

it("type-checks the demo as it is", async () => {
  const result = await typecheck(demoCopy());
  expect(result.output).toBe("");
  expect(result.ok).toBe(true);
});

it("fails the TypeScript build on a misspelled element id in the menu list", async () => {
  const dir = demoCopy();
  const menu = join(dir, "src", "menu.ts");
  const text = readFileSync(menu, "utf8");
  expect(text).toContain('element: "ui:menu.reports"');
  writeFileSync(menu, text.replace('element: "ui:menu.reports"', 'element: "ui:menu.reprots"'));
  const result = await typecheck(dir);
  expect(result.ok).toBe(false);
  expect(result.output).toMatch(/menu\.ts.*error TS\d+: Type '"ui:menu\.reprots"' is not assignable to type 'ElementId'/);
});

it("fails the TypeScript build on an id <Can> does not know", async () => {
  const dir = demoCopy();
  const app = join(dir, "src", "App.tsx");
  const text = readFileSync(app, "utf8");
  expect(text).toContain("element={item.element}");
  writeFileSync(app, text.replace("element={item.element}", 'element="ui:menu.order"'));
  const result = await typecheck(dir);
  expect(result.ok).toBe(false);
  expect(result.output).toMatch(/App\.tsx.*error TS\d+: Type '"ui:menu\.order"' is not assignable to type 'ElementId'/);
});
