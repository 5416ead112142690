"""The grpc.aio server on an event loop of its own thread, driven from ordinary threads.

`App` and everything around it (signal handlers, the readiness thread, tests) are
synchronous; this keeps their view of the gRPC server the same as the sync server's:
`start` returns once the port is bound and the server runs, `stop(grace)` drains, `wait`
blocks until it has stopped, and `LoopHealth.set` / `enter_graceful_shutdown` may be
called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from grpc_health.v1 import health_pb2

from authz.server import GrpcServer

# How long a health change from another thread may wait for the loop (it is never busy for long).
HEALTH_CALL_SECONDS = 10.0


class ServerLoop:
    """One thread running an event loop that serves one grpc.aio server until `stop`."""

    def __init__(self, name: str = "authz-grpc") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._grace: float | None = None
        self._stopping: asyncio.Event | None = None
        self.stopped = threading.Event()

    def start(self, build: Callable[[], Awaitable[GrpcServer]]) -> GrpcServer:
        """Build (in the loop) and start the server; raises what building raised (OSError: port taken)."""
        started: Future[GrpcServer] = Future()
        self._thread = threading.Thread(target=self._run, args=(build, started), name=self._name, daemon=True)
        self._thread.start()
        return started.result()

    def _run(self, build: Callable[[], Awaitable[GrpcServer]], started: Future[GrpcServer]) -> None:
        try:
            asyncio.run(self._serve(build, started))
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                raise
        finally:
            self.stopped.set()

    async def _serve(self, build: Callable[[], Awaitable[GrpcServer]], started: Future[GrpcServer]) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        built = await build()
        await built.server.start()
        started.set_result(built)
        await self._stopping.wait()
        # New calls are refused at once; calls in flight get `grace` seconds, then are cancelled.
        await built.server.stop(self._grace)
        built.gate.pool.shutdown(wait=False)

    def stop(self, grace: float | None) -> threading.Event:
        """Begin the drain; the returned event is set once the server has stopped."""
        loop, stopping = self.loop, self._stopping
        if self._thread is None:  # never started
            self.stopped.set()
        if loop is not None and stopping is not None and not self.stopped.is_set():
            self._grace = grace
            # RuntimeError: the loop has just closed, so the server has stopped already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        return self.stopped

    def wait(self) -> None:
        """Block until the server has stopped."""
        self.stopped.wait()

    def call(self, coroutine: Coroutine[Any, Any, None], timeout: float = HEALTH_CALL_SECONDS) -> None:
        """Run `coroutine` on the loop and wait for it; closed unrun once the loop has stopped."""
        loop = self.loop
        if loop is None or self.stopped.is_set():
            coroutine.close()
            return
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("ServerLoop.call from the loop's own thread would wait for itself")
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # closed in the meantime
            coroutine.close()
            return
        future.result(timeout)


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
