"""Graph + data -> Binding: each node's role, validated data arrays, static sizes, and the
values computable from the data alone (transformed data), all before JAX traces anything."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import jax
import numpy as np

from . import ast as A
from . import constraints as C
from .distributions import DISTRIBUTIONS
from .errors import DataError, ModelError, did_you_mean
from .evaluate import Evaluator, check_arity
from .graph import DATA, FLAT, STOCHASTIC, Graph, dimension_names

# Roles (LANGUAGE.md §2)
ROLE_DATA, ROLE_OBSERVED, ROLE_LATENT = "data", "observed", "latent"
ROLE_GENERATED, ROLE_DETERMINISTIC, ROLE_TRANSFORMED = "generated", "deterministic", "transformed data"
KNOWN_ROLES = (ROLE_DATA, ROLE_OBSERVED, ROLE_TRANSFORMED)
STRUCTURED = {"simplex": 1, "ordered": 1, "positive_ordered": 1, "corr_cholesky": 2, "cov_matrix": 2}


@dataclass
class Binding:
    graph: Graph
    roles: dict                       # name -> role
    arrays: dict                      # name -> np.ndarray: known values passed to compiled code as arguments
    static: dict                      # name -> int: sizes known at compile time (int scalars, dimensions)
    warnings: list = field(default_factory=list)
    needed: set = field(default_factory=set)   # nodes the log density depends on

    @property
    def known(self) -> set:
        return set(self.arrays) | set(self.static)

    def nodes_with(self, *roles) -> list:
        return [n for n in self.graph.order if self.roles[n] in roles]

    def signature(self) -> tuple:
        """Everything compiled code depends on besides array values."""
        arrays = tuple(sorted((k, v.shape, str(v.dtype)) for k, v in self.arrays.items()))
        return (tuple(sorted(self.roles.items())), arrays, tuple(sorted(self.static.items())))


def _err(g: Graph, cls, message, span=None, hint=None):
    return cls(message, span, hint=hint, file=g.file, source=g.source)


def bind(g: Graph, data: Optional[dict], *, strict: bool = False) -> Binding:
    """Decide roles from the data, validate and convert the data, compute transformed data."""
    data = dict(data or {})
    dims = dimension_names(g)
    b = Binding(g, {}, {}, {})
    for key in data:
        if key not in g.nodes and key not in dims:
            msg = f"data `{key}` matches nothing in the model"
            hint = did_you_mean(key, list(g.nodes) + sorted(dims))
            if strict:
                raise _err(g, DataError, msg, None, hint)
            b.warnings.append(msg + (f"; {hint}" if hint else ""))
    for name, node in g.nodes.items():
        supplied = name in data
        if node.kind == DATA:
            b.roles[name] = ROLE_DATA
        elif node.kind == STOCHASTIC:
            b.roles[name] = ROLE_OBSERVED if supplied else ROLE_LATENT
        elif node.kind == FLAT:
            b.roles[name] = ROLE_DATA if supplied else ROLE_LATENT
        else:
            b.roles[name] = ROLE_DETERMINISTIC
            if supplied:
                b.warnings.append(f"data `{name}` is ignored: `{name}` is defined by an expression "
                                  f"(line {node.span.line})")
    missing = [n for n, node in g.nodes.items() if node.kind == DATA and n not in data and node.expr is None]
    if missing:
        first = g.nodes[missing[0]]
        names = ", ".join(f"`{m}`" for m in missing)
        near = did_you_mean(missing[0], [k for k in data if k not in g.nodes and k not in dims])
        hint = (f"the data has a key that looks like it: {near}" if near else
                f"supply it in the data file, or give a default: `data {missing[0]}: ... = VALUE`")
        raise _err(g, DataError, f"no data for {names}", first.span, hint=hint)
    dim_sources = {}
    for key in dims & set(data):
        value = _scalar_int(g, key, data[key])
        b.static[key] = value
        dim_sources[key] = (value, "the data")
    _check_shape_entries(g, b, dims)
    for name in g.order:
        node = g.nodes[name]
        if name in data and b.roles[name] != ROLE_DETERMINISTIC:
            _take(g, b, node, data[name], dim_sources)
    for name, (value, source) in dim_sources.items():
        b.static.setdefault(name, value)
    _transformed_data(g, b)
    _mark_generated(g, b)
    _check_latents(g, b)
    return b


def _mark_generated(g, b):
    """Latent nodes that nothing observed depends on are generated: drawn after inference."""
    needed, stack = set(), []
    for name, role in b.roles.items():
        if role == ROLE_OBSERVED:
            stack += g.nodes[name].parents
    for f in g.factors:
        stack += f.parents
    while stack:
        n = stack.pop()
        if n not in needed:
            needed.add(n)
            stack += g.nodes[n].parents
    b.needed = needed
    for name in g.order:
        node = g.nodes[name]
        if b.roles[name] == ROLE_LATENT and name not in needed:
            if node.kind == FLAT:
                raise _err(g, ModelError, f"`{name}` has no prior and nothing observed depends on it, "
                           "so its posterior is improper", node.span,
                           hint=f"give it a distribution (`{name} ~ ...`) or supply it as data")
            b.roles[name] = ROLE_GENERATED


def _scalar_int(g, key, value) -> int:
    try:
        arr = np.asarray(value, dtype=float)
        ok = arr.ndim == 0 and np.isfinite(arr) and arr == np.round(arr) and arr >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        use = next((e for n in g.nodes.values() if n.type is not None for e in n.type.shape
                    if isinstance(e, A.Name) and e.id == key), None)
        raise _err(g, DataError, f"data `{key}` is used as a dimension and must be a whole number >= 0, "
                   f"got {value!r}", use.span if use is not None else None,
                   hint=f"fix `{key}` in the data file")
    return int(arr)


def _check_shape_entries(g, b, dims):
    for node in g.nodes.values():
        if node.type is None:
            continue
        for e in node.type.shape:
            if isinstance(e, A.Name) and e.id in g.nodes and g.nodes[e.id].kind != DATA:
                raise _err(g, ModelError, f"the size `{e.id}` must be data, not a {g.nodes[e.id].kind} node",
                           e.span)


def _to_array(g, node, value):
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise _err(g, DataError, f"data `{node.name}` is not a rectangular array of numbers", node.span,
                   hint="every row of a nested list must have the same length") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise _err(g, DataError, f"data `{node.name}` must be numbers (got {arr.dtype})", node.span,
                   hint="every row of a nested list must have the same length")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            what = "NaN" if np.isnan(arr[where] if where else arr) else "an infinite value"
            loc = f"[{', '.join(map(str, where))}]" if where else ""
            raise _err(g, DataError, f"data `{node.name}{loc}` is {what}", node.span,
                       hint="remove or impute missing values before fitting")
    return arr


def _declared_base(node):
    return node.type.base if node.type is not None else None


def _is_discrete_node(node) -> bool:
    if _declared_base(node) == "int":
        return True
    dist = node.dist if node.dist is not None else (node.pieces[0].dist if node.pieces else None)
    if dist is not None and dist.func in DISTRIBUTIONS:
        return DISTRIBUTIONS[dist.func].discrete
    return False


def _take(g, b, node, value, dim_sources):
    """Validate one supplied value against its declaration and store it."""
    arr = _to_array(g, node, value)
    if _is_discrete_node(node):
        if np.issubdtype(arr.dtype, np.floating):
            if np.any(arr != np.round(arr)):
                i = tuple(int(k) for k in np.argwhere(arr != np.round(arr))[0])
                raise _err(g, DataError, f"data `{node.name}` must be whole numbers, but "
                           f"{node.name}{list(i) if i else ''} = {arr[i] if i else arr}", node.span,
                           hint="declare it `real` if it is continuous")
        arr = arr.astype(np.int64)
    else:
        arr = arr.astype(np.float64)
    if node.type is not None:
        _check_declared_shape(g, b, node, arr, dim_sources)
        _check_declared_bounds(g, b, node, arr)
        if node.type.base in STRUCTURED:
            ok = np.asarray(getattr(C, node.type.base).check(arr))
            if not np.all(ok):
                raise _err(g, DataError, f"data `{node.name}` is not a valid {node.type.base.replace('_', ' ')}",
                           node.type.span, hint="fix the data or the declared type")
    if node.kind == DATA and node.type is not None and node.type.base == "int" and arr.ndim == 0:
        b.static[node.name] = int(arr)
    else:
        b.arrays[node.name] = arr


def _declared_shape_exprs(t: A.TypeSpec) -> tuple:
    extra = STRUCTURED.get(t.base, 0)
    if extra == 2 and len(t.shape) == 1:
        return (t.shape[0], t.shape[0])
    return tuple(t.shape)


def _check_declared_shape(g, b, node, arr, dim_sources):
    exprs = _declared_shape_exprs(node.type)
    if arr.ndim != len(exprs):
        want = f"{len(exprs)} dimension{'s' if len(exprs) != 1 else ''}" if exprs else "a single number"
        raise _err(g, DataError, f"data `{node.name}` has shape {arr.shape} but is declared with {want}",
                   node.type.span, hint="check the declaration's brackets against the data")
    for axis, e in enumerate(exprs):
        n = arr.shape[axis]
        what = f"`{node.name}` has length {n}" + (f" along axis {axis}" if arr.ndim > 1 else "")
        if isinstance(e, A.Name) and e.id not in g.nodes:
            if e.id in dim_sources:
                bound, source = dim_sources[e.id]
                if bound != n:
                    raise _err(g, DataError, f"{what} but `{e.id}` is {bound} from {source}", e.span)
            else:
                dim_sources[e.id] = (n, f"`{node.name}`")
            continue
        want = _static_value(g, b, e)
        if want != n:
            raise _err(g, DataError, f"{what} but the declaration says {want}", e.span)


def _static_value(g, b, e) -> int:
    env = dict(b.static)
    try:
        v = Evaluator(env)(e)
    except ModelError as err:
        raise err.located(g.file, g.source)
    if not isinstance(v, (int, np.integer)) and not (np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.integer)):
        raise _err(g, ModelError, "a size must be a whole number known from the data", getattr(e, "span", None))
    return int(v)


def _check_declared_bounds(g, b, node, arr):
    t = node.type
    for bound, op, word in ((t.lower, np.less, ">="), (t.upper, np.greater, "<=")):
        if bound is None:
            continue
        try:
            limit = np.asarray(Evaluator({**b.static, **b.arrays})(bound))
        except ModelError:
            continue      # the bound depends on parameters; the density checks it
        bad = op(arr, limit)
        if np.any(bad):
            i = tuple(int(k) for k in np.argwhere(np.broadcast_to(bad, arr.shape))[0]) if arr.ndim else ()
            shown = f"{node.name}[{', '.join(map(str, i))}]" if i else node.name
            val = arr[i] if i else arr
            raise _err(g, DataError, f"`{node.name}` must be {word} {limit if limit.ndim == 0 else 'its bound'}, "
                       f"but {shown} = {val}", t.span, hint="fix the data or the declared bound")


def _transformed_data(g, b):
    """Compute, once, every node whose value depends on known values only; check observations."""
    env = {**b.static, **b.arrays}
    ev = Evaluator(env, g.functions)
    known = set(env)
    for name in g.order:
        node = g.nodes[name]
        role = b.roles[name]
        computable = all(p in known for p in node.parents) and not node.pieces
        if role == ROLE_DATA and name not in known and node.expr is not None:
            if not computable:
                raise _err(g, ModelError, f"the default of data `{name}` must depend on data only", node.span)
            _store(g, b, env, node, _eval(g, ev, node.expr), ROLE_DATA)
            known.add(name)
        elif role == ROLE_DETERMINISTIC and computable:
            _store(g, b, env, node, _eval(g, ev, node.expr), ROLE_TRANSFORMED)
            known.add(name)
        elif role == ROLE_OBSERVED and node.dist is not None:
            _check_observation(g, b, ev, node, env[name], computable)
    for f in g.factors:
        if f.kind == "observe" and f.dist is not None and not f.loops:
            value_known = all(n.id in known for n in A.free_names(f.value) if n.id in g.nodes)
            if not value_known:
                continue    # an expression of parameters, as Stan allows: no Jacobian is added
            computable = all(p in known for p in f.parents)
            value = _eval(g, ev, f.value)
            _check_support(g, ev, f.dist, value, computable, "the observed value", f.span)


def _store(g, b, env, node, value, role):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        b.static[node.name] = int(value)
        env[node.name] = int(value)
    else:
        arr = np.asarray(value)
        b.arrays[node.name] = arr
        env[node.name] = arr
    b.roles[node.name] = role


def _eval(g, ev, expr):
    try:
        return ev(expr)
    except ModelError as err:
        raise err.located(g.file, g.source)


def _check_observation(g, b, ev, node, value, computable):
    _check_support(g, ev, node.dist, value, computable, f"`{node.name}`", node.span, node.name)


def _check_support(g, ev, call, value, computable, what, span, name=None):
    dist = DISTRIBUTIONS.get(call.func)
    if dist is None:
        return          # reported by the lowering with a suggestion
    try:
        check_arity(dist, call.args, call.span)
    except ModelError as err:
        raise err.located(g.file, g.source)
    if computable:
        args = [_eval(g, ev, a) for a in call.args]
    else:
        args = [np.ones(()) for _ in call.args]
    try:
        support = dist.support(*args)
    except Exception:   # noqa: BLE001 - support of unusual placeholder args: skip the check
        return
    if not computable and support.kind not in ("positive", "unit_interval", "nonnegative_integer", "boolean",
                                               "simplex", "integer"):
        return
    try:
        ok = np.asarray(jax.device_get(support.check(np.asarray(value))))
    except Exception:   # noqa: BLE001 - shapes that do not broadcast are reported by the lowering
        return
    if not np.all(ok):
        arr = np.asarray(value)
        bad = np.argwhere(~np.broadcast_to(ok, ok.shape))
        i = tuple(int(k) for k in bad[0]) if bad.size and ok.ndim else ()
        shown = f"{name}[{', '.join(map(str, i))}]" if (name and i) else (name or "value")
        val = arr[i] if (i and arr.ndim >= len(i)) else arr
        raise _err(g, DataError, f"{what} is outside the support of `{call.func}` "
                   f"({_describe_support(support)}): {shown} = {val}", span,
                   hint="check the data, or choose a distribution with this support")


def _describe_support(c) -> str:
    return {"positive": "values > 0", "unit_interval": "values in [0, 1]", "nonnegative_integer": "counts 0, 1, 2, ...",
            "boolean": "0 or 1", "simplex": "non-negative values summing to 1", "integer": "whole numbers",
            "interval": "values within its bounds", "integer_interval": "whole numbers within its bounds",
            }.get(c.kind, c.kind)


def _check_latents(g, b):
    """Discrete latent nodes are summed out by the lowering (ppl.enumerate); nothing to refuse here."""
    return None
