<?php

declare(strict_types=1);

namespace Authz;

use Illuminate\Database\Eloquent\Builder as EloquentBuilder;
use Illuminate\Database\Query\Builder;

/**
 * A PlanResources plan as WHERE clauses of an Illuminate query (Eloquent or the query builder).
 *
 *     $plan = $client->planResources($token, 'GET', '/api/orders/:id');
 *     $orders = EloquentPlan::apply(Order::query(), $plan, ['org_id' => 'organisation'])->get();
 *
 * or, after `EloquentPlan::registerMacro()`, `Order::query()->whereAuthorized($plan, $fields)`.
 *
 * The field map maps a plan field to a column (`'org_id' => 'orders.organisation'`); a list
 * entry (`'owner'`) maps a field to the column of the same name. A field the map leaves
 * out is looked up among the columns of the query's table; a field with neither throws
 * PlanFieldException, never a silently dropped filter. Column names come only from the
 * field map or the table; every value is a bound parameter. ALWAYS_DENIED (and a kind
 * this client does not know) selects no row. The condition goes in as one parenthesised
 * group, and WHERE clauses already on the query that contain an OR are grouped first, so
 * `->orWhere(...)` before the plan cannot widen it.
 *
 * A plan is refused rather than translated where SQL could select a row the plan does not:
 * a LIKE pattern holding a letter or a character outside ASCII (SQLite's and MySQL's LIKE
 * ignore case), a number that is not finite, an unknown node or operator, and a tree past
 * the server's bounds (32 levels, 10,000 nodes, each value of an IN counting one).
 *
 * `$integerIds` names the path parameters (`['id']` for `/api/orders/:id`) whose column
 * holds integers: their text comparisons are decided as Check decides them on the row's
 * text and compared as integers (IntegerIds), so the id column needs no cast. Name only
 * path parameters: Check gets an attribute as the number itself, never equal to a text.
 *
 * A comparison of a column with a value of another type is refused (ColumnTypes: SQLite and
 * PostgreSQL convert `'5'` to a number column's `5`, Check does not); `$types` declares the
 * fields' column types (`['amount' => 'number', 'owner' => 'text']`), an Eloquent model's
 * casts say the rest. Given `$types` (even `[]`), a compared field of no known type is refused.
 */
final class EloquentPlan
{
    private const OPERATORS = [
        'PLAN_OPERATOR_EQ' => '=', 'PLAN_OPERATOR_NE' => '<>', 'PLAN_OPERATOR_LT' => '<',
        'PLAN_OPERATOR_LE' => '<=', 'PLAN_OPERATOR_GT' => '>', 'PLAN_OPERATOR_GE' => '>=',
    ];
    private const OPERATOR_NAMES = [
        1 => 'PLAN_OPERATOR_EQ', 2 => 'PLAN_OPERATOR_NE', 3 => 'PLAN_OPERATOR_LT', 4 => 'PLAN_OPERATOR_LE',
        5 => 'PLAN_OPERATOR_GT', 6 => 'PLAN_OPERATOR_GE', 7 => 'PLAN_OPERATOR_IN', 8 => 'PLAN_OPERATOR_LIKE',
    ];
    /** The server's bounds on a plan: a tree past them is not its plan. */
    public const MAX_NODES = 10000;
    public const MAX_DEPTH = 32;
    private const FLAT_TERMS = 64;

    private int $nodes = 0;

    /** @var array<string, string> plan field => column */
    private array $columns = [];

    /** @var list<string>|null the table's columns, read once when a field is not in the map */
    private ?array $tableColumns = null;

    /** @var array<string, true> plan fields that are integer id path parameters */
    private array $integerIds = [];

    /**
     * @param array<int|string, string> $fields
     * @param list<string> $integerIds
     */
    private function __construct(private readonly Builder $base, array $fields, array $integerIds, private readonly ColumnTypes $types)
    {
        $this->integerIds = array_fill_keys($integerIds, true);
        foreach ($fields as $field => $column) {
            $this->columns[is_int($field) ? $column : $field] = $column;
        }
    }

    /**
     * Restrict `$query` to the rows `$plan` allows; returns `$query`.
     *
     * @template T of Builder|EloquentBuilder
     * @param T $query
     * @param array<int|string, string> $fields plan field => column, or a column of the same name as a list entry
     * @param list<string> $integerIds path parameters whose column holds integers (`['id']`)
     * @param array<string, string>|null $types plan field => its column's type, 'text', 'number' or 'boolean'
     * @return T
     * @throws PlanFieldException for a field that maps to no column, a comparison of a column with
     *                            a value of another type, or a malformed plan
     */
    public static function apply(Builder|EloquentBuilder $query, Plan $plan, array $fields = [], array $integerIds = [], ?array $types = null): Builder|EloquentBuilder
    {
        $base = $query instanceof EloquentBuilder ? $query->getQuery() : $query;
        $columnTypes = new ColumnTypes($query, $types, $integerIds); // a wrong declaration throws whatever the plan
        if ($plan->kind === Plan::ALWAYS_ALLOWED) {
            return $query;
        }
        self::groupEarlierOrs($base);
        if ($plan->kind !== Plan::CONDITIONAL || $plan->condition === null) {
            $base->whereRaw('1 = 0');
            return $query;
        }
        $translator = new self($base, $fields, $integerIds, $columnTypes);
        foreach ($plan->fields as $field) {
            $translator->column($field); // every field resolves before any clause is added
        }
        $condition = $plan->condition;
        $base->whereNested(fn (Builder $nested) => $translator->add($nested, $condition, 'and', 1));
        return $query;
    }

