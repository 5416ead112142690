// Drive the demo page in headless Chromium (Debian's, through playwright-core) and report
// what each demo user sees, as JSON on stdout; tests/test_e2e_browser.py asserts on it.
//
//   node demo/e2e/drive.mjs --url http://127.0.0.1:5173/ [--chromium /usr/bin/chromium]
//                           [--screenshots DIR]
// Output: {"users": {"alice": {"menu": [...], "buttons": [...], "signIn": false, "subject": "alice",
//                              "orders": ["1001", ...]}, ...},
//          "consoleErrors": [...]}

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    screenshots: { type: "string" },
    timeout: { type: "string", default: "15000" },
  },
});
if (!values.url) throw new Error("--url is required");
const timeout = Number(values.timeout);

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const profile = mkdtempSync(join(tmpdir(), "authz-e2e-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: values.chromium,
  headless: true,
  args: FLAGS,
  viewport: { width: 1000, height: 600 },
});
const consoleErrors = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  page.on("console", (message) => message.type() === "error" && consoleErrors.push(message.text()));
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  await page.goto(values.url);

  const users = {};
  // Each user's token is picked in the page; the answer shown must be for that token.
  for (const [id, expect] of [
    ["alice", { subject: "alice" }],
    ["admin", { subject: "admin" }],
    ["viewer", { subject: "bob" }],
    ["expired", { signIn: true }],
  ]) {
    await page.click(`button[data-user="${id}"]`);
    if (expect.signIn) {
      await page.getByRole("alert").filter({ hasText: "Please sign in again" }).waitFor();
    } else {
      await page.locator(`main[data-status="ready"][data-subject="${expect.subject}"]`).waitFor();
      // The list is fetched again for each token: wait for this token's rows.
      await page.locator('section[aria-label="Orders list"][data-status="ready"]').waitFor();
    }
    users[id] = {
      menu: await page.locator('nav[aria-label="Main"] a').allTextContents(),
      buttons: await page.locator('section[aria-label="Actions"] button').allTextContents(),
      signIn: await page.getByText("Please sign in again").isVisible(),
      subject: (await page.locator("main").getAttribute("data-subject")) ?? "",
      orders: await page.locator('section[aria-label="Orders list"] tbody tr').evaluateAll((rows) =>
        rows.map((row) => row.getAttribute("data-order")),
      ),
    };
    if (values.screenshots) await page.screenshot({ path: join(values.screenshots, `${id}.png`) });
  }
  process.stdout.write(JSON.stringify({ users, consoleErrors }) + "\n");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
