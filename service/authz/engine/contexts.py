"""Casbin's enforce contexts: the `r2`, `p2`, `e2`, `m2` section sets a request selects.

Casbin reads each of a model's request, policy, effect and matcher sections as `r`, `r2`,
`r3` ... in order, up to the first one missing, and `NewEnforceContext("2")` (pycasbin:
`new_enforce_context("2")`) decides a request with r2, p2, e2 and m2 instead of r, p, e and
m; the role definitions (`g`, `g2` ...) are shared. authz builds one snapshot per suffix with
the engine's ordinary machinery: the model text is rewritten line for line into a model whose
r, p, e and m are the suffix's sections (so a finding keeps its model.conf line), and the
suffix's `p2` lines are its rules. The default context "" is the snapshot itself, so a
request without a context takes exactly the path it took before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authz.engine.matcher import escape_assertion
from authz.engine.model import Effect, ModelSpec, model_error, parse_model
from authz.engine.policyfiles import MODEL_FILE, PolicySource, text_lines
from authz.errors import InvalidArgument, PolicyLoadError
from authz.findings import Finding

if TYPE_CHECKING:
    from authz.engine.snapshot import Snapshot

# (section kind, its title in model.conf), in the order Casbin reads them.
_SECTIONS = (
    ("r", "request_definition"),
    ("p", "policy_definition"),
    ("e", "policy_effect"),
    ("m", "matchers"),
)
_KINDS = {title: kind for kind, title in _SECTIONS}
_HEADER = re.compile(r"\[(?P<title>.*)\]")
# An unterminated literal runs to the end (the matcher does not parse then): without that,
# each later escaped quote was a new start scanning to the end, quadratic in the text.
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*+\"?|'(?:[^'\\]|\\.)*+'?")
# A request or policy token of any suffix: `r.sub`, `p2.obj`, `r2_act` (not `.r2.x`, an attribute).
_TOKEN = re.compile(r"(?<![\w.])(?P<kind>[rp])(?P<suffix>\d*)(?P<sep>[._])(?=\w)")
_EVAL = re.compile(r"\beval\s*\(")
# The request field naming a context is a suffix like "2": anything longer is refused unread.
MAX_CONTEXT_CHARS = 16


@dataclass(frozen=True, slots=True)
class _Definition:
    """One `key = value` of model.conf: its section kind, key, value and line numbers (1-based)."""

    kind: str  # r, p, e, m, or "" for any other section
    key: str
    value: str
    lines: tuple[int, ...]


def _definitions(text: str) -> Iterator[_Definition]:
    """model.conf's definitions as pycasbin's config reader joins them (`\\` continues a line)."""
    kind = ""
    buffer: list[str] = []
    numbers: list[int] = []

    def flush() -> Iterator[_Definition]:
        joined = "".join(buffer)
        key, equals, value = joined.partition("=")
        if joined and equals:
            yield _Definition(kind, key.strip(), value.strip(), tuple(numbers))
        buffer.clear()
        numbers.clear()

    for number, raw in enumerate(text_lines(text), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            yield from flush()
            continue
        header = _HEADER.fullmatch(line)
        if header is not None:
            yield from flush()
            kind = _KINDS.get(header.group("title"), "")
            continue
        numbers.append(number)
        if line.endswith("\\"):
            buffer.append(line[:-1].strip() + " ")
        else:
            buffer.append(line)
            yield from flush()
    yield from flush()


def _split_strings(text: str) -> Iterator[tuple[bool, str]]:
    """A matcher in pieces, in order: (is a string literal, text)."""
    start = 0
    for literal in _STRING.finditer(text):
        yield False, text[start : literal.start()]
        yield True, literal.group()
        start = literal.end()
    yield False, text[start:]


def _foreign_token(matcher: str, suffix: str) -> str | None:
    """The first request or policy token of `matcher` that is not of context `suffix`."""
    for literal, part in _split_strings(matcher):
        for token in () if literal else _TOKEN.finditer(part):
            if token.group("suffix") != suffix:
                return f"{token.group('kind')}{token.group('suffix')}"
    return None


def _unsuffixed(matcher: str, suffix: str) -> str:
    """`r2.sub == p2.sub` -> `r.sub == p.sub` outside string literals (the names Casbin binds)."""

    def rename(token: re.Match[str]) -> str:
        if token.group("suffix") != suffix:
            return token.group()
        return token.group("kind") + token.group("sep")

    return "".join(part if literal else _TOKEN.sub(rename, part) for literal, part in _split_strings(matcher))


def context_suffixes(model_text: str) -> tuple[str, ...]:
    """The suffixes of the model's enforce contexts ("2", "3" ...), checked as a whole.

    A suffix is a context when it has r, e or m sections; it then needs all four, and its
    matcher may read only its own request and policy tokens (Casbin evaluates m2 with the
    r2 and p2 values alone). A section Casbin never reads (`r3` without `r2`) is refused,
    as is what authz does not implement in a context (`eval()`; `subjectPriority`, which
    Casbin ranks by the `p` lines only).
    """
    found: dict[str, dict[str, _Definition]] = {kind: {} for kind, _ in _SECTIONS}
    for definition in _definitions(model_text):
        if definition.kind and definition.value:
            found[definition.kind][definition.key] = definition  # a repeated key: the last wins, as in Casbin
    read: dict[str, list[str]] = {}
    for kind, _ in _SECTIONS:
        suffixes: list[str] = []
        while f"{kind}{len(suffixes) + 2}" in found[kind]:
            suffixes.append(str(len(suffixes) + 2))
        read[kind] = suffixes
        for key in found[kind]:
            numbered = re.fullmatch(rf"{kind}(\d+)", key)
            if numbered is not None and numbered.group(1) not in suffixes:
                expected = f"{kind}{len(suffixes) + 2}"
                message = (
                    f"section {key} is never read: Casbin reads {kind}, {kind}2, {kind}3 ... in order and "
                    f"stops at the first one missing ({expected})"
                )
                raise PolicyLoadError.at(model_error(model_text, key, message))
    contexts = sorted({*read["r"], *read["e"], *read["m"]}, key=int)
    for suffix in contexts:
        missing = [f"{kind}{suffix}" for kind, _ in _SECTIONS if suffix not in read[kind]]
        if missing:
            # Named by a section that makes the suffix a context (a lone p2 does not).
            present = next(f"{kind}{suffix}" for kind in "rem" if suffix in read[kind])
            message = (
                f"enforce context {suffix} has {present} but no {', '.join(missing)}: a request with "
                f"enforce_context {suffix!r} is decided with r{suffix}, p{suffix}, e{suffix} and m{suffix} "
                "(Casbin's NewEnforceContext)"
            )
            raise PolicyLoadError.at(model_error(model_text, present, message))
        # Casbin cuts a matcher at its first `#` (a comment), string literal or not.
        matcher = found["m"][f"m{suffix}"].value.partition("#")[0]
        foreign = _foreign_token(matcher, suffix)
        problem = None
        if foreign is not None:
            problem = (
                f"m{suffix} reads {foreign} values, but Casbin evaluates m{suffix} with the values of "
                f"r{suffix} and p{suffix} only"
            )
        elif _EVAL.search(matcher):
            problem = f"m{suffix} calls eval(): authz implements eval() conditions in matcher m only"
        if problem is not None:
            raise PolicyLoadError.at(model_error(model_text, f"m{suffix}", problem))
        if "".join(escape_assertion(found["e"][f"e{suffix}"].value).split()) == Effect.SUBJECT_PRIORITY.value:
            message = (
                f"e{suffix} is subjectPriority(p.eft): Casbin ranks lines by subject for the model's e and "
                "its p lines only, so authz does not implement it in an enforce context"
            )
            raise PolicyLoadError.at(model_error(model_text, f"e{suffix}", message))
    return tuple(contexts)


def context_model(model_text: str, suffix: str) -> str:
    """model.conf rewritten as the plain model of context `suffix`, every line where it was.

    r<suffix>, p<suffix>, e<suffix> and m<suffix> become r, p, e and m (the matcher's tokens
    renamed to match); the other request, policy, effect and matcher definitions become
    blank lines; role definitions, comments and `# authz:` directives stay as they are.
    """
    lines = text_lines(model_text)
    for definition in _definitions(model_text):
        if not definition.kind:
            continue
        for number in definition.lines:
            lines[number - 1] = ""
        if definition.key == f"{definition.kind}{suffix}":
            value = definition.value
            if definition.kind == "m":
                value = _unsuffixed(value, suffix)
            lines[definition.lines[0] - 1] = f"{definition.kind} = {value}"
    return "\n".join(lines) + "\n"


def rule_models(model_text: str) -> dict[str, ModelSpec]:
    """Each section set's model by the type of its rule lines: `p` the model's own, `p2` context 2's ...

    For tools that read policy lines without building a snapshot (a `p2` line's values are
    named by `p2`, not `p`); raises PolicyLoadError when the model does not load.
    """
    models = {"p": parse_model(model_text)}
    for suffix in context_suffixes(model_text):
        models[f"p{suffix}"] = parse_model(context_model(model_text, suffix))
    return models


def _located(finding: Finding, suffix: str) -> Finding:
    """A finding of context `suffix`'s build, saying which context it is about."""
    label = f"enforce context {suffix} (r{suffix}, p{suffix}, e{suffix}, m{suffix})"
    return Finding(finding.severity, finding.file, finding.line, f"{label}: {finding.message}")


