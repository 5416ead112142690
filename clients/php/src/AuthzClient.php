<?php

declare(strict_types=1);

namespace Authz;

/**
 * Calls authz's Check over the Connect JSON protocol with plain curl (no grpc extension).
 *
 * `$baseUrl` is authz's HTTP listener (AUTHZ_HTTP_LISTEN), for example
 * `http://127.0.0.1:8080`. A token problem or a policy deny is a Decision; only a failure
 * to get an answer throws AuthzException.
 */
final class AuthzClient
{
    public const CHECK_PATH = '/authz.api.v1.AuthorizationService/Check';
    public const PLAN_PATH = '/authz.api.v1.AuthorizationService/PlanResources';

    private readonly string $baseUrl;

    /**
     * @param float $timeoutSeconds whole-call budget, also sent to the server as connect-timeout-ms
     * @param array<int, mixed> $curlOptions extra CURLOPT_* settings (CA file, proxy, client certificate ...)
     */
    public function __construct(
        string $baseUrl,
        private readonly float $timeoutSeconds = 2.0,
        private readonly array $curlOptions = [],
    ) {
        $this->baseUrl = rtrim($baseUrl, '/');
    }

    /**
     * May the token's principal perform `$action` on `$resource`?
     *
     * @param string $token the raw access token or the whole `Authorization` header value ("Bearer ..." is fine)
     * @param array<string, mixed> $attributes resource attributes the policy reads (owner, org_id, status ...)
     * @param array<string, mixed> $context environment attributes (ip, time ...)
     * @param string $enforceContext Casbin's enforce context: "2" decides with the model's r2, p2, e2, m2
     *     ("" with r, p, e, m); one the model lacks throws AuthzException (`invalid_argument`)
     */
    public function check(
        string $token,
        string $resource,
        string $action,
        array $attributes = [],
        array $context = [],
        bool $explain = false,
        string $enforceContext = '',
    ): Decision {
        $request = [
            'token' => $token,
            'resource' => $resource,
            'action' => $action,
            'explain' => $explain,
            'enforceContext' => $enforceContext,
        ];
        // A Struct must be a JSON object: PHP encodes an empty array as [] so leave it out.
        if ($attributes !== []) {
            $request['attributes'] = (object) $attributes;
        }
        if ($context !== []) {
            $request['context'] = (object) $context;
        }
        return Decision::fromArray($this->call(self::CHECK_PATH, $request));
    }

    /**
     * Which rows of a list may the token's principal `$action`? A plan for EloquentPlan.
     *
     * `$resource` is the template the rows share (`/api/orders/:id`). A refused token is an
     * ALWAYS_DENIED plan with the token's reason; a policy the planner cannot plan throws
     * AuthzException (`failed_precondition`).
     *
     * @param array<string, mixed> $attributes attributes every row shares (tenant ...)
     * @param array<string, mixed> $context environment attributes (ip, time ...)
     * @param string $enforceContext as for check(): "2" plans with r2, p2, e2, m2
     */
    public function planResources(
        string $token,
        string $action,
        string $resource,
        array $attributes = [],
        array $context = [],
        bool $explain = false,
        string $enforceContext = '',
    ): Plan {
        $request = [
            'token' => $token,
            'action' => $action,
            'resource' => $resource,
            'explain' => $explain,
            'enforceContext' => $enforceContext,
        ];
        if ($attributes !== []) {
            $request['attributes'] = (object) $attributes;
        }
        if ($context !== []) {
            $request['context'] = (object) $context;
        }
        return Plan::fromArray($this->call(self::PLAN_PATH, $request));
    }

    /**
     * @param array<string, mixed> $request
     * @return array<string, mixed>
     */
    private function call(string $path, array $request): array
    {
        $timeoutMs = max(1, (int) round($this->timeoutSeconds * 1000));
        $curl = curl_init($this->baseUrl . $path);
        curl_setopt_array($curl, $this->curlOptions + [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => json_encode($request, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES),
            CURLOPT_HTTPHEADER => [
                'Content-Type: application/json',
                'Connect-Protocol-Version: 1',
                'Connect-Timeout-Ms: ' . $timeoutMs,
            ],
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT_MS => $timeoutMs,
            CURLOPT_CONNECTTIMEOUT_MS => $timeoutMs,
            CURLOPT_NOSIGNAL => true,
        ]);
        $body = curl_exec($curl);
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $error = curl_error($curl);
        curl_close($curl);
        if (!is_string($body)) {
            throw new AuthzException("authz unreachable at {$this->baseUrl}: {$error}");
        }
        $data = json_decode($body, true);
        if ($status !== 200) {
            $code = is_array($data) && is_string($data['code'] ?? null) ? $data['code'] : self::codeOf($status);
            $message = is_array($data) && is_string($data['message'] ?? null) ? $data['message'] : $body;
            throw new AuthzException("authz answered HTTP {$status} ({$code}): {$message}", $code, $status);
        }
        if (!is_array($data)) {
            throw new AuthzException('authz answered with a body that is not a JSON object', 'internal', $status);
        }
        return $data;
    }

    /**
     * The Connect code of an error answer without a Connect body (a proxy's, say), from its
     * HTTP status as the Connect protocol maps it.
     */
    private static function codeOf(int $status): string
    {
        return match ($status) {
            400 => 'internal',
            401 => 'unauthenticated',
            403 => 'permission_denied',
            404 => 'unimplemented',
            429, 502, 503, 504 => 'unavailable',
            default => 'unknown',
        };
    }
}
