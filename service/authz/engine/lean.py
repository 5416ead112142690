"""Matcher shapes compiled lean: the request's attributes read once per decision, not per line.

A policy with conditions evaluates dozens of them per request, each reading attributes
(`r.obj.status`, `r.sub.level`) through `get_attr`. A lean shape is the same checked
expression (the compiler's allow-list and rewrites already applied) taking three tuples:

    fn(av, k, v)   av: the request values, then every hoisted attribute chain's value
                   k:  the line's constants (the compiled shape's lifted literals)
                   v:  the line's policy values

An attribute chain rooted at a request value (`r.obj.status`, `r.ctx.a.b`) is a slot of
`av`, read once per decision by `LeanCompiler.prelude`. A chain the request cannot
resolve (not sent, or an error) marks its slot failed instead; a line whose shape reads a
failed slot is evaluated by the ordinary compiled matcher, so which error it meets, and
where, stays exactly what it was.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from authz.engine.matchercheck import ATTR, MatcherSyntaxError, checked_body, namespace

# Attribute chains hoisted per policy: reading them all costs every decision a little, so
# a policy reading more distinct attributes leaves the rest where they are.
MAX_SLOTS = 32
_AV, _K, _V = "__authz_av", "__authz_kv", "__authz_pv"
_FAILED = "__authz_failed"

Lean = Callable[[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]], Any]


class LeanShape(NamedTuple):
    """A lean function and the `av` slots it reads (a bit per slot)."""

    fn: Lean
    mask: int


def _is_chain(node: ast.AST, request: Mapping[str, int]) -> bool:
    # `__authz_attr(base, 'name', 'path')` where base is a request value or another chain.
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == ATTR
        and len(node.args) == 3
        and all(isinstance(arg, ast.Constant) for arg in node.args[1:])
    ):
        return False
    base = node.args[0]
    return (isinstance(base, ast.Name) and base.id in request) or _is_chain(base, request)


def _read(tuple_name: str, position: int) -> ast.expr:
    return ast.Subscript(ast.Name(tuple_name, ast.Load()), ast.Constant(position), ast.Load())


class _Lean(ast.NodeTransformer):
    def __init__(self, compiler: LeanCompiler, constants: Sequence[str], hoist: bool) -> None:
        self.compiler = compiler
        self.constants = {name: i for i, name in enumerate(constants)}
        self.hoist = hoist
        self.mask = 0

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if self.hoist and _is_chain(node, self.compiler.request):
            slot = self.compiler.slot(node)
            if slot is not None:
                self.mask |= 1 << slot
                return _read(_AV, len(self.compiler.request) + slot)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        compiler = self.compiler
        if node.id in compiler.request:
            return _read(_AV, compiler.request[node.id])
        if node.id in compiler.policy:
            return _read(_V, compiler.policy[node.id])
        if node.id in self.constants:
            return _read(_K, self.constants[node.id])
        return node  # a function's name


class LeanCompiler:
    """Lean shapes of one snapshot's matcher, the attribute slots they share, their prelude."""

    def __init__(
        self,
        request: Sequence[str],
        policy: Sequence[str],
        functions: Mapping[str, Callable[..., Any]],
        subject: str,
    ) -> None:
        self.request = {name: i for i, name in enumerate(request)}
        self.policy = {name: i for i, name in enumerate(policy)}
        self.functions = functions
        self.subject = subject
        self._namespace = namespace(functions)
        self._slots: dict[str, int] = {}
        self._chains: list[ast.expr] = []

    def body(self, source: str, params: Sequence[str]) -> ast.expr:
        """The checked, rewritten expression of a compiled shape's source."""
        return checked_body(source, params, self.functions, self.subject)[0]

    def slot(self, chain: ast.expr) -> int | None:
        """The `av` slot of an attribute chain (a new one while there is room)."""
        key = ast.dump(chain)
        found = self._slots.get(key)
        if found is None and len(self._chains) < MAX_SLOTS:
            found = self._slots[key] = len(self._chains)
            self._chains.append(chain)
        return found

    def compile(self, body: ast.expr, constants: Sequence[str], *, hoist: bool = True) -> LeanShape | None:
        """`body` as `fn(av, k, v)`; None when it cannot be compiled so (the caller keeps its own)."""
        transformer = _Lean(self, constants, hoist)
        try:
            lean = transformer.visit(_copy(body))
            lam = ast.Expression(
                ast.Lambda(
                    args=ast.arguments(
                        posonlyargs=[],
                        args=[ast.arg(_AV), ast.arg(_K), ast.arg(_V)],
                        kwonlyargs=[],
                        kw_defaults=[],
                        defaults=[],
                    ),
                    body=lean,
                )
            )
            ast.fix_missing_locations(lam)
            fn: Lean = eval(compile(lam, "<lean matcher>", "eval"), self._namespace)  # noqa: S307
        except (MatcherSyntaxError, RecursionError, MemoryError, SyntaxError, ValueError):
            return None
        return LeanShape(fn, transformer.mask)

    def prelude(self) -> Callable[..., tuple[tuple[Any, ...], int]]:
        """`prelude(*request values) -> (av, failed slots)`, every hoisted chain read once."""
        args = list(self.request)
        body: list[ast.stmt] = [ast.Assign([ast.Name(_FAILED, ast.Store())], ast.Constant(0))]
        reads: list[ast.expr] = [ast.Name(name, ast.Load()) for name in args]
        for number, chain in enumerate(self._chains):
            name = f"__authz_s{number}"
            body.append(
                ast.Try(
                    body=[ast.Assign([ast.Name(name, ast.Store())], _copy(chain))],
                    handlers=[
                        ast.ExceptHandler(
                            type=ast.Name("Exception", ast.Load()),
                            name=None,
                            body=[
                                ast.Assign([ast.Name(name, ast.Store())], ast.Constant(None)),
                                ast.AugAssign(
                                    ast.Name(_FAILED, ast.Store()), ast.BitOr(), ast.Constant(1 << number)
                                ),
                            ],
                        )
                    ],
                    orelse=[],
                    finalbody=[],
                )
            )
            reads.append(ast.Name(name, ast.Load()))
        result = ast.Tuple([ast.Tuple(reads, ast.Load()), ast.Name(_FAILED, ast.Load())], ast.Load())
        body.append(ast.Return(result))
        function = ast.FunctionDef(
            name="prelude",
            args=ast.arguments(
                posonlyargs=[],
                args=[ast.arg(name) for name in args],
                kwonlyargs=[],
                kw_defaults=[],
                defaults=[],
            ),
            body=body,
            decorator_list=[],
        )
        module = ast.Module(body=[function], type_ignores=[])
        ast.fix_missing_locations(module)
        scope = {**self._namespace, "Exception": Exception}
        exec(compile(module, "<lean prelude>", "exec"), scope)  # noqa: S102
        built: Callable[..., tuple[tuple[Any, ...], int]] = scope["prelude"]
        return built


def _copy(node: ast.expr) -> ast.expr:
    # Transformers edit in place: each use gets its own tree.
    copied: ast.expr = copy.deepcopy(node)
    return copied
