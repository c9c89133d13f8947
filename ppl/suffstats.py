"""Gaussian likelihoods linear in the parameters, evaluated through sufficient statistics.

An observed node ``y ~ normal(mu, sigma)`` over N rows whose mean is linear in the parameters
with data coefficients,

    mu = offset + sum_k c_k * theta_k        (c_k and offset data, theta_k parameters)

where each ``theta_k`` is a scalar, a parameter vector gathered by one data index (``a[g]``),
or a parameter vector against the columns of a data matrix (``X @ beta``), has a sum of squares
that is a quadratic form in the parameters within each group of rows sharing an index value:

    sum_{i in group j} (y_i - mu_i)^2 = || R_j w_j ||^2,   w_j = (theta_j, -1),

with ``R_j`` the triangular factor (QR) of the group's rows ``[c_i1 .. c_iF, y_i - offset_i]``.
One evaluation then costs J (F+1)^2 operations instead of N (F+1): hierarchical and plain
linear regressions stop touching their N rows at every gradient. The QR form (rather than the
Gram matrix V'V) keeps the sum of squares as accurate as the direct sum: the part that depends
on the parameters is never a difference of large numbers.

The rewrite is found in the shape pass (:func:`find`, where data are concrete and parameters
abstract), its statistics are computed from each data set (:func:`statistics`, passed to the
compiled code as data arguments, so new data of the same shapes reuse the program), and the
density walk calls :func:`log_likelihood` in place of ``normal``'s density. ``PPL_SUFFSTATS=0``
turns it off. Generated quantities and simulations still use the row-by-row model."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, is_dataclass
from typing import Optional

import jax.numpy as jnp
import numpy as np

from . import ast as A
from .distributions_continuous import HALF_LOG_2PI
from .enumerate import descendants
from .errors import ModelError
from .evaluate import Evaluator, check_index_range, is_concrete

SCALAR, GATHER, MATMUL = "scalar", "gather", "matmul"          # kinds of parameter term
SIGMA_SCALAR, SIGMA_GROUP, SIGMA_ROWS = "scalar", "group", "rows"
MAX_STATISTICS = 10_000_000      # elements of the stacked R factors
_PAD_LIMIT = 50_000_000          # elements of the padded group blocks factored in one call


@dataclass(frozen=True)
class Term:
    """``sign * (product of coef) * param``: one (SCALAR, GATHER) or D (MATMUL) columns."""

    kind: str
    param: A.Expr            # SCALAR: the parameter expression; GATHER: the gathered vector; MATMUL: beta
    coef: tuple              # data expressions multiplied in (MATMUL: the matrix first)
    sign: int
    width: int


@dataclass(frozen=True)
class Plan:
    label: str               # the observed node's name, or "observe@J" for the J-th observed expression
    value: A.Expr            # the observed value (data)
    rows: int                # N
    groups: int              # J (1 without an index)
    index: Optional[A.Expr]  # the data index shared by every gather
    terms: tuple
    offsets: tuple           # (sign, data expression) pairs added to the mean
    sigma: Optional[A.Expr]  # the parameter part of sigma: a scalar, or the vector gathered by the index
    sigma_kind: str          # scalar | group (sigma is the base of a gather by the index) | rows (data only)
    sigma_rows: Optional[A.Expr] = None     # the data part of sigma (per row or scalar): divides the rows

    @property
    def width(self) -> int:
        return sum(t.width for t in self.terms)

    def describe(self) -> str:
        return (f"Gaussian likelihood through sufficient statistics: {self.groups} group"
                f"{'s' if self.groups != 1 else ''} × {self.width + 1} columns instead of {self.rows} rows")

    def keys(self) -> tuple:
        return tuple(f"{self.label}::{k}" for k in ("R", "count", "const"))


def enabled() -> bool:
    return os.environ.get("PPL_SUFFSTATS", "1").strip() not in ("0", "off", "false", "no")


# ---------------------------------------------------------------- finding the rewrite
def find(label: str, value_expr: A.Expr, value, mu_expr: A.Expr, sigma_expr: A.Expr, ev: Evaluator,
         inline: dict) -> Optional[Plan]:
    """The plan for ``value_expr ~ normal(mu_expr, sigma_expr)`` observed at ``value``, or None.

    ``ev`` evaluates in the shape pass's environment (data concrete, parameters traced);
    ``inline`` maps deterministic node names to their defining expressions."""
    if np.ndim(value) != 1 or np.shape(value)[0] == 0:
        return None
    rows = int(np.shape(value)[0])
    terms, offsets, indices = [], [], []
    for sign, expr in _summands(mu_expr, 1, inline):
        sign, factors = _factors(expr, sign, inline)
        values = [ev(f) for f in factors]
        data = [f for f, v in zip(factors, values) if is_concrete(v)]
        params = [f for f, v in zip(factors, values) if not is_concrete(v)]
        if len(params) > 1 or not all(_broadcasts(np.shape(v), rows) for v in values if is_concrete(v)):
            return None
        if not params:
            offsets.append((sign, _product(data, expr)))
            continue
        term = _term(_resolve(params[0], inline), data, sign, ev, rows, indices)
        if term is None:
            return None
        terms.append(term)
    if not terms:
        return None
    parts = _sigma_parts(sigma_expr, ev, rows, indices, inline)
    if parts is None:
        return None
    sigma_kind, sigma, sigma_rows = parts
    if indices and any(_key(i) != _key(indices[0][0]) for i, _ in indices):
        return None                                    # crossed effects: more than one index
    groups = indices[0][1] if indices else 1
    plan = Plan(label, value_expr, rows, groups, indices[0][0] if indices else None, tuple(terms),
                tuple(offsets), sigma, sigma_kind, sigma_rows)
    cols = plan.width + 1
    if groups * cols > rows / 2 or groups * cols * cols > MAX_STATISTICS:
        return None                                    # not enough rows per group to pay
    return plan


# ---------------------------------------------------------------- observations written as loops
ELEMENTWISE = frozenset({
    "abs", "exp", "log", "log1p", "expm1", "log1m", "sqrt", "square", "pow", "sin", "cos", "tan", "tanh",
    "floor", "ceil", "round", "fmin", "fmax", "lgamma", "digamma", "erf", "Phi", "inv_Phi", "inv_logit",
    "logit", "log_inv_logit", "log1m_inv_logit", "softplus", "log_diff_exp"})


def vectorise_loop(var: str, loop_range, value_expr: A.Expr, call: A.Call, ev: Evaluator) -> Optional[tuple]:
    """``(value_expr, value, call)`` of an observation inside ``for var in loop_range`` rewritten as
    one whole-vector observation over the loop's rows, or None.

    Exact only when every row is computed alone, so it is refused unless every use of ``var`` is
    the one index of an expression without it (``y[i]``, ``x[i]``, ``mu[i]``, ``a[g[i]]``) whose
    value is a vector at least as long as the range (or a matrix on the left of ``@``), whatever
    does not use ``var`` is a scalar, and everything else is arithmetic or an element-wise
    function: ``y[i]`` becomes ``y`` (or ``y[lo:hi]``)."""
    if len(loop_range) == 0:
        return None
    lo, hi = int(loop_range[0]), int(loop_range[-1]) + 1
    try:
        out = [_vectorise(e, var, lo, hi, ev, matrix_ok=False) for e in (value_expr, *call.args)]
        if any(e is None for e in out):
            return None
        value = ev(out[0])
    except (ModelError, TypeError, ValueError):
        return None
    if not is_concrete(value):
        return None
    return out[0], value, A.Call(call.func, tuple(out[1:]), call.span)


def _vectorise(e, var, lo, hi, ev, matrix_ok):
    if not _uses(e, var):       # the same in every row: only a scalar broadcasts like the loop
        return e if np.ndim(ev(e)) == 0 else None
    if isinstance(e, A.Unary) and e.op in ("+", "-"):
        inner = _vectorise(e.operand, var, lo, hi, ev, False)
        return None if inner is None else A.Unary(e.op, inner, e.span)
    if isinstance(e, A.Binary) and e.op == "@":     # row i of a matrix times a vector
        left = _vectorise(e.left, var, lo, hi, ev, True)
        if left is None or _uses(e.right, var) or np.ndim(ev(e.right)) != 1:
            return None
        return A.Binary(e.op, left, e.right, e.span)
    if isinstance(e, A.Binary) and e.op in ("+", "-", "*", "/", "^"):
        left = _vectorise(e.left, var, lo, hi, ev, False)
        right = _vectorise(e.right, var, lo, hi, ev, False)
        return None if left is None or right is None else A.Binary(e.op, left, right, e.span)
    if isinstance(e, A.Call) and e.func in ELEMENTWISE and e.given is None:
        args = [_vectorise(a, var, lo, hi, ev, False) for a in e.args]
        return None if any(a is None for a in args) else A.Call(e.func, tuple(args), e.span)
    if isinstance(e, A.Index):
        if len(e.indices) != 1 or not (isinstance(e.indices[0], A.Name) and e.indices[0].id == var) \
                or _uses(e.base, var):
            return _gathered(e, var, lo, hi, ev)
        shape = np.shape(ev(e.base))
        if not shape or shape[0] < hi or len(shape) > (2 if matrix_ok else 1):
            return None
        if lo == 0 and shape[0] == hi:
            return e.base
        return A.Index(e.base, (A.Slice(A.Num(lo, e.span), A.Num(hi, e.span), e.span),), e.span)
    return None


def _gathered(e, var, lo, hi, ev):
    """``a[g[i]]``: a vector gathered by a vectorised data index."""
    if len(e.indices) != 1 or isinstance(e.indices[0], A.Slice) or _uses(e.base, var):
        return None
    idx = _vectorise(e.indices[0], var, lo, hi, ev, False)
    if idx is None or np.ndim(ev(e.base)) != 1:
        return None
    return A.Index(e.base, (idx,), e.span)


def _uses(e, var) -> bool:
    return any(n.id == var for n in A.free_names(e))


def _summands(e, sign, inline):
    e = _resolve(e, inline)
    if isinstance(e, A.Binary) and e.op in ("+", "-"):
        return _summands(e.left, sign, inline) + _summands(e.right, sign if e.op == "+" else -sign, inline)
    if isinstance(e, A.Unary) and e.op in ("+", "-"):
        return _summands(e.operand, sign if e.op == "+" else -sign, inline)
    return [(sign, e)]


def _factors(e, sign, inline):
    e = _resolve(e, inline)
    if isinstance(e, A.Binary) and e.op == "*":
        sign, left = _factors(e.left, sign, inline)
        sign, right = _factors(e.right, sign, inline)
        return sign, left + right
    if isinstance(e, A.Binary) and e.op == "/":         # x / d = x * (1 / d)
        sign, left = _factors(e.left, sign, inline)
        return sign, left + [A.Binary("/", A.Num(1.0, e.span), e.right, e.span)]
    if isinstance(e, A.Unary) and e.op in ("+", "-"):
        return _factors(e.operand, sign if e.op == "+" else -sign, inline)
    return sign, [e]


def _resolve(e, inline):
    """A deterministic node's name replaced by its definition (repeatedly)."""
    seen = set()
    while isinstance(e, A.Name) and e.id in inline and e.id not in seen:
        seen.add(e.id)
        e = inline[e.id]
    return e


