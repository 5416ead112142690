"""The gRPC transport: the shared proto calls, status codes, health, reflection, TLS.

The server is `grpc.aio` (docs/ARCHITECTURE.md, "Transport choice"). A decision whose token
is already in the verified-token cache is answered inline on the event loop: it needs no
key lookup and no I/O. Everything else that may block (a verification, which may fetch the
JWKS over urllib for up to its 5 s timeout; the admin calls) runs on the thread pool
through `CallGate.run_blocking`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from authz import tracing
from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.errors import ListenError
from authz.handlers import DecisionService
from authz.transports.admission import MAX_QUEUE_SECONDS, Admission, server_ids
from authz.transports.callgate import (
    MAX_AWAITING_REQUEST,
    MAX_OPEN_STREAMS,
    REQUEST_MESSAGE_SECONDS,
    CallGate,
    GatedServer,
    Overloaded,
)
from authz.transports.convert import ProtoService, Status, error_status
from authz.transports.inlinecost import InlineCost

SERVICE_NAME = authz_pb2.DESCRIPTOR.services_by_name["AuthorizationService"].full_name
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Target = TypeVar("Target")
Context = grpc.aio.ServicerContext[Any, Any]
# A service registered beside the decision API: (the server, gating every method it adds;
# the gate its methods run blocking work through).
Register = Callable[[GatedServer, CallGate], None]


class ProtoServicer(Protocol[Target]):
    """A gRPC servicer whose methods delegate to the proto-level calls of `proto`."""

    proto: Target
    gate: CallGate
    inline_cost: InlineCost | None  # None: every call on the pool


def _metadata_authorization(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    return None


def grpc_method(
    convert: Callable[[Target, Req, str | None], Resp],
    inline: Callable[[Target, Req, str], int] | None = None,
) -> Callable[[ProtoServicer[Target], Req, Context], Awaitable[Resp]]:
    """A servicer method: the shared proto call, its error status reported as a gRPC abort.

    The call runs on the event loop when `inline(proto, request, token)` says how many
    decisions it asks for (0: it cannot run there) and the serving policy's decisions have
    proved cheap (`self.inline_cost`), else on the thread pool.
    """

    @functools.wraps(convert)
    async def method(self: ProtoServicer[Target], request: Req, context: Context) -> Resp:
        # The metadata is read only when the request carries no token of its own.
        token = getattr(request, "token", "")
        authorization = None if token else _metadata_authorization(context)
        try:
            # With tracing on, the caller's trace is attached where `call` runs (loop or pool).
            call = tracing.continued(convert, lambda: tuple(context.invocation_metadata() or ()), "grpc")
            decisions = inline(self.proto, request, token or authorization or "") if inline else 0
            cost = self.inline_cost
            if decisions and cost is not None and cost.allows():
                return cost.run(decisions, lambda: call(self.proto, request, authorization))
            return await self.gate.run_blocking(call, self.proto, request, authorization)
        except Overloaded as exc:
            status = Status("RESOURCE_EXHAUSTED", str(exc))
        except DecodeError:
            # A request parsed here, not by grpcio (`admin.proto.UNPARSED`): the gate's answer
            # for one that does not parse, the parser's text not echoed nor logged as a fault.
            status = Status("INTERNAL", "the request message does not parse")
        except Exception as exc:
            status = error_status(exc, convert.__name__)
        await context.abort(grpc.StatusCode[status.code], status.message)
        raise AssertionError("unreachable: context.abort raises")

    return method


# Decisions one call may ask for and still be answered on the event loop. A BatchCheck of
# 10,000 items (AUTHZ_BATCH_LIMIT's largest value) on a cached token held the loop, and with it
# every other call and health check, for 0.3 to 0.8 s; on the pool the loop gets the GIL back
# every switch interval (5 ms). The default batch limit is 100.
INLINE_DECISIONS = 100


def _token_cached(proto: ProtoService, request: Any, token: str) -> int:
    # A cache hit verifies nothing: no key lookup, no JWKS fetch. Should the entry expire or
    # be cleared in the moment between this look and the decision, the inline verification
    # finds the key in memory or refuses an unknown kid (a refetch right after the clear that
    # removed the key is inside unknown_kid_cooldown), so it still does not wait on the network.
    return 1 if proto.service.verifier.is_cached(token) else 0


def _few_and_cached(proto: ProtoService, request: Any, token: str) -> int:
    # BatchCheck's items, GetVisibility's named elements: each is a decision. A visibility
    # prefix stands for every literal id the policy names under it, as many decisions as the
    # policy has ids (500 `*` lines of one action held the loop for 0.9 s): on the pool.
    if isinstance(request, authz_pb2.BatchCheckRequest):
        many = request.items
    elif request.prefix:
        return 0
    else:
        many = request.elements
    few = len(many) <= INLINE_DECISIONS and proto.service.verifier.is_cached(token)
    return len(many) if few else 0


class AuthorizationServicer(authz_pb2_grpc.AuthorizationServiceServicer):  # type: ignore[misc]
    """AuthorizationService over gRPC; the conversion is ProtoService's, shared with Connect."""

    def __init__(self, service: DecisionService, gate: CallGate) -> None:
        self.proto = ProtoService(service)
        self.gate = gate
        self.inline_cost: InlineCost | None = InlineCost(lambda: service.store.current.version)

    Check = grpc_method(ProtoService.check, _token_cached)
    BatchCheck = grpc_method(ProtoService.batch_check, _few_and_cached)
    GetVisibility = grpc_method(ProtoService.get_visibility, _few_and_cached)
    GetPrincipal = grpc_method(ProtoService.get_principal, _token_cached)
    # Always on the pool: a plan over many lines can take milliseconds, too long for the loop.
    PlanResources = grpc_method(ProtoService.plan_resources)


