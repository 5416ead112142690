// The Node.js middleware in a real node:http server, asking the real authz HTTP listener.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { authzMiddleware, requestPath, type AuthzMiddlewareOptions, type NodeRequest } from "../src/node.js";
import { freePort } from "../scripts/authz-dev.mjs";

const { baseUrl, tokens } = inject("authz");
const SHIPPED = new Set(["/api/orders/7"]);

type Request = IncomingMessage & NodeRequest;

/** An app behind the middleware: answers who reached it, or the error a hook raised. */
async function serve(options: AuthzMiddlewareOptions<Request>): Promise<{ url: string; server: Server }> {
  const guard = authzMiddleware<Request>(options);
  const server = createServer((req: Request, res: ServerResponse) => {
    guard(req, res, (error?: unknown) => {
      res.setHeader("content-type", "application/json");
      if (error) {
        res.statusCode = 500;
        res.end(JSON.stringify({ hookError: String(error) }));
        return;
      }
      res.end(JSON.stringify({ subject: req.authz?.subject ?? null, decisionId: req.authz?.decisionId ?? null }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function call(url: string, method: string, path: string, token?: string) {
  const response = await fetch(url + path, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

describe("authzMiddleware", () => {
  let app: { url: string; server: Server };

  beforeAll(async () => {
    app = await serve({
      baseUrl,
      attributes: (req) => (SHIPPED.has(requestPath(req)) ? { status: "shipped" } : undefined),
      skip: (req) => req.url === "/healthz",
    });
  });
  afterAll(() => app.server.close());

  it("lets an allowed request through with the decision on req.authz", async () => {
    const { status, body } = await call(app.url, "GET", "/api/orders/42?page=2", tokens.alice);
    expect(status).toBe(200);
    expect(body.subject).toBe("alice");
    expect(body.decisionId).toMatch(/^[0-9a-f]+$/);
  });

  it("answers 401 with a challenge for a missing or expired token", async () => {
    const missing = await call(app.url, "GET", "/api/orders/42");
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe("Bearer");
    expect(missing.body).toMatchObject({ error: "unauthenticated", reason: "REASON_TOKEN_MISSING" });
    const expired = await call(app.url, "GET", "/api/orders/42", tokens.expired);
    expect(expired.status).toBe(401);
    expect(expired.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"');
    expect(expired.body.reason).toBe("REASON_TOKEN_EXPIRED");
  });

  it("answers 403 for a policy deny, with the reason and decision id", async () => {
    const { status, headers, body } = await call(app.url, "POST", "/api/orders", tokens.alice);
    expect(status).toBe(403);
    expect(headers.get("www-authenticate")).toBeNull();
    expect(body).toMatchObject({ error: "forbidden", reason: "REASON_NO_MATCHING_RULE" });
    expect(body.decision_id).toMatch(/^[0-9a-f]+$/);
  });

  it("decides on the attributes the hook supplies", async () => {
    const shipped = await call(app.url, "DELETE", "/api/orders/7", tokens.admin);
    expect(shipped.status).toBe(403);
    expect(shipped.body.reason).toBe("REASON_EXPLICIT_DENY");
  });

  it("skips what needs no decision", async () => {
    const { status, body } = await call(app.url, "GET", "/healthz");
    expect(status).toBe(200);
    expect(body.subject).toBeNull();
  });

  it("answers 400 for a path authz refuses as malformed", async () => {
    const { status, body } = await call(app.url, "GET", `/api/orders/${"x".repeat(5000)}`, tokens.alice);
    expect(status).toBe(400);
    expect(body.error).toBe("bad_request");
  });

  it("passes its enforce context: one the demo model lacks is a 400, never a decision with r, p, e, m", async () => {
    const second = await serve({ baseUrl, enforceContext: "2" });
    const plain = await serve({ baseUrl, enforceContext: "" });
    try {
      const refused = await call(second.url, "GET", "/api/orders/42", tokens.alice);
      expect(refused.status).toBe(400);
      expect(refused.body.error).toBe("bad_request");
      expect(refused.body.message).toContain("enforce_context '2' is not a section set");
      expect((await call(plain.url, "GET", "/api/orders/42", tokens.alice)).status).toBe(200);
    } finally {
      second.server.close();
      plain.server.close();
    }
  });

  it("fails closed with 503 when authz cannot be reached", async () => {
    const down = await serve({ baseUrl: `http://127.0.0.1:${await freePort()}`, timeoutMs: 1000 });
    try {
      const { status, body } = await call(down.url, "GET", "/api/orders/42", tokens.alice);
      expect(status).toBe(503);
      expect(body.error).toBe("authz_unavailable");
    } finally {
      down.server.close();
    }
  });

  it("hands a failing attributes hook to the app's error handling, never letting it through", async () => {
    const failing = await serve({
      baseUrl,
      attributes: () => {
        throw new Error("orders database down");
      },
    });
    try {
      const { status, body } = await call(failing.url, "GET", "/api/orders/42", tokens.alice);
      expect(status).toBe(500);
      expect(body.hookError).toContain("orders database down");
    } finally {
      failing.server.close();
    }
  });
});

describe("requestPath", () => {
  it("drops the query, decodes escapes and prefers Express's originalUrl", () => {
    expect(requestPath({ url: "/api/orders/caf%C3%A9?x=1", headers: {} })).toBe("/api/orders/café");
    expect(requestPath({ url: "/42", originalUrl: "/api/orders/42", headers: {} })).toBe("/api/orders/42");
    expect(requestPath({ url: "/bad%E0%A4%A", headers: {} })).toBe("/bad%E0%A4%A");
    expect(requestPath({ headers: {} })).toBe("/");
  });
});
