"""Partial evaluation of one policy line's matcher with the resource's attributes unknown.

The matcher is the one the snapshot compiled (pycasbin's rewrites, the same allow-list
already passed at build time), parsed here as a syntax tree and interpreted with
`r.sub`, `r.act`, `r.ctx` and the line's values bound and `r.obj` symbolic.

A boolean result is a `Cond` (`plancond`): two conditions over a row, `true` (Check's
matcher returns True for that row) and `missing` (Check's evaluation reaches an attribute
the row does not have, i.e. a NULL column, which Check treats as "not sent"). Python's
evaluation order is followed exactly, because it decides which attribute is reached first:

    not a:    true = Fa                      missing = Ma
    f == v:   true = f IS NOT NULL & f == v  missing = f IS NULL
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from authz.engine import arith, planast
from authz.engine.bindings import AttributeMissing, get_attr, get_item, plain
from authz.engine.matcher import EVAL, casbin_rewrite, escape_assertion, templatize
from authz.engine.planast import FALSE, TRUE, Node
from authz.engine.plancond import FALSE_COND, MISSING_COND, TRUE_COND, Cond, Conjunction, bounded, cond_or
from authz.engine.planerrors import Unplannable
from authz.engine.planpath import Template


class PlanEvalError(Exception):
    """Evaluation failed for every row alike (Check would answer REASON_POLICY_ERROR)."""


@dataclass(frozen=True, slots=True)
class Field:
    """An unknown attribute of the row (or a path parameter): `r.obj.<name>`."""

    name: str


@dataclass(frozen=True, slots=True)
class Obj:
    """`r.obj` itself: one row's resource id, the template filled in from the row."""

    template: Template
    known: Mapping[str, Any]


class _Missing:
    # A concrete attribute the request lacks (`r.sub.org_id` of a token without one).
    __slots__ = ()


MISSING = _Missing()
# Tuples for isinstance: a union (`Cond | Obj`) is built again on every test.
_SYMBOLIC = (Field, Obj, Cond, _Missing)
_WHOLE = (Cond, Obj)
_LITERALS = (str, bool, int, float)
_BOOLS = (bool, float)

_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("eq", operator.eq),
    ast.NotEq: ("ne", operator.ne),
    ast.Lt: ("lt", operator.lt),
    ast.LtE: ("le", operator.le),
    ast.Gt: ("gt", operator.gt),
    ast.GtE: ("ge", operator.ge),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}
_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}
# The operators size-checked and charged to the plan's budget as in Check (`arith`): with a
# known `r.obj.<field>` from the request, `r.obj.org_id * 1000000000` built gigabytes here,
# and a line Check denies as a policy error was planned as allowing every row.
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: arith.add,
    ast.Sub: arith.sub,
    ast.Mult: arith.mul,
    ast.Div: arith.truediv,
    ast.Mod: arith.mod,
    ast.FloorDiv: arith.floordiv,
}
# Functions whose first argument may be the symbolic `r.obj`.
_OBJ_FUNCTIONS = ("keyMatch", "keyMatch2")


def as_cond(value: Any) -> Cond:
    """A value in a boolean position."""
    if isinstance(value, Cond):
        return value
    if value is MISSING:
        return MISSING_COND
    if isinstance(value, Field):
        raise Unplannable(f"r.obj.{value.name} used as a truth value; compare it: == True")
    if isinstance(value, Obj):
        raise Unplannable("r.obj used as a truth value")
    return TRUE_COND if value else FALSE_COND


# A plan's numbers travel as doubles (google.protobuf.Value): past 2**53 an integer would
# arrive as a neighbour (9007199254740993 as ...992), and the filter would compare with it.
_EXACT_INT = 2**53


