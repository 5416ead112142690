/**
 * Kysely adapter: a PlanResources plan as a WHERE condition (`@authz/client/kysely`).
 *
 *     const plan = await authz.planResources({ action: "GET", resource: "/api/orders/:id" },
 *                                            { headers: { authorization: bearer(token) } });
 *     const rows = await whereAuthorized(db.selectFrom("orders").selectAll(), plan,
 *                                        { org_id: "organisation_id", owner: "owner" }).execute();
 *
 * Every field the plan reads must be in the field map (plan field -> column; an array
 * entry is a column of the same name): Kysely knows no table's columns at run time, and a
 * field with no column is a `PlanFieldError`, never a silently dropped filter. Column
 * names come only from the field map; every value is a bound parameter. `ALWAYS_DENIED`
 * (also for a refused token; `plan.reason` says why) and a kind this client does not
 * know select no row.
 *
 * A plan is refused rather than translated where SQL could select a row the plan does not:
 * a LIKE pattern holding a letter or a character outside ASCII (SQLite's and MySQL's LIKE
 * ignore case), a number that is not finite, an unknown node or operator, and a tree past
 * the server's bounds (32 levels, 10,000 nodes, each value of an IN counting one).
 *
 * `{ integerIds: ["id"] }` names the path parameters whose column holds integers: their text
 * comparisons are decided as Check decides them on the row's text `String(n)` and compared as
 * integers (`id == '42'` is `id = 42`; `'007'`, `'7\n'`, `''` match no row; a LIKE pattern
 * needing a character no integer holds, such as `'%/%'`, matches none; `<` `<=` `>` `>=` with
 * a text and any other LIKE pattern are refused), so the id column needs no cast. Name only
 * path parameters: Check gets an attribute as the number itself, never equal to a text.
 *
 * `{ columnTypes }` declares the fields' column types (`{ amount: "number", owner: "text" }`,
 * or `await introspectColumnTypes(db, "orders", fields)` from the database): a comparison of a
 * column with a value of another type is refused (SQLite and PostgreSQL convert `'5'` to a
 * number column's `5`, Check does not), and so is one of a field it leaves out (an integer
 * id is a number column). Without it, the database compares as it will.
 */

import { sql, type Expression, type ExpressionBuilder, type SqlBool } from "kysely";
import type { Value } from "@bufbuild/protobuf/wkt";
import {
  PlanKind,
  PlanOperator,
  type PlanComparison,
  type PlanCondition,
  type PlanResourcesResponse,
} from "./gen/authz/api/v1/authz_pb.js";
import { columnsOf, FieldTypes, PlanFieldError, type ColumnTypes, type Literal, type PlanFields } from "./kysely-fields.js";

export { columnTypeOf, introspectColumnTypes, PlanFieldError } from "./kysely-fields.js";
export type { ColumnType, ColumnTypes, PlanFields } from "./kysely-fields.js";

/**
 * How to translate: `integerIds` lists the path parameters (`["id"]`) whose column holds
 * integers; `columnTypes` the fields' column types, every compared field's once given.
 */
export interface PlanOptions {
  readonly integerIds?: readonly string[];
  readonly columnTypes?: ColumnTypes;
}

// The plan's columns are runtime strings, so the translation works on an untyped builder.
type AnyBuilder = ExpressionBuilder<Record<string, Record<string, unknown>>, string>;

const OPERATORS: ReadonlyMap<PlanOperator, "=" | "<>" | "<" | "<=" | ">" | ">="> = new Map([
  [PlanOperator.EQ, "="],
  [PlanOperator.NE, "<>"],
  [PlanOperator.LT, "<"],
  [PlanOperator.LE, "<="],
  [PlanOperator.GT, ">"],
  [PlanOperator.GE, ">="],
] as const);

/** The server's bounds on a plan: a tree past them is not its plan. */
export const MAX_PLAN_NODES = 10_000;
export const MAX_PLAN_DEPTH = 32;

const FLAT_TERMS = 64;
const TRUE = sql<SqlBool>`1 = 1`;
const FALSE = sql<SqlBool>`1 = 0`;

function literal(value: Value | undefined): Literal | Literal[] {
  const kind = value?.kind;
  switch (kind?.case) {
    case "numberValue":
      if (!Number.isFinite(kind.value)) throw new PlanFieldError("a plan number must be finite");
      return kind.value;
    case "stringValue":
    case "boolValue":
      return kind.value;
    case "listValue":
      return kind.value.values.map((item) => {
        const one = literal(item);
        if (Array.isArray(one)) throw new PlanFieldError("a list value holds only strings, numbers and booleans");
        return one;
      });
    default:
      throw new PlanFieldError(`a ${kind?.case ?? "missing"} value is not a plan literal`);
  }
}

