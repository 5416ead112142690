"""Soak: a real `authz serve` under mixed load while everything around it changes.

`python -m tests.soak --seconds 600` (`make soak`; `make test` runs tests/test_soak.py: 20 s,
60 s when CI is set). The server is not in dev mode: it trusts a test issuer's JWKS on
loopback, serves TLS on its gRPC and HTTP listeners (a test PKI), has forward auth on and
reads a copy of the demo policies. Meanwhile, from this process:

- load threads call Check, BatchCheck, GetVisibility (gRPC over TLS) and /forward-auth
  (HTTPS) back to back, each answer compared with the decision the demo policy gives;
  each thread opens a new connection every few seconds, so rotated certificates are used;
- every second a policy file is replaced (temporary file, rename) with a new rule, so the
  server reloads every second;
- the issuer rotates its signing key (publishes the new key, waits until authz fetched it,
  signs with it, then removes the old one), and goes down (503, or connections closed
  unanswered) for longer than authz's refresh interval between rotations;
- the server certificate is replaced twice (cert-manager style: temporary file, rename);
- the server's VmRSS is sampled every second.

It passes when no RPC failed (an error or a wrong decision), no reload was rejected (none
read a half-written file), the server drained and exited 0 on SIGTERM, the rotated
certificate is the one served, and resident memory did not grow by more than 5% over the
second half of the run (the slope of a least-squares line through that half's samples,
times its duration, over its mean). Latency is reported, not judged:
on a shared 2-core machine it says more about the neighbours than about authz.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.app import demo_policy_dir
from tests.certs import Pki, make_pki, served_serial
from tests.issuer import Issuer
from tests.serveproc import ServeProcess, free_port

R = authz_pb2
REFRESH_SECONDS = 2.0  # authz's JWKS refresh: short, so removals and outages are seen
RECONNECT_SECONDS = 3.0
OUTAGE_SECONDS = 2 * REFRESH_SECONDS + 1
RSS_GROWTH_LIMIT = 5.0  # percent
CALL_TIMEOUT = 30.0  # generous: a stalled machine must not turn into a failed RPC
KINDS = ("Check", "BatchCheck", "GetVisibility", "forward-auth")
VISIBLE = ["ui:menu.orders"]
ELEMENTS = ["ui:menu.orders", "ui:menu.reports", "ui:menu.admin", "ui:button.delete-order"]


def _attrs(**values: str) -> struct_pb2.Struct:
    attributes = struct_pb2.Struct()
    attributes.update(values)
    return attributes


# (token name, resource, action, attributes, allowed) on the demo policy.
CHECKS = [
    ("reader", "/api/orders/1", "GET", {}, True),
    ("reader", "/api/orders/1", "DELETE", {"status": "draft"}, False),
    ("deleter", "/api/orders/1", "DELETE", {"status": "draft"}, True),
    ("deleter", "/api/orders/1", "DELETE", {"status": "shipped"}, False),
    ("analyst", "/api/reports/sales", "GET", {}, True),
    ("analyst", "/api/orders/1", "GET", {}, False),
]
FORWARDS = [("reader", "GET", "/api/orders/7", 200), ("reader", "POST", "/api/orders", 403)]


class Tokens:
    """The tokens the load uses, re-minted with the issuer's active key; `generation` counts mints."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.generation = 0
        self.current: tuple[int, dict[str, str]] = (0, {})
        self.mint()

    def mint(self) -> int:
        """Sign a fresh set with the active key; return its generation."""
        minted = {
            "reader": self.issuer.mint(sub="rita", permissions=["read:orders"], exp_in=900),
            "deleter": self.issuer.mint(sub="dan", permissions=["delete:orders"], exp_in=900),
            "analyst": self.issuer.mint(sub="ann", permissions=["read:reports"], exp_in=900),
        }
        self.generation += 1
        self.current = (self.generation, minted)  # one reference swap: readers see a whole set
        return self.generation


@dataclass
class Tally:
    """Outcomes of one kind of call."""

    calls: int = 0
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    failed: int = 0

    def add(self, seconds: float, failure: str | None) -> None:
        """Record one call (under the GIL: `list.append` and `+=` from one thread per tally)."""
        self.calls += 1
        self.seconds.append(seconds)
        if failure is not None:
            self.failed += 1
            if len(self.failures) < 10:
                self.failures.append(failure)


