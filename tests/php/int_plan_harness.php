<?php

declare(strict_types=1);

// Drives Authz\EloquentPlan's integer id fields for tests/test_php_plan.py on a real database
// (SQLite or PostgreSQL through Debian's php-illuminate-database). Reads JSON on stdin:
// {connection, rows: [{key, id}], cases: [{name, plan}]}; fills an `int_orders` table whose
// `id` is a BIGINT column and prints, per case, the keys the plan selects with
// `integerIds: ['id']` through the query builder, an Eloquent model, and the query builder
// with column types declared (an integer id is a number column: none more is needed), or the refusal.

require '/usr/share/php/Illuminate/Database/autoload.php';
require __DIR__ . '/../../clients/php/autoload.php';

use Authz\EloquentPlan;
use Authz\Plan;
use Authz\PlanFieldException;
use Illuminate\Database\Capsule\Manager;
use Illuminate\Database\Eloquent\Model;
use Illuminate\Database\Schema\Blueprint;

final class IntOrder extends Model
{
    protected $table = 'int_orders';
    protected $primaryKey = 'key';
    protected $keyType = 'string';
    public $incrementing = false;
    public $timestamps = false;
}

$input = json_decode((string) stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
$capsule = new Manager();
$capsule->addConnection($input['connection']);
$capsule->setAsGlobal();
$capsule->bootEloquent();
EloquentPlan::registerMacro();

$schema = Manager::schema();
$schema->dropIfExists('int_orders');
$schema->create('int_orders', static function (Blueprint $table): void {
    $table->string('key')->primary();
    $table->bigInteger('id')->nullable();
});
Manager::table('int_orders')->insert($input['rows']);

/** @return list<string>|string the keys, or the refusal */
function keys(callable $query): array|string
{
    try {
        $keys = array_map('strval', $query()->pluck('key')->all());
    } catch (PlanFieldException $e) {
        return 'PlanFieldException: ' . $e->getMessage();
    }
    sort($keys, SORT_STRING);
    return $keys;
}

$results = [];
foreach ($input['cases'] as $case) {
    $plan = Plan::fromArray($case['plan']);
    $results[$case['name']] = [
        'builder' => keys(static fn () => EloquentPlan::apply(Manager::table('int_orders'), $plan, ['id'], ['id'])),
        'eloquent' => keys(static fn () => IntOrder::query()->whereAuthorized($plan, ['id' => 'int_orders.id'], ['id'])),
        'typed' => keys(static fn () => EloquentPlan::apply(Manager::table('int_orders'), $plan, ['id'], ['id'], [])),
    ];
}
echo json_encode($results, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES), "\n";