    /**
     * Add `whereAuthorized(Plan $plan, array $fields = [], array $integerIds = [], ?array $types = null)`
     * to the query builder and to Eloquent's, whose own macro lets the model's casts be read.
     */
    public static function registerMacro(): void
    {
        Builder::macro('whereAuthorized', function (Plan $plan, array $fields = [], array $integerIds = [], ?array $types = null): Builder {
            /** @var Builder $this */
            return EloquentPlan::apply($this, $plan, $fields, $integerIds, $types);
        });
        EloquentBuilder::macro('whereAuthorized', function (Plan $plan, array $fields = [], array $integerIds = [], ?array $types = null): EloquentBuilder {
            /** @var EloquentBuilder $this */
            return EloquentPlan::apply($this, $plan, $fields, $integerIds, $types);
        });
    }

    private static function groupEarlierOrs(Builder $base): void
    {
        $ors = array_filter($base->wheres, static fn (array $w): bool => str_starts_with(strtolower($w['boolean']), 'or'));
        if ($ors === []) {
            return;
        }
        $earlier = $base->forNestedWhere();
        $earlier->wheres = $base->wheres;
        $earlier->bindings['where'] = $base->bindings['where'];
        $base->wheres = [];
        $base->bindings['where'] = [];
        $base->addNestedWhereQuery($earlier);
    }

    /**
     * Add one condition node to `$query` as exactly one WHERE clause joined by `$boolean`.
     *
     * @param array<string, mixed> $node
     */
    private function add(Builder $query, array $node, string $boolean, int $depth): void
    {
        if (count($node) !== 1) {
            throw new PlanFieldException('a plan condition must have exactly one node');
        }
        if ($depth > self::MAX_DEPTH) {
            throw new PlanFieldException('a plan deeper than ' . self::MAX_DEPTH . ' is refused');
        }
        $this->count(1);
        $kind = array_key_first($node);
        $body = $node[$kind];
        switch ($kind) {
            case 'all':
            case 'any':
                $children = self::children($body);
                if ($children === []) {
                    // An empty nested group would be dropped by the builder: say true / false outright.
                    $query->whereRaw($kind === 'all' ? '1 = 1' : '1 = 0', [], $boolean);
                    return;
                }
                $this->addJoined($query, $children, $kind === 'all' ? 'and' : 'or', $boolean, $depth);
                return;
            case 'negate':
                if (!is_array($body)) {
                    throw new PlanFieldException('negate needs a condition');
                }
                // "and not (...)": the grammar strips a leading "and "/"or " only, as whereNot does.
                $query->whereNested(fn (Builder $nested) => $this->add($nested, $body, 'and', $depth + 1), "{$boolean} not");
                return;
            case 'isNull':
            case 'is_null':
                $query->whereNull($this->column(is_string($body) ? $body : ''), $boolean);
                return;
            case 'compare':
                $this->compare($query, is_array($body) ? $body : [], $boolean);
                return;
        }
        throw new PlanFieldException("unknown plan condition node {$kind}");
    }

    /**
     * Add `$children` joined by `$join` as one group; a long list as nested halves, since
     * SQLite parses `a or b or c ...` one level deeper per term and refuses past 1,000.
     *
     * @param list<array<string, mixed>> $children
     */
    private function addJoined(Builder $query, array $children, string $join, string $boolean, int $depth): void
    {
        $query->whereNested(function (Builder $nested) use ($children, $join, $depth): void {
            if (count($children) <= self::FLAT_TERMS) {
                foreach ($children as $child) {
                    $this->add($nested, $child, $join, $depth + 1);
                }
                return;
            }
            $half = intdiv(count($children), 2);
            $this->addJoined($nested, array_slice($children, 0, $half), $join, $join, $depth);
            $this->addJoined($nested, array_slice($children, $half), $join, $join, $depth);
        }, $boolean);
    }

    /**
     * @return list<array<string, mixed>>
     */
    private static function children(mixed $list): array
    {
        $children = is_array($list) ? ($list['conditions'] ?? []) : null;
        if (!is_array($children) || !array_is_list($children)) {
            throw new PlanFieldException('a condition list needs a conditions array');
        }
        foreach ($children as $child) {
            if (!is_array($child)) {
                throw new PlanFieldException('a condition must be an object');
            }
        }
        return $children;
    }

