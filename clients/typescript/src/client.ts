/**
 * The typed authz client: the generated AuthorizationService over the Connect protocol
 * (JSON by default, binary on request) or gRPC-Web, with the caller's access token sent
 * as `Authorization: Bearer ...` on every call.
 */

import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthorizationService } from "./gen/authz/api/v1/authz_pb.js";

/**
 * Supplies the current access token, such as `getAccessTokenSilently` from
 * `@auth0/auth0-react`. Returning nothing sends no token (the answer is then a deny
 * with `Reason.TOKEN_MISSING`); throwing fails the call.
 */
export type TokenGetter = () => string | null | undefined | Promise<string | null | undefined>;

export interface AuthzClientOptions {
  /** Where the authz HTTP listener is, e.g. `https://authz.example.com` (no path). */
  baseUrl: string;
  /** Called before each call that does not already carry an `Authorization` header. */
  getToken?: TokenGetter;
  /** `connect` (default) or `grpc-web`. */
  protocol?: "connect" | "grpc-web";
  /** Protobuf binary instead of JSON on the wire. */
  useBinaryFormat?: boolean;
  /** A fetch implementation other than the global one. */
  fetch?: typeof globalThis.fetch;
}

/** Every RPC of `authz.api.v1.AuthorizationService`, typed from the proto. */
export type AuthzClient = Client<typeof AuthorizationService>;

/** Build the HTTP transport the client uses (exposed for custom clients and tests). */
export function createAuthzTransport(options: AuthzClientOptions): Transport {
  const interceptors: Interceptor[] = [];
  const { getToken } = options;
  if (getToken) {
    interceptors.push((next) => async (request) => {
      if (!request.header.has("authorization")) {
        const token = await getToken();
        if (token) request.header.set("authorization", bearer(token));
      }
      return next(request);
    });
  }
  const transportOptions = {
    baseUrl: options.baseUrl,
    useBinaryFormat: options.useBinaryFormat ?? false,
    interceptors,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };
  return options.protocol === "grpc-web"
    ? createGrpcWebTransport(transportOptions)
    : createConnectTransport(transportOptions);
}

/** A typed client for `Check`, `BatchCheck`, `GetVisibility` and `GetPrincipal`. */
export function createAuthzClient(options: AuthzClientOptions): AuthzClient {
  return createClient(AuthorizationService, createAuthzTransport(options));
}

/** The `Authorization` header value for `token` (a `Bearer ` prefix already there is kept). */
export function bearer(token: string): string {
  return /^bearer /i.test(token) ? token : `Bearer ${token}`;
}
