"""The objects a compiled matcher sees as `r.sub`, `r.obj` and `r.ctx`.

They compare and print as plain strings (the token's `sub`, the resource id) so stock
Casbin matchers like `r.sub == p.sub` work, while `r.obj.owner` reads a request
attribute. Attribute lookups resolve data first and never reach Python methods, so a
resource attribute called `title` or `count` is the attribute, not `str.title`.

A value that is None (JSON null, a NULL column) counts as not sent wherever a matcher
reaches it: top-level attributes, context, nested structs, list items and token claims
all raise AttributeMissing, so `{"status": null}` fails closed like a missing `status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from authz.principal import Principal

# The attributes or context of a request that sent none: read-only and shared, so a request
# builds no mapping for them.
NO_VALUES: Mapping[str, Any] = MappingProxyType({})

# The request-definition names authz binds (DESIGN.md section 4).
REQUEST_FIELDS = ("sub", "obj", "act", "dom", "ctx")


class AttributeMissing(Exception):
    """Evaluation reached an attribute the request did not send (condition unknown)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(path)


class PolicyEvalError(Exception):
    """A matcher failed for a reason other than a missing attribute."""


class Bound:
    """Base of request values with attributes; `lookup` raises AttributeMissing."""

    __slots__ = ()

    def lookup(self, name: str, path: str) -> Any:
        raise NotImplementedError


class Attributes(Bound):
    """A mapping of request attributes (resource attributes, context)."""

    __slots__ = ("values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def lookup(self, name: str, path: str) -> Any:
        value = self.values.get(name)
        if value is None:
            raise AttributeMissing(path)
        return value

    def __repr__(self) -> str:
        return f"Attributes({dict(self.values)!r})"


class _Text:
    """Ordering and containment of a request value that stands for its id, as pycasbin's plain
    string does (`r.obj < 'm'`, `'orders' in r.obj`, `r.sub >= 'a'` were TypeErrors: a
    policy error where pycasbin decided). `r.obj in 'text'` is `text_contains`: str's `in`
    takes only a str on its left."""

    __slots__ = ()

    def _text(self) -> str:
        raise NotImplementedError

    def __lt__(self, other: object) -> bool:
        return self._text() < plain(other)  # type: ignore[no-any-return]

    def __le__(self, other: object) -> bool:
        return self._text() <= plain(other)  # type: ignore[no-any-return]

    def __gt__(self, other: object) -> bool:
        return self._text() > plain(other)  # type: ignore[no-any-return]

    def __ge__(self, other: object) -> bool:
        return self._text() >= plain(other)  # type: ignore[no-any-return]

    def __contains__(self, item: object) -> bool:
        return plain(item) in self._text()


class Resource(_Text, Attributes):
    """The request's resource: equals its id string; `r.obj.<name>` reads attributes."""

    __slots__ = ("id",)

    def __init__(self, resource_id: str, values: Mapping[str, Any]) -> None:
        # Both slots set here: one made per decision, and a super() call costs as much again.
        self.values = values
        self.id = resource_id

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Resource):
            return self.id == other.id
        return isinstance(other, str) and self.id == other

    def __hash__(self) -> int:
        return hash(self.id)

    def __str__(self) -> str:
        return self.id

    def _text(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"Resource({self.id!r})"


_SUBJECT_FIELDS = ("id", "permissions", "roles", "scopes", "client_id", "machine", "claims")
# The principal's facts a decision cache key holds (`r.sub.<other>` reads raw claims).
KEYED_SUBJECT_FIELDS = frozenset((*_SUBJECT_FIELDS, "org_id")) - {"claims"}


def claim(claims: Mapping[str, Any], name: str, path: str) -> Any:
    """`r.sub.<name>` for a name that is not a principal field: the token claim `name`, else the
    one namespaced claim ending in `/<name>` (Auth0's `https://example.com/<name>`).

    Absent (or null) is a missing attribute, as for `r.obj`; two namespaced claims of that
    name are an error rather than a guess.
    """
    value = claims.get(name)
    if value is None and name:
        suffix = f"/{name}"
        namespaced = sorted(key for key in claims if isinstance(key, str) and key.endswith(suffix))
        if len(namespaced) > 1:
            raise PolicyEvalError(f"{path}: the token has several claims ending in {suffix}: {namespaced}")
        value = claims.get(namespaced[0]) if namespaced else None
    if value is None:
        raise AttributeMissing(path)
    return value


class Subject(_Text, Bound):
    """The principal as a matcher sees it: equals its `sub`; exposes the token's facts."""

    __slots__ = ("principal", "reach")

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        # Role closures per (role definition, domain), filled on first use in a request.
        self.reach: dict[tuple[str, str | None], frozenset[str]] = {}

    def lookup(self, name: str, path: str) -> Any:
        if name == "org_id":
            if self.principal.org_id is None:
                raise AttributeMissing(path)
            return self.principal.org_id
        if name in _SUBJECT_FIELDS:
            value = getattr(self.principal, name)
            return list(value) if isinstance(value, tuple) else value
        return claim(self.principal.claims, name, path)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Subject):
            return self.principal.id == other.principal.id
        return isinstance(other, str) and self.principal.id == other

    def __hash__(self) -> int:
        return hash(self.principal.id)

    def __str__(self) -> str:
        return self.principal.id

    def _text(self) -> str:
        return self.principal.id

    def __repr__(self) -> str:
        return f"Subject({self.principal.id!r})"


_STRINGLIKE = (Resource, Subject)  # a tuple: `Resource | Subject` would be built on every call


def plain(value: Any) -> Any:
    """The string a bound value stands for, for functions such as keyMatch2."""
    # The request's resource is the value most calls get: its id without a __str__ call.
    if type(value) is Resource:
        return value.id
    return str(value) if isinstance(value, _STRINGLIKE) else value


def text_contains(item: Any, container: Any) -> bool:
    """`item in container` inside a matcher: a bound request value tested against a string is
    its text, as pycasbin's plain strings are (`r.obj in 'text'`, `r.obj in p.obj`)."""
    if type(container) is str and not isinstance(item, str):
        item = plain(item)
    return item in container


def get_attr(value: Any, name: str, path: str) -> Any:
    """`value.name` inside a matcher: request data only, never Python internals."""
    if isinstance(value, Bound):
        return value.lookup(name, path)
    if isinstance(value, Mapping):
        found = value.get(name)
        if found is None:
            raise AttributeMissing(path)
        return found
    raise PolicyEvalError(f"{path}: cannot read attribute {name!r} of a {type(value).__name__}")


def get_item(value: Any, key: Any, path: str) -> Any:
    """`value[key]` inside a matcher; a missing key is a missing attribute.

    A number indexes the id of `r.obj` or `r.sub` (a character, as on pycasbin's strings);
    a name reads its attribute or claim."""
    if isinstance(key, int) and isinstance(value, _Text):
        try:
            return value._text()[key]
        except IndexError as exc:
            raise PolicyEvalError(f"{path}: {exc}") from None
    if isinstance(value, Bound):
        return value.lookup(str(key), f"{path}[{key!r}]")
    try:
        found = value[key]
    except (KeyError, IndexError):
        raise AttributeMissing(f"{path}[{key!r}]") from None
    except TypeError as exc:
        raise PolicyEvalError(f"{path}: {exc}") from None
    if found is None:
        raise AttributeMissing(f"{path}[{key!r}]")
    return found
