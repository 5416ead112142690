// The demo's orders API: GET /api/orders answers the rows of a small SQLite orders table
// that the caller's token may list. The filter is a PlanResources plan (action "list" on
// /api/orders/:id) applied with the package's Kysely adapter: no rule is written here,
// only in the policies ("The demo page's Orders list" lines of policy.csv).
//
// Imports the built package by its own name (`npm run build`, which demo:build runs).

import { createServer } from "node:http";
import Database from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import { bearer, createAuthzClient, isTokenReason, PlanKind, Reason } from "@authz/client";
import { introspectColumnTypes, whereAuthorized } from "@authz/client/kysely";

/** The demo's orders: two organisations, owners inside and outside them. */
export const DEMO_ORDERS = [
  { id: "1001", owner: "alice", org_id: "acme", status: "draft", amount: 120 },
  { id: "1002", owner: "bob", org_id: "acme", status: "open", amount: 80 },
  { id: "1003", owner: "carol", org_id: "acme", status: "shipped", amount: 300 },
  { id: "1004", owner: "dave", org_id: "globex", status: "draft", amount: 50 },
  { id: "1005", owner: "bob", org_id: "globex", status: "shipped", amount: 70 },
  { id: "1006", owner: "erin", org_id: "globex", status: "open", amount: 20 },
];
// The plan's fields are the table's columns of the same names.
const FIELDS = ["id", "owner", "org_id", "status", "amount"];
const TEMPLATE = "/api/orders/:id";
const MAX_TOKEN = 16 * 1024;

async function openOrders() {
  const db = new Kysely({ dialect: new SqliteDialect({ database: new Database(":memory:") }) });
  await db.schema
    .createTable("orders")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("owner", "text")
    .addColumn("org_id", "text")
    .addColumn("status", "text")
    .addColumn("amount", "integer")
    .execute();
  await db.insertInto("orders").values(DEMO_ORDERS).execute();
  return db;
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  res.end(JSON.stringify(body));
}

/**
 * Start the API on 127.0.0.1:`port` (0: any free port), asking the authz at `authzUrl`;
 * `corsOrigins` are the page origins allowed to call it. Returns { url, close }.
 */
export async function startOrdersApi({ port, authzUrl, corsOrigins }) {
  const db = await openOrders();
  // Read once: a plan comparing a column with a value of another type is refused, not converted.
  const columnTypes = await introspectColumnTypes(db, "orders", FIELDS);
  const authz = createAuthzClient({ baseUrl: authzUrl });

  async function list(req, res, cors) {
    const header = req.headers.authorization ?? "";
    if (header.length > MAX_TOKEN) return send(res, 400, { error: "bad_request" }, cors);
    const plan = await authz.planResources(
      { action: "list", resource: TEMPLATE },
      { headers: header ? { authorization: bearer(header) } : {}, timeoutMs: 2000 },
    );
    if (plan.kind === PlanKind.ALWAYS_DENIED && isTokenReason(plan.reason)) {
      const reason = `REASON_${Reason[plan.reason]}`;
      return send(res, 401, { error: "unauthorized", reason }, { ...cors, "www-authenticate": "Bearer" });
    }
    const query = db.selectFrom("orders").selectAll().orderBy("id");
    const orders = await whereAuthorized(query, plan, FIELDS, { columnTypes }).execute();
    send(res, 200, { subject: plan.subject, plan: PlanKind[plan.kind], orders }, cors);
  }

  const server = createServer((req, res) => {
    const origin = req.headers.origin;
    const cors =
      origin && corsOrigins.includes(origin)
        ? { "access-control-allow-origin": origin, "access-control-allow-headers": "authorization", vary: "Origin" }
        : {};
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/api/orders") return send(res, 404, { error: "not_found" }, cors);
    if (req.method === "OPTIONS") return send(res, 204, {}, { ...cors, "access-control-allow-methods": "GET" });
    if (req.method !== "GET") return send(res, 405, { error: "method_not_allowed" }, cors);
    // authz unreachable or the plan refused: fail closed, no rows.
    list(req, res, cors).catch((error) => send(res, 503, { error: "unavailable", message: String(error?.message ?? error) }, cors));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: async () => {
      await new Promise((resolve) => server.close(resolve));
      await db.destroy();
    },
  };
}
