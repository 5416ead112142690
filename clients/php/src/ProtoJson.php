<?php

declare(strict_types=1);

namespace Authz;

/**
 * Reads a decoded proto JSON message whose fields may be camelCase (proto JSON) or
 * snake_case (the original names, which Connect servers may also send).
 *
 * @internal shared by Decision and Plan
 */
final class ProtoJson
{
    /**
     * @param array<string, mixed> $data
     */
    public function __construct(private readonly array $data)
    {
    }

    /** The field `$camel` (or its snake_case name), or `$default` when absent or null. */
    public function get(string $camel, mixed $default): mixed
    {
        $snake = strtolower((string) preg_replace('/[A-Z]/', '_$0', $camel));
        return $this->data[$camel] ?? $this->data[$snake] ?? $default;
    }

    public function string(string $camel): string
    {
        return (string) $this->get($camel, '');
    }

    /** @return list<string> */
    public function strings(string $camel): array
    {
        return array_values(array_map('strval', (array) $this->get($camel, [])));
    }

    /** The `reason` enum's name; a number is mapped by the public Reason enum. */
    public function reason(): string
    {
        $reason = $this->get('reason', 0);
        return is_int($reason) ? (Decision::REASONS[$reason] ?? 'REASON_UNSPECIFIED') : (string) $reason;
    }
}
