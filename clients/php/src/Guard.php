<?php

declare(strict_types=1);

namespace Authz;

/**
 * The framework-free part of both middlewares: ask Check for METHOD + path, map the answer.
 *
 * A token problem is 401, any other deny 403, a request authz refuses as malformed 400
 * (a path over its field limit: a retry would repeat it), and a failure to reach authz
 * 503: the request never reaches the application unless authz allowed it.
 */
final class Guard
{
    private readonly ?\Closure $attributes;

    /**
     * @param null|callable(object): array<string, mixed> $attributes receives the framework's request and
     *        returns the resource attributes the policy reads (an order's owner, org_id, status ...)
     * @param string $enforceContext Casbin's enforce context every check is decided with: "2" is the
     *        model's r2, p2, e2, m2 ("" r, p, e, m); one the model lacks is a 400 on every request
     */
    public function __construct(
        private readonly AuthzClient $client,
        ?callable $attributes = null,
        private readonly string $enforceContext = '',
    ) {
        $this->attributes = $attributes === null ? null : \Closure::fromCallable($attributes);
    }

    /** @param ?string $enforceContext this request's enforce context (null: the constructor's) */
    public function decide(
        object $request,
        string $authorization,
        string $path,
        string $method,
        ?string $enforceContext = null,
    ): Verdict {
        $attributes = $this->attributes === null ? [] : ($this->attributes)($request);
        try {
            $decision = $this->client->check(
                $authorization,
                $path === '' ? '/' : $path,
                strtoupper($method),
                $attributes,
                enforceContext: $enforceContext ?? $this->enforceContext,
            );
        } catch (AuthzException $e) {
            if ($e->connectCode === 'invalid_argument') {
                error_log('authz: request refused as malformed: ' . $e->getMessage());
                return new Verdict(400);
            }
            error_log('authz: request denied because authz could not answer: ' . $e->getMessage());
            return new Verdict(503);
        }
        return new Verdict($decision->httpStatus(), $decision);
    }
}
