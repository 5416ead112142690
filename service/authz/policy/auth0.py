"""What an Auth0 tenant declares: its APIs' permissions and its roles.

Read from a Deploy CLI export (YAML `tenant.yaml` or the directory format) or live from the
Management API with client credentials. Only the names matter here, so every other field
of the tenant is ignored and Deploy CLI keyword placeholders (`##KEY##`, `@@KEY@@`) are
tolerated wherever they stand.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from authz.config import is_loopback
from authz.errors import AuthzError

PER_PAGE = 100  # the Management API's maximum page size
MAX_PAGES = 1000
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_RETRIES = 3
MAX_RETRY_WAIT_SECONDS = 10.0
# Auth0's own APIs: the Management API (`is_system`) and the My Account API.
_SYSTEM_PATHS = ("/api/v2/", "/me/")
_PLACEHOLDER = r"(?:##\w+##|@@\w+@@)"
# JSON: a whole string literal (kept as is) or a bare placeholder standing for a value.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(' + _PLACEHOLDER + ")")
# YAML: a bare placeholder as the whole value would be a comment (`##`) or a syntax error (`@@`).
_YAML_BARE = re.compile(r"(?m)([:\-][ \t]+)(" + _PLACEHOLDER + r")[ \t]*$")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?/?")


class Auth0SourceError(AuthzError):
    """The Auth0 source could not be read: a missing or malformed export, or a failed API call."""


@dataclass(frozen=True, slots=True)
class Api:
    """One Auth0 API (resource server): its identifier is the access token's audience."""

    identifier: str
    name: str
    scopes: tuple[str, ...]  # the permissions declared on the API
    system: bool  # one of Auth0's own APIs (Management, My Account)
    origin: str  # where it was declared: an export file or a Management API URL

    def matches(self, audience: str) -> bool:
        """True for the same identifier, a `##KEY##` placeholder standing for any text."""
        if audience == self.identifier:
            return True
        parts = re.split(_PLACEHOLDER, self.identifier)
        return len(parts) > 1 and re.fullmatch(".+?".join(map(re.escape, parts)), audience) is not None


@dataclass(frozen=True, slots=True)
class Role:
    """One Auth0 role and the API permissions it grants."""

    name: str
    permissions: frozenset[tuple[str, str]]  # (resource_server_identifier, permission_name)
    origin: str

    def grants(self, api: Api, permission: str) -> bool:
        """Whether the role grants `permission` of `api`."""
        return (api.identifier, permission) in self.permissions


@dataclass(frozen=True, slots=True)
class Declarations:
    """Everything one Auth0 source declares, and where it came from."""

    source: str
    apis: tuple[Api, ...]
    roles: tuple[Role, ...]

    def select_api(self, audience: str | None) -> Api:
        """The API named by `audience`; without one, the only API that is not Auth0's own."""
        if audience:
            for api in self.apis:
                if api.matches(audience):
                    return api
            known = ", ".join(api.identifier for api in self.apis) or "none"
            raise Auth0SourceError(f"{self.source} declares no API {audience!r} (APIs: {known})")
        candidates = [api for api in self.apis if not api.system]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise Auth0SourceError(f"{self.source} declares no API of its own (besides Auth0's)")
        names = ", ".join(api.identifier for api in candidates)
        raise Auth0SourceError(
            f"{self.source} declares {len(candidates)} APIs ({names}): choose one with --audience"
        )


def read_declarations(source: str, *, timeout: float = 10.0) -> Declarations:
    """Read `source`: an export file or directory when such a path exists, else a tenant domain."""
    if source.startswith(("https://", "http://")):
        return _read_live(source, timeout)
    path = Path(source)
    if path.is_dir():
        if (path / "resource-servers").is_dir() or (path / "roles").is_dir():
            return read_directory_export(path)
        for name in ("tenant.yaml", "tenant.yml"):
            if (path / name).is_file():
                return read_yaml_export(path / name)
        raise Auth0SourceError(f"{path}: neither a Deploy CLI directory export nor a folder with tenant.yaml")
    if path.is_file():
        return read_yaml_export(path)
    if _DOMAIN.fullmatch(source) and path.suffix.lower() not in (".yaml", ".yml", ".json"):
        return _read_live(source, timeout)
    raise Auth0SourceError(f"{source}: no such export file or directory, and not a tenant domain")


