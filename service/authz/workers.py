"""`authz serve --workers N`: N pre-forked processes serving one port (SO_REUSEPORT).

One CPython process decides on one core at a time; several processes sharing the
listening port let the kernel spread connections over the cores. gRPC's core cannot
be carried across a fork once it has created objects, so this follows the grpc
multiprocessing example: the parent forks before any gRPC object exists, and each child
builds its own App (its own snapshot, key set and reload) bound with `so_reuseport`.

The parent only supervises: it holds the port (bound, never listening, so it takes no
connections), which also turns port 0 into one concrete port for every child; it
forwards SIGTERM, SIGINT and SIGHUP to the children and exits once all of them have.
A child that exits on its own (a crash, a policy that does not load) brings the others
down too, so the supervisor of the whole process (systemd, Kubernetes) sees one failure.
A parent killed outright (SIGKILL) cannot forward anything: on Linux the kernel sends
each child SIGTERM then (PR_SET_PDEATHSIG), so no orphaned worker keeps the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import NoReturn

from authz.config import Settings, split_host_port
from authz.errors import AuthzError, ConfigError, ListenError

log = logging.getLogger("authz")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOPPING = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def reserve_port(listen: str, setting: str = "listen") -> tuple[socket.socket, str]:
    """Bind `host:port` with SO_REUSEPORT without listening; the socket and `host:bound-port`.

    Raises ListenError (naming `setting`) when the address is taken by a server that does not
    share its port.
    """
    host, port = split_host_port(listen)
    bare = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bare, port))
    except OSError as exc:
        sock.close()
        raise ListenError.of(setting, listen, exc) from exc
    return sock, f"{host}:{sock.getsockname()[1]}"


def serve_workers(settings: Settings, serve: Callable[[Settings], int]) -> int:
    """Fork `settings.workers` children each running `serve(settings)`; supervise; their exit code."""
    if settings.dev:
        # The dev issuer is one JWKS server on one port: N children would each try to start it.
        raise ConfigError(["--dev runs a single process: drop --workers (or set it to 1) with --dev"])
    held: list[socket.socket] = []
    try:
        sock, listen = reserve_port(settings.listen)
        held.append(sock)
        http_listen = settings.http_listen
        if http_listen:
            sock, http_listen = reserve_port(http_listen, "http_listen")
            held.append(sock)
    except OSError:
        for sock in held:
            sock.close()
        raise
    child_settings = replace(settings, listen=listen, http_listen=http_listen)
    # Signals wait until the handlers below exist, so none is lost between two forks.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    children: list[int] = []
    parent = os.getpid()
    for number in range(1, settings.workers + 1):
        pid = os.fork()
        if pid == 0:
            _stop_with_parent(parent)
            _child(number, child_settings, serve, held)
        children.append(pid)
    log.info("authz: %d workers on %s (pids %s)", len(children), listen, " ".join(map(str, children)))
    try:
        return _supervise(children)
    finally:
        for sock in held:
            sock.close()


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the supervising parent dies (Linux only).

    SIGTERM is still blocked here, so it waits until the worker can take it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            return
    except (OSError, AttributeError):
        return  # no prctl: an orphaned worker serves until it is stopped
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _child(
    number: int, settings: Settings, serve: Callable[[Settings], int], held: list[socket.socket]
) -> NoReturn:
    code = 1
    try:
        for sock in held:
            sock.close()
        for signum in STOPPING:
            signal.signal(signum, signal.SIG_DFL)
        # Until the serve loop installs its reload handler, a forwarded SIGHUP must not kill the worker.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        log.info("authz worker %d (pid %d) starting", number, os.getpid())
        code = serve(settings)
    except AuthzError as exc:
        print(f"authz worker {number}: {exc}", file=sys.stderr)
        code = 2
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # Never return into the parent's stack (its finally blocks, its exit path).
        os._exit(code)


def _supervise(children: list[int]) -> int:
    alive = set(children)
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum in STOPPING:
            if not stopping:
                log.info("received %s: stopping %d workers", signal.Signals(signum).name, len(alive))
            stopping = True
        for pid in list(alive):
            _kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    code = 0
    while alive:
        pid, status = os.wait()
        alive.discard(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code != 0 and code == 0:
            code = exit_code if exit_code > 0 else 128 - exit_code
        if not stopping:
            log.error("worker pid %d exited (%d) on its own: stopping the others", pid, exit_code)
            code = code or 1
            stopping = True
            for other in list(alive):
                _kill(other, signal.SIGTERM)
    return code


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # exited already: os.wait reports it
        os.kill(pid, signum)
