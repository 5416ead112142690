<?php

declare(strict_types=1);

namespace Authz;

use Illuminate\Database\Query\Builder;

/**
 * A plan's text comparisons on a path parameter whose column holds integers, decided as Check
 * decides them on the row's text `(string) $n` and compared as integers.
 *
 * Check reads the row `42` as `/api/orders/42`: `id == '42'` is `id = 42`, a text no integer
 * writes so (`'007'`, `'+7'`, `'7\n'`, `''`) matches no row, a LIKE pattern needing a character
 * no integer's text holds (`'%/%'`, `'%\n_%'`) matches none. `<`, `<=`, `>`, `>=` with a text
 * (Check orders texts, not numbers) and any other LIKE pattern throw PlanFieldException. A
 * comparison that holds for no row is `column <> column`: false, and NULL on a NULL column as
 * the text comparison was, so a NOT around it never takes NULL rows in.
 */
final class IntegerIds
{
    private const ORDERINGS = ['PLAN_OPERATOR_LT', 'PLAN_OPERATOR_LE', 'PLAN_OPERATOR_GT', 'PLAN_OPERATOR_GE'];

    /** The integer whose text is `$text` (a 64-bit column's), or null: `'007'`, `'-0'`, `' 7'` are no integer's. */
    public static function of(string $text): ?int
    {
        // (int) saturates past PHP_INT_MAX and stops at the first character that is no digit.
        return (string) (int) $text === $text ? (int) $text : null;
    }

    /** Whether no integer's text matches the LIKE `$pattern` for certain: it requires a character none holds. */
    public static function likeMatchesNone(string $pattern): bool
    {
        $escaped = $other = false;
        foreach (str_split($pattern) as $ch) {
            if ($escaped) {
                $escaped = false;
                $other = $other || !str_contains('-0123456789', $ch);
            } elseif ($ch === '\\') {
                $escaped = true;
            } else {
                $other = $other || !str_contains('%_-0123456789', $ch);
            }
        }
        return $other && !$escaped;
    }

    /**
     * Add one comparison of the integer column `$column` with a text (or a list holding one).
     *
     * @param string|int|float|bool|list<string|int|float|bool> $value
     */
    public static function compare(Builder $query, string $field, string $column, string $operator, string|int|float|bool|array $value, string $boolean): void
    {
        if ($operator === 'PLAN_OPERATOR_LIKE') {
            if (!is_string($value) || !self::likeMatchesNone($value)) {
                throw new PlanFieldException("the plan matches '{$field}', an integer id column, with a LIKE pattern whose integers are not certain");
            }
            $query->whereColumn($column, '<>', $column, $boolean);
            return;
        }
        if ($operator === 'PLAN_OPERATOR_IN') {
            if (!is_array($value)) {
                throw new PlanFieldException('PLAN_OPERATOR_IN needs a list value');
            }
            $kept = array_values(array_filter(
                array_map(static fn ($v) => is_string($v) ? self::of($v) : $v, $value),
                static fn ($v): bool => $v !== null,
            ));
            $kept === [] ? $query->whereColumn($column, '<>', $column, $boolean) : $query->whereIn($column, $kept, $boolean);
            return;
        }
        if (is_array($value)) {
            throw new PlanFieldException('only PLAN_OPERATOR_IN takes a list value');
        }
        if (in_array($operator, self::ORDERINGS, true)) {
            throw new PlanFieldException("the plan orders '{$field}', an integer id column, against a text: Check compares the texts, not the numbers");
        }
        $equal = $operator === 'PLAN_OPERATOR_EQ';
        if (!$equal && $operator !== 'PLAN_OPERATOR_NE') {
            throw new PlanFieldException("unknown plan operator {$operator}");
        }
        $number = is_string($value) ? self::of($value) : null;
        if ($number === null) {
            $query->whereColumn($column, $equal ? '<>' : '=', $column, $boolean);
        } else {
            $query->where($column, $equal ? '=' : '<>', $number, $boolean);
        }
    }
}
