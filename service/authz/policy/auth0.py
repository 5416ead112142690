"""What an Auth0 tenant declares: its APIs' permissions and its roles.

Read from a Deploy CLI export (YAML `tenant.yaml` or the directory format) or live from the
Management API (`authz.auth0.mgmt`). Only the names matter here, so every other field
of the tenant is ignored and Deploy CLI keyword placeholders (`##KEY##`, `@@KEY@@`) are
tolerated wherever they stand.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from authz.errors import AuthzError

# Auth0's own APIs: the Management API (`is_system`) and the My Account API.
_SYSTEM_PATHS = ("/api/v2/", "/me/")
_PLACEHOLDER = r"(?:##\w+##|@@\w+@@)"
# JSON: a whole string literal (kept as is) or a bare placeholder standing for a value. An
# unterminated literal runs to the end of the text: were it no match, each later escaped quote
# would start a literal scanning to the end again (quadratic: 4.5 s for 40 KB of them).
_JSON_TOKEN = re.compile(r'(?s)"(?:[^"\\]|\\(?:.|\Z))*(?:"|\Z)|(' + _PLACEHOLDER + ")")
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
    descriptions: tuple[tuple[str, str], ...] = ()  # (permission, description) where one is given
    id: str = ""  # the Management API's id of the resource server (empty in exports)

    def description(self, scope: str) -> str:
        """The description declared for `scope` ('' when none is)."""
        return dict(self.descriptions).get(scope, "")

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
    description: str = ""
    id: str = ""  # the Management API's role id (empty in exports)

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
    # Imported here: the SDK is needed only for a live tenant, never for an export.
    from authz.auth0.mgmt import Management

    return Management(domain, timeout=timeout).declarations()


# --- Deploy CLI exports -------------------------------------------------------------------------


def read_yaml_export(path: Path) -> Declarations:
    """Read a Deploy CLI `tenant.yaml` (`resourceServers`, `roles`)."""
    data = _load_yaml(path, depth=0)
    if not isinstance(data, dict) or ("resourceServers" not in data and "roles" not in data):
        raise Auth0SourceError(f"{path}: no resourceServers or roles: not a Deploy CLI tenant.yaml export")
    origin = str(path)
    apis = [api_from(entry, origin) for entry in _entries(data.get("resourceServers"))]
    roles = [role_from(entry, origin) for entry in _entries(data.get("roles"))]
    return Declarations(
        source=origin,
        apis=tuple(api for api in apis if api),
        roles=tuple(role for role in roles if role),
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
    apis = [api_from(_read_json_file(f), str(f)) for f in sorted((path / "resource-servers").glob("*.json"))]
    roles = [role_from(_read_json_file(f), str(f)) for f in sorted((path / "roles").glob("*.json"))]
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


def api_from(entry: Any, origin: str) -> Api | None:
    """An `Api` from a resource server entry (export or Management API); None without an identifier."""
    identifier = _text(entry.get("identifier")) if isinstance(entry, dict) else ""
    if not identifier:
        return None
    # A placeholder's `#` would start a URL fragment: stand a plain word in for it.
    path = urllib.parse.urlsplit(re.sub(_PLACEHOLDER, "x", identifier)).path
    scopes = [
        (name, _text(scope.get("description")))
        for scope in _entries(entry.get("scopes"))
        if (name := _text(scope.get("value")))
    ]
    return Api(
        identifier=identifier,
        name=_text(entry.get("name")) or identifier,
        scopes=tuple(name for name, _ in scopes),
        system=entry.get("is_system") is True or path in _SYSTEM_PATHS,
        origin=origin,
        descriptions=tuple((name, text) for name, text in scopes if text),
        id=_text(entry.get("id")),
    )


def role_from(entry: Any, origin: str, permissions: list[dict[str, Any]] | None = None) -> Role | None:
    """A `Role` from a role entry, its permissions inline (exports) or given (Management API)."""
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
        description=_text(entry.get("description")),
        id=_text(entry.get("id")),
    )