def _literal(value: Any, what: str) -> planast.Literal:
    value = plain(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _EXACT_INT:
        raise Unplannable(
            f"comparison of {what} with {value}, which a plan cannot carry exactly (past 2**53)"
        )
    if isinstance(value, _LITERALS):
        return value
    raise Unplannable(f"comparison of {what} with a {type(value).__name__}")


def _null_checks(name: str) -> tuple[planast.IsNull, Node]:
    # A field's `IS NULL` and `IS NOT NULL`. Most plans compare the same few fields, so a short
    # name's (the policy's `r.obj.owner`; a request may choose a key, `r.obj[r.sub.x]`) are
    # made once.
    return _kept_null_checks(name) if len(name) <= _KEPT_NAME else _made_null_checks(name)


def _made_null_checks(name: str) -> tuple[planast.IsNull, Node]:
    null = planast.IsNull(name)
    return null, planast.negate(null)


_KEPT_NAME = 64
_kept_null_checks = functools.lru_cache(maxsize=1024)(_made_null_checks)


def _field_compare(field: Field, op: str, value: Any) -> Cond:
    what = f"r.obj.{field.name}"
    null, present = _null_checks(field.name)
    if op in ("in", "not in"):
        if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
            raise Unplannable(f"{what} {op} a {type(value).__name__} (only a list of literals)")
        items = tuple(dict.fromkeys(_literal(v, what) for v in value if v is not None))
        test: Node = planast.Compare("in", field.name, items) if items else FALSE
        if op == "not in":
            test = planast.negate(test)
    elif op in ("eq", "ne"):
        if value is None:
            # A present attribute never equals None.
            test = FALSE if op == "eq" else TRUE
        else:
            test = planast.Compare(op, field.name, _literal(value, what))
    elif op in _FLIP:
        if isinstance(plain(value), str) or isinstance(value, bool) or not isinstance(value, int | float):
            # String order is the database's collation, not Python's: it could widen access.
            raise Unplannable(f"ordering comparison of {what} with a {type(plain(value)).__name__}")
        test = planast.Compare(op, field.name, _literal(value, what))
    else:
        raise Unplannable(f"{what} compared with `{op}`")
    if isinstance(test, planast.Const):
        return Cond(present if test.value else FALSE, null)
    # Built directly: a guard and a comparison (or its negation) never simplify further.
    return Cond(planast.All((present, test)), null)


class LineEvaluator:
    """Interprets one line's matcher tree over bound names (one instance per line)."""

    __slots__ = (
        "_unreached",
        "compiled",
        "fixed",
        "functions",
        "names",
        "resource_conds",
        "resource_only",
        "segment",
        "segmented",
    )

    def __init__(
        self,
        names: Mapping[str, Any],
        functions: Mapping[str, Callable[..., Any]],
        shape: Shape,
        compiled: Compiled,
        resource_conds: dict[tuple[Any, ...], Any],
        *,
        segment: Node | None = None,
    ) -> None:
        """`segment`: the template's segment condition (`plantemplate.segment_condition`) that
        the planner conjoins after combining the lines; a chain read only where it is true
        leaves out a term that is exactly it, and `segmented` says one was left out."""
        self.names = names
        self.functions = functions
        self.fixed = shape.fixed
        self.resource_only = shape.resource_only
        self.compiled = compiled
        self.resource_conds = resource_conds
        # The `and` chains whose NULL reach nobody reads (`run`), by node id.
        self._unreached: set[int] = set()
        self.segment = segment
        self.segmented = False

    def run(self, tree: ast.expr, *, reached: bool = True) -> Cond:
        """The line's result as a Cond; raises Unplannable or PlanEvalError.

        `reached=False` when the caller reads only where the line is true (an allow line's
        part in every effect): a top-level `and` chain then leaves where it reaches a NULL
        unworked, FALSE in the result, which spares a rebuild of the chain per term; so does an
        `and` chain that is a term of such a chain (only where it is true is read there too).
        """
        self._unreached = set() if reached else {id(tree)}
        value = self.eval(tree)
        if isinstance(value, _SYMBOLIC):
            return as_cond(value)
        if not isinstance(value, _BOOLS):
            raise PlanEvalError(f"matcher result should be bool, got {type(value).__name__}")
        return Cond(TRUE if value else FALSE, FALSE)

    def eval(self, node: ast.expr) -> Any:
        """The value of one expression: concrete, or symbolic (Field, Obj, Cond, MISSING)."""
        fixed = self.fixed.get(id(node))
        if fixed is not None:
            # A subtree that does not read r.obj runs as compiled code, as in Check.
            fn, params = self.compiled(*fixed)
            names = self.names
            try:  # `_concrete`, inline: most of a line's nodes are these
                return fn(*[names[n] for n in params])
            except AttributeMissing:
                return MISSING
            except Exception as exc:
                raise PlanEvalError(f"{type(exc).__name__}: {exc}") from exc
        resource_only = self.resource_only.get(id(node))
        if resource_only is not None:
            return self._resource_only(node, *resource_only)
        return self._dispatch(node)

    def _resource_only(self, node: ast.expr, source: str, names: tuple[str, ...]) -> Any:
        # A subtree about r.obj's id and the line's values alone (`r.obj == p.obj || ...`):
        # the same for every principal, so one answer per template and values is kept.
        obj = self.names[_OBJ_NAME]
        key = (
            source,
            obj.template.text,
            *(self.names[n] for n in names if n in self.names and n != _OBJ_NAME),
        )
        found = self.resource_conds.get(key)
        if found is None:
            # Kept for lines of either effect: worked out with its NULL reach (a deny line reads
            # it), whatever the chain around it reads. An allow line's answer without it, kept
            # and then read by a deny line, dropped the deny's unknown rows: a wider plan.
            unreached, self._unreached = self._unreached, set()
            try:
                found = self._dispatch(node)
            finally:
                self._unreached = unreached
            if isinstance(found, Cond) and _nodes(found) > _RESOURCE_COND_NODES:
                return found  # the memo bounds entries: a large answer would make it large
            if len(self.resource_conds) >= _RESOURCE_CONDS_MAX:
                self.resource_conds.clear()
            self.resource_conds[key] = found
        return found

    def _dispatch(self, node: ast.expr) -> Any:
        method = _DISPATCH.get(type(node))
        if method is None:
            raise Unplannable(f"{type(node).__name__} expression")
        return method(self, node)

    def _constant(self, node: ast.Constant) -> Any:
        return node.value

    def _name(self, node: ast.Name) -> Any:
        if node.id in self.names:
            return self.names[node.id]
        return self.functions[node.id]

    def _boolop(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        unreached = is_and and id(node) in self._unreached
        if unreached:
            # `a and (b and c)`: the inner chain's NULL reach is not read either.
            self._unreached.update(
                id(c) for c in node.values if isinstance(c, ast.BoolOp) and isinstance(c.op, ast.And)
            )
        chain: Conjunction | None = None
        acc: Cond | None = None
        value: Any = None
        for child in node.values:
            value = self.eval(child)
            if chain is None and acc is None and not isinstance(value, _SYMBOLIC):
                # Python's own semantics while everything so far is concrete.
                if bool(value) != is_and:
                    return value
                continue
            cond = as_cond(value)
            if is_and:
                chain = chain or Conjunction(reached=not unreached)
                if (
                    unreached
                    and cond.missing is FALSE
                    and self.segment is not None
                    and cond.true == self.segment
                ):
                    # The template's segment condition, a conjunct of the whole line.
                    self.segmented = True
                    continue
                chain.add(cond)
                if chain.false:
                    # False for every row: Python evaluates no later term for any row, so
                    # neither does the plan (a later term's error is not Check's either).
                    break
            else:
                acc = cond if acc is None else cond_or(acc, cond)
                bounded(acc)
                if acc.true is TRUE and acc.missing is FALSE:
                    break  # true for every row: likewise
        if chain is not None:
            return chain.result()
        return value if acc is None else acc

    def _unaryop(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            if isinstance(value, _SYMBOLIC):
                cond = as_cond(value)
                return Cond(cond.false, cond.missing)
            return not value
        if value is MISSING:
            return MISSING
        if isinstance(value, _SYMBOLIC):
            raise Unplannable("arithmetic on an unknown attribute")
        return self._concrete(lambda: -value if isinstance(node.op, ast.USub) else +value)

    def _binop(self, node: ast.BinOp) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        if left is MISSING or right is MISSING:
            return MISSING
        if isinstance(left, _SYMBOLIC) or isinstance(right, _SYMBOLIC):
            raise Unplannable("arithmetic on an unknown attribute")
        fn = _BINARY[type(node.op)]
        return self._concrete(lambda: fn(plain(left), plain(right)))

    def _ifexp(self, node: ast.IfExp) -> Any:
        test = self.eval(node.test)
        if test is MISSING:
            return MISSING
        if isinstance(test, _SYMBOLIC):
            raise Unplannable("a conditional expression on an unknown attribute")
        return self.eval(node.body if test else node.orelse)

    def _compare(self, node: ast.Compare) -> Any:
        values = [self.eval(node.left), *(self.eval(c) for c in node.comparators)]
        result: Any = True
        terms: list[Cond] = []  # from the first unknown comparison on
        for op, left, right in zip(node.ops, values, values[1:], strict=False):
            if left is MISSING or right is MISSING:
                part: Any = MISSING_COND
            elif isinstance(left, _SYMBOLIC) or isinstance(right, _SYMBOLIC):
                part = self._symbolic_compare(op, left, right)
            else:
                part = self._concrete(functools.partial(_COMPARE[type(op)][1], left, right))
                if not terms:
                    if not part:
                        return part
                    result = part
                    continue
            terms.append(as_cond(part))
        if not terms:
            return result
        if len(terms) == 1:
            # One unknown comparison (`r.obj.owner == r.sub.id`): its Cond as made, already
            # simplified, without a chain's rebuild of it.
            bounded(terms[0])
            return terms[0]
        chain = Conjunction()
        for term in terms:
            chain.add(term)
        return chain.result()

    def _symbolic_compare(self, op: ast.cmpop, left: Any, right: Any) -> Cond:
        name = _COMPARE[type(op)][0]
        if isinstance(left, _WHOLE) or isinstance(right, _WHOLE):
            obj, other = (left, right) if isinstance(left, Obj) else (right, left)
            if isinstance(obj, Obj) and name in ("eq", "ne") and isinstance(plain(other), str):
                test = obj.template.equals(plain(other))
                if name == "eq":
                    return Cond(test.true, test.unknown)
                return Cond(
                    planast.all_of(planast.negate(test.true), planast.negate(test.unknown)), test.unknown
                )
            what = "r.obj compared as a whole" if isinstance(obj, Obj) else "comparison of a condition"
            raise Unplannable(what)
        if isinstance(left, Field) and isinstance(right, Field):
            raise Unplannable(f"comparison of r.obj.{left.name} with r.obj.{right.name}")
        if isinstance(left, Field):
            return _field_compare(left, name, right)
        if name in ("in", "not in"):
            raise Unplannable(f"membership in r.obj.{right.name}")
        if name not in _FLIP:
            raise Unplannable(f"r.obj.{right.name} compared with `{name}`")
        return _field_compare(right, _FLIP[name], left)

    def _attribute(self, node: ast.Attribute) -> Any:
        return self._lookup(self.eval(node.value), node.attr, node)

    def _subscript(self, node: ast.Subscript) -> Any:
        key = self.eval(node.slice)
        if key is MISSING:
            return MISSING
        if isinstance(key, _SYMBOLIC):
            raise Unplannable("an index that depends on an unknown attribute")
        return self._lookup(self.eval(node.value), key, node, item=True)

    def _lookup(self, value: Any, key: Any, node: ast.expr, *, item: bool = False) -> Any:
        if value is MISSING:
            return MISSING
        if isinstance(value, Obj):
            if item and isinstance(key, int):
                # A character of the id, as Check reads it (`bindings.get_item`).
                if not value.template.concrete:
                    raise Unplannable("a character of the resource id (r.obj[<number>])")
                text = value.template.text
                if not -len(text) <= key < len(text):
                    raise PlanEvalError(f"IndexError: string index {key} out of range")
                return text[key]
            name = str(key)
            return value.known[name] if name in value.known else Field(name)
        if isinstance(value, Field):
            raise Unplannable(f"nested attribute r.obj.{value.name}.{key}")
        if isinstance(value, Cond):
            raise Unplannable("attribute of a condition")
        path = ast.unparse(node)
        try:
            return get_item(value, key, path) if item else get_attr(value, str(key), path)
        except AttributeMissing:
            return MISSING
        except Exception as exc:
            raise PlanEvalError(f"{type(exc).__name__}: {exc}") from exc

    def _call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)  # the build's allow-list
        name = node.func.id
        args = [self.eval(a) for a in node.args]
        if any(a is MISSING for a in args):
            return MISSING
        objs = [a for a in args if isinstance(a, Obj)]
        if objs and all(o.template.concrete for o in objs):
            args = [a.template.text if isinstance(a, Obj) else a for a in args]
        symbolic = [a for a in args if isinstance(a, _SYMBOLIC)]
        if not symbolic:
            fn = self.functions[name]
            return self._concrete(lambda: fn(*args))
        first = args[0]
        if (
            name in _OBJ_FUNCTIONS
            and len(args) == 2
            and isinstance(first, Obj)
            and isinstance(plain(args[1]), str)
        ):
            pattern = plain(args[1])
            template = first.template
            test = template.key_match2(pattern) if name == "keyMatch2" else template.key_match(pattern)
            # Rows the planner cannot tell are planned as missing attributes: fail closed.
            return Cond(test.true, test.unknown)
        shown = next((f"r.obj.{a.name}" for a in symbolic if isinstance(a, Field)), "r.obj")
        raise Unplannable(f"{name}() of {shown}, which has no SQL form")

    def _tuple(self, node: ast.Tuple | ast.List | ast.Set) -> Any:
        items = [self.eval(e) for e in node.elts]
        if any(i is MISSING for i in items):
            return MISSING
        if any(isinstance(i, _SYMBOLIC) for i in items):
            raise Unplannable("a collection holding an unknown attribute")
        return tuple(items) if isinstance(node, ast.Tuple) else list(items)

    _list = _tuple
    _set = _tuple

    @staticmethod
    def _concrete(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except AttributeMissing:
            return MISSING
        except Exception as exc:
            raise PlanEvalError(f"{type(exc).__name__}: {exc}") from exc


_DISPATCH: dict[type[ast.AST], Callable[[LineEvaluator, Any], Any]] = {
    kind: getattr(LineEvaluator, f"_{kind.__name__.lower()}")
    for kind in (
        ast.Constant,
        ast.Name,
        ast.BoolOp,
        ast.UnaryOp,
        ast.BinOp,
        ast.IfExp,
        ast.Compare,
        ast.Attribute,
        ast.Subscript,
        ast.Call,
        ast.Tuple,
        ast.List,
        ast.Set,
    )
}


@dataclass(frozen=True)
class Shape:
    """A parsed line shape and, by node id, its largest subtrees that do not read `r.obj`
    (their source and the names they read), which the evaluator runs compiled."""

    tree: ast.expr
    fixed: Mapping[int, tuple[str, tuple[str, ...]]]
    # Largest subtrees that read r.obj only as a whole (no attribute) and nothing of the
    # request besides: their answers depend on the template and the line's values alone.
    resource_only: Mapping[int, tuple[str, tuple[str, ...]]]


# (subtree source, names it reads) -> (compiled function, its parameters), per snapshot.
Compiled = Callable[[str, tuple[str, ...]], tuple[Callable[..., Any], tuple[str, ...]]]
_OBJ_NAME = "r_obj"
_RESOURCE_CONDS_MAX = 65536
# Larger answers are computed again instead: a template of 500 path parameters against a
# pattern of 500 segments plans to 1,500 nodes, and requests choose the templates.
_RESOURCE_COND_NODES = 256


def _nodes(cond: Cond) -> int:
    return planast.measure(cond.true)[0] + planast.measure(cond.missing)[0]


@functools.lru_cache(maxsize=4096)
def _parse(template: str) -> Shape:
    tree = ast.parse(template, mode="eval").body
    fixed: dict[int, tuple[str, tuple[str, ...]]] = {}

    def worth(node: ast.AST) -> bool:
        return isinstance(node, ast.expr) and not isinstance(node, ast.Name | ast.Constant)

    def keep(node: ast.AST) -> None:
        names = tuple(sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)}))
        fixed[id(node)] = (ast.unparse(node), names)

    def visit(node: ast.AST) -> bool:
        children = list(ast.iter_child_nodes(node))
        reads = [visit(child) for child in children]
        if not any(reads) and not (isinstance(node, ast.Name) and node.id == _OBJ_NAME):
            return False
        for child, read in zip(children, reads, strict=True):
            if not read and worth(child):
                keep(child)
        return True

    if not visit(tree) and worth(tree):
        keep(tree)
    resource_only: dict[int, tuple[str, tuple[str, ...]]] = {}

    def whole_obj_only(node: ast.AST) -> bool:
        for n in ast.walk(node):
            if isinstance(n, ast.Attribute | ast.Subscript) and _reads_obj(n.value):
                return False
            if isinstance(n, ast.Name) and n.id.startswith("r_") and n.id != _OBJ_NAME:
                return False
        return True

    def mark(node: ast.AST) -> None:
        if id(node) in fixed or not _reads_obj(node):
            return
        if worth(node) and whole_obj_only(node):
            names = tuple(sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)}))
            resource_only[id(node)] = (ast.unparse(node), names)
            return
        for child in ast.iter_child_nodes(node):
            mark(child)

    mark(tree)
    return Shape(tree, fixed, resource_only)


def _reads_obj(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == _OBJ_NAME for n in ast.walk(node))


@functools.lru_cache(maxsize=65536)
def line_tree(matcher: str, conditions: tuple[str, ...]) -> tuple[Shape, dict[str, Any]]:
    """A line's matcher as a syntax tree with its literals as named constants.

    The same text assembly as the compiled matcher (`MatcherCompiler.compile`); a shape
    shared by many lines is parsed once.
    """
    fixed = EVAL.split(matcher)[::2]
    pieces = [casbin_rewrite(fixed[0])]
    for condition, piece in zip(conditions, fixed[1:], strict=True):
        pieces.append(f"({casbin_rewrite(escape_assertion(condition)).strip()})")
        pieces.append(casbin_rewrite(piece))
    source, values = templatize("".join(pieces).strip(), "__authz_p")
    try:
        shape = _parse(source)
    except RecursionError:
        # Python compiles a condition nested a few hundred levels deep (`a + 'x' + 'x' ...`),
        # which this recursive reading cannot follow: a RecursionError was an INTERNAL plan.
        raise Unplannable(NESTED) from None
    return shape, {f"__authz_p{i}": v for i, v in enumerate(values)}


NESTED = "a condition nested too deeply to plan"
