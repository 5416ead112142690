// Start a real `authz serve --dev` with its HTTP listener and mint dev tokens from it.
// Shared by the unit tests (test/global-setup.ts) and the demo (demo/scripts/serve-demo.mjs).

import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The repository root (clients/typescript/scripts -> ../../..). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** The `authz` command: $AUTHZ_BIN, else the repository's virtualenv. */
export const AUTHZ_BIN = process.env.AUTHZ_BIN ?? join(REPO, ".venv", "bin", "authz");

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * Mint a dev access token (`authz token`), e.g. mintToken(dir, { sub: "alice", permissions: ["read:orders"] }).
 * `org_id` is the Auth0 Organizations claim; `expiresIn` < 0 gives an expired token.
 */
export async function mintToken(devDir, { sub, permissions = [], roles = [], org_id, expiresIn } = {}) {
  const args = ["token", "--sub", sub];
  if (org_id) args.push("--org", org_id);
  for (const p of permissions) args.push("--permission", p);
  for (const r of roles) args.push("--role", r);
  if (expiresIn !== undefined) args.push(`--expires-in=${expiresIn}`);
  const { stdout } = await run(AUTHZ_BIN, args, { env: { ...process.env, AUTHZ_DEV_DIR: devDir } });
  return stdout.trim();
}

async function until(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`authz: ${what} not ready after ${timeoutMs} ms${last ? `: ${last.message ?? last}` : ""}`);
}

/**
 * Start `authz serve --dev` on loopback and wait until it accepts dev tokens over HTTP.
 * Ports default to free ones; `devDir` defaults to a fresh temporary directory (removed by stop()).
 * Returns { baseUrl, grpcAddress, devDir, mint(claims), stop() }.
 */
export async function startDevAuthz({ httpPort, grpcPort, issuerPort, corsOrigins = [], devDir, quiet = true } = {}) {
  const ownDir = devDir === undefined;
  const dir = devDir ?? mkdtempSync(join(tmpdir(), "authz-dev-"));
  httpPort ??= await freePort();
  grpcPort ??= await freePort();
  issuerPort ??= await freePort();
  const args = [
    "serve", "--dev",
    "--listen", `127.0.0.1:${grpcPort}`,
    "--http-listen", `127.0.0.1:${httpPort}`,
    "--dev-issuer-port", String(issuerPort),
  ];
  if (corsOrigins.length) args.push("--cors-origins", corsOrigins.join(","));
  // cwd: the dev directory, so `--dev` serves the demo policies shipped in the package.
  const child = spawn(AUTHZ_BIN, args, {
    cwd: dir,
    env: { ...process.env, AUTHZ_DEV_DIR: dir },
    stdio: ["ignore", quiet ? "ignore" : "inherit", quiet ? "pipe" : "inherit"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  let dead = false;
  const exited = new Promise((r) => child.once("exit", r)).then(() => (dead = true));

  const baseUrl = `http://127.0.0.1:${httpPort}`;
  const mint = (claims) => mintToken(dir, claims);
  const stop = async () => {
    if (!dead) child.kill("SIGTERM");
    await exited;
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Ready once a fresh dev token verifies over HTTP: policies loaded, JWKS fetched, listener
    // up. Minted on each try, since a reused dev directory may hold a previous run's issuer.
    await until("HTTP listener", 30_000, async () => {
      if (dead) throw new Error(`exited: ${stderr}`);
      const probe = await mint({ sub: "probe" });
      const response = await fetch(`${baseUrl}/authz.api.v1.AuthorizationService/GetPrincipal`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${probe}` },
        body: "{}",
      });
      return response.ok && (await response.json()).authenticated === true;
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { baseUrl, grpcAddress: `127.0.0.1:${grpcPort}`, devDir: dir, mint, stop };
}
