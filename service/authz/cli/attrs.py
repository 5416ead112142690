"""Parsing `--attr k=v` (strings) and `--attrs-json '{...}'` (typed) into one mapping."""

from __future__ import annotations

import argparse
import json
from typing import Any


class UsageError(ValueError):
    """A command-line value is wrong; the message says how to write it."""


def add_enforce_context(parser: argparse.ArgumentParser) -> None:
    """`--enforce-context SUFFIX`: the model's section set a request is decided with."""
    parser.add_argument(
        "--enforce-context",
        default="",
        metavar="SUFFIX",
        help="decide with Casbin's enforce context SUFFIX: 2 is r2, p2, e2, m2 (default: r, p, e, m)",
    )


def parse_attributes(pairs: list[str] | None, as_json: str | None) -> dict[str, Any]:
    """Merge typed JSON attributes with string `k=v` pairs (pairs win)."""
    values: dict[str, Any] = {}
    if as_json:
        try:
            loaded = json.loads(as_json)
        except ValueError as exc:
            raise UsageError(f"--attrs-json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError("--attrs-json must be a JSON object")
        values.update(loaded)
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--attr {pair!r} must look like key=value")
        values[key] = value
    return values
