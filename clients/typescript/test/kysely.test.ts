// The Kysely adapter on real databases. Fixed plans built here run on SQLite
// (better-sqlite3) in every run. With AUTHZ_PLAN_CASES (a JSON file that
// tests/test_typescript_plan.py writes: an authz on tests/plan_cases.py's policy, a
// throwaway PostgreSQL, the rows, and per principal and action the ids Check allows),
// each case's plan is asked of that authz and its rows must be exactly Check's, on
// PostgreSQL and on SQLite, with and without the column types declared; its type cases
// (a column compared with a value of another type) must be refused.

import { readFileSync } from "node:fs";
import { create, fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import Database from "better-sqlite3";
import { Kysely, PostgresDialect, SqliteDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createAuthzClient,
  PlanKind,
  PlanResourcesResponseSchema,
  type PlanResourcesResponse,
} from "../src/index.js";
import {
  columnTypeOf,
  introspectColumnTypes,
  PlanFieldError,
  whereAuthorized,
  type ColumnTypes,
  type PlanFields,
  type PlanOptions,
} from "../src/kysely.js";

interface OrderRow {
  id: string;
  owner: string | null;
  org: string | null;
  status: string | null;
  amount: number | null;
}
// An integer id column (`bigint`); ids travel as text, as JSON numbers stop at 2**53.
interface IntRow {
  key: string;
  id: string | null;
}
interface Tables {
  orders: OrderRow;
  int_orders: IntRow;
}
interface IntCase {
  name: string;
  plan: JsonObject;
  expected: string[] | string;
}
interface Cases {
  url: string;
  dsn: string;
  rows: OrderRow[];
  cases: { name: string; token: string; action: string; expected: string[] }[];
  column_types: ColumnTypes;
  type_cases: IntCase[];
  int_rows: IntRow[];
  int_cases: IntCase[];
  int_fixed_rows: IntRow[];
  int_fixed: IntCase[];
}

const FIELDS: PlanFields = { id: "id", owner: "owner", org_id: "org", status: "status", amount: "amount" };
const ROWS: OrderRow[] = [
  { id: "1", owner: "alice", org: "o1", status: "draft", amount: 50 },
  { id: "2", owner: null, org: "o1", status: "open", amount: 150 },
  { id: "3", owner: "bob", org: null, status: "shipped", amount: null },
];

async function table(db: Kysely<Tables>, rows: OrderRow[]): Promise<void> {
  await db.schema.dropTable("orders").ifExists().execute();
  await db.schema
    .createTable("orders")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("owner", "text")
    .addColumn("org", "text")
    .addColumn("status", "text")
    .addColumn("amount", "integer")
    .execute();
  await db.insertInto("orders").values(rows).execute();
}

async function ids(
  db: Kysely<Tables>,
  plan: PlanResourcesResponse,
  fields: PlanFields = FIELDS,
  options: PlanOptions = {},
): Promise<string[]> {
  const rows = await whereAuthorized(db.selectFrom("orders").select("id"), plan, fields, options).execute();
  // Code unit order, as Python's sorted() orders the expected ids (some hold line breaks).
  return rows.map((r) => r.id).sort();
}

async function intTable(db: Kysely<Tables>, rows: IntRow[]): Promise<void> {
  await db.schema.dropTable("int_orders").ifExists().execute();
  await db.schema
    .createTable("int_orders")
    .addColumn("key", "text", (c) => c.primaryKey())
    .addColumn("id", "bigint")
    .execute();
  await db.insertInto("int_orders").values(rows).execute();
}

/** `rows()`, or the refusal. */
async function refusedOr(rows: () => Promise<string[]>): Promise<string[] | string> {
  try {
    return await rows();
  } catch (error) {
    if (error instanceof PlanFieldError) return `PlanFieldError: ${error.message}`;
    throw error;
  }
}

/** The keys `plan` selects with `id` declared an integer id (and `options`), or the refusal. */
async function intKeys(db: Kysely<Tables>, plan: PlanResourcesResponse, options: PlanOptions = {}): Promise<string[] | string> {
  return refusedOr(async () => {
    const query = whereAuthorized(db.selectFrom("int_orders").select("key"), plan, ["id"], { integerIds: ["id"], ...options });
    return (await query.execute()).map((r) => r.key).sort();
  });
}

/** Each case's rows, or its refusal, as expected (a refusal: words after the field's name). */
async function expectCases(cases: IntCase[], got: (c: IntCase) => Promise<string[] | string>): Promise<void> {
  for (const c of cases) {
    const answer = await got(c);
    if (typeof c.expected !== "string") expect([c.name, answer]).toEqual([c.name, c.expected]);
    else {
      const words = c.expected.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      expect([c.name, answer]).toEqual([c.name, expect.stringMatching(new RegExp(`^PlanFieldError: .*${words}`))]);
    }
  }
}

function sqlite(): Kysely<Tables> {
  return new Kysely<Tables>({ dialect: new SqliteDialect({ database: new Database(":memory:") }) });
}

// Plans as the server's JSON would give them.
const plan = (json: JsonObject) => fromJson(PlanResourcesResponseSchema, json);
const compare = (operator: string, field: string, value: JsonValue): JsonObject => ({
  compare: { operator: `PLAN_OPERATOR_${operator}`, field, value },
});
const conditional = (condition: JsonObject, fields: string[] = []) =>
  plan({ kind: "PLAN_KIND_CONDITIONAL", condition, fields });

describe("fixed plans on SQLite", () => {
  const db = sqlite();
  beforeAll(() => table(db, ROWS));
  afterAll(() => db.destroy());

  it("selects every row, no row, or none for a kind it does not know", async () => {
    expect(await ids(db, plan({ kind: "PLAN_KIND_ALWAYS_ALLOWED" }))).toEqual(["1", "2", "3"]);
    expect(await ids(db, plan({ kind: "PLAN_KIND_ALWAYS_DENIED" }))).toEqual([]);
    expect(await ids(db, plan({ kind: 9 }))).toEqual([]);
    expect(await ids(db, plan({ kind: "PLAN_KIND_CONDITIONAL" }))).toEqual([]);
  });

  it("translates every node one to one, empty groups as true and false", async () => {
    const draftOrOwnerless = { any: { conditions: [compare("EQ", "status", "draft"), { isNull: "owner" }] } };
    expect(await ids(db, conditional(draftOrOwnerless))).toEqual(["1", "2"]);
    expect(await ids(db, conditional({ negate: draftOrOwnerless }))).toEqual(["3"]);
    const bigInOrg = { all: { conditions: [compare("GT", "amount", 100), compare("IN", "org_id", ["o1", "o2"])] } };
    expect(await ids(db, conditional(bigInOrg))).toEqual(["2"]);
    expect(await ids(db, conditional({ any: { conditions: [] } }))).toEqual([]);
    expect(await ids(db, conditional({ all: { conditions: [] } }))).toEqual(["1", "2", "3"]);
    expect(await ids(db, conditional({ negate: { any: { conditions: [] } } }))).toEqual(["1", "2", "3"]);
    expect(await ids(db, conditional(compare("IN", "status", [])))).toEqual([]);
    expect(await ids(db, conditional(compare("LE", "amount", 50)))).toEqual(["1"]);
    // The array form of the field map: same-named columns.
    expect(await ids(db, conditional(compare("NE", "owner", "alice")), ["owner", "id"])).toEqual(["3"]);
  });

  it("binds every value: a quote in a value is data, not SQL", async () => {
    const quoted = conditional(compare("EQ", "owner", "x' OR '1'='1"));
    expect(await ids(db, quoted)).toEqual([]);
    const compiled = whereAuthorized(db.selectFrom("orders").select("id"), quoted, FIELDS).compile();
    expect(compiled.parameters).toEqual(["x' OR '1'='1"]);
    expect(compiled.sql).not.toContain("OR");
  });

  it("refuses a field the map lacks and a malformed plan, before any SQL", () => {
    const query = db.selectFrom("orders").select("id");
    const refused = (p: PlanResourcesResponse, fields: PlanFields = FIELDS) => () => whereAuthorized(query, p, fields);
    expect(refused(conditional(compare("EQ", "owner", "bob"), ["owner", "region"]))).toThrow(
      new PlanFieldError('the plan reads "region", which is not in the field map'),
    );
    // In the tree but not listed in `fields`: still refused.
    expect(refused(conditional({ isNull: "region" }))).toThrow(PlanFieldError);
    expect(refused(conditional(compare("EQ", "status", "draft")), ["owner"])).toThrow(PlanFieldError);
    expect(refused(conditional(compare("EQ", "owner", ["bob"])))).toThrow(/only PLAN_OPERATOR_IN/);
    expect(refused(conditional(compare("IN", "owner", "bob")))).toThrow(/needs a list/);
    expect(refused(conditional({ compare: { operator: 99, field: "owner", value: "bob" } }))).toThrow(/unknown plan operator/);
    expect(refused(conditional({}))).toThrow(/empty plan condition/);
    expect(refused(conditional(compare("EQ", "owner", null)))).toThrow(/nullValue value is not a plan literal/);
  });

  it("refuses what SQL could read wider than the plan: letters in LIKE, infinite numbers, a tree past the bounds", () => {
    const query = db.selectFrom("orders").select("id");
    const refused = (p: PlanResourcesResponse) => () => whereAuthorized(query, p, FIELDS);
    // SQLite's LIKE ignores the case of ASCII letters, MySQL's collations accents too.
    expect(refused(conditional(compare("LIKE", "owner", "b%")))).toThrow(
      new PlanFieldError("a PLAN_OPERATOR_LIKE pattern with a letter or a character outside ASCII is refused"),
    );
    expect(refused(conditional(compare("LIKE", "owner", "%é%")))).toThrow(/outside ASCII/);
    expect(refused(conditional(compare("LIKE", "id", 5)))).toThrow(/needs a string pattern/);
    for (const number of [Infinity, -Infinity, NaN]) {
      // JSON has no such number: set it on the message, as a binary plan could carry it.
      const infinite = conditional(compare("GT", "amount", 1));
      if (infinite.condition?.node.case !== "compare") throw new Error("not a comparison");
      infinite.condition.node.value.value = create(ValueSchema, { kind: { case: "numberValue", value: number } });
      expect(refused(infinite)).toThrow(new PlanFieldError("a plan number must be finite"));
    }
    let deep: JsonObject = { isNull: "owner" };
    for (let i = 0; i < 40; i++) deep = { negate: deep };
    expect(refused(conditional(deep))).toThrow(new PlanFieldError("a plan deeper than 32 is refused"));
    const wide = Array.from({ length: 10_001 }, (_, i) => String(i));
    expect(refused(conditional(compare("IN", "owner", wide)))).toThrow(/more than 10000 nodes/);
  });
});

describe("integer id columns on SQLite", () => {
  const db = sqlite();
  beforeAll(() => intTable(db, [{ key: "seven", id: "7" }, { key: "big", id: "9007199254740993" }, { key: "null", id: null }]));
  afterAll(() => db.destroy());
  const declared = { integerIds: ["id"] };

  it("compares integers, as Check decides on the row's text, without a cast", async () => {
    const onePart = conditional({ all: { conditions: [compare("NE", "id", ""), { negate: compare("LIKE", "id", "%/%") }] } });
    expect(await intKeys(db, onePart)).toEqual(["big", "seven"]);
    const literal = conditional(compare("IN", "id", ["7", "7\n", "007", "9007199254740993"]));
    expect(await intKeys(db, literal)).toEqual(["big", "seven"]);
    const compiled = whereAuthorized(db.selectFrom("int_orders").select("key"), literal, ["id"], declared).compile();
    expect(compiled.parameters).toEqual([7, 9007199254740993n]);
    expect(compiled.sql).not.toMatch(/cast/i);
    expect(await intKeys(db, conditional({ negate: compare("EQ", "id", "+7") }))).toEqual(["big", "seven"]);
    expect(await intKeys(db, conditional(compare("LT", "id", "9")))).toMatch(/Check compares the texts, not the numbers/);
    expect(await intKeys(db, conditional(compare("LIKE", "id", "%7")))).toMatch(/not certain/);
  });
});

describe("column types on SQLite", () => {
  const db = sqlite();
  beforeAll(() => table(db, ROWS));
  afterAll(() => db.destroy());
  const DECLARED: ColumnTypes = { id: "text", owner: "text", org_id: "text", status: "text", amount: "number" };

  it("reads the fields' column types from the database", async () => {
    expect(await introspectColumnTypes(db, "orders", FIELDS)).toEqual(DECLARED);
    // Another table's column, or an alias's, is not this table's: left out.
    const mixed = { owner: "orders.owner", amount: "other.amount", status: "o.status", org_id: "nothing" };
    expect(await introspectColumnTypes(db, "orders", mixed)).toEqual({ owner: "text" });
    await expect(introspectColumnTypes(db, "invoices", FIELDS)).rejects.toThrow(/no table "invoices"/);
    const read = ["int4", "INTEGER", "bigint unsigned", "numeric(10,2)", "double precision", "varchar(255)", "bpchar", "BOOLEAN"];
    expect(read.map(columnTypeOf)).toEqual(["number", "number", "number", "number", "number", "text", "text", "boolean"]);
    // Equal whatever the case (Check is not), SQLite's numeric affinity, neither a text nor a number.
    for (const other of ["citext", "STRING", "timestamptz", "uuid", "jsonb", ""]) expect(columnTypeOf(other)).toBeUndefined();
  });

  it("refuses a column compared with a value of another type, which the database would convert", async () => {
    const declared = { columnTypes: DECLARED };
    const amountIs50 = conditional(compare("EQ", "amount", "50"));
    // Undeclared, the database converts: amount = '50' finds the row Check refuses.
    expect(await ids(db, amountIs50)).toEqual(["1"]);
    expect(await refusedOr(() => ids(db, amountIs50, FIELDS, declared))).toBe(
      'PlanFieldError: the plan compares "amount" (a number column) with a string: the database would convert one to the other, ' +
        "Check does not (a path parameter whose column holds integers is named in integerIds)",
    );
    expect(await refusedOr(() => ids(db, conditional(compare("EQ", "owner", 5)), FIELDS, declared))).toBe(
      'PlanFieldError: the plan compares "owner" (a text column) with a number: the database would convert one to the other, Check does not',
    );
    expect(await ids(db, conditional(compare("GT", "amount", 100)), FIELDS, declared)).toEqual(["2"]);
  });

  it("refuses, once types are declared, a compared field they leave out, and a wrong declaration", async () => {
    const owner = { columnTypes: { owner: "text" } } as const;
    expect(await refusedOr(() => ids(db, conditional(compare("GT", "amount", 100)), FIELDS, owner))).toBe(
      'PlanFieldError: the plan compares "amount", whose column\'s type is not declared',
    );
    expect(await ids(db, conditional({ isNull: "amount" }), FIELDS, owner)).toEqual(["3"]); // no value, no type
    const word = { columnTypes: { amount: "integer" } as unknown as ColumnTypes };
    // Thrown whatever the plan: an allowed one too.
    expect(await refusedOr(() => ids(db, plan({ kind: "PLAN_KIND_ALWAYS_ALLOWED" }), FIELDS, word))).toBe(
      'PlanFieldError: the column type of "amount" is "integer", not "text", "number" or "boolean"',
    );
    const both = { integerIds: ["id"], columnTypes: { id: "text" } } as const;
    expect(await refusedOr(() => ids(db, conditional(compare("EQ", "owner", "bob")), FIELDS, both))).toBe(
      'PlanFieldError: "id" is declared an integer id and a text column',
    );
  });
});

describe("a plan of thousands of terms on SQLite", () => {
  const db = sqlite();
  beforeAll(() => table(db, ROWS));
  afterAll(() => db.destroy());

  it("nests long lists: SQLite refuses `a or b or ...` past 1,000 terms", async () => {
    const owners = Array.from({ length: 2000 }, (_, i) => compare("EQ", "owner", `u${i}`));
    const many = conditional({ any: { conditions: [...owners, compare("EQ", "owner", "bob")] } });
    expect(await ids(db, many)).toEqual(["3"]);
    const notMany = conditional({ all: { conditions: [...owners.map((c) => ({ negate: c })), compare("NE", "owner", "bob")] } });
    expect(await ids(db, notMany)).toEqual(["1"]);
  });
});

describe("LIKE patterns on SQLite", () => {
  const db = sqlite();
  const odd: OrderRow[] = ["a\nb", "a\n", "\n\n", "%", "_", "\\", "ab"].map((id) => ({
    id,
    owner: null,
    org: null,
    status: null,
    amount: null,
  }));
  beforeAll(() => table(db, odd));
  afterAll(() => db.destroy());

  it("reads %, _ and the escape as the plan does", async () => {
    // keyMatch2's `/*`: no line break but a final one.
    expect(await ids(db, conditional({ negate: compare("LIKE", "id", "%\n_%") }))).toEqual(["%", "\\", "_", "a\n", "ab"]);
    expect(await ids(db, conditional(compare("LIKE", "id", "%\n%")))).toEqual(["\n\n", "a\n", "a\nb"]);
    const escaped = ["\\%", "\\_", "\\\\"].map((p) => compare("LIKE", "id", p));
    expect(await ids(db, conditional({ any: { conditions: escaped } }))).toEqual(["%", "\\", "_"]);
  });
});

const casesFile = process.env.AUTHZ_PLAN_CASES;

describe.skipIf(!casesFile)("rows equal Check's over a real authz", () => {
  const none: Cases = {
    url: "",
    dsn: "",
    rows: [],
    cases: [],
    column_types: {},
    type_cases: [],
    int_rows: [],
    int_cases: [],
    int_fixed_rows: [],
    int_fixed: [],
  };
  const input: Cases = casesFile ? JSON.parse(readFileSync(casesFile, "utf8")) : none;
  const databases: [string, () => Kysely<Tables>][] = [
    ["postgresql", () => new Kysely<Tables>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: input.dsn, max: 2 }) }) })],
    ["sqlite", sqlite],
  ];

  describe.each(databases)("on %s", (_name, open) => {
    let db: Kysely<Tables>;
    beforeAll(async () => {
      db = open();
      await table(db, input.rows);
    });
    afterAll(() => db.destroy());

    it("returns for every principal and action the rows Check allows", async () => {
      const kinds = new Set<PlanKind>();
      const columnTypes = await introspectColumnTypes(db, "orders", FIELDS);
      expect(columnTypes).toEqual(input.column_types);
      for (const c of input.cases) {
        const client = createAuthzClient({ baseUrl: input.url, getToken: () => c.token });
        const plan = await client.planResources({ action: c.action, resource: "/api/orders/:id" });
        kinds.add(plan.kind);
        expect([c.name, await ids(db, plan)]).toEqual([c.name, c.expected]);
        expect([c.name, await ids(db, plan, FIELDS, { columnTypes })]).toEqual([c.name, c.expected]);
        // The array form of the field map needs same-named columns: `org_id` is `org` here.
        if (plan.fields.includes("org_id")) expect(() => whereAuthorized(db.selectFrom("orders"), plan, ["owner", "status", "amount", "id"])).toThrow(PlanFieldError);
      }
      // `:id` plans as a condition on the id (one segment): ALWAYS_ALLOWED is tested above.
      expect([...kinds].sort()).toEqual([PlanKind.ALWAYS_DENIED, PlanKind.CONDITIONAL]);
    });

    it("refuses a column compared with a value of another type, with the column types read from the database", async () => {
      expect(input.type_cases.length).toBeGreaterThan(5);
      const columnTypes = await introspectColumnTypes(db, "orders", FIELDS);
      await expectCases(input.type_cases, (c) => refusedOr(() => ids(db, plan(c.plan), FIELDS, { columnTypes })));
    });

    it("compares a declared integer id column as integers: the rows Check allows, the refusals, NULL kept out", async () => {
      expect(input.int_cases.length).toBeGreaterThan(10);
      await intTable(db, input.int_rows);
      // An integer id is a number column: declaring the column types needs no more for it.
      const typed = await introspectColumnTypes(db, "int_orders", ["id"]);
      expect(typed).toEqual({ id: "number" });
      for (const options of [{}, { columnTypes: typed }, { columnTypes: {} }]) {
        await intTable(db, input.int_rows);
        await expectCases(input.int_cases, (c) => intKeys(db, plan(c.plan), options));
        await intTable(db, input.int_fixed_rows);
        await expectCases(input.int_fixed, (c) => intKeys(db, plan(c.plan), options));
      }
    });
  });
});
