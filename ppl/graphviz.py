"""The model's DAG in Graphviz DOT (`ppl graph`), and drawing it with the `dot` program.

* one DOT node per graph node: ellipses for random quantities (stochastic nodes and flat
  parameters; dashed when *generated*), boxes for deterministic nodes and data;
* known values are shaded: with data, the nodes the data fixes (observed, data,
  transformed data); without data, the nodes declared ``data``;
* edges parent -> child; a reference made only by a declared type (a bound or a size) is
  dashed;
* an observation ``y ~ D(...)`` of a data node ``y`` draws as edges into ``y``; any other
  observation of an expression, and each ``target += ...``, is a small box of its own;
* nodes whose declared type has a shape sit in a plate (``subgraph cluster_J``) named by
  the first dimension of that shape (``theta: real[J]`` is in plate ``J``); nodes without a
  declared shape stay outside.

Nothing here imports JAX; drawing runs ``dot`` as a subprocess (no shell).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

from . import ast as A
from .graph import DATA, DETERMINISTIC, FLAT, Graph

__all__ = ["to_dot", "render", "RENDER_FORMATS"]

RENDER_FORMATS = ("svg", "png", "pdf")
_KNOWN_ROLES = ("data", "observed", "transformed data")
_FILL = "gray85"


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _names(*exprs) -> list[str]:
    out = []
    for e in exprs:
        if e is not None:
            out += [n.id for n in A.free_names(e)]
    return list(dict.fromkeys(out))


def _factor_text(source: str, f, limit: int = 32) -> str:
    """The observed expression (before `~`) or the added term (after `+=`) of a factor's line."""
    lines = source.splitlines()
    if f.span is None or not 1 <= f.span.line <= len(lines):
        return "?"
    text = lines[f.span.line - 1][f.span.column - 1:].split("#")[0].split(";")[0]
    if f.kind == "observe":
        text = text.split("~")[0]
    else:
        text = text.partition("+=")[2]
    text = " ".join(text.split()) or "..."
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _piece_exprs(node) -> list:
    """Every expression of a piecewise node's element definitions (values, indices, loop bounds)."""
    out = []
    for pc in getattr(node, "pieces", ()) or ():
        out += [pc.expr, pc.dist]
        for i in pc.indices:
            out += [i.lower, i.upper] if isinstance(i, A.Slice) else [i]
        out += [e for lp in pc.loops for e in (lp.start, lp.stop)]
    return out


def _observed_name(f, g) -> str | None:
    """The node an observation `y ~ D` or `y[i] ~ D` observes (None for other expressions)."""
    if f.kind != "observe":
        return None
    v = f.value
    if isinstance(v, A.Index) and isinstance(v.base, A.Name):
        v = v.base
    return v.id if isinstance(v, A.Name) and v.id in g.nodes else None


def _plate(node) -> str | None:
    t = node.type
    if t is None or not t.shape or not isinstance(t.shape[0], A.Name):
        return None
    return t.shape[0].id


