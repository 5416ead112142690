// One real `authz serve --dev` (demo policies, HTTP listener) for every test file,
// and the dev tokens the tests use.

import type { TestProject } from "vitest/node";
import { startDevAuthz, type DevAuthz } from "../scripts/authz-dev.mjs";

export interface AuthzFixture {
  baseUrl: string;
  devDir: string;
  tokens: {
    alice: string; // read:orders + read:reports
    bob: string; // create:orders
    admin: string; // role admin
    expired: string; // alice's permissions, expired an hour ago
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    authz: AuthzFixture;
  }
}

let server: DevAuthz | undefined;

export async function setup(project: TestProject): Promise<void> {
  server = await startDevAuthz();
  const alice = { sub: "alice", permissions: ["read:orders", "read:reports"] };
  project.provide("authz", {
    baseUrl: server.baseUrl,
    devDir: server.devDir,
    tokens: {
      alice: await server.mint(alice),
      bob: await server.mint({ sub: "bob", permissions: ["create:orders"] }),
      admin: await server.mint({ sub: "root", roles: ["admin"] }),
      expired: await server.mint({ ...alice, expiresIn: -3600 }),
    },
  });
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
