"""Property: any policy text builds, within its budget, or is refused with a typed error.

ValidatePolicy hands a caller's model.conf and CSV text to `validate_source`; this test does
the same with generated text: random tokens, operators, regular expressions, function calls,
huge repetitions, unicode and quotes. A build may fail only with PolicyLoadError (which
validate_source turns into findings), never with another exception, and must finish well
inside BUILD_BUDGET seconds; a policy that builds must then decide any request without
raising, as fast.
"""

from __future__ import annotations

import time

from hypothesis import event, given
from hypothesis import strategies as st

from authz.engine.policyfiles import PolicySource
from authz.policy.validate import validate_source
from authz.principal import Principal
from tests.fuzz_settings import FUZZ

# Generous for a busy 2-core machine: a linear build of this text takes milliseconds, a
# backtracking regular expression or a gigabyte string takes minutes or forever.
BUILD_BUDGET = 20.0
NAMES = ("r.sub", "r.obj", "r.act", "p.sub", "p.obj", "p.act", "p.eft", "p.cond", "r.sub.id", "r.obj.x")
FUNCTIONS = (
    "keyMatch",
    "keyMatch2",
    "keyMatch3",
    "keyMatch4",
    "keyMatch5",
    "regexMatch",
    "globMatch",
    "ipMatch",
    "timeMatch",
    "g",
    "eval",
    "len",
    "__import__",
)
OPERATORS = ("&&", "||", "!", "==", "!=", "<", "+", "-", "*", "/", "%", "**", " in ", " not ", ".", ",")
BINARY = ("&&", "||", "==", "!=", "<", "+", "-", "*", "/", "%", " in ")
ROUTE_BITS = ("/", "api", ":id", "{id}", "*", "a", ".", "v1.0", "(a+)+$", "[0-9]+", "\\d")
REGEX_BITS = ("(a+)+", "$", "^", "(", ")", "[", "]", "{", "}", "|", "\\", ".*", "?", "+", "*", ":id", "{id}")
REGEX_BITS += ("\\1", "(?=", "(?i)", "\\b", "\\d", "[^/]", "{1000}", "{2,1}", "(?P<x>", "/")