def to_dot(g: Graph, binding=None, name: str = "model") -> str:
    """DOT text of the graph; ``binding`` (from the data) decides roles and plate sizes."""
    roles = dict(binding.roles) if binding is not None else {}
    sizes = dict(binding.static) if binding is not None else {}
    targets = {i: _observed_name(f, g) for i, f in enumerate(g.factors)}
    observed_data = {}
    for i, observed in targets.items():
        if observed is not None:
            observed_data.setdefault(observed, g.factors[i])

    def attrs(node) -> dict:
        role = roles.get(node.name)
        random = (node.kind not in (DATA, DETERMINISTIC) and role not in ("data", "transformed data")
                  or node.name in observed_data)
        a = {"shape": "ellipse" if random else "box"}
        known = role in _KNOWN_ROLES if binding is not None else node.kind == DATA
        style = []
        if known:
            style.append("filled")
            a["fillcolor"] = _FILL
        if role == "generated":
            style.append("dashed")
        if style:
            a["style"] = ",".join(style)
        label = node.name
        dist = node.dist or next((pc.dist for pc in node.pieces if pc.dist is not None), None)
        if dist is None and node.name in observed_data:
            dist = observed_data[node.name].dist
        if dist is not None:
            label += f"\n~ {dist.func}"
        elif node.kind == FLAT:
            label += "\n(flat)"
        a["label"] = label
        if role:
            a["tooltip"] = role
        return a

    def node_line(node, indent: str) -> str:
        body = ", ".join(f"{k}={_q(v)}" for k, v in attrs(node).items())
        return f"{indent}{_q(node.name)} [{body}];"

    out = [f"digraph {_q(name)} {{",
           '  graph [fontname="Helvetica", fontsize=11];',
           '  node [fontname="Helvetica", fontsize=11];',
           '  edge [arrowsize=0.7];']
    plates: dict[str, list] = {}
    for n in g.order:
        plate = _plate(g.nodes[n])
        if plate is None:
            out.append(node_line(g.nodes[n], "  "))
        else:
            plates.setdefault(plate, []).append(n)
    for plate, members in plates.items():
        label = f"{plate} = {sizes[plate]}" if plate in sizes else plate
        out.append(f"  subgraph {_q('cluster_' + plate)} {{")
        out.append(f'    label={_q(label)}; labeljust="r"; labelloc="b"; style="rounded";')
        out += [node_line(g.nodes[n], "    ") for n in members]
        out.append("  }")
    edges: dict[tuple, bool] = {}      # (parent, child) -> solid?

    def edge(parent, child, solid):
        edges[(parent, child)] = edges.get((parent, child), False) or solid

    for n in g.order:
        node = g.nodes[n]
        t = node.type
        type_only = set(_names(t.lower, t.upper, *t.shape)) if t is not None else set()
        type_only -= set(_names(node.dist, node.expr, *_piece_exprs(node)))
        for p in node.parents:
            edge(p, n, p not in type_only)
        if getattr(node, "recurrent", False):      # an element depends on earlier elements
            edge(n, n, True)
    for i, f in enumerate(g.factors):
        target = targets[i]
        if target is not None:
            in_dist = set(_names(f.dist))
            for p in f.parents:
                if p != target or p in in_dist:      # `y[t] ~ normal(rho * y[t-1], s)`: a loop
                    edge(p, target, True)
            continue
        fid = f"factor_{i}"
        text = _factor_text(g.source, f)
        label = f"{text}\n~ {f.dist.func}" if f.kind == "observe" else f"target += {text}"
        out.append(f'  {_q(fid)} [label={_q(label)}, shape="box", style="filled,rounded", '
                   f'fillcolor={_q(_FILL)}, fontsize=9, height=0.2, margin="0.05,0.02"];')
        for p in f.parents:
            edge(p, fid, True)
    for (parent, child), solid in edges.items():
        out.append(f"  {_q(parent)} -> {_q(child)}" + ("" if solid else ' [style="dashed"]') + ";")
    out.append("}")
    return "\n".join(out) + "\n"


def render(dot_text: str, path, fmt: str | None = None) -> None:
    """Draw ``dot_text`` to ``path`` (svg, png or pdf by extension) with Graphviz's ``dot``;
    ``.dot`` / ``.gv`` write the text itself. The file appears atomically."""
    from .results_io import atomic_write, temp_path
    path = os.fspath(path)
    ext = (fmt or os.path.splitext(path)[1].lstrip(".")).lower()
    if ext in ("dot", "gv"):
        atomic_write(path, [dot_text])
        return
    if ext not in RENDER_FORMATS:
        raise ValueError(f"cannot draw {path!r}: use a name ending in .svg, .png, .pdf or .dot")
    exe = shutil.which("dot")
    if exe is None:
        raise FileNotFoundError(
            f"drawing {path} needs Graphviz's `dot` program, which is not installed "
            "(apt-get install graphviz, brew install graphviz, or conda install graphviz); "
            "without it, `-o model.dot` writes the DOT text")
    tmp = temp_path(path)
    try:
        res = subprocess.run([exe, f"-T{ext}", "-o", tmp], input=dot_text, text=True,
                             capture_output=True, timeout=120, check=False)
        if res.returncode != 0 or not os.path.exists(tmp):
            raise OSError(f"Graphviz `dot` failed ({res.returncode}): {res.stderr.strip()}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
