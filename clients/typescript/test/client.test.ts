// The typed client against a real authz HTTP listener: Connect JSON, Connect binary and
// gRPC-Web give the same answers, and the token getter's token is the one authz sees.

import { describe, expect, inject, it } from "vitest";
import { ConnectError } from "@connectrpc/connect";
import { createAuthzClient, Reason, type AuthzClientOptions } from "../src/index.js";

const { baseUrl, tokens } = inject("authz");

const transports: [string, Partial<AuthzClientOptions>][] = [
  ["connect+json", {}],
  ["connect+proto", { useBinaryFormat: true }],
  ["grpc-web", { protocol: "grpc-web" }],
];

describe.each(transports)("over %s", (_name, options) => {
  const client = (getToken?: () => string | undefined) => createAuthzClient({ baseUrl, getToken, ...options });

  it("allows what the token's permissions allow", async () => {
    const answer = await client(() => tokens.alice).check({ resource: "/api/orders/42", action: "GET" });
    expect(answer.allowed).toBe(true);
    expect(answer.reason).toBe(Reason.ALLOWED);
    expect(answer.subject).toBe("alice");
    expect(answer.policyVersion).toMatch(/^[0-9a-f]+$/);
  });

  it("denies with the policy reason, a missing field reading as its default", async () => {
    const answer = await client(() => tokens.alice).check({ resource: "/api/orders", action: "POST" });
    expect(answer.allowed).toBe(false);
    expect(answer.reason).toBe(Reason.NO_MATCHING_RULE);
    expect(answer.matchedRules).toEqual([]);
  });

  it("reports an expired token as a reason, not an error", async () => {
    const answer = await client(() => tokens.expired).check({ resource: "/api/orders", action: "GET" });
    expect(answer.allowed).toBe(false);
    expect(answer.reason).toBe(Reason.TOKEN_EXPIRED);
  });

  it("sends no token when the getter has none", async () => {
    const principal = await client(() => undefined).getPrincipal({});
    expect(principal.authenticated).toBe(false);
    expect(principal.reason).toBe(Reason.TOKEN_MISSING);
  });

  it("passes attributes and explains the deciding rule", async () => {
    const answer = await client(() => tokens.admin).check({
      resource: "/api/orders/7",
      action: "DELETE",
      attributes: { status: "shipped" },
      explain: true,
    });
    expect(answer.allowed).toBe(false);
    expect(answer.reason).toBe(Reason.EXPLICIT_DENY);
    expect(answer.matchedRules).toEqual([expect.stringMatching(/^policy\.csv:\d+: p, \*, \/api\/orders\/:id, DELETE/)]);
  });

  it("answers a batch in order with correlation ids", async () => {
    const answer = await client(() => tokens.bob).batchCheck({
      items: [
        { correlationId: "list", resource: "/api/orders", action: "GET" },
        { correlationId: "create", resource: "/api/orders", action: "POST" },
      ],
    });
    expect(answer.results.map((r) => [r.correlationId, r.allowed])).toEqual([
      ["list", false],
      ["create", true],
    ]);
    expect(answer.subject).toBe("bob");
  });

  it("lists visible elements under a prefix", async () => {
    const answer = await client(() => tokens.alice).getVisibility({ prefix: "ui:" });
    expect(answer.visible).toEqual(["ui:menu.orders", "ui:menu.reports"]);
    expect(answer.decisions["ui:menu.admin"]).toBe(false);
    expect(answer.validUntil).toBeDefined();
  });

  it("sends the enforce context: one the model lacks is INVALID_ARGUMENT naming the field", async () => {
    const call = client(() => tokens.alice).check({ resource: "/api/orders/42", action: "GET", enforceContext: "2" });
    await expect(call).rejects.toSatisfy(
      (e) => e instanceof ConnectError && e.code === 3 && e.rawMessage.includes("enforce_context '2'"),
    );
    const plain = await client(() => tokens.alice).check({ resource: "/api/orders/42", action: "GET", enforceContext: "" });
    expect(plain.allowed).toBe(true);
  });

  it("surfaces a malformed request as INVALID_ARGUMENT", async () => {
    const call = client(() => tokens.alice).getVisibility({ prefix: "ui:", elements: ["ui:menu.orders"] });
    await expect(call).rejects.toSatisfy((e) => e instanceof ConnectError && e.code === 3);
  });
});

it("keeps an Authorization header the caller set itself", async () => {
  const client = createAuthzClient({ baseUrl, getToken: () => tokens.alice });
  const principal = await client.getPrincipal({}, { headers: { authorization: `Bearer ${tokens.admin}` } });
  expect(principal.subject).toBe("root");
  expect(principal.roles).toEqual(["admin"]);
});
