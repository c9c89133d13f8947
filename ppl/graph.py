"""AST -> graph IR: one node per name (kind, type, parents, distribution or expression),
plus factors (observed expressions and `target +=`), checked for undefined names,
duplicates and cycles. Roles that depend on the data are decided later (ppl.binding)."""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Optional

from . import ast as A
from .errors import ModelError, Span, did_you_mean

# Kinds a node can have in the file; the data turn them into roles (see binding.Role).
DATA, STOCHASTIC, DETERMINISTIC, FLAT = "data", "stochastic", "deterministic", "flat"


@dataclass
class Node:
    name: str
    kind: str                          # data | stochastic | deterministic | flat
    span: Span
    type: Optional[A.TypeSpec] = None
    dist: Optional[A.Call] = None      # stochastic nodes
    expr: Optional[A.Expr] = None      # deterministic value, or a data node's default
    parents: tuple = ()                # names this node's value or distribution depends on


@dataclass
class Factor:
    """A term of the log density that defines no name: `EXPR ~ D(...)` or `target += EXPR`."""

    kind: str                          # 'observe' | 'target'
    span: Span
    value: A.Expr                      # the observed expression, or the added term
    dist: Optional[A.Call] = None
    parents: tuple = ()


@dataclass
class Graph:
    nodes: dict                        # name -> Node, in file order
    factors: list
    order: list                        # node names, parents before children
    file: Optional[str] = None
    source: str = ""

    def children(self) -> dict:
        out = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            for p in node.parents:
                out[p].append(node.name)
        return out

    def error(self, message, span=None, hint=None) -> ModelError:
        return ModelError(message, span, hint=hint, file=self.file, source=self.source)


def _names_in(*exprs) -> list:
    out = []
    for e in exprs:
        if e is not None:
            out += A.free_names(e)
    return out


def _type_names(t: Optional[A.TypeSpec]) -> list:
    if t is None:
        return []
    return _names_in(t.lower, t.upper, *t.shape)


def _unsupported(stmt) -> Optional[str]:
    if isinstance(stmt, A.For):
        return "`for` loops are not supported yet; write the model with vectorised statements (`y ~ normal(mu[g], sigma)`)"
    if isinstance(stmt, A.FnDef):
        return "`fn` definitions are not supported yet"
    if isinstance(stmt, A.Import):
        return "`import` is not supported yet"
    if isinstance(stmt, A.Return):
        return "`return` is only allowed at the end of a function body"
    if isinstance(stmt, A.Assign) and not isinstance(stmt.target, A.Name):
        return "element-wise (piecewise) definitions like `x[0] = ...` are not supported yet"
    return None


def build_graph(program: A.Program) -> Graph:
    """Turn a parsed Program into a checked Graph (names, duplicates, cycles)."""
    g = Graph({}, [], [], program.file, program.source)
    data_names = {s.name: s for s in program.statements if isinstance(s, A.DataDecl)}
    for stmt in program.statements:
        why = _unsupported(stmt)
        if why:
            raise g.error(why, stmt.span)
        if isinstance(stmt, A.DataDecl):
            _add(g, Node(stmt.name, DATA, stmt.span, stmt.type, expr=stmt.default))
        elif isinstance(stmt, A.Sample):
            name = stmt.target.id if isinstance(stmt.target, A.Name) else None
            if name is not None and name not in data_names:
                _add(g, Node(name, STOCHASTIC, stmt.span, stmt.type, dist=stmt.dist))
                continue
            if stmt.type is not None:   # an observation of data or of an expression of data
                decl = data_names.get(name)
                raise g.error(f"`{name}` is declared as data at line {decl.span.line}; its type belongs there"
                              if decl else "an observed expression cannot be given a type", stmt.type.span)
            g.factors.append(Factor("observe", stmt.span, stmt.target, stmt.dist))
        elif isinstance(stmt, A.Assign):
            _add(g, Node(stmt.target.id, DETERMINISTIC, stmt.span, stmt.type, expr=stmt.value))
        elif isinstance(stmt, A.Declare):
            _add(g, Node(stmt.name, FLAT, stmt.span, stmt.type))
        elif isinstance(stmt, A.TargetIncrement):
            g.factors.append(Factor("target", stmt.span, stmt.value))
    _link(g)
    g.order = _topological_order(g)
    return g