def _product(data, like):
    out = data[0] if data else A.Num(1, like.span)
    for f in data[1:]:
        out = A.Binary("*", out, f, like.span)
    return out


def _broadcasts(shape, rows) -> bool:
    return len(shape) == 0 or tuple(shape) in ((1,), (rows,))


def _gather(e, ev, rows):
    """(index expression, groups) when ``e`` is ``base[index]`` with a data index of one value
    per row and a parameter vector as base; None otherwise."""
    if not (isinstance(e, A.Index) and len(e.indices) == 1 and not isinstance(e.indices[0], A.Slice)):
        return None
    idx, base = ev(e.indices[0]), ev(e.base)
    if not is_concrete(idx) or is_concrete(base) or np.shape(idx) != (rows,) or np.ndim(base) != 1:
        return None
    if not np.issubdtype(np.asarray(idx).dtype, np.integer):
        return None
    return e.indices[0], int(np.shape(base)[0])


def _term(p, data, sign, ev, rows, indices) -> Optional[Term]:
    g = _gather(p, ev, rows)
    if g is not None:
        indices.append(g)
        return Term(GATHER, p.base, tuple(data), sign, 1)
    if isinstance(p, A.Binary) and p.op == "@":
        left, right = ev(p.left), ev(p.right)
        if (is_concrete(left) and not is_concrete(right) and np.ndim(right) == 1 and np.ndim(left) == 2
                and np.shape(left)[0] == rows):                                   # X @ beta
            return Term(MATMUL, p.right, (p.left,) + tuple(data), sign, int(np.shape(right)[0]))
        if (is_concrete(right) and not is_concrete(left) and np.ndim(left) == 1 and np.ndim(right) == 2
                and np.shape(right)[1] == rows):                                  # beta @ X = X' @ beta
            return Term(MATMUL, p.left, (A.Transpose(p.right, p.span),) + tuple(data), sign, int(np.shape(left)[0]))
        return None
    if np.ndim(ev(p)) == 0:
        return Term(SCALAR, p, tuple(data), sign, 1)
    return None


