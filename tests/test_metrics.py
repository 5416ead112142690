"""Prometheus metrics: real servers, real RPCs over gRPC and Connect, `/metrics` scraped over HTTP."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2
from authz.app import App
from authz.config import load_settings
from authz.errors import ConfigError, PolicyLoadError
from authz.metrics import Durations
from authz.tally import Tally
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.policy_dirs import copy_demo

Key = tuple[str, frozenset[tuple[str, str]]]
Samples = dict[Key, float]
CONNECT_CHECK = "/authz.api.v1.AuthorizationService/Check"


def scrape(port: int) -> Samples:
    """Every sample on `/metrics`, keyed by sample name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series is not there yet."""
    return samples.get(labelled(name, **labels), 0.0)


def moved(before: Samples, after: Samples) -> Samples:
    """The samples whose value changed, with the change."""
    keys = set(before) | set(after)
    return {
        key: after.get(key, 0.0) - before.get(key, 0.0) for key in keys if after.get(key) != before.get(key)
    }


def labelled(name: str, **labels: str) -> Key:
    """The key of one sample."""
    return (name, frozenset(labels.items()))


def connect_check(http_url: str, token: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        http_url + CONNECT_CHECK,
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def metered(make_server: Callable[..., RunningServer], issuer: Issuer) -> RunningServer:
    """A fresh server with gRPC, Connect and `/metrics` on free loopback ports."""
    return make_server(settings_for(issuer, http_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0"))


def test_decisions_errors_and_cache_lookups_move_by_exactly_the_calls_made(
    metered: RunningServer, issuer: Issuer
) -> None:
    port = metered.app.metrics_port
    reader = issuer.mint(sub="metrics-reader", permissions=["read:orders"])
    expired = issuer.mint(sub="metrics-expired", permissions=["read:orders"], exp_in=-3600)
    auth = [("authorization", f"Bearer {reader}")]
    before = scrape(port)

    read = authz_pb2.CheckRequest(resource="/api/orders/1", action="GET")
    metered.stub.Check(read, metadata=auth)  # token miss, decision miss
    metered.stub.Check(read, metadata=auth)  # token hit, decision hit
    metered.stub.Check(authz_pb2.CheckRequest(resource="/api/orders", action="POST"), metadata=auth)
    metered.stub.Check(authz_pb2.CheckRequest(token="not-a-jwt", resource="/api/orders/1", action="GET"))
    metered.stub.Check(authz_pb2.CheckRequest(token=expired, resource="/api/orders/1", action="GET"))
    with pytest.raises(grpc.RpcError) as invalid:
        metered.stub.Check(authz_pb2.CheckRequest(resource="", action="GET"), metadata=auth)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    items = [
        authz_pb2.BatchCheckItem(correlation_id="a", resource="/api/orders/1", action="GET"),
        authz_pb2.BatchCheckItem(correlation_id="b", resource="/api/orders/2", action="GET"),
        authz_pb2.BatchCheckItem(correlation_id="c", resource="/api/reports/x", action="GET"),
    ]
    metered.stub.BatchCheck(authz_pb2.BatchCheckRequest(items=items), metadata=auth)
    with pytest.raises(grpc.RpcError) as too_many:
        metered.stub.BatchCheck(authz_pb2.BatchCheckRequest(items=items * 40), metadata=auth)
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Connect reaches the same counters.
    status, body = connect_check(metered.http_url, reader, {"resource": "/api/orders/1", "action": "GET"})
    assert (status, body["allowed"]) == (200, True)
    status, body = connect_check(metered.http_url, reader, {"resource": "", "action": "GET"})
    assert (status, body["code"]) == (400, "invalid_argument")

    after = scrape(port)
    changes = moved(before, after)
    assert value(after, "authz_rpc_duration_seconds_bucket", rpc="Check", le="+Inf") == 8 + value(
        before, "authz_rpc_duration_seconds_bucket", rpc="Check", le="+Inf"
    )
    assert changes.pop(labelled("authz_rpc_duration_seconds_sum", rpc="Check")) > 0
    assert changes.pop(labelled("authz_rpc_duration_seconds_sum", rpc="BatchCheck")) > 0
    timing = {key for key in changes if key[0] == "authz_rpc_duration_seconds_bucket"}
    created = {key for key in changes if key[0].endswith("_created")}  # a new series' start time
    assert {name for name, _ in created} == {"authz_rpc_errors_created"}
    assert {key: changes[key] for key in set(changes) - timing - created} == {
        labelled("authz_decisions_total", rpc="Check", outcome="ALLOWED"): 3,
        labelled("authz_decisions_total", rpc="Check", outcome="NO_MATCHING_RULE"): 1,
        labelled("authz_decisions_total", rpc="Check", outcome="TOKEN_MALFORMED"): 1,
        labelled("authz_decisions_total", rpc="Check", outcome="TOKEN_EXPIRED"): 1,
        labelled("authz_decisions_total", rpc="BatchCheck", outcome="ALLOWED"): 2,
        labelled("authz_decisions_total", rpc="BatchCheck", outcome="NO_MATCHING_RULE"): 1,
        labelled("authz_rpc_errors_total", rpc="Check", code="INVALID_ARGUMENT"): 2,
        labelled("authz_rpc_errors_total", rpc="BatchCheck", code="INVALID_ARGUMENT"): 1,
        # Every call is timed, the failed ones too.
        labelled("authz_rpc_duration_seconds_count", rpc="Check"): 8,
        labelled("authz_rpc_duration_seconds_count", rpc="BatchCheck"): 2,
        # The requests refused as invalid stop before the token is looked at. The reader's
        # token is new once, then found 4 times; the malformed and the expired one are new.
        labelled("authz_token_cache_hits_total"): 4,
        labelled("authz_token_cache_misses_total"): 3,
        # Decided once each: GET /api/orders/1, POST /api/orders, /api/orders/2, /api/reports/x;
        # GET /api/orders/1 comes from the cache the 3 times it is asked again.
        labelled("authz_decision_cache_hits_total"): 3,
        labelled("authz_decision_cache_misses_total"): 4,
    }


def test_admin_rpcs_are_timed_and_their_errors_counted_when_the_admin_service_is_on(
    make_server: Callable[..., RunningServer], metered: RunningServer, issuer: Issuer, tmp_path: Path
) -> None:
    admin_on = make_server(
        settings_for(
            issuer,
            policy_dir=str(copy_demo(tmp_path)),
            admin_enabled=True,
            http_listen="127.0.0.1:0",
            metrics_listen="127.0.0.1:0",
        )
    )
    before = scrape(admin_on.app.metrics_port)
    # Listed from the start, at 0, like the decision RPCs.
    assert labelled("authz_rpc_duration_seconds_count", rpc="GetPolicy") in before
    root = issuer.mint(sub="root", roles=["admin"])
    admin_pb2_grpc.PolicyAdminServiceStub(admin_on.channel).GetPolicy(admin_pb2.GetPolicyRequest(token=root))
    reader = issuer.mint(permissions=["read:orders"])
    refused = urllib.request.Request(
        admin_on.http_url + "/authz.api.v1.PolicyAdminService/ReloadPolicy",
        data=json.dumps({"token": reader}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(refused, timeout=5)
    assert denied.value.code == 403

    changes = moved(before, scrape(admin_on.app.metrics_port))
    assert changes[labelled("authz_rpc_duration_seconds_count", rpc="GetPolicy")] == 1
    assert changes[labelled("authz_rpc_duration_seconds_count", rpc="ReloadPolicy")] == 1
    assert changes[labelled("authz_rpc_errors_total", rpc="ReloadPolicy", code="PERMISSION_DENIED")] == 1
    # The admin's own authorisation is not a Check RPC.
    assert labelled("authz_rpc_duration_seconds_count", rpc="Check") not in changes
    # Without the admin service, its RPCs are not listed at all.
    assert not any(dict(labels).get("rpc") == "GetPolicy" for _, labels in scrape(metered.app.metrics_port))


def test_a_reload_replaces_the_policy_version_label(
    make_server: Callable[..., RunningServer], issuer: Issuer, tmp_path: Path
) -> None:
    policies = copy_demo(tmp_path)
    running = make_server(settings_for(issuer, policy_dir=str(policies), metrics_listen="127.0.0.1:0"))
    running.app.reloader.stop()  # only the explicit reloads below, none of the watcher's
    port, store = running.app.metrics_port, running.app.store
    first = store.current.version
    before = scrape(port)
    assert [key for key in before if key[0] == "authz_policy_info"] == [
        labelled("authz_policy_info", version=first)
    ]
    assert value(before, "authz_policy_info", version=first) == 1
    assert value(before, "authz_policy_reloads_total", result="ok") == 1  # the first load
    rules = value(before, "authz_policy_rules")
    assert rules == len(store.current.rules) > 0

    with (policies / "policy.csv").open("a") as policy:
        policy.write("p, read:invoices, /api/invoices/:id, GET, True, allow\n")
    second = store.reload().version
    store.reload()  # nothing changed since
    (policies / "broken.csv").write_text("p, read:orders\n")
    with pytest.raises(PolicyLoadError):
        store.reload()

    after = scrape(port)
    assert second != first
    assert [key for key in after if key[0] == "authz_policy_info"] == [
        labelled("authz_policy_info", version=second)
    ]
    assert value(after, "authz_policy_rules") == rules + 1
    for result, count in (("ok", 2), ("unchanged", 1), ("rejected", 1)):
        assert value(after, "authz_policy_reloads_total", result=result) == count


def test_jwks_fetches_are_counted_by_result(metered: RunningServer, issuer: Issuer) -> None:
    keys = metered.app.keys
    before = scrape(metered.app.metrics_port)
    assert value(before, "authz_jwks_fetches_total", result="ok") >= 1  # at start
    issuer.down = True
    try:
        assert not keys.refresh()
    finally:
        issuer.down = False
    assert keys.refresh()
    after = scrape(metered.app.metrics_port)
    assert (
        value(after, "authz_jwks_fetches_total", result="error")
        - value(before, "authz_jwks_fetches_total", result="error")
        == 1
    )
    assert (
        value(after, "authz_jwks_fetches_total", result="ok")
        - value(before, "authz_jwks_fetches_total", result="ok")
        == 1
    )
    assert value(after, "authz_jwks_keys") == len(issuer.jwks()["keys"]) > 0


def test_visibility_and_principal_are_timed(metered: RunningServer, issuer: Issuer) -> None:
    token = issuer.mint(sub="metrics-ui", permissions=["read:orders"])
    before = scrape(metered.app.metrics_port)
    metered.stub.GetVisibility(authz_pb2.GetVisibilityRequest(token=token, elements=["menu.orders"]))
    metered.stub.GetPrincipal(authz_pb2.GetPrincipalRequest(token=token))
    with pytest.raises(grpc.RpcError):
        metered.stub.GetVisibility(authz_pb2.GetVisibilityRequest(token=token))  # neither elements nor prefix
    after = scrape(metered.app.metrics_port)
    for rpc, calls in (("GetVisibility", 2), ("GetPrincipal", 1)):
        key = "authz_rpc_duration_seconds_count"
        assert value(after, key, rpc=rpc) - value(before, key, rpc=rpc) == calls
    assert value(after, "authz_rpc_errors_total", rpc="GetVisibility", code="INVALID_ARGUMENT") == 1


def test_a_taken_metrics_port_fails_the_start_and_stop_closes_the_listener(issuer: Issuer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        app = App(settings_for(issuer, metrics_listen=address))
        with pytest.raises(OSError, match=f"cannot listen on {address} \\(metrics_listen\\)"):
            app.start()

    app = App(settings_for(issuer, metrics_listen="127.0.0.1:0"))
    app.start()
    try:
        assert value(scrape(app.metrics_port), "authz_policy_reloads_total", result="ok") == 1
    finally:
        app.stop(grace=1)
    with pytest.raises(urllib.error.URLError):
        scrape(app.metrics_port)


def test_metrics_listen_with_several_workers_is_refused() -> None:
    flags = {
        "issuer": "https://tenant.example.com/",
        "audience": "https://api.example.com",
        "metrics_listen": "127.0.0.1:9464",
        "workers": "2",
    }
    with pytest.raises(ConfigError) as refused:
        load_settings(flags, env={})
    assert len(refused.value.problems) == 1
    assert "metrics_listen" in refused.value.problems[0] and "workers 2" in refused.value.problems[0]
    assert load_settings({**flags, "workers": "1"}, env={}).metrics_listen == "127.0.0.1:9464"
    with pytest.raises(ConfigError, match="metrics_listen 'nine' is not host:port"):
        load_settings({**flags, "workers": "1", "metrics_listen": "nine"}, env={})


def test_a_tally_loses_no_bump_across_threads() -> None:
    tally = Tally()

    def bump() -> None:
        for _ in range(20_000):
            tally.bump()

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tally.value == 160_000


def test_durations_count_a_bound_in_its_own_bucket_and_the_rest_in_inf() -> None:
    durations = Durations()
    for seconds in (0.0001, 0.00002, 10.0):
        durations.observe(seconds)
    buckets, total = durations.cumulative()
    counts = dict(buckets)
    assert (counts["2.5e-05"], counts["5e-05"], counts["0.0001"], counts["5.0"], counts["+Inf"]) == (
        1,
        1,
        2,
        2,
        3,
    )
    assert [label for label, _ in buckets][-1] == "+Inf"
    assert total == pytest.approx(10.00012)


def test_the_start_up_lines_name_the_ports_bound(make_server, issuer, caplog):
    # With port 0 the OS picks the port: the lines said 127.0.0.1:0.
    caplog.set_level(logging.INFO, logger="authz")
    srv = make_server(settings_for(issuer, http_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0"))
    lines = [r.getMessage() for r in caplog.records if r.name == "authz"]
    app = srv.app
    assert any(line.startswith(f"authz listening on 127.0.0.1:{app.port} ") for line in lines), lines
    assert f"authz HTTP (Connect, gRPC-Web) listening on 127.0.0.1:{app.http_port}" in lines
    assert f"authz metrics (Prometheus) on http://127.0.0.1:{app.metrics_port}/metrics" in lines
