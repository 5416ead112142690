"""Regenerate the committed protobuf / gRPC code from proto/ (the one generator script).

Run as `python scripts/gen_proto.py` (or `make proto`). `--check` regenerates into a
temporary folder and fails when the committed files differ, which CI uses.

Besides the protobuf and gRPC modules it writes `authz_connect.py` (Connect / gRPC-Web,
served over HTTP) with `protobuf=google`, so every transport shares the one set of
`_pb2` message classes instead of a second protobuf runtime.

The Python client (`clients/python`) gets its own copy of AuthorizationService's modules
under `authz_client/_api`, with the imports pointed there, so installing the client does
not install the server. Both copies register the same `authz/api/v1/authz.proto`; in one
process protobuf keeps one definition and the two modules share their message classes.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "service"
PACKAGE_DIR = Path("authz/api/v1")
GENERATED = tuple(
    f"{proto}{suffix}"
    for proto in ("authz", "admin")
    for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_connect.py")
)
CONNECT_PLUGIN = "protoc-gen-connectrpc"
CLIENT_ROOT = ROOT / "clients" / "python"
CLIENT_DIR = Path("authz_client/_api")
CLIENT_GENERATED = ("authz_pb2.py", "authz_pb2.pyi", "authz_pb2_grpc.py")
# What moves in the client's copy: the module path, written as an import and as a name.
CLIENT_REWRITES = (
    ("from authz.api.v1 import", "from authz_client._api import"),
    ("'authz.api.v1.authz_pb2'", "'authz_client._api.authz_pb2'"),
)


def connect_plugin() -> str:
    """The Connect code generator installed beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).with_name(CONNECT_PLUGIN)
    found = str(beside) if beside.exists() else shutil.which(CONNECT_PLUGIN)
    if not found:
        raise SystemExit(f"{CONNECT_PLUGIN} not found: install the dev extras (pip install -e '.[dev]')")
    return found


def generate(out_root: Path) -> None:
    """Run protoc on every .proto under proto/ with output below `out_root`."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-connectrpc={connect_plugin()}",
        f"--connectrpc_out={out_root}",
        "--connectrpc_opt=protobuf=google",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def copy_for_client(out_root: Path, client_root: Path) -> None:
    """Write the client's copy of AuthorizationService's modules from the ones in `out_root`."""
    (client_root / CLIENT_DIR).mkdir(parents=True, exist_ok=True)
    for name in CLIENT_GENERATED:
        text = (out_root / PACKAGE_DIR / name).read_text()
        for old, new in CLIENT_REWRITES:
            text = text.replace(old, new)
        (client_root / CLIENT_DIR / name).write_text(text)


def stale_files(fresh: Path, committed: Path, names: tuple[str, ...]) -> list[str]:
    """The `names` under `committed` that are missing or differ from those under `fresh`."""
    return [
        str(committed / name)
        for name in names
        if not (committed / name).exists() or not filecmp.cmp(fresh / name, committed / name, shallow=False)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if regeneration changes files")
    ns = parser.parse_args()
    if not ns.check:
        generate(OUT_ROOT)
        copy_for_client(OUT_ROOT, CLIENT_ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        copy_for_client(Path(tmp), Path(tmp))
        stale = stale_files(Path(tmp) / PACKAGE_DIR, OUT_ROOT / PACKAGE_DIR, GENERATED) + stale_files(
            Path(tmp) / CLIENT_DIR, CLIENT_ROOT / CLIENT_DIR, CLIENT_GENERATED
        )
    if stale:
        print("generated code is stale, run `make proto`: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
