"""Checks on the graph that need no data: every called distribution and function exists and
gets the right number of arguments, and types are used where they make sense."""
from __future__ import annotations

from . import ast as A
from . import combinators
from .distributions import DISTRIBUTIONS
from .errors import ModelError, did_you_mean
from .evaluate import check_arity
from .functions import FUNCTIONS
from .graph import Graph

_SUFFIXES = ("_lpdf", "_lpmf", "_lcdf", "_lccdf")


def check_graph(g: Graph) -> Graph:
    """Raise a located ModelError for the first problem found; return the graph unchanged."""
    fns = g.functions
    try:
        for node in g.nodes.values():
            if node.dist is not None:
                _check_distribution(node.dist, fns)
            for e in _exprs(node):
                _check_calls(e, fns)
            for p in node.pieces:
                if p.dist is not None:
                    _check_distribution(p.dist, fns)
                for e in [p.expr, *p.indices, *[b for lp in p.loops for b in (lp.start, lp.stop)]]:
                    if e is not None:
                        _check_calls(e, fns)
            if node.type is not None and node.type.base == "int" and node.dist is not None \
                    and node.dist.func in DISTRIBUTIONS:
                d = DISTRIBUTIONS[node.dist.func]
                if not d.discrete:
                    raise ModelError(f"`{node.name}` is declared `int` but `{d.name}` is continuous",
                                     node.type.span, hint=f"declare it `real`")
        for f in g.factors:
            if f.dist is not None:
                _check_distribution(f.dist, fns)
            _check_calls(f.value, fns)
        for uf in fns.values():
            for stmt in uf.definition.body:
                _check_calls(stmt.value, fns)
            _check_calls(uf.definition.result, fns)
    except ModelError as err:
        raise err.located(g.file, g.source) from None
    return g


def _exprs(node):
    out = [node.expr] if node.expr is not None else []
    if node.type is not None:
        out += [e for e in (node.type.lower, node.type.upper, *node.type.shape) if e is not None]
    return out


def _check_distribution(call: A.Call, fns) -> None:
    combinators.check_call(call, check_arity, lambda e: _check_calls(e, fns))


def _check_calls(expr, fns=None) -> None:
    fns = fns or {}
    for e in A.walk(expr):
        if not isinstance(e, A.Call):
            continue
        name = e.func
        if name in fns:
            params = fns[name].definition.params
            if len(e.args) != len(params):
                raise ModelError(f"`{name}` takes {len(params)} argument{'s' if len(params) != 1 else ''} "
                                 f"({', '.join(params)}), got {len(e.args)}", e.span)
            continue
        if name in combinators.COMBINATORS:
            raise ModelError(f"`{name}(...)` is a distribution; use it on the right of `~`", e.span)
        base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), None)
        if base in DISTRIBUTIONS:
            check_arity(DISTRIBUTIONS[base], e.args, e.span, name)
            if e.given is None:
                raise ModelError(f"`{name}` takes its value before a bar: `{name}(x | ...)`", e.span)
            continue
        fn = FUNCTIONS.get(name)
        if fn is None:
            if name in DISTRIBUTIONS:
                raise ModelError(f"`{name}` is a distribution, not a function", e.span,
                                 hint=f"use `x ~ {name}(...)` or `{name}_lpdf(x | ...)`")
            raise ModelError(f"unknown function `{name}`", e.span,
                             hint=did_you_mean(name, list(FUNCTIONS) + [d + "_lpdf" for d in DISTRIBUTIONS]))
        n = len(e.args)
        if not fn.min_args <= n <= fn.max_args:
            want = str(fn.min_args) if fn.min_args == fn.max_args else f"{fn.min_args} to {fn.max_args}"
            raise ModelError(f"`{name}` takes {want} argument{'s' if fn.max_args != 1 else ''}, got {n}", e.span,
                             hint=f"usage: {fn.doc}" if fn.doc else None)
