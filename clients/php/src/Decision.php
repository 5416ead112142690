<?php

declare(strict_types=1);

namespace Authz;

/**
 * One answer of authz's Check RPC.
 *
 * Built from the Connect JSON response; a field the server left out has its protobuf
 * default (false, "", [], REASON_UNSPECIFIED), so a deny never reads as an allow.
 */
final class Decision
{
    /** The public Reason enum by number, for servers or proxies that send numbers. */
    public const REASONS = [
        'REASON_UNSPECIFIED', 'REASON_ALLOWED', 'REASON_NO_MATCHING_RULE', 'REASON_EXPLICIT_DENY',
        'REASON_TOKEN_MISSING', 'REASON_TOKEN_MALFORMED', 'REASON_TOKEN_EXPIRED',
        'REASON_TOKEN_NOT_YET_VALID', 'REASON_TOKEN_SIGNATURE_INVALID', 'REASON_TOKEN_AUDIENCE_MISMATCH',
        'REASON_TOKEN_ISSUER_MISMATCH', 'REASON_TOKEN_ALGORITHM_NOT_ALLOWED', 'REASON_TOKEN_KEY_UNKNOWN',
        'REASON_TOKEN_NOT_ACCESS_TOKEN', 'REASON_POLICY_ERROR', 'REASON_ATTRIBUTE_MISSING',
    ];

    /**
     * @param list<string> $matchedRules
     */
    public function __construct(
        public readonly bool $allowed,
        public readonly string $reason,
        public readonly string $message = '',
        public readonly array $matchedRules = [],
        public readonly string $subject = '',
        public readonly string $policyVersion = '',
        public readonly string $decisionId = '',
    ) {
    }

    /**
     * @param array<string, mixed> $data a decoded CheckResponse (proto JSON, camelCase or snake_case names)
     */
    public static function fromArray(array $data): self
    {
        $json = new ProtoJson($data);
        return new self(
            allowed: $json->get('allowed', false) === true,
            reason: $json->reason(),
            message: $json->string('message'),
            matchedRules: $json->strings('matchedRules'),
            subject: $json->string('subject'),
            policyVersion: $json->string('policyVersion'),
            decisionId: $json->string('decisionId'),
        );
    }

    /** True when the token itself was refused: a backend answers 401, not 403. */
    public function isTokenProblem(): bool
    {
        return str_starts_with($this->reason, 'REASON_TOKEN_');
    }

    /** The HTTP status a backend answers with: 200 when allowed, 401 for a token problem, else 403. */
    public function httpStatus(): int
    {
        if ($this->allowed) {
            return 200;
        }
        return $this->isTokenProblem() ? 401 : 403;
    }
}
