<?php

declare(strict_types=1);

namespace Authz;

use Illuminate\Database\Eloquent\Builder as EloquentBuilder;
use Illuminate\Database\Query\Builder;

/**
 * The type of the column each plan field names, and the refusal of a comparison the
 * database would read otherwise than Check.
 *
 * SQLite and PostgreSQL convert `'5'` to a number column's `5` (and SQLite `5` to a text
 * column's `'5'`); Check never finds `'5'` equal to `5`. So a text column is compared only
 * with strings, a number or boolean column only with numbers and booleans (Check, like SQL,
 * finds `true` equal to `1`); anything else throws PlanFieldException.
 *
 * A field's type is, in order: its entry in the declared types (`'text'`, `'number'`,
 * `'boolean'`), `'number'` for an integer id, the Eloquent model's cast of its column
 * (`string`; `int`, `integer`, `real`, `float`, `double`, `decimal`; `bool`, `boolean`).
 * Declared types (even `[]`) make the list complete: a compared field with no type is refused.
 * Without them, such a field is left to the database, as before.
 */
final class ColumnTypes
{
    public const TEXT = 'text';
    public const NUMBER = 'number';
    public const BOOLEAN = 'boolean';

    private const CASTS = [
        'string' => self::TEXT,
        'int' => self::NUMBER, 'integer' => self::NUMBER, 'real' => self::NUMBER,
        'float' => self::NUMBER, 'double' => self::NUMBER, 'decimal' => self::NUMBER,
        'bool' => self::BOOLEAN, 'boolean' => self::BOOLEAN,
    ];

    /** @var array<string, string> plan field => type, declared or an integer id */
    private array $fields;

    /** @var array<string, string> the model's column => type, from its casts */
    private array $casts = [];

    /** The model's table, whose name may qualify a column (`orders.amount`). */
    private string $table = '';

    /**
     * @param array<string, string>|null $declared plan field => 'text', 'number' or 'boolean'
     * @param list<string> $integerIds
     */
    public function __construct(Builder|EloquentBuilder $query, private readonly ?array $declared, array $integerIds)
    {
        foreach ($declared ?? [] as $field => $type) {
            if (!in_array($type, [self::TEXT, self::NUMBER, self::BOOLEAN], true)) {
                throw new PlanFieldException("the column type of '{$field}' is '{$type}', not 'text', 'number' or 'boolean'");
            }
            if ($type !== self::NUMBER && in_array($field, $integerIds, true)) {
                throw new PlanFieldException("'{$field}' is declared an integer id and a {$type} column");
            }
        }
        $this->fields = ($declared ?? []) + array_fill_keys($integerIds, self::NUMBER);
        if ($query instanceof EloquentBuilder) {
            $model = $query->getModel();
            $this->table = $model->getTable();
            foreach ($model->getCasts() as $column => $cast) {
                $type = self::CASTS[strtolower(trim(explode(':', (string) $cast)[0]))] ?? null;
                if ($type !== null) {
                    $this->casts[(string) $column] = $type;
                }
            }
        }
    }

    /**
     * Throw unless the column `$column` of `$field` may be compared with `$value` as Check compares.
     *
     * @param string|int|float|bool|list<string|int|float|bool> $value
     */
    public function check(string $field, string $column, string|int|float|bool|array $value): void
    {
        $type = $this->fields[$field] ?? $this->castOf($column);
        if ($type === null) {
            if ($this->declared !== null) {
                throw new PlanFieldException("the plan compares '{$field}', whose column's type is not declared");
            }
            return;
        }
        foreach (is_array($value) ? $value : [$value] as $item) {
            if (is_string($item) !== ($type === self::TEXT)) {
                $kind = is_string($item) ? 'string' : (is_bool($item) ? 'boolean' : 'number');
                // Eloquent casts an incrementing key to int: most likely a path parameter's id column.
                $hint = $type === self::NUMBER ? ' (a path parameter whose column holds integers is named in integerIds)' : '';
                throw new PlanFieldException(
                    "the plan compares '{$field}' (a {$type} column) with a {$kind}: the database would convert one to the other, Check does not{$hint}"
                );
            }
        }
    }

    private function castOf(string $column): ?string
    {
        $dot = strrpos($column, '.');
        if ($dot !== false && substr($column, 0, $dot) !== $this->table) {
            return null; // another table's column: the model's casts do not say
        }
        return $this->casts[$dot === false ? $column : substr($column, $dot + 1)] ?? null;
    }
}
