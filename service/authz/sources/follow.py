"""A replica following a PostgreSQL policy store: the head read on demand, changes heard by LISTEN.

`PostgresOrigin` is the `PolicyOrigin` `LivePolicy` reads from. Its `watch` (the
reloader's watch thread) holds one connection that LISTENs on the store's channel and
asks for a reload on every notification, on every (re)connection (a notification sent
while disconnected is lost), and when a periodic look finds a head other than the one the
latest read settled (a notification lost some other way, or a read that failed half-way).
Reads go through a second connection, used only by the reload thread, and fetch files
only when the head's id changed.

When PostgreSQL cannot be reached, reads raise StoreUnavailable, the serving snapshot
stays, and the watch reconnects with exponential backoff; `state()` says so meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from authz.errors import AuthzError, PolicyLoadError, Unavailable
from authz.printable import escaped
from authz.sources import PolicyContent, SourceState
from authz.sources.pgconnection import StoreUnavailable, cut_after
from authz.sources.pgschema import NOTIFY_CHANNEL
from authz.sources.postgres import PostgresStore, StoredVersion

if TYPE_CHECKING:
    from authz.sources.pgconnection import Connection

log = logging.getLogger("authz.store")

BACKOFF_MIN_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 5.0
# The longest a read of the store may take, measured here: twice the server's statement_timeout,
# so a slow but working server is never cut, and a stalled one cannot hold the reload for ever.
READ_SECONDS = 60.0
# How long one wait for notifications lasts: the bound on noticing `stop`.
_LISTEN_SLICE_SECONDS = 0.5
# A notification's payload (a version's id, when the store's trigger sent it) as logged.
_PAYLOAD_SHOWN = 20


class StoreEmpty(Unavailable):
    """The store is reachable and migrated but holds no version: nothing to serve yet."""


class PostgresOrigin:
    """A policy store as a replica's source; `check_seconds` is the backstop check's period."""

    def __init__(self, store: PostgresStore, *, check_seconds: float = 10.0) -> None:
        self.store = store
        self.check_seconds = check_seconds
        self.read_seconds = READ_SECONDS
        self._lock = threading.Lock()  # the reader connection and the cache
        self._reader: Connection | None = None
        self._cached: StoredVersion | None = None
        self._settled: int | None = None  # the head id the latest read settled (served or rejected)
        self._state = SourceState("postgresql", store.location, reachable=False, error="not connected yet")

    @property
    def location(self) -> str:
        """The database, without the password."""
        return self.store.location

    def state(self) -> SourceState:
        """Reachable or not (and why), and the head's digest when last read."""
        return self._state

    def read(self) -> PolicyContent:
        """The head's content (from the cache while the head's id is unchanged)."""
        with self._lock:
            try:
                try:
                    stored = self._read_head_within(self._reader_connection())
                except self.store.psycopg.OperationalError:
                    # The reader may have been cut by a restart since its last use, or stalled
                    # past the deadline: one fresh try, on a new connection (a new backend).
                    self._drop_reader()
                    stored = self._read_head_within(self._reader_connection())
            except self.store.psycopg.Error as exc:
                self._drop_reader()
                error = self.store.connect_error(exc)
                self._set(False, str(error))
                raise error from None
            except PolicyLoadError:
                self._set(True, "")  # reachable: the version itself is broken (a rejected reload)
                raise
            except AuthzError as exc:
                self._set(isinstance(exc, StoreEmpty), str(exc))
                raise
            self._set(True, "", head=stored.info.version)
            return stored.content

    def _read_head_within(self, conn: Connection) -> StoredVersion:
        # Bounded on this side: the reload lock is held meanwhile, and admin edits wait for it.
        with cut_after(conn, self.read_seconds):
            return self._read_head(conn)

    def _read_head(self, conn: Connection) -> StoredVersion:
        head = self.store.head_id(conn)
        if head is None:
            raise StoreEmpty(
                f"the policy store {self.location} holds no policy version yet: publish one with "
                "`authz policy push DIR --store DSN`"
            )
        if self._cached is None or self._cached.info.id != head:
            info = self.store.info(conn, "v.id = %s", (head,))
            if info is None:
                raise StoreUnavailable(f"version #{head} vanished while it was read")
            try:
                self._cached = self.store.load(conn, info)
            except PolicyLoadError:
                self._settled = head  # rejected: read again only when the head moves
                raise
        self._settled = head
        return self._cached

    def _reader_connection(self) -> Connection:
        if self._reader is None or self._reader.closed or self._reader.broken:
            self._drop_reader()
            self._reader = self.store.connect(autocommit=True)
        return self._reader

    def _drop_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _set(self, reachable: bool, error: str, head: str | None = None) -> None:
        old = self._state
        since = old.since if old.reachable == reachable and old.since else time.time()
        self._state = SourceState(
            "postgresql", self.location, reachable, error, since, old.head if head is None else head
        )

    def watch(self, changed: Callable[[str], None], stop: threading.Event) -> None:
        """LISTEN for new versions until `stop` is set, reconnecting with backoff."""
        backoff = BACKOFF_MIN_SECONDS
        while not stop.is_set():
            try:
                conn = self.store.connect(autocommit=True)
            except AuthzError as exc:
                if self._state.reachable or self._state.error != str(exc):
                    log.error("policy store unreachable, the last good policy keeps serving: %s", exc)
                self._set(False, str(exc))
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            try:
                self._listen(conn, changed, stop)
                backoff = BACKOFF_MIN_SECONDS
            except self.store.psycopg.Error as exc:
                error = self.store.connect_error(exc)
                log.error("lost the policy store, the last good policy keeps serving: %s", error)
                self._set(False, str(error))
            except Exception:
                log.exception("following the policy store failed; reconnecting")
            finally:
                conn.close()
            # A server that accepts connections and then fails them must not make this spin.
            stop.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
        with self._lock:
            self._drop_reader()  # stopped with the reloader: the reads are over too

    def _listen(self, conn: Connection, changed: Callable[[str], None], stop: threading.Event) -> None:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        if not self._state.reachable:
            log.info("policy store %s reachable", self.location)
        self._set(True, "")
        # Whatever was committed while this replica was not listening: read the head now.
        changed(f"connected to the policy store {self.location}")
        checked = time.monotonic()
        while not stop.is_set():
            # One request per batch, however many arrived: any client of the database may NOTIFY
            # this channel, thousands at once, with up to 8,000 bytes of text each.
            notes = list(conn.notifies(timeout=_LISTEN_SLICE_SECONDS, stop_after=1))
            if notes:
                latest = escaped(notes[-1].payload[:_PAYLOAD_SHOWN])
                changed(f"{len(notes)} notification(s) from the policy store, the latest: #{latest}")
            if time.monotonic() - checked >= self.check_seconds:
                checked = time.monotonic()
                with cut_after(conn, self.read_seconds):
                    head = self.store.head_id(conn)
                # Compared with the last head a read settled (served or rejected), so a lost
                # notification and a read that failed half-way are both made good here.
                if head != self._settled:
                    changed(f"the policy store's head #{head} is not the one read (the periodic check)")