def _sigma_parts(sigma_expr, ev, rows, indices, inline) -> Optional[tuple]:
    """``(kind, parameter part, data part)`` of sigma written as a product: data per row or scalar
    (``s``, ``2``), times at most one parameter factor, a scalar (``sigma``) or a vector gathered
    by the mean's index (``tau[g]``); None for anything else."""
    sign, factors = _factors(sigma_expr, 1, inline)
    values = [ev(f) for f in factors]
    if sign < 0 or not all(_broadcasts(np.shape(v), rows) for v in values if is_concrete(v)):
        return None
    data = [f for f, v in zip(factors, values) if is_concrete(v)]
    params = [_resolve(f, inline) for f, v in zip(factors, values) if not is_concrete(v)]
    data_part = _product(data, sigma_expr) if data else None
    if not params:
        return SIGMA_ROWS, None, data_part
    if len(params) > 1:
        return None
    if np.ndim(ev(params[0])) == 0:
        return SIGMA_SCALAR, params[0], data_part
    g = _gather(params[0], ev, rows)
    if g is None:
        return None
    indices.append(g)
    return SIGMA_GROUP, params[0].base, data_part


def _key(e):
    """An expression's structure without source positions (to compare two index expressions)."""
    if is_dataclass(e):
        return (type(e).__name__,) + tuple(_key(getattr(e, f.name)) for f in fields(e) if f.name != "span")
    if isinstance(e, tuple):
        return tuple(_key(x) for x in e)
    return e