def _read_live(domain: str, timeout: float) -> Declarations:
    client_id, secret = os.environ.get("AUTH0_CLIENT_ID", ""), os.environ.get("AUTH0_CLIENT_SECRET", "")
    if not client_id or not secret:
        raise Auth0SourceError(
            "reading a tenant live needs AUTH0_CLIENT_ID and AUTH0_CLIENT_SECRET: a machine-to-machine "
            "application authorised for the Management API with read:resource_servers and read:roles"
        )
    return ManagementApi(domain, client_id, secret, timeout=timeout).declarations()


# --- Deploy CLI exports -------------------------------------------------------------------------


def read_yaml_export(path: Path) -> Declarations:
    """Read a Deploy CLI `tenant.yaml` (`resourceServers`, `roles`)."""
    data = _load_yaml(path, depth=0)
    if not isinstance(data, dict) or ("resourceServers" not in data and "roles" not in data):
        raise Auth0SourceError(f"{path}: no resourceServers or roles: not a Deploy CLI tenant.yaml export")
    origin = str(path)
    return Declarations(
        source=origin,
        apis=tuple(api for entry in _entries(data.get("resourceServers")) if (api := _api(entry, origin))),
        roles=tuple(role for entry in _entries(data.get("roles")) if (role := _role(entry, origin))),
    )


