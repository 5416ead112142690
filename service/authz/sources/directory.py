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
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

from authz.engine.policyfiles import read_policy_dir
from authz.errors import PolicyLoadError
from authz.policy.suites import TESTS_DIR, suite_files
from authz.sources import PolicyContent, SourceState

log = logging.getLogger("authz.reload")
# watchfiles logs every batch at INFO; the reload's own line says the same with its outcome.
logging.getLogger("watchfiles").setLevel(logging.WARNING)

DEBOUNCE_MS = 500
STEP_MS = 100


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
        """Report each batch of file changes in the directory until `stop` is set."""
        directory = self.directory
        try:
            for changes in watchfiles.watch(
                directory, watch_filter=None, debounce=DEBOUNCE_MS, step=STEP_MS, stop_event=stop
            ):
                changed(f"{len(changes)} file change(s) in {directory}")
        except Exception:
            # Serving goes on with the policy it has; SIGHUP and the admin service still reload.
            log.exception("cannot watch %s for policy changes; reload with SIGHUP", directory)


def read_dir_content(directory: Path) -> PolicyContent:
    """A directory's policy and its suites' text (what a store keeps as one version)."""
    policy = read_policy_dir(directory)
    suites: list[tuple[str, str]] = []
    for path in suite_files(directory):
        try:
            suites.append((f"{TESTS_DIR}/{path.name}", path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyLoadError(f"cannot read the suite {path}: {exc}") from exc
    return PolicyContent(policy, tuple(suites))