def drop_batched(plans: dict, graph, enumerated) -> None:
    """Remove the plans of observations that depend on a summed-out variable (their parameters
    carry the variable's support as an extra axis)."""
    batched = set(enumerated)
    for name in enumerated:
        batched |= set(descendants(graph, name))
    for j, f in enumerate(graph.factors):
        if batched & set(f.parents):
            batched.add(f"observe@{j}")
    for label in batched:
        plans.pop(label, None)


# ---------------------------------------------------------------- statistics from the data
def statistics(plans, binding, functions) -> dict:
    """Every plan's data arguments, from the binding's (concrete) data."""
    ev = Evaluator({**binding.static, **binding.arrays}, functions)
    out = {}
    for plan in plans:
        out.update(_statistics(plan, ev))
    return out


def _statistics(plan: Plan, ev: Evaluator) -> dict:
    """The plan's data arguments: stacked R factors (J, F+1, F+1), rows per group (J,), and the
    constant -sum(log s_i) of sigma's data part s (the rows are divided by it). ``ev`` evaluates
    the data concretely."""
    n, dtype = plan.rows, np.float64
    y = np.asarray(ev(plan.value), dtype)
    for sign, e in plan.offsets:
        y = y - sign * np.broadcast_to(np.asarray(ev(e), dtype), (n,))
    cols = []
    for t in plan.terms:
        c = np.full(n, float(t.sign))
        start = 1 if t.kind == MATMUL else 0
        for f in t.coef[start:]:
            c = c * np.broadcast_to(np.asarray(ev(f), dtype), (n,))
        cols.append(np.asarray(ev(t.coef[0]), dtype) * c[:, None] if t.kind == MATMUL else c[:, None])
    v = np.concatenate(cols + [y[:, None]], axis=1)
    const = 0.0
    if plan.sigma_rows is not None:
        s = np.broadcast_to(np.asarray(ev(plan.sigma_rows), dtype), (n,))
        v = v / s[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            const = -float(np.sum(np.log(s)))
    group = (np.zeros(n, dtype=np.int64) if plan.index is None
             else np.asarray(ev(plan.index)).astype(np.int64))
    if plan.index is not None:
        check_index_range(group, plan.groups, plan.index.span)
    count = np.bincount(group, minlength=plan.groups).astype(dtype)
    keys = plan.keys()
    return {keys[0]: _factor_groups(v, group, plan.groups), keys[1]: count, keys[2]: np.asarray(const, dtype)}


def _factor_groups(v, group, groups) -> np.ndarray:
    """R factors of the rows of ``v`` in each group, (groups, F+1, F+1), zero-padded."""
    cols = v.shape[1]
    out = np.zeros((groups, cols, cols))
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    longest = int(counts.max())
    if groups * longest * cols <= _PAD_LIMIT:          # one batched QR of zero-padded blocks
        blocks = np.zeros((groups, longest, cols))
        pos = np.arange(len(group)) - np.repeat(starts, counts)
        blocks[group[order], pos] = v[order]
        r = np.linalg.qr(blocks, mode="r")
        out[:, : r.shape[1]] = r
        return out
    for j in range(groups):
        rows = v[order[starts[j]: starts[j] + counts[j]]]
        if len(rows):
            r = np.linalg.qr(rows, mode="r")
            out[j, : r.shape[0]] = r
    return out


# ---------------------------------------------------------------- the log density term
def log_likelihood(plan: Plan, ev: Evaluator, env: dict):
    """The plan's log likelihood at the parameters in ``ev``'s environment (traced)."""
    r, count, const = (env[k] for k in plan.keys())
    j = plan.groups
    cols = []
    for t in plan.terms:
        p = jnp.asarray(ev(t.param), dtype=r.dtype)
        if t.kind == MATMUL:
            cols.append(jnp.broadcast_to(p, (j, t.width)))
        else:
            cols.append(jnp.broadcast_to(p, (j,))[:, None])
    w = jnp.concatenate(cols + [-jnp.ones((j, 1), r.dtype)], axis=1)
    ss = jnp.sum(jnp.square(jnp.einsum("jab,jb->ja", r, w)), axis=1)        # (J,)
    total = const - plan.rows * HALF_LOG_2PI
    if plan.sigma_kind == SIGMA_ROWS:
        return total - 0.5 * jnp.sum(ss)
    s = jnp.asarray(ev(plan.sigma), dtype=r.dtype)
    if plan.sigma_kind == SIGMA_SCALAR:
        return total - plan.rows * jnp.log(s) - 0.5 * jnp.sum(ss) / (s * s)
    return total + jnp.sum(-count * jnp.log(s) - 0.5 * ss / (s * s))
