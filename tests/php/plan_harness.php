<?php

declare(strict_types=1);

// Drives Authz\EloquentPlan for tests/test_php_plan.py on a real database (SQLite or
// PostgreSQL through Debian's php-illuminate-database). Reads JSON on stdin:
// {url, connection, rows, cases: [{name, token, action}], column_types, type_cases: [{name, plan}]};
// fills an `orders` table, asks the real authz for each case's plan and prints the ids each
// way of querying returns, the ids or refusal of each type case with the column types
// declared and as a model's casts, then the answers to fixed plans built here (refusals,
// empty groups, literal values).

require '/usr/share/php/Illuminate/Database/autoload.php';
require __DIR__ . '/../../clients/php/autoload.php';

use Authz\AuthzClient;
use Authz\AuthzException;
use Authz\EloquentPlan;
use Authz\Plan;
use Authz\PlanFieldException;
use Illuminate\Database\Capsule\Manager;
use Illuminate\Database\Eloquent\Model;
use Illuminate\Database\Query\Builder;
use Illuminate\Database\Schema\Blueprint;

final class PlanOrder extends Model
{
    protected $table = 'orders';
    protected $keyType = 'string'; // ids such as "a\nb": not cast to a number when read
    public $incrementing = false;
    public $timestamps = false;
}

// The same table with its columns' types as the model's casts.
final class TypedOrder extends Model
{
    protected $table = 'orders';
    protected $keyType = 'string';
    public $incrementing = false;
    public $timestamps = false;
    protected $casts = ['id' => 'string', 'owner' => 'string', 'org' => 'string', 'status' => 'string', 'amount' => 'integer'];
}

// Eloquent's default key: an incrementing id, cast to int.
final class CountedOrder extends Model
{
    protected $table = 'orders';
    public $timestamps = false;
}

const TEMPLATE = '/api/orders/:id';
const FIELDS = ['org_id' => 'org', 'owner'];

