"""The grpc.aio server on an event loop thread, driven from ordinary threads.

`App` and everything around it (signal handlers, the readiness thread, tests) are
synchronous; this keeps their view of the gRPC server the same as the sync server's:
`start` returns once the port is bound and the server runs, `stop(grace)` drains, `wait`
blocks until it has stopped, and `LoopHealth.set` / `enter_graceful_shutdown` may be
called from any thread.

One loop thread serves every server of the process and is never closed. grpcio's aio
layer shares one completion queue among all event loops of a process and keeps each loop
it has seen; an operation that completes after its loop was closed (the receive of a call
cancelled by the drain, a moment after `stop`) is then handed to the closed loop, which
raises in whichever loop is running. A process serves one App, so one loop costs nothing;
tests that start many Apps one after another get no such errors. The loop holds a
reference to grpcio's aio runtime for the same reason (`_run_forever`). A `--workers` child makes
its own loop: it forks before any gRPC object (or this loop) exists.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from authz.transports.grpcserver import GrpcServer

# How long a health change from another thread may wait for the loop (it is never busy for long).
HEALTH_CALL_SECONDS = 10.0

_shared: tuple[int, asyncio.AbstractEventLoop, threading.Thread] | None = None
_shared_lock = threading.Lock()


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    # One reference to grpcio's aio runtime for as long as the loop lives: when the last aio
    # object goes, grpcio shuts its completion queue down from whichever thread dropped it,
    # pulling the queue's socket out from under this loop's selector.
    grpc.aio.init_grpc_aio()  # type: ignore[attr-defined]
    loop.run_forever()


def serving_loop() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """The process's gRPC event loop and its thread, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_run_forever, args=(loop,), name="authz-grpc", daemon=True)
            thread.start()
            _shared = (os.getpid(), loop, thread)
        return _shared[1], _shared[2]


class ServerLoop:
    """One grpc.aio server on the process's gRPC event loop, from `start` until `stop`."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._grace: float | None = None
        self._stopping: asyncio.Event | None = None
        self.stopped = threading.Event()

    def start(self, build: Callable[[], Awaitable[GrpcServer]]) -> GrpcServer:
        """Build (on the loop) and start the server; raises what building raised (OSError: port taken)."""
        self.loop, self._thread = serving_loop()
        started: Future[GrpcServer] = Future()
        serving = asyncio.run_coroutine_threadsafe(self._serve(build, started), self.loop)
        serving.add_done_callback(lambda _: self.stopped.set())
        try:
            return started.result()
        except BaseException:
            serving.result()  # finished: building raised, and `started` carries the same error
            raise

    async def _serve(self, build: Callable[[], Awaitable[GrpcServer]], started: Future[GrpcServer]) -> None:
        self._stopping = asyncio.Event()
        try:
            built = await build()
            await built.server.start()
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(built)
        try:
            await self._stopping.wait()
            # New calls are refused at once; calls in flight get `grace` seconds, then are cancelled.
            await built.server.stop(self._grace)
        finally:
            built.gate.pool.shutdown(wait=False)

    def stop(self, grace: float | None) -> threading.Event:
        """Begin the drain; the returned event is set once the server has stopped."""
        if self.loop is None or self._stopping is None:  # never started
            self.stopped.set()
        elif not self.stopped.is_set():
            self._grace = grace
            self.loop.call_soon_threadsafe(self._stopping.set)
        return self.stopped

    def wait(self) -> None:
        """Block until the server has stopped."""
        self.stopped.wait()

    def call(self, coroutine: Coroutine[Any, Any, None], timeout: float = HEALTH_CALL_SECONDS) -> None:
        """Run `coroutine` on the loop and wait for it; closed unrun once the server has stopped."""
        if self.loop is None or self.stopped.is_set():
            coroutine.close()
            return
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("ServerLoop.call from the loop's own thread would wait for itself")
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


class LoopHealth:
    """The grpc.aio health servicer, with the sync servicer's thread-safe calls."""

    def __init__(self, servicer: Any, loop: ServerLoop) -> None:
        self.servicer, self._loop = servicer, loop

    def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        """Report `status` for `service` (ignored once the shutdown has begun)."""
        self._loop.call(self.servicer.set(service, status))

    def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING from now on, for good."""
        self._loop.call(self.servicer.enter_graceful_shutdown())