def pending_call_options(limit: int) -> list[tuple[str, int]]:
    """grpcio core options holding at most `limit` calls the event loop has not taken yet (0: its own).

    Under overload the calls wait in the core, unseen by Python, until the loop takes them
    (`authz.transports.admission`). Past half of `limit` the core refuses a new call with a
    probability rising to one at `limit` (random early detection, in C): a refusal costs
    the loop nothing, where one the gate answers costs it over half an answer, so at twice
    the sustainable rate the gate's refusals alone took the whole loop. The caller sees
    CANCELLED, the core's code for it.
    """
    if limit <= 0:
        return []
    return [
        ("grpc.server.max_pending_requests", limit // 2),
        ("grpc.server.max_pending_requests_hard_limit", limit),
    ]


@dataclass(frozen=True)
class GrpcServer:
    """A built (not yet started) server with its bound port, health servicer and call gate."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer  # type: ignore[name-defined]
    gate: CallGate


async def build_server(
    service: DecisionService,
    listen: str,
    *,
    credentials: grpc.ServerCredentials | None = None,
    max_workers: int = 16,
    max_concurrent_rpcs: int | None = None,
    request_seconds: float = REQUEST_MESSAGE_SECONDS,
    max_awaiting: int = MAX_AWAITING_REQUEST,
    max_streams: int = MAX_OPEN_STREAMS,
    max_queue_seconds: float = MAX_QUEUE_SECONDS,
    max_pending_calls: int = 0,
    reuse_port: bool = False,
    extra: Mapping[str, Register] | None = None,
) -> GrpcServer:
    """A ready-to-start grpc.aio server with the API, health and reflection; run on its event loop.

    `so_reuseport` is off unless asked for: grpcio's default would let a second server
    silently bind a port that is already in use. Beyond `max_concurrent_rpcs` calls being
    answered, a call is refused at once with RESOURCE_EXHAUSTED: under a load spike callers
    fail fast (and closed) instead of queueing without bound. grpcio's own limit is not
    used: it counts calls still waiting for their request message (see `authz.transports.callgate`)
    and open streams (as many health Watches as the limit refuse every other call, health
    checks too), and it refuses on the event loop, after taking the call from the core, as
    the gate does (grpcio 1.85).
    While the calls waiting in grpcio's core would wait longer than `max_queue_seconds`
    (0: no such limit), calls but health checks are refused the same way
    (`authz.transports.admission`). With `max_pending_calls`, grpcio's core itself holds at
    most that many calls the loop has not taken yet and cancels new ones beyond it, at no
    cost to the loop (see `pending_call_options`).
    """
    pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="authz-rpc")
    admission = Admission(max_queue_seconds)
    gate = CallGate(max_concurrent_rpcs, request_seconds, pool, max_awaiting, admission, max_streams)
    # Asked before and after the server is made: the one new id is this server's (`server_ids`).
    known = server_ids() if max_queue_seconds > 0 else set()
    server = grpc.aio.server(
        migration_thread_pool=pool,
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            *pending_call_options(max_pending_calls),
        ],
    )
    admission.watch(server_ids() - known if max_queue_seconds > 0 else set())
    gated = GatedServer(server, gate)
    authz_pb2_grpc.add_AuthorizationServiceServicer_to_server(AuthorizationServicer(service, gate), gated)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, gated)
    names = [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME]
    for name, register in (extra or {}).items():
        register(gated, gate)
        names.append(name)
    # Through the gated server: its calls are counted, and its streams bounded with the open
    # ones (enable_server_reflection would register on the raw server, unseen by the gate).
    reflector = reflection.aio.ReflectionServicer(names)  # type: ignore[attr-defined]  # re-exported
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflector, gated)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        port = (
            server.add_secure_port(listen, credentials) if credentials else server.add_insecure_port(listen)
        )
    except RuntimeError:
        port = 0
    if port == 0:
        await server.stop(None)
        pool.shutdown(wait=False)
        raise ListenError("listen", listen, "address in use or not available")
    return GrpcServer(server, port, health_servicer, gate)
