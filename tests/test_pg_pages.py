"""The policy store's reads in pages on a real PostgreSQL and server: GetVersion of a version over
gRPC's 4 MiB message bound read whole (gRPC and Connect JSON), ListVersions across pages and
cut by bytes, and the `policy history` / `policy show` commands reading a page at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from authz.admin import paging
from authz.api.v1 import admin_pb2, admin_pb2_grpc
from authz.app import App
from authz.cli import main as cli
from authz.cli import store as cli_store
from authz.sources import changes
from authz.sources.directory import read_dir_content
from authz.transports.grpcserver import MAX_MESSAGE_BYTES
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.pgcluster import PostgresServer, temporary_database
from tests.policy_dirs import copy_demo
from tests.test_admin_http import post
from tests.test_pg_cli import authz, ok
from tests.test_pg_serve import publish

A = admin_pb2
# A file larger than one answer, with characters of two and three bytes in UTF-8.
BIG_LINES = 150_000


class Stored:
    """A store whose head (#2) is the demo plus a 5.4 MB file, and a server following it."""

    def __init__(self, dsn: str, srv: RunningServer, files: dict[str, str], issuer: Issuer) -> None:
        self.dsn = dsn
        self.srv = srv
        self.files = files
        self.stub = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
        self.token = issuer.mint(sub="root", roles=["admin"])

    def get(self, **fields: Any) -> Any:
        return self.stub.GetVersion(A.GetVersionRequest(token=self.token, **fields), timeout=60)

    def code(self, **fields: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as caught:
            self.get(**fields)
        return caught.value.code(), caught.value.details()

    def read(self, **fields: Any) -> tuple[dict[str, str], list[Any]]:
        """Every file asked for, appending each part to what came before under its name."""
        answers = [self.get(**fields)]
        while answers[-1].next_page_token:
            answers.append(self.get(**{**fields, "page_token": answers[-1].next_page_token}))
        files: dict[str, str] = {}
        for answer in answers:
            for part in answer.parts:
                # Each part starts where the file's text so far ends.
                assert part.offset == len(files.get(part.name, "").encode()), part.name
                files[part.name] = files.get(part.name, "") + part.text
        return files, answers


@pytest.fixture(scope="module")
def stored(
    postgres_server: PostgresServer, issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stored]:
    root = tmp_path_factory.mktemp("stored")
    with temporary_database(postgres_server) as dsn:
        store = publish(dsn, root / "first")
        policies = copy_demo(root / "second")
        (policies / "big.csv").write_text(
            "".join(f"g, användare-{i}-用户, läsare\n" for i in range(BIG_LINES))
        )
        (policies / "empty.csv").write_text("")
        changes.push(store, policies, None, author="ci", message="big")
        settings = settings_for(
            issuer,
            policy_store=dsn,
            admin_enabled=True,
            policy_dir=str(root / "unused"),
            http_listen="127.0.0.1:0",
        )
        app = App(settings)
        app.start()
        srv = RunningServer(app)
        try:
            srv.wait_serving(timeout=120)
            yield Stored(dsn, srv, read_dir_content(policies).files(), issuer)
        finally:
            srv.close()


def test_a_small_version_without_paging_is_todays_answer_with_its_file_list(stored):
    first = stored.get(version="1")
    assert "model.conf" in first.files and "big.csv" not in first.files and not first.parts
    assert [(f.name, f.size) for f in first.listing] == sorted(
        (name, len(text.encode())) for name, text in first.files.items()
    )


def test_a_version_over_the_bound_without_paging_is_a_clear_refusal(stored):
    # Before paging, gRPC refused to send it: RESOURCE_EXHAUSTED "Sent message larger than max".
    code, details = stored.code(version="2")
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert f"version #2's {len(stored.files)} files are" in details and "ask with page_size" in details


def test_a_version_over_the_bound_is_read_whole_in_pages(stored):
    files, answers = stored.read(version="2", page_size=100)
    assert files == stored.files
    assert all(answer.ByteSize() <= MAX_MESSAGE_BYTES for answer in answers)
    assert len(answers) >= 2 and sum(part.name == "big.csv" for a in answers for part in a.parts) >= 2
    listing = [(f.name, f.size) for f in answers[0].listing]
    assert listing == sorted((name, len(text.encode())) for name, text in stored.files.items())
    assert all([(f.name, f.size) for f in a.listing] == listing for a in answers)
    assert {a.version.id for a in answers} == {2} and not answers[-1].next_page_token
    # One part an answer, the empty file too.
    few, answers = stored.read(version="2", page_size=1, files=["empty.csv", "model.conf"])
    assert few == {name: stored.files[name] for name in ("empty.csv", "model.conf")}
    assert [len(a.parts) for a in answers] == [1, 1]


def test_the_files_asked_for_over_connect_json(stored):
    body: dict[str, Any] = {"version": "#2", "pageSize": 10, "files": ["big.csv", "model.conf"]}
    files: dict[str, str] = {}
    while True:
        status, answer = post(stored.srv.http_url, "GetVersion", body, authorization=f"Bearer {stored.token}")
        assert status == 200, answer
        for part in answer.get("parts", []):
            assert int(part.get("offset", 0)) == len(files.get(part["name"], "").encode())
            files[part["name"]] = files.get(part["name"], "") + part.get("text", "")
        if not answer.get("nextPageToken"):
            break
        body["pageToken"] = answer["nextPageToken"]
    assert files == {name: stored.files[name] for name in ("big.csv", "model.conf")}


def test_a_page_token_serves_only_the_request_it_was_made_for(stored):
    first = stored.get(version="2", page_size=5, files=["big.csv"])
    token = first.next_page_token
    assert token and [p.name for p in first.parts] == ["big.csv"]
    key = paging.names_key(["big.csv"])
    digest = first.version.version
    refused = {
        "another version": {"version": "1", "files": ["big.csv"]},
        "other files": {"version": "2", "files": ["big.csv", "model.conf"]},
        "every file": {"version": "2"},
    }
    for why, fields in refused.items():
        code, details = stored.code(page_token=token, **fields)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "another request" in details, why
    bad = {
        "garbage": "not a token",
        "another call's": paging.policy_token(digest, 3),
        "past the files": paging.files_token(paging.FilesCursor(2, digest, key, 1, 0)),
        "past the file's end": paging.files_token(paging.FilesCursor(2, digest, key, 0, 10**8)),
        "far out": paging.files_token(paging.FilesCursor(2, digest, key, 0, 2**62)),
    }
    for why, bad_token in bad.items():
        code, _ = stored.code(version="2", files=["big.csv"], page_token=bad_token)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, why
    assert stored.code(version="2", page_size=-1)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert stored.code(version="2", page_size=5, files=["nope.csv"])[0] == grpc.StatusCode.NOT_FOUND
    assert stored.code(version="2", files=["nope.csv"])[0] == grpc.StatusCode.NOT_FOUND


def test_list_versions_follows_its_pages(stored):
    first = stored.stub.ListVersions(A.ListVersionsRequest(token=stored.token, limit=1), timeout=60)
    assert [v.id for v in first.versions] == [2] and first.next_page_token
    request = A.ListVersionsRequest(token=stored.token, limit=1, page_token=first.next_page_token)
    last = stored.stub.ListVersions(request, timeout=60)
    assert [v.id for v in last.versions] == [1] and not last.next_page_token


def test_policy_show_prints_a_large_version_a_piece_at_a_time(stored):
    assert ok("policy", "show", "2", "--store", stored.dsn, "--file", "big.csv") == stored.files["big.csv"]
    shown = ok("policy", "show", "2", "--store", stored.dsn)
    assert "\n== big.csv\n" in shown and "\n== empty.csv\n\n== model.conf\n" in shown
    assert stored.files["big.csv"] in shown
    assert "has no file 'nope.csv'" in cli_error(
        "policy", "show", "2", "--store", stored.dsn, "--file", "nope.csv"
    )


def cli_error(*args: str) -> str:
    result = authz(*args)
    assert result.returncode == 2, result.stdout
    return result.stderr


def test_list_versions_pages_are_cut_by_bytes_and_history_follows_them(
    pg_dsn, make_server, issuer, tmp_path, monkeypatch, capsys
):
    publish(pg_dsn, tmp_path)
    import psycopg

    # 600 versions with the demo's content (the head stays the demo) and long authors and
    # messages of four-byte characters: 8 KB a record, 4.8 MB a page of all of them.
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "INSERT INTO authz_policy_versions (version, parent_id, author, message)"
            " SELECT v.version, v.id, repeat('𝄞', 1000), repeat('𝄞', 1000) || i"
            " FROM authz_policy_versions v, generate_series(1, 600) i ORDER BY i"
        )
        conn.execute(
            "INSERT INTO authz_policy_files SELECT v.id, f.name, f.content"
            " FROM authz_policy_versions v, authz_policy_files f WHERE v.id > 1 AND f.version_id = 1"
        )
    srv = make_server(
        settings_for(issuer, policy_store=pg_dsn, admin_enabled=True, policy_dir=str(tmp_path / "unused"))
    )
    stub = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
    token = issuer.mint(sub="root", roles=["admin"])
    answers = [stub.ListVersions(A.ListVersionsRequest(token=token, limit=10_000), timeout=60)]
    while answers[-1].next_page_token:
        request = A.ListVersionsRequest(token=token, limit=10_000, page_token=answers[-1].next_page_token)
        answers.append(stub.ListVersions(request, timeout=60))
    assert [v.id for a in answers for v in a.versions] == list(range(601, 0, -1))
    assert len(answers) == 2 and all(a.ByteSize() <= MAX_MESSAGE_BYTES for a in answers)
    bad = A.ListVersionsRequest(token=token, page_token=paging.policy_token("abc", 1))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListVersions(bad, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # `policy history` reads pages (of 7 here) as it prints.
    monkeypatch.setattr(cli_store, "HISTORY_PAGE", 7)
    assert cli.main(["policy", "history", "--store", pg_dsn, "--limit", "0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == [f"#{i}" for i in range(601, 0, -1)]
    assert cli.main(["policy", "history", "--store", pg_dsn, "--limit", "20", "--before", "500"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == [f"#{i}" for i in range(499, 479, -1)]


def test_history_as_json_is_one_list(stored):
    records = json.loads(ok("policy", "history", "--store", stored.dsn, "--format", "json"))
    assert [r["id"] for r in records] == [2, 1] and records[0]["message"] == "big"
    assert (
        json.loads(ok("policy", "history", "--store", stored.dsn, "--format", "json", "--before", "1")) == []
    )
