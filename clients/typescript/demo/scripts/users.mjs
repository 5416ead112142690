// The demo's users: who they are and what their dev tokens carry. Tokens are minted at
// start (serve-demo.mjs) with the running dev server's key, so nothing secret is committed.

export const DEMO_USERS = [
  {
    id: "alice",
    label: "alice: read:orders, read:reports",
    claims: { sub: "alice", permissions: ["read:orders", "read:reports"] },
  },
  { id: "admin", label: "admin: role admin", claims: { sub: "admin", roles: ["admin"] } },
  {
    id: "expired",
    label: "carol: token expired an hour ago",
    claims: { sub: "carol", permissions: ["read:orders"], expiresIn: -3600 },
  },
];

/** The demo page's config.json: where authz is and one token per demo user. */
export async function demoConfig(authzUrl, mint) {
  const users = [];
  for (const { id, label, claims } of DEMO_USERS) users.push({ id, label, token: await mint(claims) });
  return { authzUrl, users };
}