@dataclass
class Report:
    """What a soak run saw."""

    seconds: float
    tallies: dict[str, Tally]
    rss_kb: list[tuple[float, int]]
    rewrites: int = 0
    key_rotations: int = 0
    outages: int = 0
    cert_rotations: int = 0
    cert_served: bool = False
    exit_status: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Failed RPCs of every kind."""
        return sum(t.failed for t in self.tallies.values())

    def rss_growth(self) -> float:
        """The least-squares RSS growth over the second half of the run, in % of its mean."""
        half = [(t, kb) for t, kb in self.rss_kb if t >= self.rss_kb[-1][0] / 2] if self.rss_kb else []
        if len(half) < 3:
            return 0.0
        times, values = [t for t, _ in half], [kb for _, kb in half]
        slope = statistics.linear_regression(times, values).slope
        return 100.0 * slope * (times[-1] - times[0]) / statistics.fmean(values)

    @property
    def passed(self) -> bool:
        """No failed RPC, no rejected reload, a clean exit, the new certificate served, memory flat."""
        return (
            not self.problems
            and self.failed == 0
            and self.metrics.get("reload_rejected", 1) == 0  # every rewrite was read whole
            and self.exit_status == 0
            and self.cert_served
            and self.rss_growth() <= RSS_GROWTH_LIMIT
        )

    def table(self) -> str:
        """The summary printed at the end."""
        lines = [
            f"soak: {self.seconds:.0f} s against a real `authz serve` (TLS, forward auth, file reloads)",
            f"{'call':<14}{'calls':>9}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}",
        ]
        for kind, tally in self.tallies.items():
            p50, p99 = _percentiles(tally.seconds)
            lines.append(f"{kind:<14}{tally.calls:>9}{tally.failed:>8}{p50:>9.2f}{p99:>9.2f}")
        m = self.metrics
        lines += [
            f"policy rewrites {self.rewrites}; reloads: {m.get('reload_ok', 0):.0f} live, "
            f"{m.get('reload_unchanged', 0):.0f} unchanged, {m.get('reload_rejected', 0):.0f} rejected",
            f"JWKS: {self.key_rotations} key rotations, {self.outages} outages; fetches "
            f"{m.get('jwks_ok', 0):.0f} ok, {m.get('jwks_error', 0):.0f} failed",
            f"TLS: {self.cert_rotations} certificate rotations; the latest one served: {self.cert_served}",
        ]
        if self.rss_kb:
            first, last = self.rss_kb[0][1] / 1024, self.rss_kb[-1][1] / 1024
            lines.append(
                f"RSS: {first:.1f} MiB at start, {last:.1f} MiB at end, {len(self.rss_kb)} samples; "
                f"second-half growth {self.rss_growth():+.2f}% (limit {RSS_GROWTH_LIMIT:g}%)"
            )
        lines.append(f"exit status after SIGTERM: {self.exit_status}")
        for kind, tally in self.tallies.items():
            lines += [f"  {kind} failure: {failure}" for failure in tally.failures]
        lines += [f"  problem: {problem}" for problem in self.problems]
        lines.append("result: " + ("PASS" if self.passed else "FAIL"))
        return "\n".join(lines)


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    if len(seconds) < 2:
        return (seconds[0] * 1000, seconds[0] * 1000) if seconds else (0.0, 0.0)
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


class Load:
    """The load threads: each calls one kind back to back until `stop`, checking every answer."""

    def __init__(self, server: ServeProcess, http_port: int, pki: Pki, tokens: Tokens, stop: threading.Event):
        self.server, self.http_port, self.tokens, self.stop = server, http_port, tokens, stop
        self.credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
        self.tls = ssl.create_default_context(cafile=str(pki.ca))
        self.tallies = {kind: Tally() for kind in KINDS}
        self.generations = dict.fromkeys(KINDS, 0)  # the token generation each thread last used
        self.threads = [
            threading.Thread(target=self._grpc_loop, args=(kind,), name=f"soak-{kind}") for kind in KINDS[:3]
        ]
        self.threads.append(threading.Thread(target=self._forward_loop, name="soak-forward-auth"))

    def start(self) -> None:
        """Start every load thread."""
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        """Wait for the threads (they stop within one call of `stop`)."""
        for thread in self.threads:
            if thread.ident is not None:  # started
                thread.join(CALL_TIMEOUT + 10)

    def _grpc_loop(self, kind: str) -> None:
        calls: dict[
            str, Callable[[authz_pb2_grpc.AuthorizationServiceStub, dict[str, str], int], str | None]
        ] = {
            "Check": _check,
            "BatchCheck": _batch,
            "GetVisibility": _visibility,
        }
        call, n = calls[kind], 0
        while not self.stop.is_set():
            opened = time.monotonic()
            with grpc.secure_channel(self.server.address, self.credentials) as channel:
                stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
                while not self.stop.is_set() and time.monotonic() - opened < RECONNECT_SECONDS:
                    generation, tokens = self.tokens.current
                    started = time.monotonic()
                    try:
                        failure = call(stub, tokens, n)
                    except grpc.RpcError as exc:
                        failure = f"{exc.code().name}: {exc.details()}"
                    self.tallies[kind].add(time.monotonic() - started, failure)
                    self.generations[kind] = generation
                    n += 1

    def _forward_loop(self) -> None:
        n = 0
        while not self.stop.is_set():
            opened = time.monotonic()
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.http_port, context=self.tls, timeout=CALL_TIMEOUT
            )
            try:
                while not self.stop.is_set() and time.monotonic() - opened < RECONNECT_SECONDS:
                    generation, tokens = self.tokens.current
                    name, method, uri, expected = FORWARDS[n % len(FORWARDS)]
                    headers = {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}
                    headers["Authorization"] = f"Bearer {tokens[name]}"
                    started = time.monotonic()
                    try:
                        connection.request("GET", "/forward-auth", headers=headers)
                        response = connection.getresponse()
                        response.read()
                        failure = (
                            None if response.status == expected else f"{method} {uri}: {response.status}"
                        )
                    except (OSError, http.client.HTTPException) as exc:
                        failure = f"{method} {uri}: {exc!r}"
                        connection.close()
                    self.tallies["forward-auth"].add(time.monotonic() - started, failure)
                    self.generations["forward-auth"] = generation
                    n += 1
            finally:
                connection.close()


def _check(stub: authz_pb2_grpc.AuthorizationServiceStub, tokens: dict[str, str], n: int) -> str | None:
    name, resource, action, attrs, allowed = CHECKS[n % len(CHECKS)]
    request = R.CheckRequest(token=tokens[name], resource=resource, action=action, attributes=_attrs(**attrs))
    reply = stub.Check(request, timeout=CALL_TIMEOUT)
    if reply.allowed != allowed:
        return f"{name} {action} {resource}: allowed={reply.allowed} ({R.Reason.Name(reply.reason)})"
    return None


def _batch(stub: authz_pb2_grpc.AuthorizationServiceStub, tokens: dict[str, str], n: int) -> str | None:
    items = [
        R.BatchCheckItem(correlation_id=str(i), resource=f"/api/orders/{n % 97 + i}", action="GET")
        for i in range(10)
    ]
    items.append(R.BatchCheckItem(correlation_id="post", resource="/api/orders", action="POST"))
    reply = stub.BatchCheck(R.BatchCheckRequest(token=tokens["reader"], items=items), timeout=CALL_TIMEOUT)
    got = [(r.correlation_id, r.allowed) for r in reply.results]
    if got != [(item.correlation_id, item.action == "GET") for item in items]:
        return f"BatchCheck answers {got}"
    return None


def _visibility(stub: authz_pb2_grpc.AuthorizationServiceStub, tokens: dict[str, str], n: int) -> str | None:
    reply = stub.GetVisibility(
        R.GetVisibilityRequest(token=tokens["reader"], elements=ELEMENTS), timeout=CALL_TIMEOUT
    )
    return None if list(reply.visible) == VISIBLE else f"visible {list(reply.visible)}"


def _rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else None


def _rewrite(policies: Path, n: int) -> None:
    # A rule no checked decision depends on: a new version every second, the same answers.
    temp = policies / ".soak.csv.tmp"
    temp.write_text(f"# soak tick {n}\np, soak:tick, /soak/{n}, GET, True, allow\n")
    os.replace(temp, policies / "soak.csv")


class Rotation:
    """The issuer's key rotation as a step machine, advanced once a second by the main loop.

    authz fetches one document at a time. Of the documents served after publishing, the
    first may have been built before it; the second was not; once a third has been served,
    authz has finished taking the second. Only then are tokens signed with the new key
    (as Auth0 does: a key is published well before it signs).
    """

    def __init__(self, issuer: Issuer, tokens: Tokens, load: Load) -> None:
        self.issuer, self.tokens, self.load = issuer, tokens, load
        self.step = "idle"
        self.new_kid = self.old_kid = ""
        self.mark = 0
        self.rotations = 0

    def advance(self) -> None:
        """Publish, wait until authz fetched, sign with the new key, wait for the load to switch, remove."""
        if self.step == "publish":
            self.old_kid, self.new_kid = self.issuer.active, self.issuer.add_key()
            self.mark, self.step = self.issuer.served, "fetched?"
        elif self.step == "fetched?" and self.issuer.served >= self.mark + 3:
            self.issuer.active = self.new_kid
            self.mark, self.step = self.tokens.mint(), "switched?"
        elif self.step == "switched?" and min(self.load.generations.values()) >= self.mark:
            self.issuer.remove_key(self.old_kid)
            self.rotations += 1
            self.step = "idle"


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = {
        'authz_policy_reloads_total{result="ok"}': "reload_ok",
        'authz_policy_reloads_total{result="unchanged"}': "reload_unchanged",
        'authz_policy_reloads_total{result="rejected"}': "reload_rejected",
        'authz_jwks_fetches_total{result="ok"}': "jwks_ok",
        'authz_jwks_fetches_total{result="error"}': "jwks_error",
    }
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            found[wanted[name]] = float(value)
    return found


def run_soak(seconds: float, workdir: Path, progress: Callable[[str], None] = lambda _: None) -> Report:
    """Run the soak for `seconds` with its files in `workdir`; the report says whether it passed."""
    policies = Path(shutil.copytree(demo_policy_dir(), workdir / "policies"))
    pki = make_pki(workdir / "pki")
    issuer = Issuer()
    http_port, metrics_port = free_port(), free_port()
    server = ServeProcess(
        issuer,
        policies,
        cwd=workdir,
        env={
            "AUTHZ_TLS_CERT": str(pki.server_cert),
            "AUTHZ_TLS_KEY": str(pki.server_key),
            "AUTHZ_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "AUTHZ_FORWARD_AUTH": "true",
            "AUTHZ_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
            "AUTHZ_JWKS_REFRESH_SECONDS": str(REFRESH_SECONDS),
            "AUTHZ_DECISION_LOG": "all",
        },
    )
    stop = threading.Event()
    tokens = Tokens(issuer)
    load = Load(server, http_port, pki, tokens, stop)
    report = Report(seconds, load.tallies, [])
    try:
        with grpc.secure_channel(server.address, load.credentials) as channel:
            server.wait_serving(channel)
        _soak(seconds, server, policies, pki, issuer, tokens, load, report, progress)
        stop.set()
        load.join()
        report.metrics = _metrics(metrics_port)
        report.exit_status = server.terminate(timeout=60)
    except Exception as exc:  # reported, so the run says what it saw before the fault
        report.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        stop.set()
        load.join()
        server.kill()
        issuer.close()
    return report


def _soak(
    seconds: float,
    server: ServeProcess,
    policies: Path,
    pki: Pki,
    issuer: Issuer,
    tokens: Tokens,
    load: Load,
    report: Report,
    progress: Callable[[str], None],
) -> None:
    rotation = Rotation(issuer, tokens, load)
    cert_at = {round(seconds / 3), round(2 * seconds / 3)}
    serial = 0
    outage_until = next_at = 0.0
    outage_next = False
    started = time.monotonic()
    load.start()
    tick = 0
    while (now := time.monotonic() - started) < seconds:
        tick += 1
        _rewrite(policies, tick)
        report.rewrites += 1
        rss = _rss_kb(server.pid)
        if rss is None:
            raise RuntimeError(f"authz serve is gone:\n{server.output()[-4000:]}")
        report.rss_kb.append((now, rss))
        # Key rotations and outages take turns, one starting a second after the other ends.
        if issuer.down and now >= outage_until:
            issuer.down, next_at = False, now + 1
        elif rotation.step == "idle" and not issuer.down and now >= next_at:
            if outage_next:
                # Outages alternate between 503 answers and connections closed unanswered.
                issuer.down = "close" if report.outages % 2 else True
                outage_until = now + OUTAGE_SECONDS
                report.outages += 1
            else:
                rotation.step = "publish"
            outage_next = not outage_next
        if not issuer.down:
            rotation.advance()
        if tick in cert_at:
            serial = pki.renew_server()
            report.cert_rotations += 1
        if tick % 30 == 0:
            progress(
                f"{now:.0f} s: {sum(t.calls for t in load.tallies.values())} calls, {report.failed} failed"
            )
        time.sleep(max(0.0, started + tick - time.monotonic()))  # pacing: one tick a second
    issuer.down = False
    report.key_rotations = rotation.rotations
    # The HTTP listener looks at its files every 2 s; a new gRPC connection at once.
    deadline = time.monotonic() + 30
    while not report.cert_served and time.monotonic() < deadline:
        report.cert_served = serial == 0 or all(
            served_serial(port, pki.ca, grpc_alpn=alpn) == serial
            for port, alpn in ((int(server.address.rsplit(":", 1)[1]), True), (load.http_port, False))
        )
        if not report.cert_served:
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print the summary table; exit 1 unless it passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="authz-soak-") as workdir:
        report = run_soak(ns.seconds, Path(workdir), progress=lambda line: print(line, flush=True))
    print(report.table())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
