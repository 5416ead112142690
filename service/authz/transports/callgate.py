"""What a gRPC call may hold while it waits: a bounded wait for its request, a slot, a thread.

On the event loop a call that has sent its headers but not its request message costs a
suspended coroutine, never a thread, so stalled clients cannot take the workers away
from others (the sync server parked a pool thread on each of them). `CallGate` serves
every single-request method as a stream of one:

- the request message must arrive within `request_seconds` of the call reaching the
  server, else the call ends with DEADLINE_EXCEEDED, so stalled calls do not pile up for
  as long as their clients care to keep them open. One loop timer ends them all, set for
  the longest-waiting call's deadline: an `asyncio.timeout` around each read (a timer
  pushed on the loop's heap and cancelled, every call) cost a call 12 to 30 µs of the
  loop on a 2-core machine;
- at most `max_awaiting` calls wait for their message at once (each holds some 24 KiB, and
  whatever part of its message it sent: grpcio's core buffers that, unseen here;
  docs/security.md, "Known limits");
  beyond that the one that has waited longest is ended with RESOURCE_EXHAUSTED. A caller
  that sends its message with its headers is never the longest-waiting, so a flood of
  stalled calls costs bounded memory and still refuses no one else;
- `max_in_progress` bounds the calls being answered, counted from their request's
  arrival to their answer: calls still waiting for their message are not counted, so
  stalled calls can never make the server refuse the calls of others (grpcio's own
  `maximum_concurrent_rpcs` counts a call from its headers, and refuses everyone once
  that many stall);
- while `admission` finds the server behind by more than its queue budget, every call
  but a health check is refused with RESOURCE_EXHAUSTED before its message is read
  (`authz.transports.admission`, which also counts every refusal of the gate by reason);
- `run_blocking` hands work that may block (a token verification that may fetch the
  JWKS, the admin calls) to the thread pool, at most `max_in_progress` jobs queued or
  running; a job keeps its place until its thread is done with it, even when its call
  was cancelled meanwhile, so cancelled calls cannot queue unbounded work.

Methods are gated where they are registered: `GatedServer` stands in for the server in
the generated `add_*Servicer_to_server` functions and wraps each handler once, so a call
pays for no lookup of its own (a server interceptor would run a coroutine per call).
Streaming-request methods (reflection) read their own messages and pass through as they
are, and so do synchronous handlers (grpcio runs them on its migration thread pool once
their request has arrived). Every counter is touched on the event loop thread only.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

import grpc
from google.protobuf.message import DecodeError

from authz.errors import InvalidArgument
from authz.transports import wirebounds
from authz.transports.admission import Admission

# Time for the request message to arrive once the call's headers have. A client sends both
# in one write; 10 s carries a 4 MiB message (MAX_MESSAGE_BYTES) over a 4 Mbit/s link.
REQUEST_MESSAGE_SECONDS = 10.0
# Calls waiting for their message at once: about 240 MiB of them, ten times the default
# max_concurrent_rpcs.
MAX_AWAITING_REQUEST = 10_000
# Server streams (health Watch, reflection) open at once: each lives as long as its client watches and
# holds its call's memory (about 25 KiB), so without a bound watchers were memory without end.
MAX_OPEN_STREAMS = 1_000
# Never refused for the server being behind: an orchestrator must see a busy server as alive.
HEALTH_PREFIX = "/grpc.health.v1.Health/"
# Why the gate ended a call waiting for its request message: past its deadline, or the
# longest-waiting of too many.
_Ending: TypeAlias = Literal["deadline", "awaiting_request"]

Result = TypeVar("Result")
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # generic in grpc-stubs only
    GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    GenericHandler = grpc.GenericRpcHandler


class Overloaded(Exception):
    """More blocking jobs are queued or running than the server takes: RESOURCE_EXHAUSTED."""


def _is_async(handler: Handler) -> bool:
    behaviour = handler.unary_stream if handler.response_streaming else handler.unary_unary
    return inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)


class CallGate:
    """Bounded request wait and admission for every single-request method; the blocking-job pool."""

    def __init__(
        self,
        max_in_progress: int | None,
        request_seconds: float,
        pool: Executor,
        max_awaiting: int = MAX_AWAITING_REQUEST,
        admission: Admission | None = None,
        max_streams: int = MAX_OPEN_STREAMS,
    ) -> None:
        self.max_in_progress = max_in_progress
        self.request_seconds = request_seconds
        self.pool = pool
        self.max_awaiting = max(1, max_awaiting)
        self.max_streams = max(1, max_streams)
        self.open_streams = 0  # server streams past their request message
        self.admission = admission or Admission(0.0)
        self.in_progress = 0  # calls being answered
        self.blocking_jobs = 0  # run_blocking jobs queued or running
        # The calls waiting for their request message, longest-waiting first, each with its
        # deadline (loop time): arrival order is deadline order. Those of them being ended,
        # with why; the timer set for the first deadline, if any.
        self._awaiting: OrderedDict[asyncio.Task[Any], float] = OrderedDict()
        self._ended: dict[asyncio.Task[Any], _Ending] = {}
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def awaiting_request(self) -> int:
        """Calls whose request message has not arrived yet."""
        return len(self._awaiting)

    def gated(self, method: str, handler: Handler) -> Handler:
        """`handler` (of `/service/method`) as a gated stream of one if it is async with one request;
        an async bidirectional stream (reflection) counted among the open streams; any other
        only counted as taken."""
        if handler.request_streaming:
            bidi = handler.response_streaming and inspect.isasyncgenfunction(handler.stream_stream)
            return self._streamed(handler) if bidi else self._counted(handler)
        if not _is_async(handler):
            return self._counted(handler)
        return self._gate(method, handler)

    async def _open_stream(self, context: Context) -> None:
        if self.open_streams >= self.max_streams:
            # The newcomer, unlike a call waiting for its message: a watcher that was let in
            # is a client relying on it.
            self.admission.count("open_streams")
            refusal = f"{self.max_streams} streams are open; retry later"
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        self.open_streams += 1

    def _streamed(self, handler: Handler) -> Handler:
        streaming: Any = handler.stream_stream

        async def stream(requests: Any, context: Context) -> AsyncIterator[Any]:
            self.admission.arrived()
            await self._open_stream(context)
            try:
                async for response in streaming(requests, context):
                    yield response
            finally:
                self.open_streams -= 1

        return grpc.stream_stream_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer
        )

    def _counted(self, handler: Handler) -> Handler:
        # Not gated (a sync handler, or request streaming), but counted: the core counts every call,
        # and one the gate did not count would read as a backlog for good. (An async generator
        # is gated, or `_streamed` when its requests stream: none reaches here.)
        arrived = self.admission.arrived
        kind = ("stream" if handler.request_streaming else "unary") + (
            "_stream" if handler.response_streaming else "_unary"
        )
        behaviour: Any = getattr(handler, kind)
        counted: Any
        if inspect.iscoroutinefunction(behaviour):

            async def call(request: Any, context: Context) -> Any:
                arrived()
                return await behaviour(request, context)

            counted = call
        else:

            def run(request: Any, context: Any) -> Any:  # a thread's: an increment under the GIL
                arrived()
                return behaviour(request, context)

            counted = run
        make = getattr(grpc, f"{kind}_rpc_method_handler")
        return make(counted, handler.request_deserializer, handler.response_serializer)  # type: ignore[no-any-return]

    def _gate(self, method: str, handler: Handler) -> Handler:
        # Checked before protobuf parses the request, on the loop (`wirebounds`).
        deserializer = wirebounds.bounded(handler.request_deserializer)
        if handler.response_streaming:
            streaming: Any = handler.unary_stream

            # A server stream (health Watch) lives as long as its client watches: it gets the
            # bounded request wait but holds no slot, or idle watchers could refuse everyone.
            async def stream(requests: Any, context: Context) -> AsyncIterator[Any]:
                self.admission.arrived()
                request = await self._receive(method, context)
                await self._open_stream(context)
                try:
                    out = streaming(request, context)
                    if inspect.isasyncgen(out):
                        async for response in out:
                            yield response
                    else:
                        await out
                finally:
                    self.open_streams -= 1

            return grpc.stream_stream_rpc_method_handler(stream, deserializer, handler.response_serializer)
        unary: Any = handler.unary_unary
        admission = self.admission
        sheddable = not method.startswith(HEALTH_PREFIX)

        async def call(requests: Any, context: Context) -> Any:
            admission.arrived()
            # Before the message is read: a refusal must cost the loop as little as it can.
            if sheddable and (behind := admission.overloaded()) is not None:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, behind)
            request = await self._receive(method, context)
            if self.max_in_progress is not None and self.in_progress >= self.max_in_progress:
                admission.count("max_concurrent_rpcs")
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the server is answering {self.max_in_progress} calls; retry later",
                )
            self.in_progress += 1
            try:
                return await unary(request, context)
            finally:
                self.in_progress -= 1

        return grpc.stream_unary_rpc_method_handler(call, deserializer, handler.response_serializer)

    async def _receive(self, method: str, context: Context) -> Any:
        task = asyncio.current_task()
        assert task is not None  # grpcio runs every handler in a task of its own
        loop = task.get_loop()
        self._awaiting[task] = deadline = loop.time() + self.request_seconds
        if self._sweep is None:
            self._sweep = loop.call_at(deadline, self._end_overdue)
        if len(self._awaiting) > self.max_awaiting:
            self._end(next(iter(self._awaiting)), "awaiting_request")
        try:
            request = await context.read()
        except asyncio.CancelledError:
            ending = self._ended.get(task)
            # Cancelled by grpcio (the client went away, the server is stopping), alone or as
            # well as by the gate: grpcio's (asyncio.timeout gave way to it the same way).
            if ending is None or task.uncancel() > 0:
                raise
            if ending == "deadline":
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no request message within {self.request_seconds:g} s of the call's headers",
                )
            self.admission.count("awaiting_request")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.max_awaiting} calls are waiting for their request message; "
                "this one had waited longest",
            )
        except InvalidArgument as exc:  # a bound of `wirebounds`, met before the parse
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DecodeError:
            # The sync server's code for it; the parser's text is not echoed, nor logged as a fault.
            await context.abort(grpc.StatusCode.INTERNAL, "the request message does not parse")
        finally:
            self._awaiting.pop(task, None)
            self._ended.pop(task, None)
        if request is grpc.aio.EOF:  # type: ignore[attr-defined]
            # The sync server's answer to a unary call without a message.
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f'"{method}" requires exactly one request message.'
            )
        return request

    def _end(self, task: asyncio.Task[Any], ending: _Ending) -> None:
        # Cancelled out of its wait; its own _receive turns that into its answer.
        del self._awaiting[task]
        self._ended[task] = ending
        task.cancel()

    def _end_overdue(self) -> None:
        # The timer at the first deadline: ends every call past its own (those whose message
        # came meanwhile have left `_awaiting`), then is set for the next deadline.
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._awaiting:
            task, deadline = next(iter(self._awaiting.items()))
            if deadline > now:
                self._sweep = loop.call_at(deadline, self._end_overdue)
                return
            self._end(task, "deadline")

    async def run_blocking(self, work: Callable[..., Result], *args: Any) -> Result:
        """`work(*args)` on the pool; raises Overloaded when `max_in_progress` jobs are already there."""
        if self.max_in_progress is not None and self.blocking_jobs >= self.max_in_progress:
            self.admission.count("blocking_jobs")
            raise Overloaded(f"{self.max_in_progress} blocking calls are queued; retry later")
        self.blocking_jobs += 1
        job = asyncio.get_running_loop().run_in_executor(self.pool, work, *args)
        job.add_done_callback(self._job_done)
        # Shielded: a cancelled call stops waiting, but the job's place is given back only
        # once its thread has finished it.
        return await asyncio.shield(job)

    def _job_done(self, job: asyncio.Future[Any]) -> None:
        self.blocking_jobs -= 1
        if not job.cancelled():
            job.exception()  # retrieved here, so a job whose caller left logs no warning


class _GatedGeneric(GenericHandler):
    """The server's generic handlers as one: the first that knows a method answers it, gated.

    One handler for them all, so a call is counted once: grpcio asks each registered handler
    in turn, and an unknown method's call, counted by every handler that did not know it,
    read as taken several times (the queue-time estimate then ran below the core's count).
    """

    def __init__(self, gate: CallGate) -> None:
        self.inner: list[GenericHandler] = []
        self.gate = gate
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        """The first inner handler's answer, gated (unknown methods stay None: nothing is kept for them)."""
        answers = (inner.service(handler_call_details) for inner in self.inner)
        handler = next((found for found in answers if found is not None), None)
        if handler is None:
            # An unknown method's call: the core counted it, so the gate does too, or the
            # queue-time estimate would read it as a backlog.
            self.gate.admission.arrived()
            return None
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is None or known[0] is not handler:
            known = (handler, self.gate.gated(method, handler))
            self._wrapped[method] = known
        return known[1]


class GatedServer:
    """The server as the generated `add_*Servicer_to_server` functions see it: every method gated."""

    def __init__(self, server: grpc.aio.Server, gate: CallGate) -> None:
        self.server: Any = server  # add_registered_method_handlers is newer than grpc-stubs
        self.gate = gate
        self._generic = _GatedGeneric(gate)
        server.add_generic_rpc_handlers([self._generic])

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        """Register `service`'s methods (looked up before any generic handler), gated."""
        gated = {name: self.gate.gated(f"/{service}/{name}", handler) for name, handler in handlers.items()}
        self.server.add_registered_method_handlers(service, gated)

    def add_generic_rpc_handlers(self, handlers: Iterable[GenericHandler]) -> None:
        """Register generic handlers (asked in order, after those registered earlier), each method gated."""
        self._generic.inner.extend(handlers)
