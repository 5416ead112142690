/** `@authz/client`: typed access to the authz decision service from browsers and Node. */

export { bearer, createAuthzClient, createAuthzTransport } from "./client.js";
export type { AuthzClient, AuthzClientOptions, TokenGetter } from "./client.js";
export type { ElementId, Register } from "./elements.js";
export { VisibilityStore, isTokenReason } from "./visibility.js";
export type { Visibility, VisibilityOptions, VisibilityStatus } from "./visibility.js";
export * from "./gen/authz/api/v1/authz_pb.js";
