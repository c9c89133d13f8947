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


@dataclass(frozen=True)
class Loop:
    """`for var in range(start, stop)`; `group` identifies the top-level loop statement."""

    var: str
    start: A.Expr
    stop: A.Expr
    span: Span
    group: int


@dataclass
class Piece:
    """One element-wise definition of an array node: `x[i] = ...` or `x[t] ~ ...` in a loop."""

    id: int
    loops: tuple                       # enclosing Loops, outermost first (empty outside loops)
    indices: tuple                     # index expressions of the element defined
    expr: Optional[A.Expr]             # a deterministic piece
    dist: Optional[A.Call]             # a stochastic piece
    span: Span

    @property
    def group(self) -> Optional[int]:
        return self.loops[0].group if self.loops else None

    @property
    def loop_vars(self) -> tuple:
        return tuple(lp.var for lp in self.loops)


@dataclass
class Node:
    name: str
    kind: str                          # data | stochastic | deterministic | flat
    span: Span
    type: Optional[A.TypeSpec] = None
    dist: Optional[A.Call] = None      # stochastic nodes
    expr: Optional[A.Expr] = None      # deterministic value, or a data node's default
    parents: tuple = ()                # names this node's value or distribution depends on
    pieces: list = field(default_factory=list)   # element-wise definitions (piecewise arrays)
    recurrent: bool = False            # a piece reads other elements of the node itself


@dataclass
class Factor:
    """A term of the log density that defines no name: `EXPR ~ D(...)` or `target += EXPR`."""

    kind: str                          # 'observe' | 'target'
    span: Span
    value: A.Expr                      # the observed expression, or the added term
    dist: Optional[A.Call] = None
    parents: tuple = ()
    loops: tuple = ()                  # enclosing Loops (the term is summed over them)


@dataclass
class Graph:
    nodes: dict                        # name -> Node, in file order
    factors: list
    order: list                        # node names, parents before children
    file: Optional[str] = None
    source: str = ""
    functions: dict = field(default_factory=dict)   # name -> modules.UserFunction
    units: dict = field(default_factory=dict)       # name -> tuple of names evaluated together (a recurrence)

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


def build_graph(program: A.Program, functions: Optional[dict] = None) -> Graph:
    """Turn a parsed Program into a checked Graph (names, duplicates, cycles)."""
    g = Graph({}, [], [], program.file, program.source, functions=dict(functions or {}))
    b = _Builder(g, {s.name for s in program.statements if isinstance(s, A.DataDecl)} | _assigned(program.statements))
    b.statements(program.statements, ())
    _link(g)
    g.order = _topological_order(g)
    return g