/** A LIKE pattern no collation reads otherwise than the plan: wildcards, escapes and ASCII non-letters. */
function likePattern(value: Literal | Literal[]): string {
  if (typeof value !== "string") throw new PlanFieldError("PLAN_OPERATOR_LIKE needs a string pattern");
  if (/[A-Za-z]|[^\x00-\x7f]/.test(value)) {
    throw new PlanFieldError("a PLAN_OPERATOR_LIKE pattern with a letter or a character outside ASCII is refused");
  }
  return value;
}

// The text of an integer a 64-bit column can hold (no `007`, `+7`, ` 7`, `7\n`, `-0`).
const CANONICAL = /^-?(0|[1-9][0-9]{0,18})$/;
const INT64 = [-(2n ** 63n), 2n ** 63n - 1n] as const;

/** The integer whose text is `text`, bound as a number (a bigint past 2**53), or undefined. */
function integerOf(text: string): number | bigint | undefined {
  if (!CANONICAL.test(text) || text === "-0") return undefined;
  const big = BigInt(text);
  if (big < INT64[0] || big > INT64[1]) return undefined;
  return Number.isSafeInteger(Number(text)) ? Number(text) : big;
}

/** Whether no integer's text matches the LIKE `pattern` for certain: it requires a character none holds. */
function likeMatchesNoInteger(pattern: string): boolean {
  let escaped = false;
  let other = false;
  for (const ch of pattern) {
    if (escaped) {
      escaped = false;
      other ||= !"-0123456789".includes(ch);
    } else if (ch === "\\") {
      escaped = true;
    } else {
      other ||= !"%_-0123456789".includes(ch);
    }
  }
  return other && !escaped;
}

const ORDERINGS: readonly PlanOperator[] = [PlanOperator.LT, PlanOperator.LE, PlanOperator.GT, PlanOperator.GE];

class Translator {
  private nodes = 0;

  constructor(
    private readonly eb: AnyBuilder,
    private readonly columns: ReadonlyMap<string, string>,
    private readonly integerIds: ReadonlySet<string>,
    private readonly types: FieldTypes,
  ) {}

  private count(nodes: number): void {
    this.nodes += nodes;
    if (this.nodes > MAX_PLAN_NODES) throw new PlanFieldError(`a plan of more than ${MAX_PLAN_NODES} nodes is refused`);
  }

  column(field: string): string {
    const column = this.columns.get(field);
    if (column === undefined) {
      throw new PlanFieldError(`the plan reads ${JSON.stringify(field)}, which is not in the field map`);
    }
    return column;
  }

  node(condition: PlanCondition, depth = 1): Expression<SqlBool> {
    if (depth > MAX_PLAN_DEPTH) throw new PlanFieldError(`a plan deeper than ${MAX_PLAN_DEPTH} is refused`);
    this.count(1);
    const { node } = condition;
    switch (node.case) {
      case "all": {
        const parts = node.value.conditions.map((c) => this.node(c, depth + 1));
        return parts.length === 0 ? TRUE : this.joined("and", parts);
      }
      case "any": {
        const parts = node.value.conditions.map((c) => this.node(c, depth + 1));
        return parts.length === 0 ? FALSE : this.joined("or", parts);
      }
      case "negate":
        return this.eb.not(this.node(node.value, depth + 1));
      case "isNull":
        return this.eb(this.column(node.value), "is", null);
      case "compare":
        return this.compare(node.value);
      default:
        throw new PlanFieldError("an empty plan condition");
    }
  }

  /** SQLite parses `a or b or c ...` one level deeper per term and refuses past 1,000: a long list is nested halves. */
  private joined(join: "and" | "or", parts: Expression<SqlBool>[]): Expression<SqlBool> {
    if (parts.length <= FLAT_TERMS) return this.eb[join](parts);
    const half = Math.floor(parts.length / 2);
    return this.eb[join]([this.joined(join, parts.slice(0, half)), this.joined(join, parts.slice(half))]);
  }

