<?php

declare(strict_types=1);

namespace Authz;

use Closure;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;

/**
 * Laravel route middleware: asks authz whether the request's bearer token may use METHOD
 * on the request path; a JSON 401 / 403 / 400 / 503 otherwise. On an allow the Decision is
 * available as `$request->attributes->get('authz.decision')`.
 *
 * Register it as a singleton in a service provider (see the README), which is where the
 * AuthzClient's URL and the optional attributes callback are given.
 */
final class LaravelMiddleware
{
    public const DECISION_ATTRIBUTE = 'authz.decision';

    private readonly Guard $guard;

    /**
     * @param null|callable(Request): array<string, mixed> $attributes resource attributes for a request,
     *        for example from a route-bound model: fn ($r) => ['owner' => $r->route('order')?->user_id]
     * @param string $enforceContext Casbin's enforce context the checks are decided with ("2": r2, p2, e2, m2)
     */
    public function __construct(AuthzClient $client, ?callable $attributes = null, string $enforceContext = '')
    {
        $this->guard = new Guard($client, $attributes, $enforceContext);
    }

    /**
     * @param ?string $enforceContext a route's own enforce context, as a middleware parameter
     *        (`->middleware('authz:2')`); null: the constructor's
     */
    public function handle(Request $request, Closure $next, ?string $enforceContext = null): mixed
    {
        $verdict = $this->guard->decide(
            $request,
            (string) $request->header('Authorization', ''),
            $request->getPathInfo(),
            $request->getMethod(),
            $enforceContext,
        );
        if (!$verdict->passes()) {
            return new JsonResponse($verdict->body(), $verdict->status, $verdict->headers());
        }
        $request->attributes->set(self::DECISION_ATTRIBUTE, $verdict->decision);
        return $next($request);
    }
}
