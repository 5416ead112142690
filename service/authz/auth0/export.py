"""The declarations as Auth0 Deploy CLI (`a0deploy`) input: `tenant.yaml` or the directory format.

Only the keys the Deploy CLI documents for these objects: `resourceServers` entries
(`name`, `identifier`, `scopes: [{value, description}]`) and `roles` entries (`name`,
`description`, `permissions: [{permission_name, resource_server_identifier}]`); in the
directory format one JSON file per object under `resource-servers/` and `roles/`. The lint
reader (`authz.policy.auth0`) reads both back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from authz.policy.auth0 import Api, Declarations, Role

_UNSAFE = re.compile(r"[^A-Za-z0-9 ._-]+")


def resource_server(api: Api) -> dict[str, Any]:
    """One `resourceServers` entry."""
    return {
        "name": api.name,
        "identifier": api.identifier,
        "scopes": [
            {"value": scope, **({"description": text} if (text := api.description(scope)) else {})}
            for scope in api.scopes
        ],
    }


def role(declared: Role) -> dict[str, Any]:
    """One `roles` entry, its permissions sorted (API, then name)."""
    entry: dict[str, Any] = {"name": declared.name}
    if declared.description:
        entry["description"] = declared.description
    entry["permissions"] = [
        {"permission_name": name, "resource_server_identifier": api}
        for api, name in sorted(declared.permissions)
    ]
    return entry


def tenant_yaml(declarations: Declarations) -> str:
    """A `tenant.yaml` holding the APIs and the roles."""
    document = {
        "resourceServers": [resource_server(api) for api in declarations.apis],
        "roles": [role(r) for r in declarations.roles],
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000)


def write_directory(declarations: Declarations, root: Path) -> list[Path]:
    """Write `resource-servers/NAME.json` and `roles/NAME.json` under `root`; returns the files."""
    written: list[Path] = []
    for folder, entries in (
        ("resource-servers", [resource_server(api) for api in declarations.apis]),
        ("roles", [role(r) for r in declarations.roles]),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for entry in entries:
            path = root / folder / f"{file_name(entry['name'])}.json"
            path.write_text(json.dumps(entry, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(path)
    return written


def file_name(name: str) -> str:
    """A file name for an object name (an API named by its URL has slashes and colons)."""
    return _UNSAFE.sub("-", name).strip(" .-") or "unnamed"
