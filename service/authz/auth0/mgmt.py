"""The Auth0 Management API through the official SDK (auth0-python): the reads and the writes.

Credentials come from the environment and are never printed: `AUTH0_MANAGEMENT_TOKEN`, else
`AUTH0_CLIENT_ID` / `AUTH0_CLIENT_SECRET` (the client credentials grant for the tenant's
`https://DOMAIN/api/v2/` audience).

The SDK's own retries are turned off, so that this module decides what is repeated: a 429
after the reset its rate-limit headers name (at most MAX_RETRIES times, each wait at most
MAX_RETRY_WAIT_SECONDS), and a 5xx, a timeout or a dropped connection only for a request whose
repetition changes nothing (reads, a whole scope list, role permission grants, a role's
description, a deletion). A role creation is never repeated, since a repeat could make the
role twice; running `apply` again finds the role if the first attempt made it.

The server's answers are not trusted to be well formed: an answer that is not the JSON the
API documents (HTML from a proxy, a list, a wrong type, JSON nested past the parser's depth)
is a ManagementError naming the call, never a traceback; the text of the server's error
messages is shown with control characters escaped, at most MAX_MESSAGE_CHARS of it, and
with the client secret and the token masked should the server echo them.

No request follows a redirect: the token request carries the client secret in its body and
every Management API call the token, and a 307 or 308 would have them sent again to wherever
the `Location` points (requests, under the SDK's `GetToken`, followed them). A redirect is a
ManagementError naming its status; the token request is made here, on the same httpx client.
"""

from __future__ import annotations

import functools
import math
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
from auth0.management import Auth0, PermissionRequestPayload, ResourceServerScope
from auth0.management.core.api_error import ApiError
from auth0.management.core.parse_error import ParsingError

from authz.config import is_loopback
from authz.policy.auth0 import Auth0SourceError, Declarations, api_from, role_from
from authz.printable import escaped

PER_PAGE = 100  # the Management API's largest page
MAX_PAGES = 1000
MAX_RETRIES = 3
MAX_RETRY_WAIT_SECONDS = 10.0
# Of a server's error message shown to the user (a proxy's error page can be megabytes).
MAX_MESSAGE_CHARS = 300
# What parsing a malformed answer raises inside the SDKs: the Management SDK's ParsingError
# (a body of the wrong shape); json's RecursionError (nested past its depth); ValueError
# (not UTF-8, a non-numeric rate-limit header), and AttributeError / TypeError (the
# authentication SDK reads an error body's fields as a dict's, whatever JSON it is).
MALFORMED = (ParsingError, RecursionError, ValueError, AttributeError, TypeError)
T = TypeVar("T")


class ManagementError(Auth0SourceError):
    """A Management API call failed; the message names the call and, for a 403, the scope it needs."""

    def __init__(self, message: str, status: int = 0) -> None:
        # Ids in the message come from the tenant: no character of it may drive a terminal.
        super().__init__(escaped(message))
        self.status = status


def tenant_base_url(domain: str) -> str:
    """`https://DOMAIN` from a bare domain or a URL; plain http only for loopback hosts (tests)."""
    text = domain.strip().rstrip("/")
    parts = urllib.parse.urlsplit(text if "://" in text else "https://" + text)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path or parts.query:
        raise Auth0SourceError(f"{domain!r} is not a tenant domain such as example.us.auth0.com")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise Auth0SourceError(f"{domain!r}: plain http is accepted only on loopback hosts; use https")
    return f"{parts.scheme}://{parts.netloc}"


