"""Supports (constraints) and their bijections to the unconstrained space.

One declarative registry (``_BIJECTORS``) maps each continuous constraint kind to
Stan's transform, like stanc3's Transformation.ml / NumPyro's ``biject_to``.
Every function is jit/vmap/grad safe; bounds may be (traced) arrays that
broadcast against the value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ppl.numerics import log_sigmoid_pair

__all__ = [
    "Constraint", "Bijector", "bijector", "narrow", "real", "positive", "unit_interval", "simplex", "ordered",
    "positive_ordered", "corr_cholesky", "cov_matrix", "integer", "nonnegative_integer", "boolean", "lower",
    "upper", "interval", "integer_interval", "corr_cholesky_from_cpcs",
]

DISCRETE_KINDS = frozenset({"integer", "nonnegative_integer", "integer_interval", "boolean"})
TOLERANCE = 1e-6  # float64; float32 uses sqrt(eps) ~ 3e-4


def _tol(x):
    return max(TOLERANCE, math.sqrt(float(np.finfo(x.dtype).eps)))


@dataclass(frozen=True)
class Constraint:
    """A support: ``kind`` plus optional (possibly traced) bounds."""

    kind: str
    lower: object = None
    upper: object = None
    event_dim: int = 0

    @property
    def discrete(self) -> bool:
        return self.kind in DISCRETE_KINDS

    def check(self, x):
        """Membership of ``x``: elementwise, or per event for structured kinds.

        Concrete values (data checked when a model is bound) are checked with numpy, so that
        binding compiles no XLA programs (each eager jax.numpy operation compiled for 30-40 ms
        in a fresh process); traced values with jax.numpy."""
        xp = np if all(_concrete(v) is not None for v in (x, self.lower, self.upper) if v is not None) else jnp
        x = xp.asarray(x)
        if self.kind in _CHECKS:
            return _CHECKS[self.kind](self, x, xp)
        ok = _check_elementwise(self, x, xp)  # elementwise kinds used as a vector support
        return xp.all(ok, axis=tuple(range(-self.event_dim, 0))) if self.event_dim else ok

    def finite_values(self):
        """Support values for boolean / concrete integer_interval, else None.

        For array bounds this is the union of the elementwise supports.
        """
        if self.kind == "boolean":
            return np.array([0, 1])
        if self.kind != "integer_interval":
            return None
        lo, hi = _concrete(self.lower), _concrete(self.upper)
        if lo is None or hi is None or lo.size == 0 or hi.size == 0:
            return None
        return np.arange(int(np.ceil(lo.min())), int(np.floor(hi.max())) + 1)


# ---------------------------------------------------------------- constructors
real = Constraint("real")
positive = Constraint("positive", lower=0.0)
unit_interval = Constraint("unit_interval", lower=0.0, upper=1.0)
simplex = Constraint("simplex", event_dim=1)
ordered = Constraint("ordered", event_dim=1)
positive_ordered = Constraint("positive_ordered", lower=0.0, event_dim=1)
corr_cholesky = Constraint("corr_cholesky", event_dim=2)
cov_matrix = Constraint("cov_matrix", event_dim=2)
integer = Constraint("integer")
nonnegative_integer = Constraint("nonnegative_integer", lower=0)
boolean = Constraint("boolean", lower=0, upper=1)


def lower(a) -> Constraint:
    return Constraint("lower", lower=a)


def upper(b) -> Constraint:
    return Constraint("upper", upper=b)


def interval(a, b) -> Constraint:
    return Constraint("interval", lower=a, upper=b)


def integer_interval(a, b) -> Constraint:
    return Constraint("integer_interval", lower=a, upper=b)


# ---------------------------------------------------------------- narrowing
def _concrete(v):
    """``v`` as a numpy array if it is concrete, else None (tracers)."""
    if v is None or isinstance(v, jax.core.Tracer):
        return None
    return np.asarray(v)


def _is_inf(v, sign) -> bool:
    c = _concrete(v)
    return c is not None and c.size > 0 and bool(np.all(c == sign * np.inf))


def _combine(a, b, fn_np, fn_jnp):
    if a is None:
        return b
    if b is None:
        return a
    ca, cb = _concrete(a), _concrete(b)
    if ca is not None and cb is not None:
        r = fn_np(ca, cb)
        return r.item() if r.ndim == 0 else r
    return fn_jnp(a, b)


def _tighter_lower(a, b):
    return _combine(a, b, np.maximum, jnp.maximum)


def _tighter_upper(a, b):
    return _combine(a, b, np.minimum, jnp.minimum)


def _continuous_from_bounds(lo, hi) -> Constraint:
    if lo is None and hi is None:
        return real
    if hi is None:
        return lower(lo)
    if lo is None:
        return upper(hi)
    return interval(lo, hi)


def narrow(c: Constraint, lower=None, upper=None) -> Constraint:
    """Intersect support ``c`` with declared bounds ``lower``/``upper``."""
    lower = None if _is_inf(lower, -1) else lower
    upper = None if _is_inf(upper, 1) else upper
    if lower is None and upper is None:
        return c
    if c.event_dim > 0:
        raise ValueError(f"cannot add bounds to a {c.kind} constraint")
    lo, hi = _tighter_lower(c.lower, lower), _tighter_upper(c.upper, upper)
    if not c.discrete:
        return _continuous_from_bounds(lo, hi)
    if lo is not None and hi is not None:
        return integer_interval(lo, hi)
    return Constraint("nonnegative_integer" if _is_zero(lo) else "integer", lower=lo, upper=hi)


def _is_zero(v) -> bool:
    c = _concrete(v)
    return c is not None and c.ndim == 0 and c == 0


# ---------------------------------------------------------------- checks
# Each takes the array module ``xp``: numpy for concrete values, jax.numpy for traced ones.
def _float(x, xp=jnp):
    if xp.issubdtype(x.dtype, xp.inexact):
        return x
    return x.astype(jnp.result_type(float) if xp is jnp else np.float64)


def _bound(v, xp):
    return np.asarray(v) if xp is np else v


def _check_elementwise(c: Constraint, x, xp=jnp):
    xf = _float(x, xp)
    ok = ~xp.isnan(xf)
    if c.discrete:
        ok = ok & (xf == xp.floor(xf)) & xp.isfinite(xf)
    if c.lower is not None:
        ok = ok & (x >= _bound(c.lower, xp))
    if c.upper is not None:
        ok = ok & (x <= _bound(c.upper, xp))
    return ok


def _check_simplex(c, x, xp=jnp):
    x = _float(x, xp)
    return xp.all(x >= 0, axis=-1) & (xp.abs(xp.sum(x, -1) - 1) <= _tol(x))


def _check_ordered(c, x, xp=jnp):
    ok = xp.all(xp.diff(x, axis=-1) > 0, axis=-1) & ~xp.any(xp.isnan(x), axis=-1)
    if c.kind == "positive_ordered":
        ok = ok & (x[..., 0] >= 0)
    return ok


def _check_corr_cholesky(c, x, xp=jnp):
    x = _float(x, xp)
    upper_zero = xp.all(xp.abs(xp.triu(x, 1)) <= _tol(x), axis=(-2, -1))
    diag_pos = xp.all(xp.diagonal(x, axis1=-2, axis2=-1) > 0, axis=-1)
    unit_rows = xp.all(xp.abs(xp.sum(x * x, -1) - 1) <= _tol(x), axis=-1)
    return upper_zero & diag_pos & unit_rows


def _positive_definite(s, xp):
    if xp is jnp:  # a failed Cholesky factor is NaN
        return jnp.all(jnp.isfinite(jnp.linalg.cholesky(s)), axis=(-2, -1))
    flat = s.reshape((-1,) + s.shape[-2:])
    ok = np.empty(len(flat), bool)
    for k, m in enumerate(flat):  # numpy raises instead
        try:
            ok[k] = bool(np.all(np.isfinite(np.linalg.cholesky(m))))
        except np.linalg.LinAlgError:
            ok[k] = False
    return ok.reshape(s.shape[:-2])


def _check_cov_matrix(c, x, xp=jnp):
    x = _float(x, xp)
    scale = xp.maximum(xp.max(xp.abs(x), axis=(-2, -1)), 1.0)
    sym = xp.all(xp.abs(x - xp.swapaxes(x, -1, -2)) <= _tol(x) * scale[..., None, None], axis=(-2, -1))
    return sym & _positive_definite(0.5 * (x + xp.swapaxes(x, -1, -2)), xp)


_CHECKS = {
    "simplex": _check_simplex,
    "ordered": _check_ordered,
    "positive_ordered": _check_ordered,
    "corr_cholesky": _check_corr_cholesky,
    "cov_matrix": _check_cov_matrix,
}


# ---------------------------------------------------------------- bijectors
@dataclass(frozen=True)
class Bijector:
    """``forward``: unconstrained -> constrained; ``log_det_jacobian(u)`` is a scalar."""

    forward: Callable
    inverse: Callable
    log_det_jacobian: Callable
    unconstrained_shape: Callable


def _same_shape(shape):
    return tuple(shape)


def _identity_bijector(c):
    return Bijector(lambda u: u, lambda x: x, lambda u: jnp.zeros((), jnp.result_type(u, float)), _same_shape)


def _lower_bijector(c):
    a = c.lower
    return Bijector(lambda u: a + jnp.exp(u), lambda x: jnp.log(x - a), lambda u: jnp.sum(u), _same_shape)


def _upper_bijector(c):
    b = c.upper
    return Bijector(lambda u: b - jnp.exp(u), lambda x: jnp.log(b - x), lambda u: jnp.sum(u), _same_shape)


def _interval_bijector(c):
    a, b = c.lower, c.upper

    def forward(u):
        w = b - a  # the two branches keep x inside [a, b] despite rounding
        return jnp.where(u > 0, b - w * jax.nn.sigmoid(-u), a + w * jax.nn.sigmoid(u))

    def inverse(x):
        return jnp.log(x - a) - jnp.log(b - x)

    def ldj(u):
        log_p, log_1mp = log_sigmoid_pair(u)
        return jnp.sum(jnp.log(b - a) + log_p + log_1mp)

    return Bijector(forward, inverse, ldj, _same_shape)


# simplex: Stan's stick-breaking, u (..., K-1) -> x (..., K)
def _simplex_offsets(km1):
    return jnp.log(jnp.arange(km1, 0, -1, dtype=jnp.result_type(float)))


def _simplex_parts(u):
    adj = u - _simplex_offsets(u.shape[-1])
    log_z, log_1mz = log_sigmoid_pair(adj)
    zeros = jnp.zeros(u.shape[:-1] + (1,), adj.dtype)
    log_rem = jnp.concatenate([zeros, jnp.cumsum(log_1mz, -1)], -1)  # remaining stick, (..., K)
    return log_z, log_1mz, log_rem


def simplex_forward(u):
    log_z, _, log_rem = _simplex_parts(u)
    return jnp.exp(jnp.concatenate([log_rem[..., :-1] + log_z, log_rem[..., -1:]], -1))


def simplex_inverse(x):
    rem_after = jnp.flip(jnp.cumsum(jnp.flip(x[..., 1:], -1), -1), -1)  # sum_{j>k} x_j
    return jnp.log(x[..., :-1]) - jnp.log(rem_after) + _simplex_offsets(x.shape[-1] - 1)


def simplex_log_det_jacobian(u):
    log_z, log_1mz, log_rem = _simplex_parts(u)
    return jnp.sum(log_rem[..., :-1] + log_z + log_1mz)


def _simplex_bijector(c):
    shape = lambda s: tuple(s[:-1]) + (s[-1] - 1,)
    return Bijector(simplex_forward, simplex_inverse, simplex_log_det_jacobian, shape)


# ordered / positive_ordered
def _ordered_bijector(c):
    def forward(u):
        return jnp.cumsum(jnp.concatenate([u[..., :1], jnp.exp(u[..., 1:])], -1), -1)

    def inverse(x):
        return jnp.concatenate([x[..., :1], jnp.log(jnp.diff(x, axis=-1))], -1)

    return Bijector(forward, inverse, lambda u: jnp.sum(u[..., 1:]), _same_shape)


def _positive_ordered_bijector(c):
    def inverse(x):
        return jnp.log(jnp.diff(x, axis=-1, prepend=jnp.zeros_like(x[..., :1])))

    return Bijector(lambda u: jnp.cumsum(jnp.exp(u), -1), inverse, lambda u: jnp.sum(u), _same_shape)


# corr_cholesky: Stan's tanh canonical partial correlations (CPCs), row-major
def _dim_from_tril(n: int, diag: bool) -> int:
    k = int(round((-1 + math.sqrt(1 + 8 * n)) / 2)) if diag else int(round((1 + math.sqrt(1 + 8 * n)) / 2))
    if (k * (k + 1) // 2 if diag else k * (k - 1) // 2) != n:
        raise ValueError(f"{n} is not a triangular number")
    return k


def _fill_tril(v, k, offset):
    rows, cols = np.tril_indices(k, offset)
    return jnp.zeros(v.shape[:-1] + (k, k), v.dtype).at[..., rows, cols].set(v)


def _log_sech(y):
    """log(sech y) = 0.5 * log(1 - tanh(y)^2), computed stably."""
    a = jnp.abs(y)
    return math.log(2.0) - a - jnp.log1p(jnp.exp(-2.0 * a))


def _cholesky_from_factors(z, log_sqrt_1mz2, k):
    """Signed stick-breaking: L[i,j] = z[i,j] * prod_{l<j} sqrt(1 - z[i,l]^2)."""
    zm = _fill_tril(z, k, -1) + jnp.eye(k, dtype=z.dtype)
    w = _fill_tril(log_sqrt_1mz2, k, -1)
    cum = jnp.cumsum(w, -1) - w  # exclusive cumulative sum along each row
    return jnp.tril(zm * jnp.exp(cum)), cum


def corr_cholesky_from_cpcs(z, k: int):
    """Cholesky factor of a correlation matrix from partial correlations z in (-1, 1)."""
    return _cholesky_from_factors(z, 0.5 * jnp.log1p(-z * z), k)[0]


def corr_cholesky_forward(y):
    k = _dim_from_tril(y.shape[-1], diag=False)
    return _cholesky_from_factors(jnp.tanh(y), _log_sech(y), k)[0]


def corr_cholesky_inverse(x):
    k = x.shape[-1]
    sq = x * x
    rem = 1.0 - (jnp.cumsum(sq, -1) - sq)
    rows, cols = np.tril_indices(k, -1)
    z = x[..., rows, cols] / jnp.sqrt(rem[..., rows, cols])
    return jnp.arctanh(z)


def corr_cholesky_log_det_jacobian(y):
    k = _dim_from_tril(y.shape[-1], diag=False)
    log_sech = _log_sech(y)
    _, cum = _cholesky_from_factors(jnp.tanh(y), log_sech, k)
    rows, cols = np.tril_indices(k, -1)
    return jnp.sum(2.0 * log_sech) + jnp.sum(cum[..., rows, cols])


def _corr_cholesky_bijector(c):
    shape = lambda s: tuple(s[:-2]) + (s[-1] * (s[-1] - 1) // 2,)
    return Bijector(corr_cholesky_forward, corr_cholesky_inverse, corr_cholesky_log_det_jacobian, shape)


# cov_matrix: Stan's Cholesky-factor transform (log diagonal), row-major lower triangle
def _cov_cholesky(u):
    k = _dim_from_tril(u.shape[-1], diag=True)
    is_diag = np.equal(*np.tril_indices(k))
    return _fill_tril(jnp.where(is_diag, jnp.exp(u), u), k, 0), k, is_diag


def cov_matrix_forward(u):
    chol = _cov_cholesky(u)[0]
    s = chol @ jnp.swapaxes(chol, -1, -2)
    return 0.5 * (s + jnp.swapaxes(s, -1, -2))


def cov_matrix_inverse(x):
    k = x.shape[-1]
    chol = jnp.linalg.cholesky(x)
    rows, cols = np.tril_indices(k)
    v = chol[..., rows, cols]
    return jnp.where(rows == cols, jnp.log(jnp.where(rows == cols, v, 1.0)), v)


def cov_matrix_log_det_jacobian(u):
    k = _dim_from_tril(u.shape[-1], diag=True)
    rows, cols = np.tril_indices(k)
    diag_rows = rows[rows == cols]
    coef = (k - diag_rows + 1).astype(float)  # Stan: (K - k + 1) * log L_kk, 0-based k
    return k * math.log(2.0) * _batch_size(u) + jnp.sum(u[..., rows == cols] * coef)


def _batch_size(u) -> int:
    return int(np.prod(u.shape[:-1], dtype=int))


def _cov_matrix_bijector(c):
    shape = lambda s: tuple(s[:-2]) + (s[-1] + s[-1] * (s[-1] - 1) // 2,)
    return Bijector(cov_matrix_forward, cov_matrix_inverse, cov_matrix_log_det_jacobian, shape)


def _unit_interval_bijector(c):
    return _interval_bijector(interval(0.0, 1.0))


_BIJECTORS: dict[str, Callable[[Constraint], Bijector]] = {
    "real": _identity_bijector,
    "positive": _lower_bijector,
    "lower": _lower_bijector,
    "upper": _upper_bijector,
    "interval": _interval_bijector,
    "unit_interval": _unit_interval_bijector,
    "simplex": _simplex_bijector,
    "ordered": _ordered_bijector,
    "positive_ordered": _positive_ordered_bijector,
    "corr_cholesky": _corr_cholesky_bijector,
    "cov_matrix": _cov_matrix_bijector,
}


def bijector(c: Constraint) -> Bijector:
    """Stan's transform for continuous constraint ``c``; ValueError if discrete."""
    if c.discrete:
        raise ValueError(f"discrete constraint {c.kind!r} has no bijector")
    try:
        return _BIJECTORS[c.kind](c)
    except KeyError:
        raise ValueError(f"unknown constraint kind {c.kind!r}") from None
