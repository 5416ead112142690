"""Policy directories for the policy tooling tests: real files in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

from authz.app import demo_policy_dir


def copy_demo(tmp_path: Path, name: str = "policies") -> Path:
    """A writable copy of the demo policies, test suites included."""
    target = tmp_path / name
    shutil.copytree(demo_policy_dir(), target)
    return target


def line_number(path: Path, fragment: str) -> int:
    """The 1-based number of the only line of `path` containing `fragment`."""
    found = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if fragment in line]
    assert len(found) == 1, (fragment, found)
    return found[0]


def write_policy(directory: Path, model: str, **files: str) -> Path:
    """A policy directory with `model.conf` and the given `NAME_csv=text` files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.conf").write_text(model)
    for name, text in files.items():
        (directory / name.replace("_csv", ".csv")).write_text(text)
    return directory
