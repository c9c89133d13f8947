"""Checks on the graph that need no data: every called distribution and function exists and
gets the right number of arguments, and types are used where they make sense."""
from __future__ import annotations

from . import ast as A
from . import combinators
from .distributions import DISTRIBUTIONS
from .errors import ModelError
from .evaluate import builtin, check_arity
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
                                     node.type.span, hint="declare it `real`")
        for f in g.factors:
            if f.dist is not None:
                _check_distribution(f.dist, fns)
            _check_calls(f.value, fns)
        for uf in fns.values():
            for stmt in uf.definition.body:
                _check_calls(stmt.value, fns)
            _check_calls(uf.definition.result, fns)
        _check_inlined_size(g)
    except ModelError as err:
        raise err.located(g.file, g.source) from None
    return g


# Functions are inlined where they are called: a chain of functions that each call the next
# twice grows exponentially, and a long chain of calls nests deeply (evaluation recurses over
# expressions). Refuse a model whose inlined expressions exceed these sizes.
MAX_INLINED_OPERATIONS = 100_000
MAX_INLINED_DEPTH = 150


def _check_inlined_size(g: Graph) -> None:
    fns = g.functions
    if not fns:
        return
    body_cost: dict = {}
    body_depth: dict = {}
    pending = dict(fns)
    while pending:                       # callees before callers (functions are not recursive)
        progress = False
        for name, uf in list(pending.items()):
            fn = uf.definition
            exprs = [st.value for st in fn.body] + [fn.result]
            if any(c in pending and c != name for e in exprs for c in _user_calls(e, fns)):
                continue
            body_cost[name] = sum(_inlined_size(e, fns, body_cost) for e in exprs)
            body_depth[name] = max(_inlined_depth(e, fns, body_depth) for e in exprs)
            del pending[name]
            progress = True
        if not progress:
            return                       # recursion is reported elsewhere
    exprs = []
    for node in g.nodes.values():
        exprs += [(e, node.span) for e in [*_exprs(node), node.dist] if e is not None]
        exprs += [(e, p.span) for p in node.pieces for e in (p.expr, p.dist) if e is not None]
    exprs += [(e, f.span) for f in g.factors for e in (f.value, f.dist) if e is not None]
    for e, span in exprs:
        size = _inlined_size(e, fns, body_cost)
        if size > MAX_INLINED_OPERATIONS:
            raise ModelError(f"this expression grows to {size:,} operations when its functions are inlined "
                             f"(at most {MAX_INLINED_OPERATIONS:,})", span,
                             hint="functions are inlined at every call: compute a shared value once "
                                  "(`y = f(x)`) and reuse it")
        depth = _inlined_depth(e, fns, body_depth)
        if depth > MAX_INLINED_DEPTH:
            raise ModelError(f"this expression nests {depth} levels deep when its functions are inlined "
                             f"(at most {MAX_INLINED_DEPTH})", span,
                             hint="shorten the chain of functions calling functions, or compute intermediate "
                                  "values as named nodes")


def _user_calls(expr, fns) -> set:
    return {e.func for e in A.walk(expr) if isinstance(e, A.Call) and e.func in fns}


def _inlined_depth(expr, fns, body_depth) -> int:
    deepest, stack = 0, [(expr, 1)]
    while stack:
        e, d = stack.pop()
        if e is None:
            continue
        if isinstance(e, A.Call) and e.func in fns:
            deepest = max(deepest, d + body_depth.get(e.func, 0))
        deepest = max(deepest, d)
        stack += [(c, d + 1) for c in _children(e)]
    return deepest


def _children(e) -> list:
    if isinstance(e, (A.Unary, A.Transpose)):
        return [e.operand]
    if isinstance(e, A.Binary):
        return [e.left, e.right]
    if isinstance(e, A.Call):
        return [*e.args, e.given]
    if isinstance(e, A.Index):
        return [e.base] + [x for i in e.indices for x in ((i.lower, i.upper) if isinstance(i, A.Slice) else (i,))]
    if isinstance(e, A.ArrayLit):
        return list(e.items)
    if isinstance(e, A.IfElse):
        return [e.cond, e.then, e.other]
    return []


def _inlined_size(expr, fns, body_cost) -> int:
    return sum(1 + (body_cost.get(e.func, 0) if isinstance(e, A.Call) and e.func in fns else 0)
               for e in A.walk(expr))


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
            params = ", ".join(DISTRIBUTIONS[base].params)
            if e.given is None:
                raise ModelError(f"`{name}` takes its value before a bar: `{name}(x | {params})`", e.span)
            want = len(DISTRIBUTIONS[base].params)
            if len(e.args) != want:
                raise ModelError(f"`{name}` takes {want} parameter{'s' if want != 1 else ''} after the bar "
                                 f"({params}), got {len(e.args)}", e.span, hint=f"usage: {name}(x | {params})")
            continue
        builtin(e)