class _Builder:
    def __init__(self, g: Graph, observed_names: set):
        # names whose `NAME ~ D` is an observation (declared data, or defined by `=`)
        self.g, self.data_names = g, observed_names
        self.groups = 0
        self.pieces = 0

    def statements(self, stmts, loops):
        for stmt in stmts:
            self.statement(stmt, loops)

    def statement(self, stmt, loops):
        g = self.g
        if isinstance(stmt, A.For):
            if stmt.var in g.nodes or stmt.var in (lp.var for lp in loops):
                raise g.error(f"the loop variable `{stmt.var}` hides another name", stmt.span,
                              hint="choose a loop variable that is not used elsewhere")
            group = loops[0].group if loops else self._new_group()
            self.statements(stmt.body, loops + (Loop(stmt.var, stmt.start, stmt.stop, stmt.span, group),))
        elif isinstance(stmt, (A.FnDef, A.Import)):
            if loops:
                raise g.error("`fn` and `import` belong at the top level of a file", stmt.span)
        elif isinstance(stmt, A.Return):
            raise g.error("`return` is only allowed at the end of a function body", stmt.span)
        elif isinstance(stmt, A.DataDecl):
            if loops:
                raise g.error("`data` declarations belong outside loops", stmt.span)
            _add(g, Node(stmt.name, DATA, stmt.span, stmt.type, expr=stmt.default))
        elif isinstance(stmt, A.Declare):
            if loops:
                raise g.error("declarations belong outside loops", stmt.span)
            _add(g, Node(stmt.name, FLAT, stmt.span, stmt.type))
        elif isinstance(stmt, A.TargetIncrement):
            g.factors.append(Factor("target", stmt.span, stmt.value, loops=loops))
        elif isinstance(stmt, A.Sample):
            self.sample(stmt, loops)
        elif isinstance(stmt, A.Assign):
            self.assign(stmt, loops)

    def _new_group(self) -> int:
        self.groups += 1
        return self.groups

    def _piece(self, stmt, loops, indices, expr=None, dist=None) -> Piece:
        self.pieces += 1
        for i in indices:
            if isinstance(i, A.Slice):
                raise self.g.error("an element-wise definition names single elements (`x[t]`), not slices",
                                   i.span)
        return Piece(self.pieces, loops, indices, expr, dist, stmt.span)

    def sample(self, stmt: A.Sample, loops):
        g, target = self.g, stmt.target
        name = target.id if isinstance(target, A.Name) else None
        element = _element_target(target)
        if name is not None and name not in self.data_names:
            if loops:
                raise g.error(f"inside a loop, define elements: `{name}[{loops[-1].var}] ~ ...`", target.span)
            _add(g, Node(name, STOCHASTIC, stmt.span, stmt.type, dist=stmt.dist))
            return
        if element is not None and element[0] not in self.data_names:
            if stmt.type is not None:
                raise g.error("an element-wise definition cannot carry a type", stmt.type.span)
            self._add_piece(element[0], STOCHASTIC, self._piece(stmt, loops, element[1], dist=stmt.dist))
            return
        if stmt.type is not None:   # an observation of data or of an expression of data
            raise g.error(f"`{name}` is declared elsewhere; its type belongs there" if name
                          else "an observed expression cannot be given a type", stmt.type.span)
        g.factors.append(Factor("observe", stmt.span, stmt.target, stmt.dist, loops=loops))

    def assign(self, stmt: A.Assign, loops):
        g, target = self.g, stmt.target
        if isinstance(target, A.Name):
            if loops:
                raise g.error(f"inside a loop, define elements: `{target.id}[{loops[-1].var}] = ...`",
                              target.span, hint="a name defined in a loop would be defined once per iteration")
            _add(g, Node(target.id, DETERMINISTIC, stmt.span, stmt.type, expr=stmt.value))
            return
        element = _element_target(target)
        if element is None:
            raise g.error("the left of `=` must be a name or an element `x[i]`", target.span)
        if g.nodes.get(element[0]) is not None and g.nodes[element[0]].kind == DATA:
            raise g.error(f"`{element[0]}` is data and cannot be assigned", target.span)
        if stmt.type is not None:
            raise g.error("an element-wise definition cannot carry a type", stmt.type.span)
        self._add_piece(element[0], DETERMINISTIC, self._piece(stmt, loops, element[1], expr=stmt.value))

    def _add_piece(self, name, kind, piece):
        g = self.g
        node = g.nodes.get(name)
        if node is None:
            _add(g, Node(name, kind, piece.span, pieces=[piece]))
            return
        if not node.pieces:
            raise g.error(f"`{name}` is defined twice (first at line {node.span.line})", piece.span,
                          hint="every name is defined exactly once; rename one of them")
        if node.kind != kind:
            raise g.error(f"`{name}` mixes `=` and `~` definitions of its elements", piece.span)
        node.pieces.append(piece)


def _assigned(stmts) -> set:
    """Names defined by `=` (whole or element-wise): `NAME ~ D` then observes them, as in Stan."""
    out = set()
    for s in stmts:
        if isinstance(s, A.Assign):
            el = _element_target(s.target)
            out.add(s.target.id if isinstance(s.target, A.Name) else (el[0] if el else None))
        elif isinstance(s, A.For):
            out |= _assigned(s.body)
    out.discard(None)
    return out