def build_with_contexts(source: PolicySource, build: Callable[[PolicySource, str], Snapshot]) -> Snapshot:
    """The default snapshot with one snapshot per enforce context in its `sections`.

    Every build runs even when one fails, so validation lists all findings at once; a
    finding the default build already made (a role line, a file's syntax) is not repeated.
    """
    findings: list[Finding] = []
    try:
        suffixes = context_suffixes(source.model_text)
    except PolicyLoadError as exc:
        findings.extend(exc.findings)
        suffixes = ()
    root: Snapshot | None = None
    try:
        root = build(source, "p")
    except PolicyLoadError as exc:
        findings.extend(exc.findings)
    seen = {(f.file, f.line, f.message) for f in findings}
    sections: dict[str, Snapshot] = {}
    for suffix in suffixes:
        view = PolicySource(context_model(source.model_text, suffix), source.files)
        try:
            sections[suffix] = build(view, f"p{suffix}")
        except PolicyLoadError as exc:
            findings.extend(
                _located(f, suffix) for f in exc.findings if (f.file, f.line, f.message) not in seen
            )
    if findings or root is None:
        raise PolicyLoadError("the policy does not load", _ordered(findings))
    for section in sections.values():
        section.version = root.version
    root.sections = dict(sections)
    return root


def _ordered(findings: list[Finding]) -> list[Finding]:
    # By file, then line number; model.conf findings come first (as the engine orders them).
    return sorted(findings, key=lambda f: ("" if f.file == MODEL_FILE else f.file, f.line, f.message))


def select(snapshot: Snapshot, name: str) -> Snapshot:
    """The snapshot deciding with enforce context `name` ("" is the model's r, p, e and m).

    An unknown name is InvalidArgument naming the contexts the live model has: a request
    meant for another section set must never be decided with the default one.
    """
    if not name:
        return snapshot
    found = snapshot.sections.get(name) if len(name) <= MAX_CONTEXT_CHARS else None
    if found is None:
        known = ", ".join(repr(s) for s in ("", *snapshot.sections))
        shown = repr(name) if len(name) <= MAX_CONTEXT_CHARS else f"of {len(name)} characters"
        raise InvalidArgument(
            f"enforce_context {shown} is not a section set of the policy's model (known: {known}; "
            '"2" selects r2, p2, e2 and m2)'
        )
    return found
