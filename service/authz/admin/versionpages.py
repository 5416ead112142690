"""GetVersion's pages: a stored version's files read in parts that each fit one answer.

The files asked for go in name order. An answer takes whole files while they fit, then the
start of the next one; a file larger than what is left continues in the next answers, each
part starting where the last one ended (at a character's boundary). So appending each part's
text under its name rebuilds every file, and a page reads from the store only the text it
sends (`sources.pgfiles`), never the whole version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authz.admin import paging
from authz.admin.paging import FilesCursor
from authz.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from authz.printable import escaped
from authz.sources import pgfiles
from authz.sources.pgfiles import MAX_VERSION_BYTES, MAX_VERSION_FILES, StoredFile
from authz.sources.postgres import PostgresStore, VersionInfo, version_ref

if TYPE_CHECKING:
    from authz.sources.pgconnection import Connection

# Files (or parts of one) per answer: a version's every file.
MAX_FILES_PAGE = MAX_VERSION_FILES
# What a part adds to its name and text in an answer, at most: the tags and lengths of the
# part, its name and text, and its offset (1 + 5, 1 + 5, 1 + 5, 1 + 10).
PART_FRAMING = 32
# A part is not begun in less room than this: the next answer has more.
MIN_PART_BYTES = 1024


@dataclass(frozen=True)
class Part:
    """Text of a file from byte `offset`."""

    name: str
    offset: int
    text: str


@dataclass(frozen=True)
class VersionPage:
    """One answer of a paged GetVersion: the version, its every file, the parts this page sends."""

    info: VersionInfo
    listing: list[StoredFile]
    parts: list[Part]
    next_token: str  # empty on the last page


def read_page(
    store: PostgresStore,
    ref: str,
    names: list[str],
    token: str,
    page_size: int,
    room: Callable[[VersionInfo, list[StoredFile]], int],
) -> VersionPage:
    """The page of version `ref`'s files `names` (empty: all) from `token` (empty: the first),
    of at most `page_size` parts and `room(info, listing)` bytes of parts."""
    cursor = paging.files_cursor(token) if token else None
    if len(names) > MAX_VERSION_FILES:
        raise InvalidArgument(f"{len(names)} files asked for: a version has at most {MAX_VERSION_FILES}")
    key = paging.names_key(names)
    with store.session() as conn:
        info = store.find(conn, ref) if cursor is None else _token_version(store, conn, ref, key, cursor)
        listing = pgfiles.list_files(conn, info)
        chosen = choose(info, listing, names)
        index, offset = (0, 0) if cursor is None else (cursor.index, cursor.offset)
        if index >= len(chosen) or offset > MAX_VERSION_BYTES:
            raise InvalidArgument("page_token points past the files asked for: start again without it")
        parts, index, offset = _parts(conn, info, chosen, index, offset, page_size, room(info, listing))
    following = (
        paging.files_token(FilesCursor(info.id, info.version, key, index, offset))
        if index < len(chosen)
        else ""
    )
    return VersionPage(info, listing, parts, following)


def _token_version(
    store: PostgresStore, conn: Connection, ref: str, key: str, cursor: FilesCursor
) -> VersionInfo:
    """The version a token was made for, when the request names it and the same files."""
    named = version_ref(ref)
    if named != (cursor.version_id if isinstance(named, int) else cursor.digest) or key != cursor.names_key:
        raise InvalidArgument(
            "page_token was made for another request: repeat the first request's version and files with it"
        )
    info = store.info(conn, "v.id = %s", (cursor.version_id,))
    if info is None:
        raise NotFound(f"version #{cursor.version_id} is no longer in the policy store {store.location}")
    if info.version != cursor.digest:
        # Only a hand-written change to the table can do this: stored versions are never rewritten.
        raise Conflict(f"{pgfiles.describe(info)} changed since the first page: start again")
    return info


def choose(info: VersionInfo, listing: list[StoredFile], names: list[str]) -> list[StoredFile]:
    """The files of `listing` named in `names` (empty: all), in its order; NotFound for a name it lacks."""
    if not names:
        return listing
    wanted = set(names)
    chosen = [file for file in listing if file.name in wanted]
    if len(chosen) < len(wanted):
        missing = sorted(wanted - {file.name for file in chosen})
        present = ", ".join(escaped(file.name) for file in listing[:20])
        raise NotFound(
            f"{pgfiles.describe(info)} has no file {escaped(missing[0])}: it has {present}"
            + (" ..." if len(listing) > 20 else "")
        )
    return chosen


def _parts(
    conn: Connection,
    info: VersionInfo,
    chosen: list[StoredFile],
    index: int,
    offset: int,
    page_size: int,
    room: int,
) -> tuple[list[Part], int, int]:
    """The parts from file `index` at character `offset` that fit `room`; where the next page starts."""
    parts: list[Part] = []
    whole: list[str] = []  # files sent whole, read in one statement after the plan
    while index < len(chosen) and len(parts) < page_size:
        file = chosen[index]
        framing = len(file.name.encode()) + PART_FRAMING
        if offset == 0 and file.size + framing <= room:
            parts.append(Part(file.name, 0, ""))
            whole.append(file.name)
            room -= file.size + framing
            index += 1
            continue
        if room - framing < MIN_PART_BYTES:
            if parts:
                break
            raise FailedPrecondition(
                f"{pgfiles.describe(info)} lists {len(chosen)} files whose names leave no room for their "
                "text in one answer: read it with `authz policy show` on the store"
            )
        piece = pgfiles.text_part(conn, info.id, file.name, offset, room - framing)
        if offset and piece.offset >= file.size:
            raise InvalidArgument("page_token points past the end of its file: start again without it")
        parts.append(Part(file.name, piece.offset, piece.text))
        room -= framing + piece.size
        if piece.offset + piece.size < file.size:
            offset += len(piece.text)
            break
        index, offset = index + 1, 0
    texts = pgfiles.texts(conn, info.id, whole)
    # A file is sent whole or in a part on one page, never both.
    return [Part(p.name, 0, texts[p.name]) if p.name in texts else p for p in parts], index, offset
