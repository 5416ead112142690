"""The admin reads' answers in proto messages, cut into pages that each fit one gRPC message.

gRPC refuses to send a message over `grpcserver.MAX_MESSAGE_BYTES` (4 MiB): the caller got
RESOURCE_EXHAUSTED "Sent message larger than max" for a 100,000-line policy (8.5 MB), a
large stored version or a long history page, with nothing to ask for instead. A page is
measured as it is built (protobuf's own sizes, exact) and ends before it would pass the
bound, with a `next_page_token`. An answer without paging (page_size 0 and no token: what
callers from before paging send) is never cut, which they would read as the whole policy:
over gRPC's bound it is FAILED_PRECONDITION saying its size and to ask for pages. The HTTP
listener has no such bound on what it sends, so there it stays whole (`whole_limit` None).
"""

from __future__ import annotations

from authz.admin import paging
from authz.admin.outcomes import PolicyView
from authz.admin.paging import MAX_TOKEN_CHARS
from authz.admin.versionpages import VersionPage, choose
from authz.api.v1 import admin_pb2
from authz.engine.policyfiles import PolicyLine
from authz.errors import FailedPrecondition
from authz.sources.pgfiles import StoredFile
from authz.sources.postgres import StoredVersion, VersionInfo
from authz.transports.convert import to_timestamp
from authz.transports.grpcserver import MAX_MESSAGE_BYTES

# What one page may hold: the message bound, less room for its next_page_token.
PAGE_BYTES = MAX_MESSAGE_BYTES - 2 * MAX_TOKEN_CHARS
# Lines per GetPolicy page: the work of one call (a message built and measured per line: 0.3 s
# for these on a busy 2-core machine); lines under 80 bytes as messages reach it before the
# page's bytes do.
MAX_POLICY_PAGE = 50_000


def framed(size: int) -> int:
    """The bytes an entry of `size` bytes takes in a repeated field numbered 1 to 15: tag, length, entry."""
    return 1 + max(1, (size.bit_length() + 6) // 7) + size


def version_record(info: VersionInfo) -> admin_pb2.PolicyVersion:
    """A stored version's record as its message."""
    return admin_pb2.PolicyVersion(
        id=info.id,
        version=info.version,
        parent=info.parent,
        created_at=to_timestamp(info.created_at),
        author=info.author,
        message=info.message,
        kind=info.kind,
    )


def policy_answer(
    view: PolicyView,
    answer: admin_pb2.GetPolicyResponse,
    page_size: int,
    paged: bool,
    whole_limit: int | None,
) -> admin_pb2.GetPolicyResponse:
    """`answer` (its other fields set) with the view's lines: every one without paging, else a page."""
    lines = view.lines
    if not paged and whole_limit is None:
        answer.lines.extend(
            admin_pb2.PolicyLine(
                file=line.file, line=line.line, ptype=line.ptype, values=line.values, location=line.location
            )
            for line in lines
        )
        return answer
    if paged:
        end, bound = min(view.start + paging.page_size(page_size, MAX_POLICY_PAGE), len(lines)), PAGE_BYTES
    else:
        end, bound = len(lines), whole_limit or 0
    head = answer.ByteSize()
    index, used = _add_lines(answer, lines, view.start, end, bound - head)
    if index == view.start and index < len(lines):
        model = len(view.model_text.encode())
        raise FailedPrecondition(
            f"{lines[index].file}:{lines[index].line} and the model ({model:,} bytes) do not fit one "
            f"answer of {bound:,} bytes: read the policy's files instead"
        )
    if index < len(lines) and not paged:
        # Measured up to the bound, not built whole: the rest is estimated from the lines so far.
        about = head + used * len(lines) // index
        raise FailedPrecondition(
            f"the policy's {len(lines):,} lines are about {about:,} bytes as one answer, over gRPC's "
            f"message bound of {bound:,} bytes: ask with page_size (lines per answer, at most "
            f"{MAX_POLICY_PAGE:,}) and follow next_page_token"
        )
    if index < len(lines):
        answer.next_page_token = paging.policy_token(view.version, index)
    return answer


def _add_lines(
    answer: admin_pb2.GetPolicyResponse, lines: list[PolicyLine], start: int, end: int, room: int
) -> tuple[int, int]:
    """Add lines `start` to `end` while they fit `room` bytes; the index reached and the bytes added."""
    add = answer.lines.add
    used = 0
    for index in range(start, end):
        line = lines[index]
        entry = add(
            file=line.file, line=line.line, ptype=line.ptype, values=line.values, location=line.location
        )
        size = framed(entry.ByteSize())
        if used + size > room:
            del answer.lines[-1]
            return index, used
        used += size
    return end, used


def versions_answer(versions: list[VersionInfo], more: bool) -> admin_pb2.ListVersionsResponse:
    """ListVersions' answer: the versions that fit one page, and a token when older ones remain."""
    answer = admin_pb2.ListVersionsResponse()
    room = PAGE_BYTES
    for info in versions:
        answer.versions.append(version_record(info))
        room -= framed(answer.versions[-1].ByteSize())
        if room < 0:
            del answer.versions[-1]
            more = True
            break
    if more and answer.versions:
        answer.next_page_token = paging.versions_token(answer.versions[-1].id)
    return answer


def version_answer(
    stored: StoredVersion, names: list[str], whole_limit: int | None
) -> admin_pb2.GetVersionResponse:
    """GetVersion without paging: the version's files `names` (empty: all), whole."""
    files = stored.content.files()
    listing = [StoredFile(name, len(text.encode())) for name, text in sorted(files.items())]
    answer = version_head(stored.info, listing)
    chosen = choose(stored.info, listing, names)
    answer.files.update({file.name: files[file.name] for file in chosen})
    size = answer.ByteSize()
    if whole_limit is not None and size > whole_limit:
        raise FailedPrecondition(
            f"version #{stored.info.id}'s {len(chosen):,} files are {size:,} bytes as one answer, over "
            f"gRPC's message bound of {whole_limit:,} bytes: ask with page_size (files per answer) and "
            "follow next_page_token"
        )
    return answer


def version_head(info: VersionInfo, listing: list[StoredFile]) -> admin_pb2.GetVersionResponse:
    """GetVersion's answer with its record and file list, before any text."""
    answer = admin_pb2.GetVersionResponse(version=version_record(info))
    answer.listing.extend(admin_pb2.StoredFile(name=file.name, size=file.size) for file in listing)
    return answer


def version_room(info: VersionInfo, listing: list[StoredFile]) -> int:
    """The bytes a GetVersion page has for its parts beside its record and file list."""
    return PAGE_BYTES - version_head(info, listing).ByteSize()


def version_page_answer(page: VersionPage) -> admin_pb2.GetVersionResponse:
    """A paged GetVersion's answer."""
    answer = version_head(page.info, page.listing)
    answer.parts.extend(admin_pb2.FilePart(name=p.name, offset=p.offset, text=p.text) for p in page.parts)
    answer.next_page_token = page.next_token
    return answer
