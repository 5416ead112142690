"""Prometheus metrics: the definitions, the recording helpers of the RPC layer, `/metrics`.

Each App owns one CollectorRegistry, so several Apps in one process (the tests) never
share a series. The request path bumps lock-free `Tally` counts: one duration bucket per
RPC and one count per decision. prometheus_client's Counter and Histogram take a lock per
value (0.6 µs an increment, 0.9 µs an observation, a fifth of a cached Check together),
so the series a request moves are exposed by `_RpcCollector` at scrape time instead;
the library still defines the rarely moved ones and does the registry, the text format
and the HTTP listener. Whatever another component counts already (token and decision
cache lookups, reloads, JWKS fetches, dropped and failed decision log lines) or holds (the live
policy, the keys) is read from it at scrape time by `ServiceCollector`.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator, Mapping, Sized

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from authz.config import split_host_port
from authz.decision import Reason
from authz.decisionlog import DecisionLog
from authz.errors import ListenError
from authz.live import LivePolicy
from authz.metricshttp import READ_SECONDS, BoundedMetricsServer, serve
from authz.tally import Tally
from authz.tokens import KeySet, TokenCache

RPCS = ("Check", "BatchCheck", "GetVisibility", "GetPrincipal", "PlanResources")
# PolicyAdminService's, tracked only when the admin service is enabled.
ADMIN_RPCS = (
    "GetPolicy",
    "ValidatePolicy",
    "AddRules",
    "RemoveRules",
    "ReloadPolicy",
    "Evaluate",
    "ListVersions",
    "GetVersion",
    "Rollback",
)
# ForwardAuth is the HTTP listener's proxy endpoint (`forwardauth.py`), tracked when enabled.
DECIDING_RPCS = ("Check", "BatchCheck", "ForwardAuth")
# A Check answered from the caches takes about 10 µs in process, a new RS256 token a few
# hundred, a JWKS fetch for an unknown key up to its 5 s timeout.
DURATION_BUCKETS = (
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    5.0,
)
# `le` values as prometheus_client writes them: repr, and +Inf for the bucket that takes the rest.
_BUCKET_LABELS = (*map(repr, DURATION_BUCKETS), "+Inf")


class Durations:
    """A histogram of seconds over DURATION_BUCKETS: a Tally per bucket, the sum under a lock."""

    __slots__ = ("_buckets", "_lock", "_sum")

    def __init__(self) -> None:
        self._buckets = tuple(Tally() for _ in _BUCKET_LABELS)  # the last one is +Inf
        self._lock = threading.Lock()
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        # bisect_left finds the first bound >= seconds: Prometheus buckets are `le`.
        self._buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)].bump()
        with self._lock:
            self._sum += seconds

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """The `le` buckets as Prometheus counts them (each includes the ones below) and the sum."""
        total = 0
        buckets = []
        for label, tally in zip(_BUCKET_LABELS, self._buckets, strict=True):
            total += tally.value
            buckets.append((label, float(total)))
        return buckets, self._sum


class RpcMetrics:
    """One RPC's series: its durations, its decisions by reason (Check, BatchCheck), its errors."""

    def __init__(self, rpc: str, errors: Counter) -> None:
        self.rpc = rpc
        self.durations = Durations()
        self.observe = self.durations.observe
        self.decisions = {reason: Tally() for reason in Reason} if rpc in DECIDING_RPCS else {}
        self._bumps = {reason: tally.bump for reason, tally in self.decisions.items()}
        self._errors = errors

    def decided(self, reason: Reason) -> None:
        """Count one decision."""
        self._bumps[reason]()

    def decided_all(self, reasons: Iterable[Reason]) -> None:
        """Count a call's decisions."""
        bumps = self._bumps
        for reason in reasons:
            bumps[reason]()

    def failed(self, code: str) -> None:
        """Count a failed call (a prometheus_client Counter: errors are rare and their codes many)."""
        self._errors.labels(self.rpc, code).inc()


