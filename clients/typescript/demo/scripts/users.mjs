// The demo's users: who they are and what their dev tokens carry. Tokens are minted at
// start (serve-demo.mjs) with the running dev server's key, so nothing secret is committed.

export const DEMO_USERS = [
  {
    id: "alice",
    label: "alice: read:orders, read:reports (acme)",
    claims: { sub: "alice", permissions: ["read:orders", "read:reports"], org_id: "acme" },
  },
  { id: "viewer", label: "bob: no permissions (acme)", claims: { sub: "bob", permissions: [], org_id: "acme" } },
  { id: "admin", label: "admin: role admin", claims: { sub: "admin", roles: ["admin"] } },
  {
    id: "expired",
    label: "carol: token expired an hour ago",
    claims: { sub: "carol", permissions: ["read:orders"], expiresIn: -3600 },
  },
];

/** The demo page's config.json: where authz and the orders API are, one token per demo user. */
export async function demoConfig(authzUrl, mint, ordersUrl) {
  const users = [];
  for (const { id, label, claims } of DEMO_USERS) users.push({ id, label, token: await mint(claims) });
  return ordersUrl ? { authzUrl, ordersUrl, users } : { authzUrl, users };
}