def _load_yaml(path: Path, depth: int) -> Any:
    """Parse one YAML file, following the Deploy CLI's `!include FILE` (relative to it)."""

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if suffix == "include" and isinstance(node, yaml.ScalarNode) and depth < 8:
            return _load_yaml(path.parent / str(loader.construct_scalar(node)), depth + 1)
        # Any other tag: keep the plain value, since no name this lint needs depends on it.
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)  # type: ignore[arg-type]

    Loader.add_multi_constructor("!", tagged)
    try:
        return yaml.load(_YAML_BARE.sub(r"\1'\2'", _read_text(path)), Loader=Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise Auth0SourceError(f"{path}: not valid YAML: {exc}") from exc


def read_directory_export(path: Path) -> Declarations:
    """Read a Deploy CLI directory export: `resource-servers/*.json` and `roles/*.json`."""
    apis = [_api(_read_json_file(f), str(f)) for f in sorted((path / "resource-servers").glob("*.json"))]
    roles = [_role(_read_json_file(f), str(f)) for f in sorted((path / "roles").glob("*.json"))]
    return Declarations(
        source=str(path),
        apis=tuple(api for api in apis if api),
        roles=tuple(role for role in roles if role),
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Auth0SourceError(f"cannot read {path}: {exc}") from exc


def _read_json_file(path: Path) -> Any:
    # The Deploy CLI substitutes placeholders in the raw text, so a bare one may stand for a
    # number, a list or an object: read it as null, since no name this lint needs is one.
    text = _JSON_TOKEN.sub(lambda m: "null" if m.group(1) else m.group(0), _read_text(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Auth0SourceError(f"{path}: not valid JSON: {exc}") from exc


# --- shapes shared by the exports and the Management API -----------------------------------------


def _entries(value: Any) -> list[dict[str, Any]]:
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _api(entry: Any, origin: str) -> Api | None:
    identifier = _text(entry.get("identifier")) if isinstance(entry, dict) else ""
    if not identifier:
        return None
    # A placeholder's `#` would start a URL fragment: stand a plain word in for it.
    path = urllib.parse.urlsplit(re.sub(_PLACEHOLDER, "x", identifier)).path
    return Api(
        identifier=identifier,
        name=_text(entry.get("name")) or identifier,
        scopes=tuple(name for scope in _entries(entry.get("scopes")) if (name := _text(scope.get("value")))),
        system=entry.get("is_system") is True or path in _SYSTEM_PATHS,
        origin=origin,
    )


def _role(entry: Any, origin: str, permissions: list[dict[str, Any]] | None = None) -> Role | None:
    name = _text(entry.get("name")) if isinstance(entry, dict) else ""
    if not name:
        return None
    grants = _entries(entry.get("permissions")) if permissions is None else permissions
    return Role(
        name=name,
        permissions=frozenset(
            (_text(p.get("resource_server_identifier")), _text(p.get("permission_name"))) for p in grants
        ),
        origin=origin,
    )


# --- the Management API --------------------------------------------------------------------------


def tenant_base_url(domain: str) -> str:
    """`https://DOMAIN` from a bare domain or a URL; plain http only for loopback hosts (tests)."""
    text = domain.strip().rstrip("/")
    parts = urllib.parse.urlsplit(text if "://" in text else "https://" + text)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path or parts.query:
        raise Auth0SourceError(f"{domain!r} is not a tenant domain such as example.us.auth0.com")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise Auth0SourceError(f"{domain!r}: plain http is accepted only on loopback hosts; use https")
    return f"{parts.scheme}://{parts.netloc}"


class ManagementApi:
    """A read-only Management API client: one client-credentials token, then paged GETs."""

    def __init__(
        self,
        domain: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.base = tenant_base_url(domain)
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._token = ""

    def declarations(self) -> Declarations:
        """Every resource server and role of the tenant, with each role's permissions."""
        servers_url = f"{self.base}/api/v2/resource-servers"
        roles_url = f"{self.base}/api/v2/roles"
        apis = [
            _api(entry, servers_url) for entry in self._paged("/api/v2/resource-servers", "resource_servers")
        ]
        roles: list[Role | None] = []
        for entry in self._paged("/api/v2/roles", "roles"):
            role_id = _text(entry.get("id"))
            path = f"/api/v2/roles/{urllib.parse.quote(role_id, safe='')}/permissions"
            roles.append(_role(entry, roles_url, self._paged(path, "permissions") if role_id else []))
        return Declarations(
            source=self.base,
            apis=tuple(api for api in apis if api),
            roles=tuple(role for role in roles if role),
        )

    def _access_token(self) -> str:
        if not self._token:
            host = urllib.parse.urlsplit(self.base).netloc
            body = {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "audience": f"https://{host}/api/v2/",
            }
            answer = self._call(self.base + "/oauth/token", json.dumps(body).encode(), {})
            token = answer.get("access_token") if isinstance(answer, dict) else None
            if not isinstance(token, str) or not token:
                raise Auth0SourceError(f"{self.base}/oauth/token answered without an access_token")
            self._token = token
        return self._token

    def _paged(self, path: str, key: str) -> list[dict[str, Any]]:
        """All items of a listing, page by page, until `total` (or a short or empty page)."""
        items: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            query = urllib.parse.urlencode({"page": page, "per_page": PER_PAGE, "include_totals": "true"})
            headers = {"Authorization": f"Bearer {self._access_token()}"}
            answer = self._call(f"{self.base}{path}?{query}", None, headers)
            # With include_totals Auth0 wraps the page in {start, limit, total, KEY}; a bare list is
            # what it sends without it, accepted too.
            batch = answer.get(key) if isinstance(answer, dict) else answer
            total = answer.get("total") if isinstance(answer, dict) else None
            if not isinstance(batch, list):
                raise Auth0SourceError(f"{self.base}{path}: the answer has no {key!r} list")
            items.extend(_entries(batch))
            done = len(items) >= total if isinstance(total, int) else len(batch) < PER_PAGE
            if not batch or done:
                return items
        raise Auth0SourceError(f"{self.base}{path}: more than {MAX_PAGES} pages")

    def _call(self, url: str, data: bytes | None, headers: dict[str, str]) -> Any:
        headers = {"Accept": "application/json", "User-Agent": "authz-policy-lint", **headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(MAX_RETRIES + 1):
            # The scheme is https, or http on loopback only: tenant_base_url checked it.
            request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                    body = response.read(MAX_RESPONSE_BYTES + 1)
                break
            except urllib.error.HTTPError as exc:
                if exc.code == 429 and attempt < MAX_RETRIES:
                    time.sleep(_retry_wait(exc.headers))
                    continue
                raise Auth0SourceError(f"{_redacted(url)}: HTTP {exc.code}: {_auth0_message(exc)}") from exc
            except (urllib.error.URLError, OSError) as exc:
                raise Auth0SourceError(f"{_redacted(url)}: {exc}") from exc
        if len(body) > MAX_RESPONSE_BYTES:
            raise Auth0SourceError(f"{_redacted(url)}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise Auth0SourceError(f"{_redacted(url)}: the answer is not JSON") from exc


def _redacted(url: str) -> str:
    return url.split("?", 1)[0]


def _retry_wait(headers: Any) -> float:
    """Seconds to wait after a 429: Retry-After, else Auth0's X-RateLimit-Reset (epoch seconds)."""
    try:
        if retry_after := headers.get("Retry-After"):
            wait = float(retry_after)
        elif reset := headers.get("X-RateLimit-Reset"):
            wait = float(reset) - time.time()
        else:
            wait = 1.0
    except ValueError:
        wait = 1.0
    return min(max(wait, 0.0), MAX_RETRY_WAIT_SECONDS)


def _auth0_message(exc: urllib.error.HTTPError) -> str:
    """Auth0's own explanation: `error_description` (token endpoint) or `message` (Management API)."""
    try:
        data = json.loads(exc.read(64 * 1024))
    except (ValueError, OSError):
        return str(exc.reason)
    if isinstance(data, dict):
        for key in ("error_description", "message", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return str(exc.reason)
