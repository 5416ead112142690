<?php

declare(strict_types=1);

namespace Authz;

/**
 * authz could not answer: unreachable, timed out, or it returned a Connect error.
 *
 * `connectCode` is the Connect error code (`invalid_argument`, `unavailable` ...) or
 * `unavailable` for a transport failure. Middlewares treat it as a deny (fail closed).
 */
final class AuthzException extends \RuntimeException
{
    public function __construct(
        string $message,
        public readonly string $connectCode = 'unavailable',
        public readonly int $httpStatus = 0,
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, 0, $previous);
    }
}
