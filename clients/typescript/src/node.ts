/**
 * A Node.js middleware that asks authz before each request reaches the app: Express,
 * Connect, Polka or a bare `node:http` server. The decision is `Check(resource=<path>,
 * action=<method>)` with the request's `Authorization` header as the token, and the
 * answers are those of the Python and PHP middlewares: 401 for a token problem, 403 for any
 * other deny, 400 when authz refuses the request as malformed, 503 when it cannot answer.
 */

import { Code, ConnectError } from "@connectrpc/connect";
import type { JsonObject } from "@bufbuild/protobuf";
import { createAuthzClient, type AuthzClient } from "./client.js";
import type { CheckResponse } from "./gen/authz/api/v1/authz_pb.js";
import { Reason } from "./gen/authz/api/v1/authz_pb.js";
import { isTokenReason, reasonName } from "./visibility.js";

/** The parts of a `node:http` IncomingMessage (and of Express's request) the middleware reads. */
export interface NodeRequest {
  method?: string;
  url?: string;
  /** Express keeps the URL before a mount point stripped it here. */
  originalUrl?: string;
  headers: Record<string, string | string[] | undefined>;
  /** Set to authz's answer on the requests it allowed. */
  authz?: CheckResponse;
}

/** The parts of a `node:http` ServerResponse (and of Express's response) the middleware writes. */
export interface NodeResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body: string): unknown;
}

export type Next = (error?: unknown) => void;

export interface AuthzMiddlewareOptions<Req extends NodeRequest = NodeRequest> {
  /** The authz HTTP listener (`https://authz.internal:8080`), or a client you configured. */
  baseUrl?: string;
  client?: AuthzClient;
  /** The resource's attributes (an order's owner, org_id, status), looked up by the path. */
  attributes?: (req: Req) => JsonObject | undefined | Promise<JsonObject | undefined>;
  /** The resource to ask about instead of the request path. */
  resource?: (req: Req) => string;
  /** True for requests that need no decision (health checks, CORS preflight ...). */
  skip?: (req: Req) => boolean;
  /** Per-call deadline in milliseconds (default 2000). */
  timeoutMs?: number;
  /** Casbin's enforce context: `"2"` decides with the model's r2, p2, e2, m2 (default: r, p, e, m). */
  enforceContext?: string;
}

/** `(req, res, next)` middleware that lets a request through only when authz allows it. */
export function authzMiddleware<Req extends NodeRequest = NodeRequest>(
  options: AuthzMiddlewareOptions<Req>,
): (req: Req, res: NodeResponse, next: Next) => void {
  const client = options.client ?? (options.baseUrl ? createAuthzClient({ baseUrl: options.baseUrl }) : undefined);
  if (!client) throw new TypeError("authzMiddleware needs a baseUrl or a client");
  const timeoutMs = options.timeoutMs ?? 2000;

  return (req, res, next) => {
    if (options.skip?.(req)) {
      next();
      return;
    }
    void (async () => {
      const method = (req.method ?? "GET").toUpperCase();
      const resource = options.resource ? options.resource(req) : requestPath(req);
      const authorization = firstHeader(req.headers.authorization);
      const attributes = options.attributes ? await options.attributes(req) : undefined;
      const answer = await client.check(
        { resource, action: method, enforceContext: options.enforceContext ?? "", ...(attributes ? { attributes } : {}) },
        // No header means no token: the call must not borrow one from a client's getter.
        { headers: { authorization: authorization ?? "" }, timeoutMs },
      );
      if (answer.allowed) {
        req.authz = answer;
        next();
        return;
      }
      const body = { reason: reasonName(answer.reason), message: answer.message, decision_id: answer.decisionId };
      if (isTokenReason(answer.reason)) {
        const challenge = answer.reason === Reason.TOKEN_MISSING ? "Bearer" : 'Bearer error="invalid_token"';
        refuse(res, 401, { error: "unauthenticated", ...body }, challenge);
      } else {
        refuse(res, 403, { error: "forbidden", ...body });
      }
    })().catch((error: unknown) => {
      // Fail closed: no answer is never an allow.
      if (error instanceof ConnectError && error.code === Code.InvalidArgument) {
        refuse(res, 400, { error: "bad_request", message: error.rawMessage });
      } else if (error instanceof ConnectError) {
        refuse(res, 503, { error: "authz_unavailable", message: "authorization unavailable" });
      } else {
        next(error); // the attributes hook failed: the app's error handling decides
      }
    });
  };
}

/** The request's path without its query string, as the client sent it (Express: before mounts). */
export function requestPath(req: NodeRequest): string {
  const url = req.originalUrl ?? req.url ?? "/";
  const path = url.split("?", 1)[0] || "/";
  try {
    return decodeURI(path);
  } catch {
    return path; // a malformed escape: asked about as it came
  }
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function refuse(res: NodeResponse, status: number, body: Record<string, string>, challenge?: string): void {
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  if (challenge) res.setHeader("www-authenticate", challenge);
  res.end(JSON.stringify(body));
}
