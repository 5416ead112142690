<?php

declare(strict_types=1);

// Runs authz's PHP middlewares against a live authz HTTP listener, as an application
// would: a real PSR-7 request (nyholm/psr7) through Psr15Middleware and a real
// Illuminate\Http\Request through LaravelMiddleware. Reads {"url", "cases": [...]} as JSON
// on stdin and prints one result per case as JSON.

require '/usr/share/php/Nyholm/Psr7/autoload.php';
require '/usr/share/php/Illuminate/Http/autoload.php';
require __DIR__ . '/psr15_interfaces.php';
require __DIR__ . '/../../clients/php/autoload.php';

use Authz\AuthzClient;
use Authz\LaravelMiddleware;
use Authz\Psr15Middleware;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;
use Nyholm\Psr7\Factory\Psr17Factory;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Server\RequestHandlerInterface;

final class Application implements RequestHandlerInterface
{
    public function __construct(private readonly Psr17Factory $factory)
    {
    }

    public function handle(ServerRequestInterface $request): ResponseInterface
    {
        $decision = $request->getAttribute(Psr15Middleware::DECISION_ATTRIBUTE);
        $response = $this->factory->createResponse(200)->withHeader('Content-Type', 'application/json');
        $response->getBody()->write(json_encode(['ok' => true, 'subject' => $decision->subject]));
        return $response;
    }
}

/** @return array<string, mixed> the order the request is about, as the attributes callback finds it */
function order_attributes(string $header): array
{
    return $header === '' ? [] : json_decode($header, true, 4, JSON_THROW_ON_ERROR);
}

$spec = json_decode(stream_get_contents(STDIN), true, 16, JSON_THROW_ON_ERROR);
$client = new AuthzClient($spec['url'], timeoutSeconds: 5.0);
$factory = new Psr17Factory();
$seen = [];
// One pair of middlewares per enforce context a case names, each given it at construction.
$psr15s = [];
$laravels = [];
$middlewares = function (string $context) use ($client, $factory, &$seen, &$psr15s, &$laravels): array {
    $psr15s[$context] ??= new Psr15Middleware(
        $client,
        $factory,
        function (ServerRequestInterface $request) use (&$seen): array {
            $seen[] = 'psr15';
            return order_attributes($request->getHeaderLine('X-Order'));
        },
        $context,
    );
    $laravels[$context] ??= new LaravelMiddleware($client, function (Request $request) use (&$seen): array {
        $seen[] = 'laravel';
        return order_attributes((string) $request->header('X-Order', ''));
    }, $context);
    return [$psr15s[$context], $laravels[$context]];
};

/** @return array{status: int, body: mixed, www_authenticate: string} */
function laravel_result(JsonResponse|Illuminate\Http\Response $response): array
{
    return [
        'status' => $response->getStatusCode(),
        'body' => json_decode((string) $response->getContent(), true),
        'www_authenticate' => (string) $response->headers->get('WWW-Authenticate', ''),
    ];
}

$results = [];
foreach ($spec['cases'] as $case) {
    $context = $case['enforce_context'] ?? '';
    [$psr15, $laravel] = $middlewares($context);
    $headers = array_filter(['Authorization' => $case['authorization'], 'X-Order' => $case['order'] ?? '']);

    $request = $factory->createServerRequest($case['method'], 'http://app.test' . $case['path']);
    foreach ($headers as $name => $value) {
        $request = $request->withHeader($name, $value);
    }
    $response = $psr15->process($request, new Application($factory));

    $server = [];
    foreach ($headers as $name => $value) {
        $server['HTTP_' . strtoupper(str_replace('-', '_', $name))] = $value;
    }
    $application = static fn (Request $r) => new JsonResponse(
        ['ok' => true, 'subject' => $r->attributes->get(LaravelMiddleware::DECISION_ATTRIBUTE)->subject],
    );
    $laravelResponse = $laravel->handle(Request::create($case['path'], $case['method'], [], [], [], $server), $application);
    // The context as a route's middleware parameter (`authz:2`) on the default-context instance.
    [, $plain] = $middlewares('');
    $parameterResponse = $plain->handle(
        Request::create($case['path'], $case['method'], [], [], [], $server),
        $application,
        $context,
    );

    try {
        $d = $client->check(
            $case['authorization'],
            $case['path'],
            $case['method'],
            order_attributes($case['order'] ?? ''),
            enforceContext: $context,
        );
        $direct = ['allowed' => $d->allowed, 'reason' => $d->reason, 'subject' => $d->subject];
    } catch (Authz\AuthzException $e) {
        $direct = ['error' => $e->connectCode, 'message' => $e->getMessage()];
    }
    $results[] = [
        'name' => $case['name'],
        'client' => $direct,
        'psr15' => [
            'status' => $response->getStatusCode(),
            'body' => json_decode((string) $response->getBody(), true),
            'www_authenticate' => $response->getHeaderLine('WWW-Authenticate'),
        ],
        'laravel' => laravel_result($laravelResponse),
        'laravel_parameter' => laravel_result($parameterResponse),
    ];
}
// A response that leaves fields out (the Connect default) reads as their protobuf defaults.
$defaults = [
    'empty' => Authz\Decision::fromArray([])->httpStatus(),
    'token_reason_only' => Authz\Decision::fromArray(['reason' => 'REASON_TOKEN_EXPIRED'])->httpStatus(),
    'numeric_reason' => Authz\Decision::fromArray(['reason' => 6])->reason,
    'allowed' => Authz\Decision::fromArray(['allowed' => true, 'reason' => 'REASON_ALLOWED'])->httpStatus(),
];
echo json_encode(['results' => $results, 'callbacks' => $seen, 'defaults' => $defaults], JSON_UNESCAPED_SLASHES), "\n";