  compare(comparison: PlanComparison): Expression<SqlBool> {
    const column = this.column(comparison.field);
    const value = literal(comparison.value);
    const text = typeof value === "string" || (Array.isArray(value) && value.some((v) => typeof v === "string"));
    if (text && this.integerIds.has(comparison.field)) return this.integerCompare(comparison, column, value);
    this.types.check(comparison.field, value);
    if (comparison.operator === PlanOperator.IN) {
      if (!Array.isArray(value)) throw new PlanFieldError("PLAN_OPERATOR_IN needs a list value");
      this.count(value.length);
      // `in ()` is a syntax error in SQL: an empty list matches nothing.
      return value.length === 0 ? FALSE : this.eb(column, "in", value);
    }
    if (comparison.operator === PlanOperator.LIKE) {
      // The escape character is bound too: MySQL reads a backslash in a string literal.
      return sql<SqlBool>`${this.eb.ref(column)} like ${likePattern(value)} escape ${"\\"}`;
    }
    if (Array.isArray(value)) throw new PlanFieldError("only PLAN_OPERATOR_IN takes a list value");
    const operator = OPERATORS.get(comparison.operator);
    if (operator === undefined) throw new PlanFieldError(`unknown plan operator ${comparison.operator}`);
    return this.eb(column, operator, value);
  }

  /**
   * A text comparison of an integer id column, as Check decides it on the row's text. One that
   * holds for no row is `column <> column`: false, and NULL on a NULL column as the text
   * comparison was, so a NOT around it never takes NULL rows in.
   */
  private integerCompare(comparison: PlanComparison, column: string, value: Literal | Literal[]): Expression<SqlBool> {
    const never = this.eb(column, "<>", this.eb.ref(column));
    const field = JSON.stringify(comparison.field);
    if (comparison.operator === PlanOperator.LIKE) {
      if (typeof value !== "string" || !likeMatchesNoInteger(value)) {
        throw new PlanFieldError(`the plan matches ${field}, an integer id column, with a LIKE pattern whose integers are not certain`);
      }
      return never;
    }
    if (comparison.operator === PlanOperator.IN) {
      if (!Array.isArray(value)) throw new PlanFieldError("PLAN_OPERATOR_IN needs a list value");
      this.count(value.length);
      const kept = value.map((v) => (typeof v === "string" ? integerOf(v) : v)).filter((v) => v !== undefined);
      return kept.length === 0 ? never : this.eb(column, "in", kept);
    }
    if (Array.isArray(value)) throw new PlanFieldError("only PLAN_OPERATOR_IN takes a list value");
    if (ORDERINGS.includes(comparison.operator)) {
      throw new PlanFieldError(`the plan orders ${field}, an integer id column, against a text: Check compares the texts, not the numbers`);
    }
    const equal = comparison.operator === PlanOperator.EQ;
    if (!equal && comparison.operator !== PlanOperator.NE) throw new PlanFieldError(`unknown plan operator ${comparison.operator}`);
    const number = typeof value === "string" ? integerOf(value) : undefined;
    if (number === undefined) return equal ? never : this.eb(column, "=", this.eb.ref(column));
    return this.eb(column, equal ? "=" : "<>", number);
  }
}

/**
 * The WHERE condition for `plan`, for `query.where((eb) => planWhere(eb, plan, fields, options))`.
 * Throws `PlanFieldError` for a field the map lacks, a comparison of a column with a value of
 * another type, or a malformed plan.
 */
export function planWhere<DB, TB extends keyof DB>(
  eb: ExpressionBuilder<DB, TB>,
  plan: PlanResourcesResponse,
  fields: PlanFields,
  options: PlanOptions = {},
): Expression<SqlBool> {
  const integerIds = new Set(options.integerIds ?? []);
  const types = new FieldTypes(options.columnTypes, integerIds); // a wrong declaration throws whatever the plan
  if (plan.kind === PlanKind.ALWAYS_ALLOWED) return TRUE;
  if (plan.kind !== PlanKind.CONDITIONAL || plan.condition === undefined) return FALSE;
  const translator = new Translator(eb as unknown as AnyBuilder, columnsOf(fields), integerIds, types);
  for (const field of plan.fields) translator.column(field); // every field resolves first
  return translator.node(plan.condition);
}

/** What `whereAuthorized` needs of a query: Kysely's select, update and delete builders. */
export interface Filterable<Q> {
  // `any`: the query's own database and tables, whatever they are.
  where(expression: (eb: ExpressionBuilder<any, any>) => Expression<SqlBool>): Q;
}

/**
 * `query` restricted to the rows `plan` allows, ANDed with its other conditions. Kysely
 * calls the callback at once, so a `PlanFieldError` is thrown here, before any SQL runs.
 */
export function whereAuthorized<Q extends Filterable<Q>>(
  query: Q,
  plan: PlanResourcesResponse,
  fields: PlanFields,
  options: PlanOptions = {},
): Q {
  return query.where((eb) => planWhere(eb, plan, fields, options));
}
