"""Reading a policy directory: `model.conf`, the `*.csv` policy files and their version."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from authz.errors import PolicyLoadError
from authz.findings import MAX_FINDINGS, Finding

MODEL_FILE = "model.conf"
# Policy files (`*.csv`) of one policy: each is opened on every reload, whatever it holds.
MAX_POLICY_FILES = 1_000
# Lines of the policy files together (comments and blank ones too): a snapshot holds about 600
# bytes a policy line, and 64 MiB of `g,a,b` lines would be 8 million of them.
MAX_POLICY_LINES = 1_000_000
# model.conf and the policy files together, in UTF-8: a 100,000-line policy is about 6 MB. Read
# with this bound, a policy file that is a link to /dev/zero or a runaway log is refused, not
# read until memory runs out.
MAX_POLICY_BYTES = 64 * 1024 * 1024
_INTERESTING = re.compile(r"[,\[\]()]")
_LINE_TYPE = re.compile(r"[pg]\d*")
# Lines end at \n, \r\n or \r only (not at U+2028 and the others `str.splitlines` knows), as in
# model text read from a file. pycasbin's file adapter ends policy lines at \n alone (the \r of
# \r\n goes with the line's blanks), so parse_lines refuses a lone \r before lines are split.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LONE_CR = re.compile(r"\r(?!\n)")
_LINE_WITH_END = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def text_lines(text: str, *, keepends: bool = False) -> list[str]:
    """A policy file's lines as Casbin reads them (with their line ends when `keepends`); a lone
    \r, inside a line to Casbin, is refused by `parse_lines` before this splits there.

    Not `str.splitlines`, which also breaks at \v, \f, \x1c-\x1e, \x85, U+2028 and U+2029:
    a value holding one was a line to Casbin and two to authz, so `g, a, b(<U+2028>p, *, /x,
    GET, True, allow<U+2028>)` added through the admin API read back as a `p` line of its own.
    """
    if keepends:
        return _LINE_WITH_END.findall(text)
    # A file read from disk has its line ends made \n already: a plain split, 6x faster.
    lines = text.split("\n") if "\r" not in text else _LINE_BREAK.split(text)
    if lines and not lines[-1]:
        lines.pop()
    return lines


class PolicyLine(NamedTuple):
    """One `p`/`g` line of a policy file, with where it came from.

    A NamedTuple rather than a dataclass: a 100,000-line policy builds this many of them.
    """

    file: str
    line: int
    ptype: str
    values: tuple[str, ...]

    @property
    def text(self) -> str:
        """The line in canonical form: `p, a, b, c`."""
        return ", ".join((self.ptype, *self.values))

    @property
    def location(self) -> str:
        """`FILE:LINE: p, a, b, c`, the form `matched_rules` uses."""
        return f"{self.file}:{self.line}: {self.text}"


@dataclass(frozen=True, slots=True)
class PolicySource:
    """The raw contents of a policy directory, read once."""

    model_text: str
    files: tuple[tuple[str, str], ...]  # (name relative to the directory, text)

    @property
    def version(self) -> str:
        """Short content digest: changes exactly when the model or a policy file changes."""
        digest = hashlib.sha256()
        for name, text in ((MODEL_FILE, self.model_text), *self.files):
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
        return digest.hexdigest()[:12]


class UnloadableLine(ValueError):
    """A policy line pycasbin's file adapter cannot load, so no Casbin policy holds it."""


def split_tokens(line: str) -> list[str] | None:
    """Split a policy line on top-level commas, as pycasbin's file adapter does.

    Commas inside (), [] stay in their token so conditions like `f(a, b)` survive.
    Returns None for blank and comment lines. Raises UnloadableLine at a `)` or `]` that
    closes nothing: pycasbin's adapter pops its bracket stack there and raises IndexError
    (quotes mean nothing to it, so one inside a string literal counts too).
    """
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    if "(" not in line and "[" not in line and ")" not in line and "]" not in line:
        # The common case, with nothing to nest: a plain split is exact and much cheaper.
        return list(map(str.strip, line.split(",")))
    depth = 0
    tokens: list[str] = []
    start = 0
    for match in _INTERESTING.finditer(line):
        char = match.group()
        if char in "([":
            depth += 1
        elif char in ")]":
            if not depth:
                raise UnloadableLine(
                    f"unbalanced {char!r} (character {match.start() + 1}) closes no '(' or '[': "
                    "pycasbin's file adapter cannot load this line (it raises IndexError)"
                )
            depth -= 1
        elif depth == 0:
            tokens.append(line[start : match.start()].strip())
            start = match.end()
    tokens.append(line[start:].strip())
    return tokens