def _repeated(draw: st.DrawFn) -> str:
    # A short piece repeated up to 5,000 times: long patterns, numbers and nesting.
    piece = draw(st.sampled_from(("a", "9", "(", "!", "(a+)", "{", "*a", "a|", "'a' * ", "-", "\\")))
    return piece * draw(st.integers(1, 5000))


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """One piece of matcher or policy text."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(NAMES))
    if kind == 1:
        return draw(st.sampled_from(FUNCTIONS)) + "("
    if kind == 2:
        return draw(st.sampled_from(OPERATORS))
    if kind == 3:
        return draw(st.sampled_from(REGEX_BITS))
    if kind == 4:
        quote = draw(st.sampled_from(("'", '"')))
        inner = "".join(draw(st.lists(st.sampled_from(REGEX_BITS), max_size=6)))
        return quote + inner + draw(st.sampled_from((quote, "")))
    if kind == 5:
        return str(draw(st.integers(-(10**30), 10**30)))
    if kind == 6:
        return _repeated(draw)
    if kind == 7:
        return draw(st.text(max_size=8))
    if kind == 8:
        return draw(
            st.sampled_from((" ", "(", ")", "[", "]", "'a' * 1000000000", "10**10**10", "'%09999999d' % 1"))
        )
    return draw(st.sampled_from(("True", "False", "None", "1e999", "0x10", "r.obj.__class__", "[1] * 10**9")))


def _text(draw: st.DrawFn, max_size: int) -> str:
    return "".join(draw(st.lists(tokens(), max_size=max_size)))


EFFECTS = (
    "some(where (p.eft == allow))",
    "!some(where (p.eft == deny))",
    "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
    "priority(p.eft) || deny",
)
POLICIES = ("sub, obj, act", "sub, obj, act, eft", "sub, obj, act, cond, eft")


def _literal(draw: st.DrawFn) -> str:
    quote = draw(st.sampled_from(("'", '"')))
    bits = draw(st.lists(st.sampled_from(REGEX_BITS) | st.text(max_size=3), max_size=6))
    inner = "".join(bits).replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "")
    return quote + inner + quote


def expressions() -> st.SearchStrategy[str]:
    """Well-formed matcher expressions: names, literals, calls, operators, huge products."""
    atom = st.one_of(
        st.sampled_from(NAMES[:6] + NAMES[8:]),
        st.composite(lambda draw: _literal(draw))(),
        st.integers(-(10**6), 10**6).map(str),
        st.sampled_from(("'a' * 1000000000", "[1, 2] * 999999999", "'%0999999999d' % 1", "True")),
    )
    return st.recursive(
        atom,
        lambda inner: st.one_of(
            st.tuples(st.sampled_from(FUNCTIONS[:10]), inner, inner).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
            st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"!({e})"),
        ),
        max_leaves=8,
    )


@st.composite
def models(draw: st.DrawFn) -> tuple[str, int]:
    """(model text, values per p line): well-formed around a generated matcher, or anything at all."""
    kind = draw(st.integers(0, 9))
    policy = draw(st.sampled_from(POLICIES))
    if kind == 0:
        return _text(draw, 20), 3
    if kind < 5:
        matcher = draw(st.sampled_from(("g(r.sub, p.sub) && ", ""))) + _text(draw, 12)
    else:
        matcher = draw(expressions())
    if "cond" in policy and draw(st.booleans()):
        matcher += " && eval(p.cond)"
    text = (
        "[request_definition]\nr = sub, obj, act\n\n"
        f"[policy_definition]\np = {policy}\n\n"
        "[role_definition]\ng = _, _\n\n"
        f"[policy_effect]\ne = {draw(st.sampled_from(EFFECTS))}\n\n"
        f"[matchers]\nm = {matcher}\n"
    )
    return text, len(policy.split(","))


def _value(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 2))
    if kind < 2:
        bits = ROUTE_BITS if kind == 0 else REGEX_BITS
        return "".join(draw(st.lists(st.sampled_from(bits), min_size=1, max_size=5)))
    return _text(draw, 3).replace("\n", " ")


@st.composite
def policy_files(draw: st.DrawFn, arity: int) -> tuple[tuple[str, str], ...]:
    """One or two CSV files of p / g lines with generated values, and the odd garbage line."""
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(("p",) * 8 + ("g", "garbage")))
        if kind == "garbage":
            lines.append(_text(draw, 6))
            continue
        count = draw(st.sampled_from((arity,) * 8 + (2, arity + 1)))
        values = [_value(draw) for _ in range(count)]
        if kind == "p" and count >= 4 and draw(st.booleans()):
            values[-1] = draw(st.sampled_from(("allow", "deny")))
        if kind == "p" and count >= 1 and draw(st.booleans()):
            values[0] = "reader"
        lines.append(", ".join((kind, *values)))
    files = [("policy.csv", "\n".join(lines) + "\n")]
    if draw(st.booleans()):
        files.append(("roles.csv", "g, reader, writer\n"))
    return tuple(files)


@st.composite
def candidates(draw: st.DrawFn) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A model and policy files whose p lines mostly have the model's number of values."""
    model_text, arity = draw(models())
    return model_text, draw(policy_files(arity))


REQUESTS = st.tuples(
    st.text(max_size=40) | st.sampled_from(("a" * 40 + "!", "/api/1", "")), st.text(max_size=8)
)


@FUZZ
@given(candidates(), st.lists(REQUESTS, max_size=3))
def test_policy_text_builds_within_budget_or_is_refused(
    candidate: tuple[str, tuple[tuple[str, str], ...]], requests: list[tuple[str, str]]
) -> None:
    model_text, files = candidate
    start = time.perf_counter()
    report = validate_source(PolicySource(model_text, files))
    assert time.perf_counter() - start < BUILD_BUDGET
    event("refused" if report.snapshot is None else "built")
    if report.snapshot is None:
        assert report.errors, "a refused policy says why"
        return
    principal = Principal(id="alice", permissions=("reader",))
    for resource, action in requests:
        start = time.perf_counter()
        decision = report.snapshot.decide(principal, resource, action, {"x": 1}, {"k": "v"}, explain=True)
        assert time.perf_counter() - start < BUILD_BUDGET
        assert isinstance(decision.allowed, bool)
