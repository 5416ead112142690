"""A stored version's files in pieces: their names and sizes, some of them whole, or a part of one.

A version may hold 128 MiB of files (`postgres.MAX_VERSION_BYTES`), far more than one admin
answer (4 MiB) or a command's memory needs to hold: GetVersion's pages and `authz policy
show` read the file list first, then only the text they print or send. Sizes are PostgreSQL's
`octet_length`, read from the stored value's header (no decompression); a part is cut by
characters in the query and by bytes here, always at a character's boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authz.engine.policyfiles import MAX_POLICY_BYTES, MAX_POLICY_FILES
from authz.errors import NotFound, PolicyLoadError
from authz.printable import escaped

if TYPE_CHECKING:
    from authz.sources.pgconnection import Connection
    from authz.sources.postgres import VersionInfo

# A stored version: its files (a policy directory's, suites included) and their bytes in all
# (names and texts in UTF-8): the policy's own bounds and as much again for its suites.
MAX_VERSION_FILES = 2 * MAX_POLICY_FILES
MAX_VERSION_BYTES = 2 * MAX_POLICY_BYTES
# Count and bytes first, the rows only within the bounds: a swollen version (rows added by
# hand) is refused before its list is fetched, as its files are (`postgres._FILES`). By code
# point, as Python sorts names, whatever the database's collation.
_LIST = (
    "SELECT s.n, s.bytes, f.name, octet_length(f.content) FROM (SELECT count(*) AS n,"
    " coalesce(sum(octet_length(name) + octet_length(content)), 0) AS bytes"
    " FROM authz_policy_files WHERE version_id = %(id)s) s"
    " LEFT JOIN authz_policy_files f ON f.version_id = %(id)s"
    ' AND s.n <= %(files)s AND s.bytes <= %(bytes)s ORDER BY f.name COLLATE "C"'
)
# The bytes before the part (its offset in UTF-8) and the part, `chars` characters at most.
_PART = (
    "SELECT octet_length(substr(content, 1, %(start)s::int)),"
    " substr(content, %(start)s::int + 1, %(chars)s::int)"
    " FROM authz_policy_files WHERE version_id = %(id)s AND name = %(name)s"
)
_WHOLE = "SELECT name, content FROM authz_policy_files WHERE version_id = %s AND name = ANY(%s)"


@dataclass(frozen=True)
class StoredFile:
    """A stored file's name and the bytes of its text in UTF-8."""

    name: str
    size: int


@dataclass(frozen=True)
class TextPart:
    """Text of a file from byte `offset`; `size` is its own bytes in UTF-8."""

    offset: int
    text: str
    size: int


def describe(info: VersionInfo) -> str:
    """`stored version #N (DIGEST)`, for errors and logs (the digest column is the writer's word)."""
    return f"stored version #{info.id} ({escaped(info.version)})"


def check_version_size(where: str, count: int, size: int) -> None:
    """Raise PolicyLoadError when a version's files are over the store's bounds: they are not read."""
    if count > MAX_VERSION_FILES or size > MAX_VERSION_BYTES:
        raise PolicyLoadError(
            f"{where} has {count} files of {size} bytes in all, over the store's limit of "
            f"{MAX_VERSION_FILES} files and {MAX_VERSION_BYTES} bytes: it was not read"
        )


def list_files(conn: Connection, info: VersionInfo) -> list[StoredFile]:
    """The version's files by name, with their sizes; PolicyLoadError past the store's bounds."""
    bounds = {"id": info.id, "files": MAX_VERSION_FILES, "bytes": MAX_VERSION_BYTES}
    rows = conn.execute(_LIST, bounds).fetchall()
    count, size = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
    check_version_size(describe(info), count, size)
    return [StoredFile(str(name), int(length)) for _, _, name, length in rows if name is not None]


def texts(conn: Connection, version_id: int, names: list[str]) -> dict[str, str]:
    """The whole text of each of `names` (files of the version); NotFound when one is not there."""
    if not names:
        return {}
    rows = conn.execute(_WHOLE, (version_id, names)).fetchall()
    found = {str(name): str(text) for name, text in rows}
    if len(found) < len(set(names)):
        missing = sorted(set(names) - set(found))
        raise NotFound(f"the stored version has no file {escaped(missing[0])}")
    return found


def text_part(conn: Connection, version_id: int, name: str, start: int, max_bytes: int) -> TextPart:
    """The text of `name` from character `start`, at most `max_bytes` bytes of UTF-8 (and at least one
    character when `max_bytes` is 4 or more and the file goes on); NotFound when the file is not there."""
    # A character is at least one byte: `max_bytes` characters hold every part that fits.
    row = conn.execute(_PART, {"id": version_id, "name": name, "start": start, "chars": max_bytes}).fetchone()
    if row is None:
        raise NotFound(f"the stored version has no file {escaped(name)}")
    offset, text = int(row[0]), str(row[1])
    data = text.encode()
    if len(data) > max_bytes:
        # The prefix of valid UTF-8 lacks at most the end of its last character: dropped.
        data = data[:max_bytes]
        text = data.decode("utf-8", "ignore")
        data = text.encode()
    return TextPart(offset, text, len(data))


def text_pieces(conn: Connection, version_id: int, file: StoredFile, piece_bytes: int) -> Iterator[str]:
    """A stored file's text in pieces of at most `piece_bytes` bytes (4 or more), in order."""
    start = done = 0
    while done < file.size:
        part = text_part(conn, version_id, file.name, start, piece_bytes)
        if not part.text:
            raise NotFound(f"the stored file {escaped(file.name)} ends before its size")
        yield part.text
        start += len(part.text)
        done = part.offset + part.size