def _element_target(target):
    """`x[i, j]` -> ('x', (i, j)); anything else -> None."""
    if isinstance(target, A.Index) and isinstance(target.base, A.Name):
        return target.base.id, target.indices
    return None


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
    dims = dimension_names(g)
    for node in g.nodes.values():
        refs = [(r, ()) for r in _type_names(node.type) + _names_in(node.expr)]
        if node.dist is not None:
            refs += [(r, ()) for r in _names_in(node.dist)]
        for piece in node.pieces:
            refs += [(r, piece.loop_vars) for r in _piece_names(piece)]
        parents = []
        for ref, scope in refs:
            if ref.id in scope:
                continue
            if ref.id == node.name:
                if node.pieces:
                    node.recurrent = True
                    continue
                raise g.error(f"`{node.name}` is defined in terms of itself", ref.span,
                              hint="a node cannot depend on its own value")
            if ref.id in known:
                if ref.id not in parents:
                    parents.append(ref.id)
            elif ref.id not in dims:
                raise _undefined(g, ref, known)
        node.parents = tuple(parents)
    for f in g.factors:
        scope = tuple(lp.var for lp in f.loops)
        refs = _names_in(f.value, f.dist, *[e for lp in f.loops for e in (lp.start, lp.stop)])
        for ref in refs:
            if ref.id not in known and ref.id not in dims and ref.id not in scope:
                raise _undefined(g, ref, known)
        f.parents = tuple(dict.fromkeys(r.id for r in refs if r.id in known))


def _piece_names(piece: Piece) -> list:
    bounds = [e for lp in piece.loops for e in (lp.start, lp.stop)]
    idx = []
    for i in piece.indices:
        idx += [i.lower, i.upper] if isinstance(i, A.Slice) else [i]
    return _names_in(piece.expr, piece.dist, *bounds, *idx)


def dimension_names(g: Graph) -> set:
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


def _strongly_connected(g: Graph) -> list:
    """Strongly connected components (Kosaraju, iterative), each a list of names."""
    names = list(g.nodes)
    children = g.children()
    seen, finish = set(), []
    for root in names:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(g.nodes[root].parents))]
        while stack:
            name, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                finish.append(name)
            elif nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, iter(g.nodes[nxt].parents)))
    comps, assigned = [], set()
    for root in reversed(finish):
        if root in assigned:
            continue
        comp, stack = [], [root]
        assigned.add(root)
        while stack:
            n = stack.pop()
            comp.append(n)
            for c in children[n]:
                if c not in assigned:
                    assigned.add(c)
                    stack.append(c)
        comps.append(comp)
    return comps


def _topological_order(g: Graph) -> list:
    """Parents before children, otherwise file order. Nodes defined together in one loop may
    depend on each other (a recurrence: they become one unit); any other cycle is an error."""
    position = {n: i for i, n in enumerate(g.nodes)}
    comps = _strongly_connected(g)
    comp_of = {}
    for k, comp in enumerate(comps):
        comp.sort(key=position.get)
        if len(comp) > 1:
            _check_recurrence(g, comp)
        for n in comp:
            comp_of[n] = k
            g.units[n] = tuple(comp)
    waiting = [0] * len(comps)
    deps = [set() for _ in comps]
    for n, node in g.nodes.items():
        for p in node.parents:
            if comp_of[p] != comp_of[n] and comp_of[n] not in deps[comp_of[p]]:
                deps[comp_of[p]].add(comp_of[n])
                waiting[comp_of[n]] += 1
    ready = [(position[comps[k][0]], k) for k in range(len(comps)) if waiting[k] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, k = heapq.heappop(ready)
        order += comps[k]
        for c in deps[k]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (position[comps[c][0]], c))
    return order


def _check_recurrence(g: Graph, comp: list) -> None:
    groups = {p.group for n in comp for p in g.nodes[n].pieces if p.loops}
    ok = all(g.nodes[n].pieces for n in comp) and len(groups) == 1
    if not ok:
        cycle = _find_cycle(g, comp)
        node = g.nodes[cycle[0]]
        raise g.error("these definitions form a cycle: " + " -> ".join(cycle + [cycle[0]]), node.span,
                      hint="the file describes a graph; only elements defined in one loop may depend on "
                           "each other (a recurrence)")


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
