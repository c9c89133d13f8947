"""Multivariate distributions: dirichlet, multi_normal(_cholesky), lkj_corr_cholesky, multinomial."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import gammaln, xlogy

from ppl import constraints as C
from ppl.distributions_continuous import (HALF_LOG_2PI, as_float, beta_draws, betaln, floats,
                                         log_gamma_draws, mask)
from ppl.distributions_discrete import INT

REAL_VECTOR = C.Constraint("real", event_dim=1)
COUNT_VECTOR = C.Constraint("nonnegative_integer", lower=0, event_dim=1)


def _vector_batch(batch_shape, *vectors):
    """Broadcast of ``batch_shape`` with the batch part (all but the last axis) of vectors."""
    return jnp.broadcast_shapes(tuple(batch_shape), *(jnp.shape(v)[:-1] for v in vectors))


# ---------------------------------------------------------------- dirichlet
def dirichlet_lpdf(x, alpha):
    x, alpha = floats(x, alpha)
    ok = C.simplex.check(x)
    xs = jnp.where(ok[..., None], x, 1.0 / x.shape[-1])
    lp = jnp.sum(xlogy(alpha - 1, xs), -1) + gammaln(jnp.sum(alpha, -1)) - jnp.sum(gammaln(alpha), -1)
    return mask(ok, lp)


def dirichlet_sample(key, batch_shape, alpha):
    alpha = as_float(alpha)
    shape = _vector_batch(batch_shape, alpha)
    full = shape + alpha.shape[-1:]
    log_g = log_gamma_draws(key, full, alpha)
    return jnp.exp(log_g - jax.scipy.special.logsumexp(log_g, axis=-1, keepdims=True))


def _dirichlet_moments(alpha):
    alpha = as_float(alpha)
    a0 = jnp.sum(alpha, -1, keepdims=True)
    return alpha / a0, alpha * (a0 - alpha) / (a0 ** 2 * (a0 + 1))


# ---------------------------------------------------------------- multivariate normal
def multi_normal_cholesky_lpdf(x, mu, chol):
    x, mu, chol = floats(x, mu, chol)
    diff = x - mu
    k = chol.shape[-1]
    batch = jnp.broadcast_shapes(diff.shape[:-1], chol.shape[:-2])
    diff = jnp.broadcast_to(diff, batch + (k,))
    chol = jnp.broadcast_to(chol, batch + (k, k))
    z = solve_triangular(chol, diff[..., None], lower=True)[..., 0]
    log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
    return -0.5 * jnp.sum(z * z, -1) - log_det - k * HALF_LOG_2PI


def multi_normal_lpdf(x, mu, sigma):
    return multi_normal_cholesky_lpdf(x, mu, jnp.linalg.cholesky(as_float(sigma)))


def multi_normal_cholesky_sample(key, batch_shape, mu, chol):
    mu, chol = floats(mu, chol)
    k = chol.shape[-1]
    shape = jnp.broadcast_shapes(_vector_batch(batch_shape, mu), chol.shape[:-2])
    z = jax.random.normal(key, shape + (k,))
    return mu + jnp.einsum("...ij,...j->...i", chol, z)


def multi_normal_sample(key, batch_shape, mu, sigma):
    return multi_normal_cholesky_sample(key, batch_shape, mu, jnp.linalg.cholesky(as_float(sigma)))


def _mvn_event_shape(mu_shape, matrix_shape):
    return tuple(jnp.broadcast_shapes(tuple(mu_shape[-1:]), tuple(matrix_shape[-1:])))


# ---------------------------------------------------------------- LKJ (Cholesky factor)
def lkj_log_normalizer(eta, k: int):
    """log of the LKJ(eta) normaliser over K x K correlation matrices (LKJ 2009, Thm 5)."""
    eta = as_float(eta)[..., None]
    km = jnp.arange(k - 1, 0, -1, dtype=eta.dtype)  # K - k for k = 1..K-1
    b = eta + 0.5 * (km - 1)
    terms = (2 * eta - 2 + km) * km * math.log(2.0) + km * betaln(b, b)
    return jnp.sum(terms, -1)


def lkj_corr_cholesky_lpdf(x, eta):
    x, eta = floats(x, eta)
    k = x.shape[-1]
    ok = C.corr_cholesky.check(x)
    diag = jnp.diagonal(x, axis1=-2, axis2=-1)[..., 1:]
    log_diag = jnp.log(jnp.where(ok[..., None], diag, 1.0))
    coef = (k - np.arange(1, k) - 1.0) + 2.0 * eta[..., None] - 2.0  # Stan: (K - i - 1) + 2 eta - 2
    lp = jnp.sum(coef * log_diag, -1) - lkj_log_normalizer(eta, k)
    return mask(ok, lp)


def lkj_corr_cholesky_sample(key, batch_shape, eta, event_shape=None):
    """C-vine: partial correlations ~ 2 Beta(b_j, b_j) - 1, b_j = eta + (K-2-j)/2 for column j."""
    if event_shape is None:
        raise ValueError("lkj_corr_cholesky sample needs event_shape=(K, K)")
    k = int(event_shape[-1])
    eta = as_float(eta)
    shape = jnp.broadcast_shapes(tuple(batch_shape), eta.shape)
    cols = np.tril_indices(k, -1)[1]
    conc = eta[..., None] + 0.5 * (k - 2 - cols)
    conc = jnp.broadcast_to(conc, shape + (cols.size,))
    z = 2.0 * beta_draws(key, shape + (cols.size,), conc, conc) - 1.0
    return C.corr_cholesky_from_cpcs(z, k)


# ---------------------------------------------------------------- multinomial
def multinomial_lpmf(x, n, p):
    x, n, p = floats(x, n, p)
    is_count = (x == jnp.floor(x)) & (x >= 0)
    ok = jnp.all(is_count, -1) & (jnp.sum(jnp.where(is_count, x, 0.0), -1) == n)
    xs = jnp.where(ok[..., None], x, 0.0)
    lp = gammaln(n + 1) - jnp.sum(gammaln(xs + 1), -1) + jnp.sum(xlogy(xs, p), -1)
    return mask(ok, lp)


def multinomial_sample(key, batch_shape, n, p):
    n, p = floats(n, p)
    shape = jnp.broadcast_shapes(_vector_batch(batch_shape, p), jnp.shape(n))
    p = jnp.broadcast_to(p, shape + p.shape[-1:])
    draws = jax.random.multinomial(key, jnp.broadcast_to(n, shape), p)  # result shape = p.shape
    return jnp.round(draws).astype(INT)


SPECS = {
    "dirichlet": dict(
        params=("alpha",), param_event_dims=(1,), event_dim=1, logpdf=dirichlet_lpdf,
        sample=dirichlet_sample, support=lambda alpha: C.simplex, event_shape=lambda s: tuple(s[-1:]),
        mean=lambda a: _dirichlet_moments(a)[0], variance=lambda a: _dirichlet_moments(a)[1]),
    "multi_normal": dict(
        params=("mu", "Sigma"), param_event_dims=(1, 2), event_dim=1, logpdf=multi_normal_lpdf,
        sample=multi_normal_sample, support=lambda mu, s: REAL_VECTOR, event_shape=_mvn_event_shape,
        mean=lambda mu, s: jnp.broadcast_to(mu, jnp.broadcast_shapes(jnp.shape(mu), jnp.shape(s)[:-1])),
        variance=lambda mu, s: jnp.diagonal(s, axis1=-2, axis2=-1) + 0.0 * as_float(mu)),
    "multi_normal_cholesky": dict(
        params=("mu", "L"), param_event_dims=(1, 2), event_dim=1, logpdf=multi_normal_cholesky_lpdf,
        sample=multi_normal_cholesky_sample, support=lambda mu, chol: REAL_VECTOR,
        event_shape=_mvn_event_shape,
        mean=lambda mu, c: jnp.broadcast_to(mu, jnp.broadcast_shapes(jnp.shape(mu), jnp.shape(c)[:-1])),
        variance=lambda mu, c: jnp.sum(as_float(c) ** 2, -1) + 0.0 * as_float(mu)),
    "lkj_corr_cholesky": dict(
        params=("eta",), event_dim=2, logpdf=lkj_corr_cholesky_lpdf, sample=lkj_corr_cholesky_sample,
        support=lambda eta: C.corr_cholesky, event_shape=lambda s: None),
    "multinomial": dict(
        params=("n", "p"), param_event_dims=(0, 1), event_dim=1, discrete=True, logpdf=multinomial_lpmf,
        sample=multinomial_sample, support=lambda n, p: COUNT_VECTOR,
        event_shape=lambda n_shape, p_shape: tuple(p_shape[-1:]),
        mean=lambda n, p: jnp.asarray(n)[..., None] * p,
        variance=lambda n, p: jnp.asarray(n)[..., None] * p * (1.0 - p)),
}