    /**
     * @param array<string, mixed> $comparison
     */
    private function compare(Builder $query, array $comparison, string $boolean): void
    {
        $field = is_string($comparison['field'] ?? null) ? $comparison['field'] : '';
        $column = $this->column($field);
        $operator = $comparison['operator'] ?? 0;
        $operator = is_int($operator) ? (self::OPERATOR_NAMES[$operator] ?? "{$operator}") : (string) $operator;
        $value = self::value($comparison['value'] ?? null);
        $text = is_string($value) || (is_array($value) && array_filter($value, 'is_string') !== []);
        if ($text && isset($this->integerIds[$field])) {
            $this->count(is_array($value) ? count($value) : 0);
            IntegerIds::compare($query, $field, $column, $operator, $value, $boolean);
            return;
        }
        $this->types->check($field, $column, $value);
        if ($operator === 'PLAN_OPERATOR_IN') {
            if (!is_array($value)) {
                throw new PlanFieldException('PLAN_OPERATOR_IN needs a list value');
            }
            $this->count(count($value));
            $query->whereIn($column, $value, $boolean);
            return;
        }
        if ($operator === 'PLAN_OPERATOR_LIKE') {
            // The escape character is bound too: MySQL reads a backslash in a string literal.
            $query->whereRaw($query->getGrammar()->wrap($column) . ' like ? escape ?', [self::pattern($value), '\\'], $boolean);
            return;
        }
        if (is_array($value)) {
            throw new PlanFieldException('only PLAN_OPERATOR_IN takes a list value');
        }
        if (!isset(self::OPERATORS[$operator])) {
            throw new PlanFieldException("unknown plan operator {$operator}");
        }
        $query->where($column, self::OPERATORS[$operator], $value, $boolean);
    }

    private function count(int $nodes): void
    {
        $this->nodes += $nodes;
        if ($this->nodes > self::MAX_NODES) {
            throw new PlanFieldException('a plan of more than ' . self::MAX_NODES . ' nodes is refused');
        }
    }

    /** A LIKE pattern no collation reads otherwise than the plan: wildcards, escapes and ASCII non-letters. */
    private static function pattern(mixed $value): string
    {
        if (!is_string($value)) {
            throw new PlanFieldException('PLAN_OPERATOR_LIKE needs a string pattern');
        }
        if (preg_match('/[A-Za-z\x80-\xff]/', $value) === 1) {
            throw new PlanFieldException('a PLAN_OPERATOR_LIKE pattern with a letter or a character outside ASCII is refused');
        }
        return $value;
    }

    /**
     * A comparison's literal as the value to bind: a whole number as an int (proto JSON
     * numbers are doubles; PostgreSQL refuses "100.0" for an integer column).
     *
     * @return string|int|float|bool|list<string|int|float|bool>
     */
    private static function value(mixed $value): string|int|float|bool|array
    {
        if (is_float($value) && !is_finite($value)) {
            throw new PlanFieldException('a plan number must be finite');
        }
        if (is_float($value) && floor($value) === $value && abs($value) < 2 ** 53) {
            return (int) $value;
        }
        if (is_string($value) || is_int($value) || is_float($value) || is_bool($value)) {
            return $value;
        }
        if (is_array($value) && array_is_list($value)) {
            $items = [];
            foreach ($value as $item) {
                $item = self::value($item);
                if (is_array($item)) {
                    throw new PlanFieldException('a list value holds only strings, numbers and booleans');
                }
                $items[] = $item;
            }
            return $items;
        }
        throw new PlanFieldException('a plan literal is a string, number, boolean or list of them, never null');
    }

    /** The column a plan field names: from the field map, else a column of the same name of the table. */
    private function column(string $field): string
    {
        if ($field === '') {
            throw new PlanFieldException('a plan condition names no field');
        }
        if (isset($this->columns[$field])) {
            return $this->columns[$field];
        }
        if (in_array($field, $this->tableColumns(), true)) {
            return $this->columns[$field] = $field;
        }
        throw new PlanFieldException("the plan reads '{$field}', which is neither in the field map nor a column of the table");
    }

    /** @return list<string> */
    private function tableColumns(): array
    {
        if ($this->tableColumns === null) {
            $table = $this->base->from;
            // An alias, a join's subquery or an expression: only the field map can say.
            $plain = is_string($table) && preg_match('/^[A-Za-z_][A-Za-z0-9_.]*$/', $table) === 1;
            $this->tableColumns = $plain
                ? array_values(array_map('strval', $this->base->getConnection()->getSchemaBuilder()->getColumnListing($table)))
                : [];
        }
        return $this->tableColumns;
    }
}
