"""Discrete distributions (log pmfs, Stan parameterisations; categorical is 0-based)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import log_softmax, sigmoid
from jax.scipy.special import betainc, gammainc, gammaincc, gammaln, xlog1py, xlogy

from ppl import constraints as C
from ppl.numerics import log1p_exp, log_sigmoid_pair
from ppl.distributions_continuous import (NEG_INF, as_float, batch_of, beta_draws, betaln, floats, log1mexp,
                                         mask, std_gamma, std_uniform)

INT = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


def _is_int(x):
    return (x == jnp.floor(x)) & jnp.isfinite(x)


def _safe(ok, x, fill=0.0):
    return jnp.where(ok, x, fill)


def lchoose(n, k):
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def _int_cdfs(x, lo, hi, lcdf_fn, lccdf_fn):
    """Clamp an integer-support (lcdf, lccdf) at floor(x) to the support [lo, hi]."""
    k = jnp.floor(x)
    inside = (k >= lo) & (k < hi)
    ks = jnp.where(inside, k, lo)
    lcdf = jnp.where(k < lo, NEG_INF, jnp.where(inside, lcdf_fn(ks), 0.0))
    lccdf = jnp.where(k < lo, 0.0, jnp.where(inside, lccdf_fn(ks), NEG_INF))
    return lcdf, lccdf


def _to_int(x):
    return jnp.asarray(x).astype(INT)


# ---------------------------------------------------------------- bernoulli
def _bernoulli_lp(x, log_p, log_1mp):
    x = as_float(x)
    ok = (x == 0) | (x == 1)
    return mask(ok, jnp.where(x == 1, log_p, log_1mp))


def bernoulli_lpmf(x, p):
    p = as_float(p)
    return _bernoulli_lp(x, jnp.log(p), jnp.log1p(-p))


def bernoulli_logit_lpmf(x, a):
    # x * a - softplus(a) is log p(x) for x in {0, 1}: one softplus instead of two log-sigmoids
    a, x = as_float(a), as_float(x)
    return mask((x == 0) | (x == 1), x * a - log1p_exp(a))


def bernoulli_cdfs(x, p):
    x, p = floats(x, p)
    return _int_cdfs(x, 0.0, 1.0, lambda k: jnp.log1p(-p), lambda k: jnp.log(p))


def bernoulli_sample(key, batch_shape, p):
    p = as_float(p)
    return _to_int(std_uniform(key, batch_of(batch_shape, p)) < p)


# ---------------------------------------------------------------- binomial
def _binomial_lp(x, n, log_p, log_1mp):
    x, n = floats(x, n)
    ok = _is_int(x) & (x >= 0) & (x <= n)
    xs = _safe(ok, x)
    lp = lchoose(n, xs) + xs * log_p + (n - xs) * log_1mp
    return mask(ok, lp)


def binomial_lpmf(x, n, p):
    x, n, p = floats(x, n, p)
    ok = _is_int(x) & (x >= 0) & (x <= n)
    xs = _safe(ok, x)
    return mask(ok, lchoose(n, xs) + xlogy(xs, p) + xlog1py(n - xs, -p))


def binomial_logit_lpmf(x, n, a):
    a = as_float(a)
    return _binomial_lp(x, n, *log_sigmoid_pair(a))


def binomial_cdfs(x, n, p):
    x, n, p = floats(x, n, p)
    return _int_cdfs(x, 0.0, n, lambda k: jnp.log(betainc(n - k, k + 1, 1 - p)),
                     lambda k: jnp.log(betainc(k + 1, n - k, p)))


def binomial_sample(key, batch_shape, n, p):
    n, p = floats(n, p)
    shape = batch_of(batch_shape, n, p)
    draws = jax.random.binomial(key, jnp.broadcast_to(n, shape), jnp.broadcast_to(p, shape), shape)
    return _to_int(jnp.round(draws))


def beta_binomial_lpmf(x, n, a, b):
    x, n, a, b = floats(x, n, a, b)
    ok = _is_int(x) & (x >= 0) & (x <= n)
    xs = _safe(ok, x)
    return mask(ok, lchoose(n, xs) + betaln(xs + a, n - xs + b) - betaln(a, b))


def beta_binomial_sample(key, batch_shape, n, a, b):
    n, a, b = floats(n, a, b)
    shape = batch_of(batch_shape, n, a, b)
    k1, k2 = jax.random.split(key)
    p = beta_draws(k1, shape, a, b)
    return binomial_sample(k2, shape, n, p)


# ---------------------------------------------------------------- poisson family
def poisson_lpmf(x, rate):
    x, rate = floats(x, rate)
    ok = _is_int(x) & (x >= 0)
    xs = _safe(ok, x)
    return mask(ok, xlogy(xs, rate) - rate - gammaln(xs + 1))


def poisson_log_lpmf(x, a):
    x, a = floats(x, a)
    ok = _is_int(x) & (x >= 0)
    xs = _safe(ok, x)
    return mask(ok, xs * a - jnp.exp(a) - gammaln(xs + 1))


def poisson_cdfs(x, rate):
    x, rate = floats(x, rate)
    return _int_cdfs(x, 0.0, jnp.inf, lambda k: jnp.log(gammaincc(k + 1, rate)),
                     lambda k: jnp.log(gammainc(k + 1, rate)))


def poisson_sample(key, batch_shape, rate):
    rate = as_float(rate)
    shape = batch_of(batch_shape, rate)
    return _to_int(jax.random.poisson(key, jnp.broadcast_to(rate, shape), shape))


def neg_binomial_2_lpmf(x, mu, phi):
    x, mu, phi = floats(x, mu, phi)
    ok = _is_int(x) & (x >= 0)
    xs = _safe(ok, x)
    log_mu_phi = jnp.log(mu + phi)
    lp = (gammaln(xs + phi) - gammaln(xs + 1) - gammaln(phi)
          + xlogy(xs, mu) - xs * log_mu_phi + phi * (jnp.log(phi) - log_mu_phi))
    return mask(ok, lp)


def neg_binomial_2_cdfs(x, mu, phi):
    x, mu, phi = floats(x, mu, phi)
    return _int_cdfs(x, 0.0, jnp.inf, lambda k: jnp.log(betainc(phi, k + 1, phi / (mu + phi))),
                     lambda k: jnp.log(betainc(k + 1, phi, mu / (mu + phi))))


def neg_binomial_2_sample(key, batch_shape, mu, phi):
    mu, phi = floats(mu, phi)
    shape = batch_of(batch_shape, mu, phi)
    k1, k2 = jax.random.split(key)
    lam = std_gamma(k1, shape, phi) * mu / phi
    return poisson_sample(k2, shape, lam)


# ---------------------------------------------------------------- geometric
def geometric_lpmf(x, p):
    x, p = floats(x, p)
    ok = _is_int(x) & (x >= 0)
    xs = _safe(ok, x)
    return mask(ok, jnp.log(p) + xlog1py(xs, -p))


def geometric_cdfs(x, p):
    x, p = floats(x, p)
    tail = lambda k: (k + 1) * jnp.log1p(-p)
    return _int_cdfs(x, 0.0, jnp.inf, lambda k: log1mexp(tail(k)), tail)


def geometric_sample(key, batch_shape, p):
    p = as_float(p)
    u = std_uniform(key, batch_of(batch_shape, p))
    return _to_int(jnp.floor(jnp.log(u) / jnp.log1p(-p)))


# ---------------------------------------------------------------- categorical (0-based)
def _gather_last(v, x):
    """v[..., x] with x (batch) broadcast against v (batch, K)."""
    batch = jnp.broadcast_shapes(jnp.shape(x), v.shape[:-1])
    v = jnp.broadcast_to(v, batch + v.shape[-1:])
    idx = jnp.broadcast_to(x, batch)[..., None]
    return jnp.take_along_axis(v, idx, axis=-1)[..., 0]


def _categorical_ok(x, k):
    x = as_float(x)
    ok = _is_int(x) & (x >= 0) & (x <= k - 1)
    return ok, jnp.where(ok, x, 0).astype(INT)


def categorical_lpmf(x, p):
    p = as_float(p)
    ok, xi = _categorical_ok(x, p.shape[-1])
    return mask(ok, jnp.log(_gather_last(p, xi)))


def categorical_logit_lpmf(x, a):
    a = as_float(a)
    ok, xi = _categorical_ok(x, a.shape[-1])
    return mask(ok, _gather_last(log_softmax(a, axis=-1), xi))


def categorical_cdfs(x, p):
    x, p = floats(x, p)
    k = p.shape[-1]
    below = jnp.cumsum(p, -1)
    above = jnp.flip(jnp.cumsum(jnp.flip(p, -1), -1), -1) - p  # P(X > j)
    xi = lambda j: jnp.clip(j, 0, k - 1).astype(INT)
    return _int_cdfs(x, 0.0, k - 1.0, lambda j: jnp.log(_gather_last(below, xi(j))),
                     lambda j: jnp.log(_gather_last(above, xi(j))))


def _categorical_moments(p):
    p = as_float(p)
    k = jnp.arange(p.shape[-1], dtype=p.dtype)
    m = jnp.sum(k * p, -1)
    return m, jnp.sum(k * k * p, -1) - m * m


def _logits_sample(key, batch_shape, logits):
    shape = jnp.broadcast_shapes(tuple(batch_shape), logits.shape[:-1])
    logits = jnp.broadcast_to(logits, shape + logits.shape[-1:])
    return _to_int(jax.random.categorical(key, logits, axis=-1, shape=shape))


def _categorical_support(p):
    return C.integer_interval(0, jnp.shape(p)[-1] - 1)


def _const(c):
    return lambda *params: c


def _split(cdfs):
    return dict(lcdf=lambda *a: cdfs(*a)[0], lccdf=lambda *a: cdfs(*a)[1])


def _binomial_support(n, *rest):
    return C.integer_interval(0, n)


SPECS = {
    "bernoulli": dict(
        params=("p",), logpdf=bernoulli_lpmf, sample=bernoulli_sample, support=_const(C.boolean),
        **_split(bernoulli_cdfs), mean=lambda p: 1.0 * p, variance=lambda p: p * (1.0 - p)),
    "bernoulli_logit": dict(
        params=("a",), logpdf=bernoulli_logit_lpmf, support=_const(C.boolean),
        sample=lambda key, b, a: bernoulli_sample(key, b, sigmoid(as_float(a))),
        **_split(lambda x, a: bernoulli_cdfs(x, sigmoid(as_float(a)))),
        mean=lambda a: sigmoid(a), variance=lambda a: sigmoid(a) * sigmoid(-a)),
    "binomial": dict(
        params=("n", "p"), logpdf=binomial_lpmf, sample=binomial_sample, support=_binomial_support,
        **_split(binomial_cdfs), mean=lambda n, p: n * p, variance=lambda n, p: n * p * (1.0 - p)),
    "binomial_logit": dict(
        params=("n", "a"), logpdf=binomial_logit_lpmf, support=_binomial_support,
        sample=lambda key, b, n, a: binomial_sample(key, b, n, sigmoid(as_float(a))),
        **_split(lambda x, n, a: binomial_cdfs(x, n, sigmoid(as_float(a)))),
        mean=lambda n, a: n * sigmoid(a), variance=lambda n, a: n * sigmoid(a) * sigmoid(-a)),
    "beta_binomial": dict(
        params=("n", "a", "b"), logpdf=beta_binomial_lpmf, sample=beta_binomial_sample,
        support=_binomial_support, mean=lambda n, a, b: n * a / (a + b),
        variance=lambda n, a, b: n * a * b * (a + b + n) / ((a + b) ** 2 * (a + b + 1.0))),
    "poisson": dict(
        params=("rate",), logpdf=poisson_lpmf, sample=poisson_sample, support=_const(C.nonnegative_integer),
        **_split(poisson_cdfs), mean=lambda r: 1.0 * r, variance=lambda r: 1.0 * r),
    "poisson_log": dict(
        params=("a",), logpdf=poisson_log_lpmf, support=_const(C.nonnegative_integer),
        sample=lambda key, b, a: poisson_sample(key, b, jnp.exp(as_float(a))),
        **_split(lambda x, a: poisson_cdfs(x, jnp.exp(as_float(a)))),
        mean=lambda a: jnp.exp(a), variance=lambda a: jnp.exp(a)),
    "neg_binomial_2": dict(
        params=("mu", "phi"), logpdf=neg_binomial_2_lpmf, sample=neg_binomial_2_sample,
        support=_const(C.nonnegative_integer), **_split(neg_binomial_2_cdfs),
        mean=lambda mu, phi: mu + 0.0 * phi, variance=lambda mu, phi: mu + mu ** 2 / phi),
    "geometric": dict(
        params=("p",), logpdf=geometric_lpmf, sample=geometric_sample, support=_const(C.nonnegative_integer),
        **_split(geometric_cdfs), mean=lambda p: (1.0 - p) / p, variance=lambda p: (1.0 - p) / p ** 2),
    "categorical": dict(
        params=("p",), param_event_dims=(1,), logpdf=categorical_lpmf, support=_categorical_support,
        sample=lambda key, b, p: _logits_sample(key, b, jnp.log(as_float(p))), **_split(categorical_cdfs),
        mean=lambda p: _categorical_moments(p)[0], variance=lambda p: _categorical_moments(p)[1]),
    "categorical_logit": dict(
        params=("a",), param_event_dims=(1,), logpdf=categorical_logit_lpmf, support=_categorical_support,
        sample=lambda key, b, a: _logits_sample(key, b, as_float(a)),
        **_split(lambda x, a: categorical_cdfs(x, jax.nn.softmax(as_float(a), -1))),
        mean=lambda a: _categorical_moments(jax.nn.softmax(a, -1))[0],
        variance=lambda a: _categorical_moments(jax.nn.softmax(a, -1))[1]),
}
SPECS = {name: dict(discrete=True, **spec) for name, spec in SPECS.items()}
