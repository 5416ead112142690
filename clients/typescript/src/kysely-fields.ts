/**
 * What the Kysely adapter knows of a plan field: its column, and that column's type.
 *
 * SQLite and PostgreSQL convert `'5'` to a number column's `5` (and SQLite `5` to a text
 * column's `'5'`); Check never finds `'5'` equal to `5`. So a text column is compared only
 * with strings, a number or boolean column only with numbers and booleans (Check, like SQL,
 * finds `true` equal to `1`); anything else is a `PlanFieldError`.
 */

import type { DatabaseIntrospector } from "kysely";

/** Plan field -> column (`"orders.org_id"` qualifies it); an array lists same-named columns. */
export type PlanFields = Readonly<Record<string, string>> | readonly string[];

/** What a column holds, as far as comparing it with a plan's value goes. */
export type ColumnType = "text" | "number" | "boolean";

/** Plan field -> its column's type. */
export type ColumnTypes = Readonly<Record<string, ColumnType>>;

/** The plan reads a field with no column, or is malformed: the query is refused. */
export class PlanFieldError extends Error {
  override name = "PlanFieldError";
}

export type Literal = string | number | boolean;

export function columnsOf(fields: PlanFields): ReadonlyMap<string, string> {
  if (Array.isArray(fields)) return new Map(fields.map((f: string) => [f, f]));
  return new Map(Object.entries(fields));
}

const TEXT = ["text", "varchar", "character varying", "char", "character", "bpchar", "nchar", "nvarchar", "clob"];
const NUMBER = ["int", "integer", "tinyint", "smallint", "mediumint", "bigint", "int2", "int4", "int8"];
const DECIMAL = ["numeric", "decimal", "real", "double", "double precision", "float", "float4", "float8"];
const TYPES: ReadonlyMap<string, ColumnType> = new Map([
  ...[...TEXT, "tinytext", "mediumtext", "longtext"].map((name) => [name, "text"] as const),
  ...[...NUMBER, ...DECIMAL].map((name) => [name, "number"] as const),
  ...["bool", "boolean"].map((name) => [name, "boolean"] as const),
]);

/**
 * The type of a column whose database type is `dataType` (as Kysely's introspection reports
 * it: `int4`, `INTEGER`, `varchar(255)`, `bigint unsigned`), or undefined for any other: a
 * date, JSON, a UUID, `citext` (equal whatever the case: Check is not), SQLite's `STRING`
 * (numeric affinity: it stores `'5'` as `5`).
 */
export function columnTypeOf(dataType: string): ColumnType | undefined {
  const name = dataType.toLowerCase().replace(/\(.*\)/, "").replace(/ (unsigned|zerofill)/g, "").trim();
  return TYPES.get(name);
}

/**
 * The column types of `fields` whose column is one of `table`'s (`"orders"`, or
 * `"public.orders"` where several schemas hold one), read from the database through Kysely's
 * introspection: `whereAuthorized(query, plan, fields, { columnTypes })`. A field whose column
 * is another table's, or of a type `columnTypeOf` does not know, is left out (and so refused
 * where a plan compares it). Read once, at start-up: it lists every table's columns.
 */
export async function introspectColumnTypes(
  db: { readonly introspection: DatabaseIntrospector },
  table: string,
  fields: PlanFields,
): Promise<ColumnTypes> {
  const qualified = (t: { name: string; schema?: string }) => (t.schema === undefined ? t.name : `${t.schema}.${t.name}`);
  const tables = (await db.introspection.getTables()).filter((t) => t.name === table || qualified(t) === table);
  const [found, ...others] = tables;
  if (found === undefined) throw new Error(`the database has no table ${JSON.stringify(table)}`);
  if (others.length > 0) throw new Error(`several schemas hold a table ${JSON.stringify(table)}: name the schema`);
  const names = new Set([found.name, qualified(found)]);
  const types = new Map(found.columns.map((c) => [c.name, columnTypeOf(c.dataType)]));
  const known: Record<string, ColumnType> = {};
  for (const [field, column] of columnsOf(fields)) {
    const dot = column.lastIndexOf(".");
    if (dot >= 0 && !names.has(column.slice(0, dot))) continue; // another table's, or an alias
    const type = types.get(column.slice(dot + 1));
    if (type !== undefined) known[field] = type;
  }
  return known;
}

/**
 * The column types a translation checks against: the declared ones, an integer id's
 * (a number), and whether the declaration is complete (given at all).
 */
export class FieldTypes {
  private readonly types: ReadonlyMap<string, ColumnType>;

  constructor(
    private readonly declared: ColumnTypes | undefined,
    integerIds: ReadonlySet<string>,
  ) {
    for (const [field, type] of Object.entries(declared ?? {})) {
      if (!["text", "number", "boolean"].includes(type)) {
        const word = JSON.stringify(type);
        throw new PlanFieldError(`the column type of ${JSON.stringify(field)} is ${word}, not "text", "number" or "boolean"`);
      }
      if (type !== "number" && integerIds.has(field)) {
        throw new PlanFieldError(`${JSON.stringify(field)} is declared an integer id and a ${type} column`);
      }
    }
    this.types = new Map([...[...integerIds].map((f) => [f, "number"] as const), ...Object.entries(declared ?? {})]);
  }

  /** Throws unless `field`'s column may be compared with `value` as Check compares. */
  check(field: string, value: Literal | Literal[]): void {
    const type = this.types.get(field);
    const name = JSON.stringify(field);
    if (type === undefined) {
      if (this.declared !== undefined) throw new PlanFieldError(`the plan compares ${name}, whose column's type is not declared`);
      return;
    }
    for (const item of Array.isArray(value) ? value : [value]) {
      if ((typeof item === "string") === (type === "text")) continue;
      const kind = typeof item;
      const hint = type === "number" ? " (a path parameter whose column holds integers is named in integerIds)" : "";
      throw new PlanFieldError(
        `the plan compares ${name} (a ${type} column) with a ${kind}: the database would convert one to the other, Check does not${hint}`,
      );
    }
  }
}
