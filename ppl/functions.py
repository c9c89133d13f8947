"""Built-in functions of the GM modelling language, as a registry.

Every entry is a :class:`Builtin`: a JAX implementation (safe under ``jit``,
``vmap`` and ``grad``) plus arity metadata.  Arguments listed in
``static_args`` must be concrete Python ints at trace time (sizes and axes);
the caller is responsible for passing them as such.

Conventions: arrays broadcast like NumPy, indexing is 0-based, integer inputs
to floating-point functions are promoted to the default float dtype, and
"vector-wise" functions (softmax, cumsum, sort, concat, ...) act on the last
axis.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jax.scipy.stats import norm

from ppl.numerics import log1p_exp, log_sigmoid

__all__ = ["Builtin", "FUNCTIONS", "get", "signature"]

VARIADIC_MAX = 64
_LOG_HALF = -math.log(2.0)


@dataclass(frozen=True)
class Builtin:
    name: str
    fn: Callable
    min_args: int
    max_args: int
    static_args: tuple[int, ...] = ()
    doc: str = ""

    @property
    def signature(self) -> str:
        return self.doc.partition(": ")[0] or f"{self.name}(...)"


# ---------------------------------------------------------------- helpers


def is_numpy(x) -> bool:
    """What the data alone gave: a numpy array or scalar, or a Python number (not a bool, which
    numpy and jax.numpy add differently). Kept in numpy, it is a constant; made a jax array in
    the shape pass, it would be an XLA compilation."""
    return isinstance(x, (np.ndarray, np.generic, int, float)) and not isinstance(x, bool)


def as_numpy(x) -> np.ndarray:
    """``x`` as a numpy array in the dtype jax.numpy would give it (float32 without x64)."""
    x = np.asarray(x)
    return x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)


def _float(x):
    """As an array, promoting integer/bool dtypes to the default float. numpy data stay numpy."""
    if is_numpy(x):
        x = as_numpy(x)
        return x if np.issubdtype(x.dtype, np.inexact) else x.astype(jnp.result_type(float))
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    return x.astype(jnp.result_type(float))


def _unary(f):
    return lambda x: f(_float(x))


def _binary(f):
    return lambda x, y: f(_float(x), _float(y))


def _axis(axis):
    return None if axis is None else operator.index(axis)


def _reduction(f, promote=False):
    def reduce(x, axis=None):
        x = _float(x) if promote else jnp.asarray(x)
        return f(x, axis=_axis(axis))

    return reduce


def _spread(ddof_fn):
    """sd / variance with the n - 1 divisor; a single observation gives 0 (as Stan)."""

    def spread(x, axis=None):
        x = _float(x)
        axis = _axis(axis)
        n = x.size if axis is None else x.shape[axis]
        if n == 1:
            return jnp.zeros_like(ddof_fn(x, axis=axis))
        return ddof_fn(x, axis=axis, ddof=1)

    return spread


def _round(x):
    """Round half away from zero (C / Stan semantics, not NumPy's half-to-even)."""
    return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _log_diff_exp(a, b):
    """log(exp(a) - exp(b)), stable; NaN when b > a, -inf when a == b."""
    a, b = jnp.broadcast_arrays(_float(a), _float(b))
    d = b - a
    near = d > _LOG_HALF
    # Double-where so the unused branch never feeds inf/nan into gradients.
    d_near = jnp.where(near, d, -1.0)
    d_far = jnp.where(near, -1.0, d)
    log1m_exp = jnp.where(near, jnp.log(-jnp.expm1(d_near)), jnp.log1p(-jnp.exp(d_far)))
    return jnp.where(b == -jnp.inf, a, a + log1m_exp)


def _logit(p):
    return jnp.log(p) - jnp.log1p(-p)


def _concat(*xs):
    arrs = [jnp.atleast_1d(jnp.asarray(x)) for x in xs]
    lead = jnp.broadcast_shapes(*(a.shape[:-1] for a in arrs))
    arrs = [jnp.broadcast_to(a, lead + a.shape[-1:]) for a in arrs]
    return jnp.concatenate(arrs, axis=-1)


def _rep(x, n):
    if is_numpy(x):
        x = as_numpy(x)
        return np.broadcast_to(x, (operator.index(n),) + x.shape)
    x = jnp.asarray(x)
    return jnp.broadcast_to(x, (operator.index(n),) + x.shape)


def _outer(a, b):
    a, b = jnp.atleast_1d(jnp.asarray(a)), jnp.atleast_1d(jnp.asarray(b))
    return a[..., :, None] * b[..., None, :]


def _diag(x):
    x = jnp.asarray(x)
    if x.ndim <= 1:
        return jnp.diag(jnp.atleast_1d(x))
    return jnp.diagonal(x, axis1=-2, axis2=-1)


def _transpose(x):
    x = jnp.asarray(x)
    return x if x.ndim < 2 else jnp.swapaxes(x, -1, -2)


def _fill(value):
    def fill(n, m=None):
        shape = (operator.index(n),) if m is None else (operator.index(n), operator.index(m))
        return np.full(shape, value, dtype=jnp.result_type(float))   # numpy: a constant compiles nothing

    return fill


def _size(x):
    return math.prod(jnp.shape(x))


def _rows(x):
    shape = jnp.shape(x)
    return shape[0] if shape else 1


def _cols(x):
    shape = jnp.shape(x)
    return shape[1] if len(shape) >= 2 else 1


def _points(x):
    x = _float(x)
    return x[:, None] if x.ndim == 1 else x


def _gp_exp_quad_cov(*args):
    """gp_exp_quad_cov(x, alpha, rho) or gp_exp_quad_cov(x1, x2, alpha, rho)."""
    if len(args) == 3:
        x1, alpha, rho = args
        x2 = x1
    else:
        x1, x2, alpha, rho = args
    rho = _float(rho)  # scalar, or one length-scale per input dimension (ARD)
    z1, z2 = _points(x1) / rho, _points(x2) / rho
    sq = jnp.sum((z1[:, None, :] - z2[None, :, :]) ** 2, axis=-1)
    return _float(alpha) ** 2 * jnp.exp(-0.5 * sq)


def _linspace(a, b, n):
    return jnp.linspace(_float(a), _float(b), operator.index(n))


def _arange(n):
    return jnp.arange(operator.index(n))


# ------------------------------------------------------------------ table

_A = (1,)  # the optional axis argument of reductions is static
_TABLE = [
    # name, fn, min_args, max_args, static_args, doc
    # -- element-wise
    ("abs", jnp.abs, 1, 1, (), "abs(x): absolute value"),
    ("exp", _unary(jnp.exp), 1, 1, (), "exp(x): exponential"),
    ("log", _unary(jnp.log), 1, 1, (), "log(x): natural logarithm"),
    ("log1p", _unary(jnp.log1p), 1, 1, (), "log1p(x): log(1 + x), accurate near 0"),
    ("expm1", _unary(jnp.expm1), 1, 1, (), "expm1(x): exp(x) - 1, accurate near 0"),
    ("log1m", _unary(lambda x: jnp.log1p(-x)), 1, 1, (), "log1m(x): log(1 - x), accurate near 0"),
    ("sqrt", _unary(jnp.sqrt), 1, 1, (), "sqrt(x): square root"),
    ("square", jnp.square, 1, 1, (), "square(x): x * x"),
    ("pow", _binary(jnp.power), 2, 2, (), "pow(x, y): x raised to the power y"),
    ("sin", _unary(jnp.sin), 1, 1, (), "sin(x): sine"),
    ("cos", _unary(jnp.cos), 1, 1, (), "cos(x): cosine"),
    ("tan", _unary(jnp.tan), 1, 1, (), "tan(x): tangent"),
    ("tanh", _unary(jnp.tanh), 1, 1, (), "tanh(x): hyperbolic tangent"),
    ("floor", _unary(jnp.floor), 1, 1, (), "floor(x): largest integer <= x (as float)"),
    ("ceil", _unary(jnp.ceil), 1, 1, (), "ceil(x): smallest integer >= x (as float)"),
    ("round", _unary(_round), 1, 1, (), "round(x): nearest integer, halves away from zero (as float)"),
    ("fmin", _binary(jnp.fmin), 2, 2, (), "fmin(x, y): element-wise minimum"),
    ("fmax", _binary(jnp.fmax), 2, 2, (), "fmax(x, y): element-wise maximum"),
    ("lgamma", _unary(jsp.gammaln), 1, 1, (), "lgamma(x): log of the absolute gamma function"),
    ("digamma", _unary(jsp.digamma), 1, 1, (), "digamma(x): derivative of lgamma"),
    ("erf", _unary(jsp.erf), 1, 1, (), "erf(x): error function"),
    ("Phi", _unary(norm.cdf), 1, 1, (), "Phi(x): standard normal CDF"),
    ("inv_Phi", _unary(jsp.ndtri), 1, 1, (), "inv_Phi(p): standard normal quantile function"),
    ("inv_logit", _unary(jax.nn.sigmoid), 1, 1, (), "inv_logit(x): logistic sigmoid 1 / (1 + exp(-x))"),
    ("logit", _unary(_logit), 1, 1, (), "logit(p): log(p / (1 - p))"),
    ("log_inv_logit", _unary(log_sigmoid), 1, 1, (), "log_inv_logit(x): log(inv_logit(x)), stable"),
    ("log1m_inv_logit", _unary(lambda x: log_sigmoid(-x)), 1, 1, (),
     "log1m_inv_logit(x): log(1 - inv_logit(x)), stable"),
    ("softplus", _unary(log1p_exp), 1, 1, (), "softplus(x): log(1 + exp(x)), stable"),
    ("log_diff_exp", _log_diff_exp, 2, 2, (), "log_diff_exp(a, b): log(exp(a) - exp(b)), stable"),
    # -- reductions (optional static axis)
    ("sum", _reduction(jnp.sum), 1, 2, _A, "sum(x[, axis]): sum of elements"),
    ("prod", _reduction(jnp.prod), 1, 2, _A, "prod(x[, axis]): product of elements"),
    ("mean", _reduction(jnp.mean, True), 1, 2, _A, "mean(x[, axis]): arithmetic mean"),
    ("variance", _spread(jnp.var), 1, 2, _A, "variance(x[, axis]): sample variance (divides by n-1)"),
    ("sd", _spread(jnp.std), 1, 2, _A, "sd(x[, axis]): sample standard deviation (divides by n-1)"),
    ("min", _reduction(jnp.min), 1, 2, _A, "min(x[, axis]): smallest element (fmin is element-wise)"),
    ("max", _reduction(jnp.max), 1, 2, _A, "max(x[, axis]): largest element (fmax is element-wise)"),
    ("log_sum_exp", _reduction(jsp.logsumexp, True), 1, 2, _A,
     "log_sum_exp(x[, axis]): log(sum(exp(x))), stable"),
    # -- along the last axis
    ("softmax", _unary(lambda x: jax.nn.softmax(x, axis=-1)), 1, 1, (),
     "softmax(x): exp(x) / sum(exp(x)) along the last axis"),
    ("log_softmax", _unary(lambda x: jax.nn.log_softmax(x, axis=-1)), 1, 1, (),
     "log_softmax(x): log(softmax(x)) along the last axis, stable"),
    ("cumsum", lambda x: jnp.cumsum(x, axis=-1), 1, 1, (), "cumsum(x): cumulative sum along the last axis"),
    ("reverse", lambda x: jnp.flip(jnp.asarray(x), axis=-1), 1, 1, (), "reverse(x): reverse the last axis"),
    ("sort", lambda x: jnp.sort(x, axis=-1), 1, 1, (), "sort(x): ascending sort along the last axis"),
    ("concat", _concat, 1, VARIADIC_MAX, (),
     "concat(a, b, ...): join along the last axis (scalars count as length-1 vectors)"),
    # -- construction
    ("rep", _rep, 2, 2, (1,), "rep(x, n): n copies of x stacked along a new leading axis"),
    ("zeros", _fill(0.0), 1, 2, (0, 1), "zeros(n[, m]): vector (or n x m matrix) of zeros"),
    ("ones", _fill(1.0), 1, 2, (0, 1), "ones(n[, m]): vector (or n x m matrix) of ones"),
    ("identity", lambda n: np.eye(operator.index(n), dtype=jnp.result_type(float)), 1, 1, (0,),
     "identity(n): n x n identity matrix"),
    ("linspace", _linspace, 3, 3, (2,), "linspace(a, b, n): n evenly spaced points from a to b inclusive"),
    ("arange", _arange, 1, 1, (0,), "arange(n): integers 0, 1, ..., n-1"),
    # -- linear algebra
    ("dot", lambda a, b: jnp.sum(jnp.asarray(a) * jnp.asarray(b), axis=-1), 2, 2, (),
     "dot(a, b): sum(a * b) along the last axis"),
    ("outer", _outer, 2, 2, (), "outer(a, b): outer product a b'"),
    ("crossprod", lambda x: _transpose(x) @ jnp.asarray(x), 1, 1, (), "crossprod(X): X' X"),
    ("tcrossprod", lambda x: jnp.asarray(x) @ _transpose(x), 1, 1, (), "tcrossprod(X): X X'"),
    ("transpose", _transpose, 1, 1, (), "transpose(X): swap the last two axes (vectors unchanged)"),
    ("cholesky", _unary(jnp.linalg.cholesky), 1, 1, (), "cholesky(S): lower Cholesky factor L with L L' = S"),
    ("inverse", _unary(jnp.linalg.inv), 1, 1, (), "inverse(A): matrix inverse"),
    ("diag", _diag, 1, 1, (), "diag(x): vector -> diagonal matrix; matrix -> its diagonal"),
    ("gp_exp_quad_cov", _gp_exp_quad_cov, 3, 4, (),
     "gp_exp_quad_cov(x[, x2], alpha, rho): alpha^2 exp(-|x_i - x_j|^2 / (2 rho^2))"),
    # -- shape queries (Python ints; usable as sizes)
    ("size", _size, 1, 1, (), "size(x): number of elements (a static int)"),
    ("num_elements", _size, 1, 1, (), "num_elements(x): number of elements (a static int)"),
    ("rows", _rows, 1, 1, (), "rows(x): length of the first axis (a static int)"),
    ("cols", _cols, 1, 1, (), "cols(x): length of the second axis, 1 for vectors (a static int)"),
]

FUNCTIONS: dict[str, Builtin] = {
    name: Builtin(name, fn, lo, hi, static, doc) for name, fn, lo, hi, static, doc in _TABLE
}


def get(name: str) -> Builtin:
    """The built-in called ``name``; KeyError (listing close names) if unknown."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, FUNCTIONS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown function {name!r}{hint}") from None


def signature(name: str) -> str:
    """Human-readable call form, e.g. ``"sd(x[, axis])"``."""
    return get(name).signature
