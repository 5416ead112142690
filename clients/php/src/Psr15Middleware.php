<?php

declare(strict_types=1);

namespace Authz;

use Psr\Http\Message\ResponseFactoryInterface;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Server\MiddlewareInterface;
use Psr\Http\Server\RequestHandlerInterface;

/**
 * PSR-15 middleware: asks authz whether the request's bearer token may use METHOD on the
 * request path; 401 / 403 / 400 / 503 otherwise. On an allow the Decision is available to the
 * application as the request attribute `authz.decision`. With `enforceContext: '2'` every check
 * is decided with the model's r2, p2, e2, m2 (Casbin's enforce context).
 *
 * Needs the PSR-7, PSR-15 and PSR-17 interfaces that any PSR-15 application already has;
 * the rest of this package does not.
 */
final class Psr15Middleware implements MiddlewareInterface
{
    public const DECISION_ATTRIBUTE = 'authz.decision';

    private readonly Guard $guard;

    /**
     * @param null|callable(ServerRequestInterface): array<string, mixed> $attributes resource attributes for a request
     * @param string $enforceContext Casbin's enforce context the checks are decided with ("2": r2, p2, e2, m2)
     */
    public function __construct(
        AuthzClient $client,
        private readonly ResponseFactoryInterface $responses,
        ?callable $attributes = null,
        string $enforceContext = '',
    ) {
        $this->guard = new Guard($client, $attributes, $enforceContext);
    }

    public function process(ServerRequestInterface $request, RequestHandlerInterface $handler): ResponseInterface
    {
        $verdict = $this->guard->decide(
            $request,
            $request->getHeaderLine('Authorization'),
            $request->getUri()->getPath(),
            $request->getMethod(),
        );
        if ($verdict->passes()) {
            return $handler->handle($request->withAttribute(self::DECISION_ATTRIBUTE, $verdict->decision));
        }
        $response = $this->responses->createResponse($verdict->status)->withHeader('Content-Type', 'application/json');
        foreach ($verdict->headers() as $name => $value) {
            $response = $response->withHeader($name, $value);
        }
        $response->getBody()->write(json_encode($verdict->body(), JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES));
        return $response;
    }
}
