"""A stateful Auth0 Management API on loopback, answering the documented request and response shapes.

Resource servers with their scopes, roles, role permissions and role users, offset pagination
(`page` / `per_page`, `include_totals` wrapping a page in {start, limit, total, KEY}) with a
small page size of its own, checkpoint pagination of role users (`from` / `take` -> `next`),
errors as {statusCode, error, message, errorCode}, redirects, 429 with x-ratelimit-limit / -remaining /
-reset (epoch seconds), and a token whose scopes each endpoint checks. Failures can be injected
on the Nth write so that an apply stops half-way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ALL_SCOPES = frozenset(
    {
        "read:resource_servers",
        "update:resource_servers",
        "read:roles",
        "create:roles",
        "update:roles",
        "delete:roles",
        "read:role_members",
        "read:users",
    }
)
Answer = tuple[int, dict[str, str], Any]


def error(status: int, name: str, message: str, code: str = "") -> Answer:
    """Auth0's error body."""
    body: dict[str, Any] = {"statusCode": status, "error": name, "message": message}
    if code:
        body["errorCode"] = code
    return status, {}, body


@dataclass
class MgmtTenant:
    """The tenant's state and the server's behaviour; every field may be changed by a test."""

    resource_servers: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)
    role_permissions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    role_users: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    client_id: str = "m2m-client"
    client_secret: str = "m2m-secret"
    token: str = "mgmt-token-1"
    token_scopes: frozenset[str] = ALL_SCOPES
    max_per_page: int = 2
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    writes: list[tuple[str, str, Any]] = field(default_factory=list)
    token_audiences: list[str] = field(default_factory=list)
    rate_limit_next: int = 0  # answer this many requests with 429 first
    rate_limit_header: str = "reset"  # "reset" (x-ratelimit-reset) or "retry-after"
    retry_after: str = "0"  # the Retry-After value sent with "retry-after"
    fail_write: int = 0  # answer the Nth write from now with 503 (0: none) ...
    fail_repeats: int = 1  # ... and this many writes from there on (its retries included)
    failing: int = 0
    stall: bool = False  # hold every answer until `release` is set (or 30 s pass): a timeout
    # Raw answers by path (status, body bytes), sent as they are: a broken or hostile server.
    raw: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    # Redirects by path (status, Location), sent before the request is read as an answer.
    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 0

    # -- state helpers ---------------------------------------------------------------------

    def add_api(self, identifier: str, name: str, scopes: list[tuple[str, str]], **extra: Any) -> str:
        """Declare a resource server; returns its id."""
        rs_id = self.new_id("rs")
        entry = {"id": rs_id, "name": name, "identifier": identifier, **extra}
        entry["scopes"] = [{"value": v, "description": d} for v, d in scopes]
        self.resource_servers.append(entry)
        return rs_id

    def add_role(self, name: str, description: str, grants: list[tuple[str, str]], users: int = 0) -> str:
        """Declare a role with (API identifier, permission) grants and `users` holders; returns its id."""
        role_id = self.new_id("rol")
        self.roles.append({"id": role_id, "name": name, "description": description})
        self.role_permissions[role_id] = [self.permission(a, p) for a, p in grants]
        self.role_users[role_id] = [
            {"user_id": f"auth0|{role_id}-{n}", "email": f"u{n}@example.com", "name": f"User {n}"}
            for n in range(users)
        ]
        return role_id

    def new_id(self, prefix: str) -> str:
        """A fresh id in Auth0's style."""
        self._next_id += 1
        return f"{prefix}_{self._next_id:04d}"

    def permission(self, api: str, name: str) -> dict[str, Any]:
        """A role permission as GET /roles/{id}/permissions lists it."""
        server = next((rs for rs in self.resource_servers if rs["identifier"] == api), {})
        scope = next((s for s in server.get("scopes", []) if s["value"] == name), {})
        return {
            "resource_server_identifier": api,
            "permission_name": name,
            "resource_server_name": server.get("name", api),
            "description": scope.get("description", ""),
        }

    def scopes_of(self, api: str) -> dict[str, str]:
        """{permission: description} of one API."""
        server = next(rs for rs in self.resource_servers if rs["identifier"] == api)
        return {s["value"]: s.get("description", "") for s in server.get("scopes", [])}

    def grants_of(self, role_name: str) -> set[tuple[str, str]]:
        """(API identifier, permission) pairs a role grants."""
        role = next(r for r in self.roles if r["name"] == role_name)
        return {
            (p["resource_server_identifier"], p["permission_name"]) for p in self.role_permissions[role["id"]]
        }

    # -- the HTTP answer -------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: Any) -> Answer:
        if self.stall:
            self.release.wait(30)
        with self.lock:
            self.requests.append((method, path, query))
            if method == "POST" and path == "/oauth/token":
                return self.oauth_token(body)
            if headers.get("Authorization") != f"Bearer {self.token}":
                return error(401, "Unauthorized", "Invalid token", "invalid_token")
            if self.rate_limit_next:
                self.rate_limit_next -= 1
                return self.too_many()
            if method != "GET":
                self.writes.append((method, path, body))
                if self.fail_write:
                    self.fail_write -= 1
                    self.failing = self.fail_repeats if not self.fail_write else 0
                if self.failing:
                    self.failing -= 1
                    status, _, answer = error(
                        503, "Service Unavailable", "The service is temporarily unavailable"
                    )
                    return status, {"Retry-After": "0"}, answer
            return self.route(method, path.removeprefix("/api/v2"), query, body)

    def oauth_token(self, body: Any) -> Answer:
        self.token_audiences.append(body.get("audience"))
        if (body.get("client_id"), body.get("client_secret")) != (self.client_id, self.client_secret):
            return 401, {}, {"error": "access_denied", "error_description": "Unauthorized"}
        return 200, {}, {"access_token": self.token, "token_type": "Bearer", "expires_in": 86400}

    def too_many(self) -> Answer:
        headers = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0"}
        if self.rate_limit_header == "reset":
            headers["x-ratelimit-reset"] = str(int(time.time()) + 1)
        else:
            headers["Retry-After"] = self.retry_after
        status, _, body = error(
            429, "Too Many Requests", "Global limit has been reached", "too_many_requests"
        )
        return status, headers, body

    def needs(self, scope: str) -> Answer | None:
        if scope in self.token_scopes:
            return None
        return error(403, "Forbidden", f"Insufficient scope, expected any of: {scope}", "insufficient_scope")

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[0] == "resource-servers":
            if len(parts) == 1 and method == "GET":
                return self.needs("read:resource_servers") or self.page(
                    "resource_servers", self.resource_servers, query
                )
            if len(parts) == 2 and method == "PATCH":
                return self.needs("update:resource_servers") or self.patch_server(parts[1], body)
        if parts[0] == "roles":
            if len(parts) == 1:
                if method == "GET":
                    return self.needs("read:roles") or self.page("roles", self.roles, query)
                if method == "POST":
                    return self.needs("create:roles") or self.create_role(body)
            role = next((r for r in self.roles if r["id"] == parts[1]), None) if len(parts) > 1 else None
            if role is None:
                return error(404, "Not Found", "The role does not exist.", "inexistent_role")
            if len(parts) == 2 and method == "PATCH":
                return self.needs("update:roles") or self.patch_role(role, body)
            if len(parts) == 2 and method == "DELETE":
                return self.needs("delete:roles") or self.delete_role(role)
            if len(parts) == 3 and parts[2] == "permissions":
                return self.role_permission_call(method, role["id"], query, body)
            if len(parts) == 3 and parts[2] == "users" and method == "GET":
                return self.needs("read:role_members") or self.users_page(self.role_users[role["id"]], query)
        return error(404, "Not Found", f"Not found: {method} {path}")

    def page(self, key: str, items: list[dict[str, Any]], query: dict[str, list[str]]) -> Answer:
        page = int(query.get("page", ["0"])[0])
        limit = min(int(query.get("per_page", ["50"])[0]), self.max_per_page)
        chunk = items[page * limit : (page + 1) * limit]
        if query.get("include_totals") != ["true"]:
            return 200, {}, chunk
        return 200, {}, {"start": page * limit, "limit": limit, "total": len(items), key: chunk}

    def users_page(self, users: list[dict[str, Any]], query: dict[str, list[str]]) -> Answer:
        if "page" in query:
            return self.page("users", users, query)
        start = int(query.get("from", ["0"])[0] or "0")
        take = min(int(query.get("take", ["50"])[0]), self.max_per_page)
        chunk = users[start : start + take]
        following = str(start + take) if start + take < len(users) else None
        return 200, {}, {"users": chunk, **({"next": following} if following else {})}

    def patch_server(self, rs_id: str, body: Any) -> Answer:
        server = next(
            (rs for rs in self.resource_servers if rs["id"] == rs_id or rs["identifier"] == rs_id), None
        )
        if server is None:
            return error(404, "Not Found", "The resource server does not exist", "inexistent_resource_server")
        scopes = body.get("scopes") if isinstance(body, dict) else None
        if not isinstance(scopes, list) or not all(isinstance(s, dict) and s.get("value") for s in scopes):
            return error(400, "Bad Request", "Payload validation error: 'Invalid scopes'", "invalid_body")
        if any(not isinstance(s.get("description", ""), str) for s in scopes):
            return error(
                400, "Bad Request", "Payload validation error: 'Expected type string'", "invalid_body"
            )
        kept = {s["value"] for s in scopes}
        server["scopes"] = [{"value": s["value"], "description": s.get("description", "")} for s in scopes]
        # Auth0 removes a deleted permission from every role that granted it.
        for role_id, grants in self.role_permissions.items():
            self.role_permissions[role_id] = [
                g
                for g in grants
                if g["resource_server_identifier"] != server["identifier"] or g["permission_name"] in kept
            ]
        return 200, {}, server

    def create_role(self, body: Any) -> Answer:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            return error(
                400,
                "Bad Request",
                "Payload validation error: 'Missing required property: name'",
                "invalid_body",
            )
        if any(r["name"] == name for r in self.roles):
            return error(409, "Conflict", "Role name already exists", "role_conflict")
        role = {"id": self.new_id("rol"), "name": name, "description": body.get("description", "")}
        self.roles.append(role)
        self.role_permissions[role["id"]], self.role_users[role["id"]] = [], []
        return 200, {}, role

    def patch_role(self, role: dict[str, Any], body: Any) -> Answer:
        for key in ("name", "description"):
            if isinstance(body, dict) and isinstance(body.get(key), str):
                role[key] = body[key]
        return 200, {}, role

    def delete_role(self, role: dict[str, Any]) -> Answer:
        self.roles.remove(role)
        del self.role_permissions[role["id"]], self.role_users[role["id"]]
        return 204, {}, None

    def role_permission_call(
        self, method: str, role_id: str, query: dict[str, list[str]], body: Any
    ) -> Answer:
        if method == "GET":
            return self.needs("read:roles") or self.page("permissions", self.role_permissions[role_id], query)
        denied = self.needs("update:roles")
        if denied:
            return denied
        wanted = body.get("permissions") if isinstance(body, dict) else None
        if not isinstance(wanted, list) or not wanted:
            return error(400, "Bad Request", "Payload validation error: 'permissions'", "invalid_body")
        pairs = [(p.get("resource_server_identifier"), p.get("permission_name")) for p in wanted]
        grants = self.role_permissions[role_id]
        if method == "POST":
            for api, name in pairs:
                server = next((rs for rs in self.resource_servers if rs["identifier"] == api), None)
                if server is None or name not in {s["value"] for s in server.get("scopes", [])}:
                    return error(
                        400, "Bad Request", f"Permission {name} does not exist on {api}", "invalid_body"
                    )
            have = {(g["resource_server_identifier"], g["permission_name"]) for g in grants}
            grants.extend(self.permission(api, name) for api, name in pairs if (api, name) not in have)
            return 201, {}, None
        if method == "DELETE":
            drop = set(pairs)
            grants[:] = [
                g for g in grants if (g["resource_server_identifier"], g["permission_name"]) not in drop
            ]
            return 204, {}, None
        return error(404, "Not Found", f"Not found: {method}")


@contextmanager
def serve(tenant: MgmtTenant) -> Iterator[MgmtTenant]:
    """Run the tenant on 127.0.0.1 (an ephemeral port) for the duration of the block."""

    class Handler(BaseHTTPRequestHandler):
        def reply(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                body: Any = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            else:
                body = json.loads(raw) if raw else None
            headers: dict[str, str] = {}
            if parts.path in tenant.redirects:
                status, headers["Location"] = tenant.redirects[parts.path]
                payload = b""
            elif parts.path in tenant.raw:
                status, payload = tenant.raw[parts.path]
            else:
                status, headers, data = tenant.answer(
                    self.command, parts.path, parse_qs(parts.query), self.headers, body
                )
                payload = b"" if data is None else json.dumps(data).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = reply  # noqa: N815 - http.server names

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tenant.url = f"http://127.0.0.1:{http.server_address[1]}"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield tenant
    finally:
        tenant.release.set()
        http.shutdown()
        http.server_close()
        thread.join(timeout=10)