class Management:
    """One tenant's Management API: a token once, then calls with bounded retries and clear errors."""

    def __init__(self, domain: str, *, timeout: float = 10.0, env: Mapping[str, str] | None = None) -> None:
        self.base = tenant_base_url(domain)
        self._timeout = timeout
        self._secrets: tuple[str, ...] = ()
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)
        token = self._token(os.environ if env is None else env)
        self._secrets = (*self._secrets, token)
        # The SDK's generated client, since its ManagementClient wrapper builds https://DOMAIN itself
        # and the loopback test tenant speaks plain http (tenant_base_url allows that nowhere else).
        self._api = Auth0(
            base_url=f"{self.base}/api/v2",
            token=token,
            timeout=timeout,
            max_retries=0,
            httpx_client=self._http,
        )

    def _token(self, env: Mapping[str, str]) -> str:
        if token := env.get("AUTH0_MANAGEMENT_TOKEN", ""):
            return token
        client_id, secret = env.get("AUTH0_CLIENT_ID", ""), env.get("AUTH0_CLIENT_SECRET", "")
        if not client_id or not secret:
            raise Auth0SourceError(
                "the Management API needs AUTH0_MANAGEMENT_TOKEN, or AUTH0_CLIENT_ID and AUTH0_CLIENT_SECRET "
                "of a machine-to-machine application authorised for it (read:resource_servers and "
                "read:roles to read; update:resource_servers, create:roles, update:roles to apply)"
            )
        where = f"{self.base}/oauth/token"
        self._secrets = (secret,)
        grant = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "audience": f"https://{urllib.parse.urlsplit(self.base).netloc}/api/v2/",
        }
        try:
            answer = self._http.post(where, json=grant)
        except httpx.TimeoutException:
            raise ManagementError(f"{where}: no answer within {self._timeout:g} s") from None
        except httpx.TransportError as exc:
            raise ManagementError(f"{where}: unreachable ({type(exc).__name__})") from None
        try:
            body: object = answer.json() if answer.content else {}
        except MALFORMED:
            if answer.is_success:
                raise ManagementError(f"{where}: the answer is not the JSON Auth0 documents") from None
            body = answer.text
        status = answer.status_code
        if answer.is_redirect:
            raise ManagementError(f"{where}: HTTP {status}: {redirected(answer.headers, self.shown)}", status)
        if not answer.is_success:
            raise ManagementError(f"{where}: HTTP {status}: {self.shown(token_error(body))}", status)
        issued = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(issued, str) or not issued:
            raise ManagementError(f"{where} answered without an access_token")
        return issued

    # -- reads ----------------------------------------------------------------------------

    def declarations(self) -> Declarations:
        """Every resource server and role of the tenant, with ids, descriptions and role permissions."""
        servers = f"{self.base}/api/v2/resource-servers"
        roles = f"{self.base}/api/v2/roles"
        apis = [api_from(entry, servers) for entry in self.resource_servers()]
        found = [
            role_from(entry, roles, self.role_permissions(str(entry.get("id") or "")))
            for entry in self.roles()
        ]
        return Declarations(
            source=self.base,
            apis=tuple(api for api in apis if api),
            roles=tuple(role for role in found if role),
        )

    def resource_servers(self) -> list[dict[str, Any]]:
        """GET /api/v2/resource-servers, every page."""
        listing = self._api.resource_servers.list
        return self._pages(
            "list the APIs (GET /api/v2/resource-servers)",
            "read:resource_servers",
            lambda page: listing(page=page, per_page=PER_PAGE, include_totals=True),
        )

    def roles(self) -> list[dict[str, Any]]:
        """GET /api/v2/roles, every page."""
        listing = self._api.roles.list
        return self._pages(
            "list the roles (GET /api/v2/roles)",
            "read:roles",
            lambda page: listing(page=page, per_page=PER_PAGE, include_totals=True),
        )

    def role_permissions(self, role_id: str) -> list[dict[str, Any]]:
        """GET /api/v2/roles/{id}/permissions, every page ([] for a role without an id)."""
        if not role_id:
            return []
        listing = self._api.roles.permissions.list
        return self._pages(
            f"list the permissions of role {role_id} (GET /api/v2/roles/{{id}}/permissions)",
            "read:roles",
            lambda page: listing(role_id, page=page, per_page=PER_PAGE, include_totals=True),
        )

    def role_has_users(self, role_id: str) -> bool:
        """Whether any user holds the role (GET /api/v2/roles/{id}/users, one entry is enough)."""
        first = self._call(
            f"list the users of role {role_id} (GET /api/v2/roles/{{id}}/users)",
            "read:role_members",
            lambda: self._api.roles.users.list(role_id, take=1),
        )
        return bool(first.items)

    def _pages(self, what: str, scope: str, fetch: Callable[[int], Any]) -> list[dict[str, Any]]:
        """Page by page until an empty page or `total` (include_totals); bounded by MAX_PAGES."""
        items: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            pager = self._call(what, scope, functools.partial(fetch, page))
            batch = [item.dict(by_alias=True) for item in pager.items or []]
            items.extend(batch)
            total = getattr(pager.response, "total", None)
            if not batch or (isinstance(total, int | float) and len(items) >= total):
                return items
        raise ManagementError(f"{what}: more than {MAX_PAGES} pages")

    # -- writes ---------------------------------------------------------------------------

    def set_scopes(self, server_id: str, scopes: Sequence[tuple[str, str]]) -> None:
        """PATCH /api/v2/resource-servers/{id}: the API's whole list of permissions (value, description)."""
        body = [ResourceServerScope(value=v, **({"description": d} if d else {})) for v, d in scopes]
        self._call(
            "update the API's permissions (PATCH /api/v2/resource-servers/{id})",
            "update:resource_servers",
            lambda: self._api.resource_servers.update(server_id, scopes=body),
        )

    def create_role(self, name: str, description: str) -> str:
        """POST /api/v2/roles; returns the new role's id. Never repeated on a 5xx (see the module doc)."""
        extra = {"description": description} if description else {}
        made = self._call(
            f"create role {name} (POST /api/v2/roles)",
            "create:roles",
            lambda: self._api.roles.create(name=name, **extra),
            repeatable=False,
        )
        return str(made.id or "")

    def update_role(self, role_id: str, description: str) -> None:
        """PATCH /api/v2/roles/{id}: the description (the id, and so every user's assignment, stays)."""
        self._call(
            "update a role (PATCH /api/v2/roles/{id})",
            "update:roles",
            lambda: self._api.roles.update(role_id, description=description),
        )

    def delete_role(self, role_id: str) -> None:
        """DELETE /api/v2/roles/{id}."""
        self._call(
            "delete a role (DELETE /api/v2/roles/{id})",
            "delete:roles",
            lambda: self._api.roles.delete(role_id),
        )

    def grant(self, role_id: str, permissions: Sequence[tuple[str, str]], *, add: bool) -> None:
        """POST (add) or DELETE /api/v2/roles/{id}/permissions for (API identifier, permission) pairs."""
        body = [
            PermissionRequestPayload(resource_server_identifier=a, permission_name=p) for a, p in permissions
        ]
        client = self._api.roles.permissions
        method = "POST" if add else "DELETE"
        self._call(
            f"{'add' if add else 'remove'} role permissions ({method} /api/v2/roles/{{id}}/permissions)",
            "update:roles",
            lambda: (client.add if add else client.delete)(role_id, permissions=body),
        )

    # -- one call -------------------------------------------------------------------------

    def _call(self, what: str, scope: str, call: Callable[[], T], *, repeatable: bool = True) -> T:
        for attempt in range(MAX_RETRIES + 1):
            last = attempt == MAX_RETRIES
            try:
                return call()
            except ApiError as exc:
                status = exc.status_code or 0
                if not last and (status == 429 or (repeatable and status >= 500)):
                    time.sleep(retry_wait(exc.headers or {}, attempt))
                    continue
                raise ManagementError(_explain(what, scope, exc, attempt, self.shown), status) from None
            except httpx.TimeoutException:
                if repeatable and not last:
                    continue
                raise ManagementError(f"{what}: no answer within {self._timeout:g} s") from None
            except httpx.TransportError as exc:
                if repeatable and not last:
                    time.sleep(min(2.0**attempt, MAX_RETRY_WAIT_SECONDS))
                    continue
                raise ManagementError(f"{what}: {self.base} unreachable ({type(exc).__name__})") from None
            except MALFORMED:
                raise ManagementError(
                    f"{what}: the answer is not the JSON the Management API documents"
                ) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def shown(self, text: object) -> str:
        """A server's message as it may be printed: the credentials masked, escaped, bounded."""
        return shown_message(text, self._secrets)