def read_text_file(path: Path, limit: int, *, universal_newlines: bool = True) -> str:
    """The text of `path`, a regular file of at most `limit` bytes of UTF-8, line ends as
    `Path.read_text` gives them (with `universal_newlines` off, only \r\n is read as \n: a lone
    \r stays, for `parse_lines` to refuse); PolicyLoadError for anything else.

    Opened without blocking and checked on the open file: a FIFO (a reader would wait for a
    writer for ever), a device such as /dev/zero (endless) or a directory is refused, also
    behind a symlink and also when it replaced a regular file after a check by name.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
            raise PolicyLoadError(f"{path} is {kind}, not a regular file")
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise PolicyLoadError(f"{path} is over {limit} bytes (the policy's limit: {MAX_POLICY_BYTES} in all)")
    # As read_text: \r\n read as \n (universally, \r too), so a checkout's line ends do not
    # change the digest.
    text = data.decode("utf-8").replace("\r\n", "\n")
    return text.replace("\r", "\n") if universal_newlines else text


def _line_count(text: str) -> int:
    """How many lines `text_lines` makes of `text`, counted without making them."""
    breaks = text.count("\n") + text.count("\r") - text.count("\r\n")
    return breaks + (1 if text and not text.endswith(("\n", "\r")) else 0)


def read_policy_dir(directory: Path) -> PolicySource:
    """Read `model.conf` and every `*.csv` directly inside `directory` (sorted by name), at most
    MAX_POLICY_BYTES in all."""
    model_path = directory / MODEL_FILE
    # Inside the try: is_file() raises PermissionError in a directory that cannot be searched.
    try:
        if not directory.is_dir():
            # A relative default (`policies`) read from another folder is the usual cause.
            where = "" if directory.is_absolute() else f" (relative to {Path.cwd()})"
            raise PolicyLoadError(f"policy directory {directory} does not exist{where}")
        if not model_path.exists() and not model_path.is_symlink():
            raise PolicyLoadError(f"{model_path} is missing: a policy directory needs a model.conf")
        # Every entry named *.csv counts, whatever it is: skipping a dangling symlink, a FIFO or a
        # directory would drop its rules (a deny among them), so each is refused when read.
        csvs = sorted(directory.glob("*.csv"))
        if not csvs:
            raise PolicyLoadError(f"{directory} has no *.csv policy file")
        if len(csvs) > MAX_POLICY_FILES:
            raise PolicyLoadError(
                f"{directory} has {len(csvs)} *.csv files, over the limit of {MAX_POLICY_FILES}"
            )
        left = MAX_POLICY_BYTES
        texts: list[str] = []
        for path in (model_path, *csvs):
            # pycasbin reads model.conf in text mode (a lone \r ends a line) and policy files in
            # binary (it does not).
            texts.append(read_text_file(path, left, universal_newlines=path == model_path))
            left -= len(texts[-1].encode("utf-8"))
        return PolicySource(
            model_text=texts[0], files=tuple((p.name, text) for p, text in zip(csvs, texts[1:], strict=True))
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyLoadError(f"cannot read policy directory {directory}: {exc}") from exc


def check_policy_size(source: PolicySource) -> None:
    """Raise PolicyLoadError when a policy has over MAX_POLICY_FILES files, or its model and files
    are over MAX_POLICY_BYTES together."""
    if len(source.files) > MAX_POLICY_FILES:
        raise PolicyLoadError(
            f"the policy has {len(source.files)} files, over the limit of {MAX_POLICY_FILES}"
        )
    size = sum(len(text.encode("utf-8")) for text in (source.model_text, *(t for _, t in source.files)))
    if size > MAX_POLICY_BYTES:
        raise PolicyLoadError(
            f"the policy is {size} bytes (model.conf and the *.csv files together), "
            f"over the limit of {MAX_POLICY_BYTES}"
        )


def parse_lines(source: PolicySource) -> tuple[list[PolicyLine], list[Finding]]:
    """Every policy line of every file, plus findings for lines that are not `p`/`g` lines and
    lines pycasbin cannot load."""
    lines: list[PolicyLine] = []
    findings: list[Finding] = []
    # One string object per distinct value: subjects and actions repeat on most lines.
    shared: dict[str, str] = {}
    share = shared.setdefault
    known_types: set[str] = set()  # line types already matched: a policy has a handful
    new_line = tuple.__new__
    count = sum(_line_count(text) for _, text in source.files)
    if count > MAX_POLICY_LINES:
        raise PolicyLoadError(f"the policy files hold {count} lines, over the limit of {MAX_POLICY_LINES}")
    for name, text in source.files:
        if "\r" in text and (lone := _LONE_CR.search(text)) is not None:
            # A line to pycasbin, two to editors and text_lines: its lines are read no further.
            if len(findings) <= MAX_FINDINGS:
                findings.append(_lone_carriage_return(name, text, lone.start()))
            continue
        for number, raw in enumerate(text_lines(text), start=1):
            try:
                tokens = split_tokens(raw)
            except UnloadableLine as exc:
                if len(findings) <= MAX_FINDINGS:
                    findings.append(Finding.error(name, number, f"{raw.strip()}: {exc}"))
                continue
            if tokens is None:
                continue
            key = tokens[0]
            if key not in known_types:
                if not _LINE_TYPE.fullmatch(key):
                    if len(findings) > MAX_FINDINGS:
                        continue  # the refusal lists that many at most
                    findings.append(
                        Finding.error(name, number, f"unknown line type {key!r} (expected p, p2, g, g2 ...)")
                    )
                    continue
                known_types.add(key)
            rest = tokens[1:]
            # tuple.__new__ is what PolicyLine() calls, less a Python frame per line (5% of a load).
            line = (name, number, share(key, key), tuple(map(share, rest, rest)))
            lines.append(new_line(PolicyLine, line))
    return lines, findings


def _lone_carriage_return(name: str, text: str, at: int) -> Finding:
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    line = text[start : end if end >= 0 else len(text)].strip()
    return Finding.error(
        name,
        text.count("\n", 0, at) + 1,
        f"{line!r} holds a lone \\r (a carriage return not before \\n): pycasbin's file adapter reads "
        "it as part of the line, editors as a line break; end lines with \\n or \\r\\n only",
    )