$input = json_decode((string) stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
$capsule = new Manager();
$capsule->addConnection($input['connection']);
$capsule->setAsGlobal();
$capsule->bootEloquent();
EloquentPlan::registerMacro();

$schema = Manager::schema();
$schema->dropIfExists('orders');
$schema->create('orders', static function (Blueprint $table): void {
    $table->string('id')->primary();
    foreach (['owner', 'org', 'status'] as $column) {
        $table->string($column)->nullable();
    }
    $table->integer('amount')->nullable();
});
Manager::table('orders')->insert($input['rows']);

/** @return list<string> */
function ids(Builder|Illuminate\Database\Eloquent\Builder $query): array
{
    $ids = array_map('strval', $query->pluck('id')->all());
    sort($ids, SORT_STRING);
    return $ids;
}

/** @return list<string>|string the ids, or the exception's class and message */
function attempt(callable $query): array|string
{
    try {
        return ids($query());
    } catch (PlanFieldException $e) {
        return 'PlanFieldException: ' . $e->getMessage();
    }
}

$client = new AuthzClient($input['url'], timeoutSeconds: 10.0);
$results = [];
foreach ($input['cases'] as $case) {
    try {
        $plan = $client->planResources($case['token'], $case['action'], TEMPLATE);
    } catch (AuthzException $e) {
        $results[$case['name']] = ['error' => $e->connectCode . ': ' . $e->getMessage()];
        continue;
    }
    $results[$case['name']] = [
        'kind' => $plan->kind,
        'reason' => $plan->reason,
        'builder' => attempt(static fn () => EloquentPlan::apply(Manager::table('orders'), $plan, FIELDS)),
        'eloquent' => attempt(static fn () => PlanOrder::query()->whereAuthorized(
            $plan,
            ['org_id' => 'orders.org', 'owner' => 'orders.owner', 'status', 'amount', 'id'],
        )),
        // Rows 4 and 9 asked for with an OR before the plan: the plan still filters both.
        'or_before' => attempt(static fn () => Manager::table('orders')
            ->where('id', '=', '4')->orWhere('id', '=', '9')->whereAuthorized($plan, FIELDS)),
        'typed' => attempt(static fn () => Manager::table('orders')->whereAuthorized($plan, FIELDS, types: $input['column_types'])),
        'cast' => attempt(static fn () => TypedOrder::query()->whereAuthorized($plan, FIELDS, types: [])),
    ];
}

$typed = [];
foreach ($input['type_cases'] as $case) {
    $plan = Plan::fromArray($case['plan']);
    $typed[$case['name']] = [
        'builder' => attempt(static fn () => EloquentPlan::apply(Manager::table('orders'), $plan, FIELDS, [], $input['column_types'])),
        'eloquent' => attempt(static fn () => EloquentPlan::apply(TypedOrder::query(), $plan, ['org_id' => 'orders.org', 'owner', 'status', 'amount', 'id'], types: [])),
    ];
}

$compare = static fn (string $op, string $field, mixed $value): array => ['compare' => ['operator' => $op, 'field' => $field, 'value' => $value]];
$conditional = static fn (array $condition, array $fields = []): Plan => new Plan(Plan::CONDITIONAL, $condition, fields: $fields);
$fixed = [
    'allowed' => new Plan(Plan::ALWAYS_ALLOWED, null),
    'denied' => new Plan(Plan::ALWAYS_DENIED, null),
    'newer kind' => Plan::fromArray(['kind' => 9]),
    'conditional without condition' => new Plan(Plan::CONDITIONAL, null),
    'unknown field listed' => $conditional($compare('PLAN_OPERATOR_EQ', 'owner', 'bob'), ['owner', 'region']),
    'unknown field in the tree' => $conditional(['any' => ['conditions' => [
        $compare('PLAN_OPERATOR_EQ', 'owner', 'bob'), ['isNull' => 'region'],
    ]]]),
    'empty any' => $conditional(['any' => ['conditions' => []]]),
    'empty all' => $conditional(['all' => ['conditions' => []]]),
    'not empty any' => $conditional(['negate' => ['any' => ['conditions' => []]]]),
    'empty in' => $conditional($compare('PLAN_OPERATOR_IN', 'status', [])),
    'null value' => $conditional($compare('PLAN_OPERATOR_EQ', 'owner', null)),
    'unknown operator' => $conditional($compare('PLAN_OPERATOR_REGEX', 'owner', 'b.*')),
    'like with a letter' => $conditional($compare('PLAN_OPERATOR_LIKE', 'owner', 'b%')),
    'like not a string' => $conditional($compare('PLAN_OPERATOR_LIKE', 'id', 5)),
    'no line break before the end' => $conditional(['negate' => $compare('PLAN_OPERATOR_LIKE', 'id', "%\n_%")]),
    'like escapes' => $conditional(['any' => ['conditions' => [
        $compare('PLAN_OPERATOR_LIKE', 'id', '\\%'),
        ['compare' => ['operator' => 8, 'field' => 'id', 'value' => '\\_']],
        $compare('PLAN_OPERATOR_LIKE', 'id', '\\\\'),
    ]]]),
    'infinite number' => $conditional($compare('PLAN_OPERATOR_GT', 'amount', INF)),
    'too deep' => $conditional(array_reduce(range(1, 40), static fn (array $c): array => ['negate' => $c], ['isNull' => 'owner'])),
    'thousands of terms' => $conditional(['any' => ['conditions' => array_merge(
        array_map(static fn (int $i): array => $compare('PLAN_OPERATOR_EQ', 'owner', "u{$i}"), range(1, 2000)),
        [$compare('PLAN_OPERATOR_EQ', 'owner', 'bob')],
    )]]),
    'too wide' => $conditional($compare('PLAN_OPERATOR_IN', 'owner', array_map('strval', range(1, 10001)))),
    'unknown node' => $conditional(['exists' => 'owner']),
    'list for eq' => $conditional($compare('PLAN_OPERATOR_EQ', 'owner', ['bob'])),
    'quote in value' => $conditional($compare('PLAN_OPERATOR_EQ', 'owner', "x' OR '1'='1")),
    'numbers as sent' => Plan::fromArray(['kind' => 3, 'condition' => ['all' => ['conditions' => [
        ['compare' => ['operator' => 5, 'field' => 'amount', 'value' => 100.0]],
        ['negate' => ['is_null' => 'org_id']],
    ]]]]),
    'in and not' => $conditional(['all' => ['conditions' => [
        $compare('PLAN_OPERATOR_IN', 'status', ['draft', 'open']),
        ['negate' => $compare('PLAN_OPERATOR_EQ', 'owner', 'alice')],
    ]]]),
];
$answers = [];
foreach ($fixed as $name => $plan) {
    $answers[$name] = attempt(static fn () => EloquentPlan::apply(Manager::table('orders'), $plan, FIELDS));
}
$amountIs50 = $conditional($compare('PLAN_OPERATOR_EQ', 'amount', '50'));
$typeFixed = [
    // Not declared: left to the database, which converts (the gap a declaration closes).
    'undeclared converted' => static fn () => EloquentPlan::apply(Manager::table('orders'), $amountIs50, FIELDS),
    'undeclared when declaring' => static fn () => EloquentPlan::apply(Manager::table('orders'), $amountIs50, FIELDS, types: ['owner' => 'text']),
    'null check undeclared' => static fn () => EloquentPlan::apply(Manager::table('orders'), $conditional(['isNull' => 'amount']), FIELDS, types: []),
    'unknown type word' => static fn () => EloquentPlan::apply(Manager::table('orders'), $amountIs50, FIELDS, types: ['amount' => 'integer']),
    'integer id declared text' => static fn () => EloquentPlan::apply(Manager::table('orders'), $amountIs50, FIELDS, ['id'], ['id' => 'text']),
    'incrementing key with a text' => static fn () => CountedOrder::query()->whereAuthorized($conditional($compare('PLAN_OPERATOR_EQ', 'id', '3')), ['id']),
    'declared over the cast' => static fn () => TypedOrder::query()->whereAuthorized($conditional($compare('PLAN_OPERATOR_EQ', 'owner', 'bob')), FIELDS, [], ['owner' => 'number']),
    'another table is not the model' => static fn () => TypedOrder::query()->whereAuthorized($amountIs50, ['amount' => 'other.amount'], types: []),
];
foreach ($typeFixed as $name => $query) {
    $answers[$name] = attempt($query);
}
$sql = EloquentPlan::apply(Manager::table('orders'), $fixed['quote in value'], FIELDS);
$answers['quote in value sql'] = ['sql' => $sql->toSql(), 'bindings' => $sql->getBindings()];

echo json_encode(['results' => $results, 'typed' => $typed, 'fixed' => $answers], JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES), "\n";