def redirected(headers: Mapping[str, str], shown: Callable[[object], str]) -> str:
    """Why a redirect is an error, and where it pointed."""
    target = {key.lower(): value for key, value in headers.items()}.get("location", "nowhere")
    return f"a redirect to {shown(target)}, not followed: it would carry the credentials"


def token_error(body: object) -> object:
    """The message of /oauth/token's error answer: `error_description`, else `message`, else
    `error` ({error, error_description}, as OAuth 2.0 has it), else the text as it came."""
    if not isinstance(body, dict):
        return body
    return body.get("error_description") or body.get("message") or body.get("error") or "no explanation"


def retry_wait(headers: Mapping[str, str], attempt: int) -> float:
    """Seconds to wait after a 429: Retry-After, else Auth0's x-ratelimit-reset (epoch seconds), bounded."""
    lower = {key.lower(): value for key, value in headers.items()}
    try:
        if retry_after := lower.get("retry-after"):
            wait = float(retry_after)
        elif reset := lower.get("x-ratelimit-reset"):
            wait = float(reset) - time.time()
        else:
            wait = 2.0**attempt
    except ValueError:
        wait = 2.0**attempt
    if math.isnan(wait):  # float() takes "nan", and time.sleep refuses it (ValueError)
        wait = 2.0**attempt
    return min(max(wait, 0.0), MAX_RETRY_WAIT_SECONDS)


def shown_message(text: object, secrets: Sequence[str] = ()) -> str:
    """`text` from a server, fit for a terminal: `secrets` masked, control characters escaped,
    at most MAX_MESSAGE_CHARS (a server may echo the request, or send escape sequences)."""
    if text is None:
        return "no explanation"
    message = text if isinstance(text, str) else f"(a JSON {type(text).__name__} where a message belongs)"
    for secret in secrets:  # before any cut, so no part of a secret survives it
        if secret:
            message = message.replace(secret, "***")
    message = escaped(message[: MAX_MESSAGE_CHARS + 1])
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return message


def _explain(
    what: str, scope: str, exc: ApiError, attempt: int, shown: Callable[[object], str] = shown_message
) -> str:
    """Auth0's own `message` (errors are {statusCode, error, message, errorCode}), plus what to do."""
    status = exc.status_code or 0
    if 300 <= status < 400:
        return f"{what}: HTTP {status}: {redirected(exc.headers or {}, shown)}"
    body = exc.body if isinstance(exc.body, dict) else {}
    message = shown(body.get("message") or body.get("error") or "no explanation")
    text = f"{what}: HTTP {status}: {message}"
    if status == 403:
        text += (
            f" — the token lacks the scope {scope}: grant it to the application under "
            "Applications > APIs > Auth0 Management API > Permissions"
        )
    elif status == 401:
        text += " — the token is not valid for this tenant's Management API (expired, or another tenant's)"
    elif status == 429:
        limit = shown({k.lower(): v for k, v in (exc.headers or {}).items()}.get("x-ratelimit-limit", "?"))
        text += f" — still rate limited after {attempt + 1} tries (limit {limit}); run it again later"
    return text