class Metrics:
    """The service's metrics in their own registry; `rpcs` holds each RPC's series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        errors = Counter(
            "authz_rpc_errors",
            "RPCs that failed, by status code (a refused token is a decision, not an error).",
            ("rpc", "code"),
            registry=self.registry,
        )
        self._errors = errors
        self.rpcs = {rpc: RpcMetrics(rpc, errors) for rpc in RPCS}
        self.registry.register(_RpcCollector(self.rpcs))

    def track(self, rpcs: Iterable[str]) -> dict[str, RpcMetrics]:
        """Add series for more RPCs (the admin service's) and return `rpcs`; call before serving.

        Before serving, because a scrape iterates `rpcs`: a series added during one would
        change the dict under it.
        """
        for rpc in rpcs:
            self.rpcs.setdefault(rpc, RpcMetrics(rpc, self._errors))
        return self.rpcs

    def watch(self, sources: Collector) -> None:
        """Report the counts and state that `sources` hold at every scrape."""
        self.registry.register(sources)


class _RpcCollector(Collector):
    def __init__(self, rpcs: dict[str, RpcMetrics]) -> None:
        self.rpcs = rpcs

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "authz_decisions",
            "Decisions made by Check and BatchCheck (a BatchCheck counts each item), by reason.",
            labels=("rpc", "outcome"),
        )
        durations = HistogramMetricFamily(
            "authz_rpc_duration_seconds",
            "Time in the service per RPC, after the transport decoded the request (any transport).",
            labels=("rpc",),
        )
        for rpc, series in self.rpcs.items():
            for reason, tally in series.decisions.items():
                # Listed from the start, at 0, but for UNSPECIFIED, which no decision has.
                if reason is not Reason.UNSPECIFIED or tally.value:
                    decisions.add_metric((rpc, reason.name), tally.value)
            buckets, total = series.durations.cumulative()
            durations.add_metric((rpc,), buckets, total)
        yield decisions
        yield durations


class ServiceCollector(Collector):
    """Reads the service's own counts and state when Prometheus scrapes."""

    def __init__(
        self, store: LivePolicy, keys: KeySet, token_cache: TokenCache, decision_log: DecisionLog
    ) -> None:
        self.store = store
        self.keys = keys
        self.token_cache = token_cache
        self.decision_log = decision_log

    def collect(self) -> Iterator[Metric]:
        """The metrics as they stand now."""
        store, keys = self.store, self.keys
        yield _by_label(
            "authz_policy_reloads",
            "Policy loads and reloads by result (the first load counts).",
            "result",
            store.reloads,
        )
        info = GaugeMetricFamily(
            "authz_policy_info", "The live policy version (always 1).", labels=("version",)
        )
        rules = GaugeMetricFamily("authz_policy_rules", "Policy lines (p rules) of the live policy.")
        if store.loaded:
            snapshot = store.current
            info.add_metric((snapshot.version,), 1)
            rules.add_metric((), len(snapshot.rules))
        yield info
        yield rules
        source = store.origin.state()
        up = GaugeMetricFamily(
            "authz_policy_source_up",
            "1 while the policy's source can be read (a directory always, a PostgreSQL store while "
            "connected); 0 during a store outage, when the last good policy keeps serving.",
            labels=("kind",),
        )
        up.add_metric((source.kind,), 1 if source.reachable else 0)
        yield up
        yield _by_label("authz_jwks_fetches", "JWKS fetch attempts by result.", "result", keys.fetches)
        yield GaugeMetricFamily("authz_jwks_keys", "Signing keys in the cached JWKS.", value=len(keys.kids()))
        tokens, decisions = self.token_cache, store.cache_stats
        counters = (
            ("authz_token_cache_hits", "Tokens found verified in the token cache.", tokens.hits),
            ("authz_token_cache_misses", "Tokens not found in the token cache.", tokens.misses),
            ("authz_decision_cache_hits", "Decisions answered by the decision cache.", decisions.hits.value),
            (
                "authz_decision_cache_misses",
                "Decision cache lookups that found nothing.",
                decisions.misses.value,
            ),
            (
                "authz_decision_log_dropped",
                "Decision log entries dropped: the writer was far behind.",
                self.decision_log.dropped,
            ),
            (
                "authz_decision_log_failed",
                "Decision log lines a handler of authz.decisions raised on (not written).",
                self.decision_log.failed,
            ),
        )
        for name, documentation, value in counters:
            yield CounterMetricFamily(name, documentation, value=value)


def _by_label(name: str, documentation: str, label: str, counts: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=(label,))
    for value, count in list(counts.items()):
        family.add_metric((value,), count)
    return family


class HttpCollector(Collector):
    """Reads the HTTP listener's refusals and open connections when Prometheus scrapes.

    `refusals` holds a count per reason (`transports.httprefusals`), `connections` the
    listener's open connections; both are the listener's own, changed on its event loop.
    """

    def __init__(self, refusals: Mapping[str, Tally], connections: Sized) -> None:
        self.refusals = refusals
        self.connections = connections

    def collect(self) -> Iterator[Metric]:
        """The listener's metrics as they stand now: every reason listed, at 0 at first."""
        yield _by_label(
            "authz_http_refusals",
            "Connections and requests the HTTP listener refused or closed to protect itself, by reason.",
            "reason",
            {reason: tally.value for reason, tally in self.refusals.items()},
        )
        yield GaugeMetricFamily(
            "authz_http_connections",
            "Connections the HTTP listener holds open (TLS handshakes included).",
            value=len(self.connections),
        )


class MetricsListener:
    """`/metrics` in the Prometheus text format over plain HTTP, on its own threads (`metricshttp`)."""

    def __init__(
        self, registry: CollectorRegistry, listen: str, *, read_seconds: float = READ_SECONDS
    ) -> None:
        self.registry = registry
        self.listen = listen
        self.read_seconds = read_seconds
        self.port = 0
        self._server: BoundedMetricsServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind (a taken port raises OSError here, not later on a thread), serve, return the port."""
        host, port = split_host_port(self.listen)
        try:
            self._server, self._thread = serve(
                self.registry, host.strip("[]"), port, read_seconds=self.read_seconds
            )
        except OSError as exc:
            raise ListenError.of("metrics_listen", self.listen, exc) from exc
        self.port = self._server.server_port
        return self.port

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