def _add(g: Graph, node: Node) -> None:
    if node.name == "target":
        raise g.error("`target` is reserved for `target += ...`", node.span)
    prev = g.nodes.get(node.name)
    if prev is not None:
        raise g.error(f"`{node.name}` is defined twice (first at line {prev.span.line})", node.span,
                      hint="every name is defined exactly once; rename one of them")
    # keep file order: nodes sorted by position
    g.nodes[node.name] = node


def _link(g: Graph) -> None:
    """Fill in parents; report undefined names with a suggestion."""
    known = set(g.nodes)
    dims = _dimension_names(g)
    for node in g.nodes.values():
        refs = _type_names(node.type) + _names_in(node.expr)
        if node.dist is not None:
            refs += _names_in(node.dist)
        parents = []
        for ref in refs:
            if ref.id == node.name:
                raise g.error(f"`{node.name}` is defined in terms of itself", ref.span,
                              hint="a node cannot depend on its own value")
            if ref.id in known:
                if ref.id not in parents:
                    parents.append(ref.id)
            elif ref.id not in dims:
                raise _undefined(g, ref, known)
        node.parents = tuple(parents)
    for f in g.factors:
        refs = _names_in(f.value, f.dist)
        for ref in refs:
            if ref.id not in known and ref.id not in dims:
                raise _undefined(g, ref, known)
        f.parents = tuple(dict.fromkeys(r.id for r in refs if r.id in known))


def _dimension_names(g: Graph) -> set:
    """Names used only as shape entries of types: dimensions bound from the data."""
    dims = set()
    for node in g.nodes.values():
        if node.type is not None:
            for e in node.type.shape:
                if isinstance(e, A.Name) and e.id not in g.nodes:
                    dims.add(e.id)
    return dims


def _undefined(g: Graph, ref: A.Name, known) -> ModelError:
    from .distributions import DISTRIBUTIONS
    from .functions import FUNCTIONS
    hint = did_you_mean(ref.id, known)
    if hint is None and (ref.id in FUNCTIONS or ref.id in DISTRIBUTIONS):
        hint = f"`{ref.id}` is a function; call it with arguments: `{ref.id}(...)`"
    if hint is None:
        hint = f"declare it, e.g. `data {ref.id}: real` or `{ref.id} ~ normal(0, 1)`"
    return g.error(f"`{ref.id}` is not defined", ref.span, hint=hint)


def _topological_order(g: Graph) -> list:
    """Parents before children, otherwise file order; a cycle is an error naming its nodes."""
    position = {n: i for i, n in enumerate(g.nodes)}
    waiting = {n: len(node.parents) for n, node in g.nodes.items()}
    children = g.children()
    ready = [position[n] for n, k in waiting.items() if k == 0]
    heapq.heapify(ready)
    names = list(g.nodes)
    order = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    if len(order) < len(names):
        cycle = _find_cycle(g, [n for n in names if waiting[n] > 0])
        node = g.nodes[cycle[0]]
        raise g.error("these definitions form a cycle: " + " -> ".join(cycle + [cycle[0]]), node.span,
                      hint="the file describes a graph; a node cannot depend on itself")
    return order


def _find_cycle(g: Graph, stuck: list) -> list:
    """A cycle among nodes that never became ready (each has a parent among them)."""
    stuck_set = set(stuck)
    path, seen = [stuck[0]], {stuck[0]: 0}
    while True:
        nxt = next(p for p in g.nodes[path[-1]].parents if p in stuck_set)
        if nxt in seen:
            cyc = path[seen[nxt]:]
            return list(reversed(cyc))      # dependency order: parent -> child
        seen[nxt] = len(path)
        path.append(nxt)


def describe(g: Graph) -> str:
    """A plain listing of the graph (kind and parents of each node), for debugging."""
    lines = []
    for name in g.order:
        n = g.nodes[name]
        dist = f" ~ {n.dist.func}" if n.dist is not None else ""
        lines.append(f"{name}: {n.kind}{dist} <- {', '.join(n.parents) or '-'}")
    for f in g.factors:
        lines.append(f"[{f.kind} at line {f.span.line}] <- {', '.join(f.parents) or '-'}")
    return "\n".join(lines)
