// `make demo`: start authz in dev mode with its HTTP listener, the orders API (a SQLite table
// filtered by PlanResources, orders-api.mjs), mint the demo users' tokens into
// dist/config.json and serve the built page with Python's http.server.
//
//   node demo/scripts/serve-demo.mjs [--page-port 5173] [--http-port 8080] [--grpc-port 50051]
//                                    [--issuer-port 50055] [--api-port 8081] [--dev-dir DIR]
// Prints "demo ready: URL" once the page and authz both answer; stops both on SIGINT/SIGTERM.

import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { REPO, startDevAuthz } from "../../scripts/authz-dev.mjs";
import { demoConfig } from "./users.mjs";

const DIST = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
const PACKAGE_DIST = join(DIST, "..", "..", "dist");

const { values } = parseArgs({
  options: {
    "page-port": { type: "string", default: "5173" },
    "http-port": { type: "string", default: "8080" },
    "grpc-port": { type: "string", default: "50051" },
    "issuer-port": { type: "string", default: "50055" },
    "api-port": { type: "string", default: "8081" },
    "dev-dir": { type: "string", default: join(REPO, ".authz-dev") },
  },
});

if (!existsSync(join(DIST, "index.html"))) {
  console.error(`serve-demo: ${DIST} has no build; run \`npm run demo:build\` first`);
  process.exit(2);
}
if (!existsSync(join(PACKAGE_DIST, "kysely.js"))) {
  console.error(`serve-demo: the orders API imports the built package; run \`npm run demo:build\` first`);
  process.exit(2);
}
// Imported once the package's build is known to be there (it imports @authz/client by name).
const { startOrdersApi } = await import("./orders-api.mjs");

const pagePort = Number(values["page-port"]);
const pageUrl = `http://127.0.0.1:${pagePort}/`;
const corsOrigins = [`http://127.0.0.1:${pagePort}`, `http://localhost:${pagePort}`];
const authz = await startDevAuthz({
  httpPort: Number(values["http-port"]),
  grpcPort: Number(values["grpc-port"]),
  issuerPort: Number(values["issuer-port"]),
  devDir: values["dev-dir"],
  corsOrigins,
});
let api;
try {
  api = await startOrdersApi({ port: Number(values["api-port"]), authzUrl: authz.baseUrl, corsOrigins });
  const config = await demoConfig(authz.baseUrl, authz.mint, api.url);
  writeFileSync(join(DIST, "config.json"), JSON.stringify(config, null, 2));
} catch (err) {
  // A port already taken, say: the authz started above must not outlive the demo.
  await api?.close();
  await authz.stop();
  throw err;
}

const python = process.env.PYTHON ?? "python3";
const page = spawn(python, ["-m", "http.server", String(pagePort), "--bind", "127.0.0.1", "--directory", DIST], {
  stdio: ["ignore", "inherit", "inherit"],
});

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  page.kill("SIGTERM");
  await api.close();
  await authz.stop();
  process.exit(code);
}
page.once("exit", () => void stop(1));
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

for (let i = 0; i < 100; i++) {
  try {
    if ((await fetch(`${pageUrl}config.json`)).ok) break;
  } catch {
    // not listening yet
  }
  await new Promise((r) => setTimeout(r, 100));
}
console.log(`demo ready: ${pageUrl} (authz HTTP ${authz.baseUrl}, gRPC ${authz.grpcAddress}, orders API ${api.url})`);
