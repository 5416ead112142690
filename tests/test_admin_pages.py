"""GetPolicy in pages on a real server: a policy over gRPC's 4 MiB message bound read whole, over
gRPC and Connect JSON; a policy change between pages; page tokens that are not ones; page sizes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from authz.admin import paging
from authz.admin.pages import MAX_POLICY_PAGE
from authz.api.v1 import admin_pb2, admin_pb2_grpc
from authz.app import App
from authz.engine.policyfiles import parse_lines, read_policy_dir
from authz.errors import InvalidArgument
from authz.transports.grpcserver import MAX_MESSAGE_BYTES
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.policy_dirs import copy_demo
from tests.test_admin_http import post

A = admin_pb2
# Short lines: a page of MAX_POLICY_PAGE of them is within 4 MiB, so the line bound cuts those.
SHORT_LINES = 150_000
# Long lines (each about 10 KB as a message: the value and its location): bytes cut those pages.
WIDE_LINES = 600
WIDE_CHARS = 5_000

INVOICES = ["read:invoices", "/api/invoices", "GET", "True", "allow"]

Line = tuple[str, int, str, tuple[str, ...], str]


class Served:
    """An admin-enabled server with gRPC and HTTP listeners, an admin's token and the lines it serves."""

    def __init__(self, srv: RunningServer, policies: Path, issuer: Issuer) -> None:
        self.srv = srv
        self.policies = policies
        self.stub = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
        self.token = issuer.mint(sub="root", roles=["admin"])

    def files_lines(self) -> list[Line]:
        lines, findings = parse_lines(read_policy_dir(self.policies))
        assert not findings
        return [(ln.file, ln.line, ln.ptype, ln.values, ln.location) for ln in lines]

    def page(self, **fields: Any) -> Any:
        return self.stub.GetPolicy(A.GetPolicyRequest(token=self.token, **fields), timeout=60)

    def code(self, **fields: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as caught:
            self.page(**fields)
        return caught.value.code(), caught.value.details()


def _served(issuer: Issuer, policies: Path) -> Served:
    app = App(settings_for(issuer, policy_dir=str(policies), admin_enabled=True, http_listen="127.0.0.1:0"))
    app.start()
    srv = RunningServer(app)
    srv.wait_serving(timeout=120)
    return Served(srv, policies, issuer)


@pytest.fixture(scope="module")
def large(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The demo policy and 150,000 short and 600 long `g` lines (about 15 MB as one answer), built once."""
    policies = copy_demo(tmp_path_factory.mktemp("large"))
    (policies / "short.csv").write_text("".join(f"g, u{i}, r\n" for i in range(SHORT_LINES)))
    wide = "w" * WIDE_CHARS
    (policies / "wide.csv").write_text("".join(f"g, {wide}{i}, läsare-用户\n" for i in range(WIDE_LINES)))
    served = _served(issuer, policies)
    yield served
    served.srv.close()


@pytest.fixture
def small(issuer: Issuer, tmp_path: Path) -> Iterator[Served]:
    served = _served(issuer, copy_demo(tmp_path))
    yield served
    served.srv.close()


def _lines(answer: Any) -> list[Line]:
    return [(ln.file, ln.line, ln.ptype, tuple(ln.values), ln.location) for ln in answer.lines]


def read_grpc_pages(served: Served, first_size: int) -> tuple[list[Line], list[Any]]:
    """Every line, following next_page_token; later requests leave page_size 0 (the maximum)."""
    answers = [served.page(page_size=first_size)]
    while answers[-1].next_page_token:
        answers.append(served.page(page_token=answers[-1].next_page_token))
    return [line for answer in answers for line in _lines(answer)], answers


def test_a_policy_over_the_message_bound_is_read_whole_in_pages(large):
    expected = large.files_lines()
    lines, answers = read_grpc_pages(large, first_size=10**9)
    assert lines == expected
    sizes = [len(answer.lines) for answer in answers]
    assert all(answer.ByteSize() <= MAX_MESSAGE_BYTES for answer in answers), [a.ByteSize() for a in answers]
    assert {answer.version for answer in answers} == {read_policy_dir(large.policies).version}
    assert all(answer.model == answers[0].model != "" for answer in answers)
    # page_size past the bound is read as the bound; the long lines' pages are cut by bytes first.
    assert max(sizes) == MAX_POLICY_PAGE and min(sizes[:-1]) < 1_000, sizes
    assert not answers[-1].next_page_token


def test_without_page_size_an_answer_over_the_bound_is_a_clear_refusal(large):
    # Before paging, gRPC refused to send it: RESOURCE_EXHAUSTED "Sent message larger than max".
    code, details = large.code()
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert f"the policy's {len(large.files_lines()):,} lines are about" in details
    assert "ask with page_size" in details and "next_page_token" in details


def test_connect_json_pages_equal_the_files(large):
    root = f"Bearer {large.token}"
    expected = large.files_lines()
    lines: list[Line] = []
    body: dict[str, Any] = {"pageSize": 40_000}
    while True:
        status, answer = post(large.srv.http_url, "GetPolicy", body, authorization=root)
        assert status == 200, answer
        lines += [
            (ln["file"], ln["line"], ln["ptype"], tuple(ln["values"]), ln["location"])
            for ln in answer["lines"]
        ]
        if not answer.get("nextPageToken"):
            break
        body = {"pageSize": 40_000, "pageToken": answer["nextPageToken"]}
    assert lines == expected


def test_page_sizes(small):
    expected = small.files_lines()
    lines, answers = read_grpc_pages(small, first_size=7)
    assert lines == expected and [len(a.lines) for a in answers[:-1]] == [7] * (len(answers) - 1)
    assert small.code(page_size=-1)[0] == grpc.StatusCode.INVALID_ARGUMENT
    # A small policy without paging is today's answer: every line, no token.
    whole = small.page()
    assert _lines(whole) == expected and not whole.next_page_token


def test_a_policy_change_between_pages_is_aborted_never_stitched(small):
    first = small.page(page_size=5)
    before = first.version
    added = small.stub.AddRules(
        A.AddRulesRequest(
            token=small.token,
            rules=[A.PolicyRule(ptype="p", values=INVOICES)],
            expected_version=before,
        ),
        timeout=30,
    ).version
    code, details = small.code(page_token=first.next_page_token)
    assert code == grpc.StatusCode.ABORTED
    assert details == f"the policy changed since the first page: version {before} -> {added}; start again"
    status, error = post(
        small.srv.http_url,
        "GetPolicy",
        {"pageToken": first.next_page_token},
        authorization=f"Bearer {small.token}",
    )
    assert (status, error["code"]) == (409, "aborted")
    lines, _ = read_grpc_pages(small, first_size=5)
    assert lines == small.files_lines()


def _tampered(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def test_a_page_token_that_is_not_one_is_invalid_argument(small):
    genuine = small.page(page_size=5).next_page_token
    version = small.page(page_size=1).version
    lines = len(small.files_lines())
    bad: dict[str, str] = {
        "garbage": "not a token!",
        "too long": "A" * (paging.MAX_TOKEN_CHARS + 1),
        "not base64 of a token": "QUJDREVGR0hJSktMTU5PUA",
        "changed on the way": _tampered(genuine),
        "cut short": genuine[:-3],
        "another call's": paging.versions_token(3),
        "past the last line": paging.policy_token(version, lines),
        "the first line (no token)": paging.policy_token(version, 0),
        "a line far out": paging.policy_token(version, 2**62),
    }
    for why, token in bad.items():
        code, details = small.code(page_token=token)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (why, code, details)
        assert "page_token" in details, (why, details)
    status, error = post(
        small.srv.http_url, "GetPolicy", {"pageToken": "nope"}, authorization=f"Bearer {small.token}"
    )
    assert (status, error["code"]) == (400, "invalid_argument")


@pytest.mark.parametrize(
    "fields",
    [
        ["policy/1", "abc", True],  # a bool is not a line number
        ["policy/1", "abc", 1.5],
        ["policy/1", "a\nb", 3],  # a version is a digest
        ["policy/1", "abc", -1],
        ["policy/1", "abc"],
        {"kind": "policy/1"},
    ],
)
def test_the_token_codec_refuses_fields_of_another_shape(fields: Any):
    data = json.dumps(fields).encode()
    token = base64.urlsafe_b64encode(hashlib.sha256(data).digest()[:8] + data).rstrip(b"=").decode()
    with pytest.raises(InvalidArgument):
        paging.policy_cursor(token)


def test_the_token_codec_round_trips():
    assert paging.policy_cursor(paging.policy_token("0123456789ab", 42)) == ("0123456789ab", 42)
    assert paging.versions_cursor(paging.versions_token(2**63 - 1)) == 2**63 - 1
    cursor = paging.FilesCursor(7, "abc", paging.names_key(["b", "a", "a"]), 2, 10)
    assert paging.files_cursor(paging.files_token(cursor)) == cursor
    assert paging.names_key(["a", "b"]) == paging.names_key(["b", "a"]) != paging.names_key(["a"])
