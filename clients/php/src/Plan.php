<?php

declare(strict_types=1);

namespace Authz;

/**
 * One answer of authz's PlanResources: which rows of a list the principal may act on.
 *
 * `kind` is `ALWAYS_ALLOWED`, `ALWAYS_DENIED`, `CONDITIONAL`, or `UNKNOWN_<n>` for a kind
 * newer than this client (the adapters select no row for it). `condition` is the
 * PlanCondition tree as decoded proto JSON (`all`, `any`, `negate`, `compare`, `isNull`),
 * set only for CONDITIONAL; `fields` lists what it reads, which a field map must cover.
 */
final class Plan
{
    public const ALWAYS_ALLOWED = 'ALWAYS_ALLOWED';
    public const ALWAYS_DENIED = 'ALWAYS_DENIED';
    public const CONDITIONAL = 'CONDITIONAL';

    /** The public PlanKind enum by number, for servers or proxies that send numbers. */
    private const KINDS = ['UNSPECIFIED', self::ALWAYS_ALLOWED, self::ALWAYS_DENIED, self::CONDITIONAL];

    /**
     * @param array<string, mixed>|null $condition
     * @param list<string> $fields
     * @param list<string> $matchedRules
     */
    public function __construct(
        public readonly string $kind,
        public readonly ?array $condition,
        public readonly string $reason = 'REASON_UNSPECIFIED',
        public readonly string $message = '',
        public readonly array $fields = [],
        public readonly array $matchedRules = [],
        public readonly string $subject = '',
        public readonly string $policyVersion = '',
        public readonly string $decisionId = '',
    ) {
    }

    /**
     * @param array<string, mixed> $data a decoded PlanResourcesResponse (proto JSON, camelCase or snake_case names)
     */
    public static function fromArray(array $data): self
    {
        $json = new ProtoJson($data);
        $kind = $json->get('kind', 0);
        $kind = is_int($kind) ? (self::KINDS[$kind] ?? "UNKNOWN_{$kind}") : (string) $kind;
        if (str_starts_with($kind, 'PLAN_KIND_')) {
            $kind = substr($kind, strlen('PLAN_KIND_'));
        }
        $condition = $json->get('condition', null);
        return new self(
            kind: $kind,
            condition: $kind === self::CONDITIONAL && is_array($condition) ? $condition : null,
            reason: $json->reason(),
            message: $json->string('message'),
            fields: $json->strings('fields'),
            matchedRules: $json->strings('matchedRules'),
            subject: $json->string('subject'),
            policyVersion: $json->string('policyVersion'),
            decisionId: $json->string('decisionId'),
        );
    }
}
