"""Replacing files atomically: readers see the old text or the new one, never a mix."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

NEW_FILE_MODE = 0o644
_SUFFIX = ".tmp"


def replace_files(texts: Mapping[Path, str]) -> None:
    """Replace each file with its text: all written and fsynced first, then all renamed at once.

    Each file is replaced atomically; a directory has no atomic rename of a set, so the
    set changes in one burst of renames (microseconds, well inside the reload watcher's
    100 ms batch), and a failure while writing (a full disk) changes none of them.
    Temporary names start with a dot and do not end in `.csv`, so a policy reader never
    picks them up. A symlinked path is written through (the link stays). A file keeps
    its permissions; a new one gets 0644.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in texts.items():
            staged.append(_stage(path, text))
        for temp, target in staged:
            os.replace(temp, target)
    except BaseException:
        for temp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        raise
    # The renames themselves must survive a crash too.
    for parent in {target.parent for _, target in staged}:
        directory = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _stage(path: Path, text: str) -> tuple[str, Path]:
    """`text` in a fsynced temporary file beside `path`'s target, with the target's mode."""
    target = path.resolve() if path.is_symlink() else path
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else NEW_FILE_MODE
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return temp, target


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the temporary files a writer killed mid-write (SIGKILL, power loss) left behind.

    Call only while holding the directory's editing lock: then no writer is staging.
    Only names of `_stage`'s pattern for a file of this directory are touched.
    """
    for entry in directory.glob(f".*{_SUFFIX}"):
        stem = entry.name[1:].rsplit(".", 2)[0]
        if entry.is_file() and (stem.endswith(".csv") or (directory / stem).exists()):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
