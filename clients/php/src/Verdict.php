<?php

declare(strict_types=1);

namespace Authz;

/**
 * What a middleware answers for one request: pass it on (200), 401, 403, 400 when authz
 * refused the request as malformed, or 503 when authz could not be asked (fail closed).
 */
final class Verdict
{
    public function __construct(
        public readonly int $status,
        public readonly ?Decision $decision = null,
    ) {
    }

    public function passes(): bool
    {
        return $this->status === 200;
    }

    /** @return array<string, string> the JSON body of a refusal */
    public function body(): array
    {
        $error = match ($this->status) {
            400 => 'bad request',
            401 => 'unauthorized',
            403 => 'forbidden',
            default => 'authorization check failed',
        };
        if ($this->decision === null) {
            return ['error' => $error];
        }
        return ['error' => $error, 'reason' => $this->decision->reason, 'message' => $this->decision->message];
    }

    /** @return array<string, string> extra response headers of a refusal */
    public function headers(): array
    {
        return $this->status === 401 ? ['WWW-Authenticate' => 'Bearer'] : [];
    }
}
