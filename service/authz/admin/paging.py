"""Paging of the admin reads (AIP-158): page sizes and the opaque page tokens.

A page token says where the next page starts and what the read was made for (a policy
version, a stored version and its chosen files): JSON behind an 8-byte SHA-256 check, in
URL-safe base64. It holds no secret and grants nothing (a caller who forges one could read
the same pages by asking), so it is not signed; the check finds a token cut or changed on its
way, whose shifted offset would otherwise skip lines without a word. Every field is checked
again against the data before it is used: a token is the caller's text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import astuple, dataclass

from authz.errors import InvalidArgument

# The longest token accepted; the ones made here are under 200 characters.
MAX_TOKEN_CHARS = 512
_CHECK_BYTES = 8
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
# A token's text fields: policy digests and a hash of file names.
_WORD = re.compile(r"[A-Za-z0-9]{1,64}")
# The store's ids are bigint; offsets and indexes are checked against the data.
_MAX_INT = 2**63 - 1
# Each read's tokens, with the version of their layout.
_POLICY = "policy/1"
_VERSIONS = "versions/1"
_FILES = "files/1"
_CALLS = {_POLICY: "GetPolicy", _VERSIONS: "ListVersions", _FILES: "GetVersion"}


@dataclass(frozen=True)
class FilesCursor:
    """Where GetVersion's next page starts: file `index` of those asked for, at character `offset`."""

    version_id: int
    digest: str
    names_key: str  # names_key() of the files asked for
    index: int
    offset: int


def page_size(asked: int, maximum: int) -> int:
    """A request's page size: 0 is `maximum`, and so is more (AIP-158); negative is refused."""
    if asked < 0:
        raise InvalidArgument(f"page_size {asked} is negative: give 1 to {maximum}, or 0 for {maximum}")
    return min(asked or maximum, maximum)


def policy_token(version: str, line: int) -> str:
    """GetPolicy's token for the page from `line` (an index into the policy's lines) of `version`."""
    return _encode(_POLICY, version, line)


def policy_cursor(token: str) -> tuple[str, int]:
    """The policy version and line index a GetPolicy token names."""
    version, line = _decode(token, _POLICY, (str, int))
    return str(version), int(line)


def versions_token(before: int) -> str:
    """ListVersions' token for the versions older than the id `before`."""
    return _encode(_VERSIONS, before)


def versions_cursor(token: str) -> int:
    """The id a ListVersions token continues below."""
    (before,) = _decode(token, _VERSIONS, (int,))
    return int(before)


def files_token(cursor: FilesCursor) -> str:
    """GetVersion's token for the page from `cursor`."""
    return _encode(_FILES, *astuple(cursor))


def files_cursor(token: str) -> FilesCursor:
    """Where a GetVersion token continues."""
    version_id, digest, key, index, offset = _decode(token, _FILES, (int, str, str, int, int))
    return FilesCursor(int(version_id), str(digest), str(key), int(index), int(offset))


def names_key(names: list[str]) -> str:
    """A short digest of a set of file names, so a token is used only with the names it was made for."""
    text = "\n".join(sorted(set(names)))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _encode(kind: str, *fields: str | int) -> str:
    data = json.dumps([kind, *fields], separators=(",", ":")).encode()
    packed = hashlib.sha256(data).digest()[:_CHECK_BYTES] + data
    return base64.urlsafe_b64encode(packed).rstrip(b"=").decode("ascii")


def _decode(token: str, kind: str, shape: tuple[type, ...]) -> list[str | int]:
    """The fields of a `kind` token, each of the type `shape` gives; InvalidArgument for anything else."""
    refused = InvalidArgument(
        f"page_token is not a page token of {_CALLS[kind]}: pass the previous answer's next_page_token "
        "unchanged, with the same request"
    )
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN.fullmatch(token):
        raise refused
    try:
        packed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = packed[_CHECK_BYTES:]
        if hashlib.sha256(data).digest()[:_CHECK_BYTES] != packed[:_CHECK_BYTES]:
            raise refused
        fields = json.loads(data)
    except (binascii.Error, ValueError):
        raise refused from None
    if not isinstance(fields, list) or len(fields) != len(shape) + 1 or fields[0] != kind:
        raise refused
    values: list[str | int] = fields[1:]
    for value, expected in zip(values, shape, strict=True):
        # bool is an int to isinstance; neither it nor a float is a number here.
        if expected is int and not (type(value) is int and 0 <= value <= _MAX_INT):
            raise refused
        if expected is str and not (type(value) is str and _WORD.fullmatch(value)):
            raise refused
    return values
