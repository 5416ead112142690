"""The policy directory as a source: today's behaviour, watched with watchfiles.

The watch covers the directory itself, recursively, with no filter: a Kubernetes
ConfigMap update is a `..data` symlink swap (a new `..TIMESTAMP/` directory, a new
`..data` link renamed over the old one, the old directory removed), and a default
filter that hid dot-names or temporary files could drop exactly the event that
matters. watchfiles groups a burst of events into one batch (`step` ms of quiet ends
it, `debounce` ms caps it; its 1.6 s default would break a two-second reload budget).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

from authz.engine.policyfiles import read_policy_dir
from authz.errors import PolicyLoadError
from authz.policy.suites import TESTS_DIR, read_suite_file, suite_files
from authz.sources import PolicyContent, SourceState

log = logging.getLogger("authz.reload")
# watchfiles logs every batch at INFO; the reload's own line says the same with its outcome.
logging.getLogger("watchfiles").setLevel(logging.WARNING)

DEBOUNCE_MS = 500
STEP_MS = 100
MISSING_POLL_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0


class DirectoryOrigin:
    """A policy directory: `model.conf`, `*.csv` and `tests/*_test.yaml`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def location(self) -> str:
        """The directory."""
        return str(self.directory)

    def read(self) -> PolicyContent:
        """The directory's files now; raises PolicyLoadError."""
        return read_dir_content(self.directory)

    def state(self) -> SourceState:
        """A directory is always reachable; a broken file is a rejected reload, not an outage."""
        return SourceState("directory", self.location)

    def watch(self, changed: Callable[[str], None], stop: threading.Event) -> None:
        """Report each batch of file changes in the directory until `stop` is set.

        A watch follows the directory it started on: once that is removed or replaced (a
        restore, `mv` of a new tree), it never reports again. So the watch restarts on the
        directory found at the path, and while there is none the path is polled.
        """
        directory = self.directory
        missing = False
        retry = MISSING_POLL_SECONDS
        while not stop.is_set():
            identity = _identity(directory)
            if identity is None:
                if not missing:
                    log.warning(
                        "policy directory %s is gone; the last good policy keeps serving until it is back",
                        directory,
                    )
                    missing = True
                stop.wait(MISSING_POLL_SECONDS)
                continue
            if missing:
                missing = False
                # Let a restore that is still copying finish before reading it.
                stop.wait(DEBOUNCE_MS / 1000)
                changed(f"{directory} is back")
            try:
                _watch_while(directory, identity, changed, stop)
                retry = MISSING_POLL_SECONDS
            except Exception:
                # Serving goes on with the policy it has; SIGHUP and the admin service still reload.
                log.exception(
                    "cannot watch %s for policy changes; retrying in %g s (SIGHUP reloads)", directory, retry
                )
                stop.wait(retry)
                retry = min(retry * 2, MAX_RETRY_SECONDS)  # a lasting cause (inotify limits) stays quiet


def _watch_while(
    directory: Path, identity: tuple[int, int], changed: Callable[[str], None], stop: threading.Event
) -> None:
    """Watch `directory` until stopped or until the path no longer names the same directory."""
    for changes in watchfiles.watch(
        directory, watch_filter=None, debounce=DEBOUNCE_MS, step=STEP_MS, stop_event=stop
    ):
        changed(f"{len(changes)} file change(s) in {directory}")
        if _identity(directory) != identity:
            return


def _identity(directory: Path) -> tuple[int, int] | None:
    """The directory `directory` names now (device, inode), or None when it names no directory."""
    try:
        status = os.stat(directory)
    except OSError:
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISDIR(status.st_mode) else None


def read_dir_content(directory: Path) -> PolicyContent:
    """A directory's policy and its suites' text (what a store keeps as one version)."""
    policy = read_policy_dir(directory)
    suites: list[tuple[str, str]] = []
    for path in suite_files(directory):
        try:
            suites.append((f"{TESTS_DIR}/{path.name}", read_suite_file(path)))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyLoadError(f"cannot read the suite {path}: {exc}") from exc
    return PolicyContent(policy, tuple(suites))
