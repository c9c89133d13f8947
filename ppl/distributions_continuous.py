"""Continuous univariate distributions (Stan parameterisations).

Each entry of ``SPECS`` is turned into a ``ppl.distributions.Distribution``.
Also holds the small helpers shared by the discrete and multivariate modules.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import (betainc, gammainc, gammaincc, gammaln, i0e, log_ndtr,
                               ndtri, xlog1py, xlogy)

from ppl import constraints as C
from ppl.numerics import log_sigmoid, log_sigmoid_pair

LOG_2 = math.log(2.0)
LOG_PI = math.log(math.pi)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
NEG_INF = -jnp.inf


# ---------------------------------------------------------------- shared helpers
def as_float(x):
    """``x`` as a floating array (integer data is cast)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))


def floats(*xs):
    return tuple(as_float(x) for x in xs)


def batch_of(batch_shape, *params):
    """Broadcast of the requested batch shape with scalar params' shapes."""
    return jnp.broadcast_shapes(tuple(batch_shape), *(jnp.shape(p) for p in params))


def betaln(a, b):
    """log B(a, b) via lgamma (jax.scipy.special.betaln is only ~1e-7 accurate)."""
    return gammaln(a) + gammaln(b) - gammaln(a + b)


def std_uniform(key, shape, dtype=None):
    """Uniform draws in the open interval (0, 1)."""
    dtype = dtype or jnp.result_type(float)
    return jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)


def log_gamma_draws(key, shape, conc):
    """log of Gamma(conc, 1) draws. Drawn flat, so that every gamma-based sampler
    (gamma, beta, dirichlet, t, lkj, ...) of the same size reuses one compiled kernel."""
    shape = tuple(shape)
    size = math.prod(shape)
    flat = jnp.reshape(jnp.broadcast_to(conc, shape), (size,))
    return jnp.reshape(jax.random.loggamma(key, flat, (size,)), shape)


def std_gamma(key, shape, conc):
    """Gamma(conc, 1) draws."""
    return jnp.exp(log_gamma_draws(key, shape, conc))


def mask(ok, lp):
    """``lp`` where ``ok``, else -inf."""
    return jnp.where(ok, lp, NEG_INF)


def log1mexp(a):
    """log(1 - exp(a)) for a <= 0, stable on both ends."""
    a = jnp.minimum(a, 0.0)
    return jnp.where(a > -LOG_2, jnp.log(-jnp.expm1(a)), jnp.log1p(-jnp.exp(a)))


def _positive_part(x):
    """(ok, x_safe) for a support x >= 0: safe values keep gradients finite."""
    ok = x >= 0
    return ok, jnp.where(ok, x, 1.0)


def _cdf_below_zero(x, lcdf, lccdf):
    """Clamp (lcdf, lccdf) for supports starting at 0."""
    return jnp.where(x < 0, NEG_INF, lcdf), jnp.where(x < 0, 0.0, lccdf)


def _undefined_unless(cond, value):
    return jnp.where(cond, value, jnp.nan)


# ---------------------------------------------------------------- normal family
def normal_lpdf(x, mu, sigma):
    x, mu, sigma = floats(x, mu, sigma)
    z = (x - mu) / sigma
    return -0.5 * z * z - jnp.log(sigma) - HALF_LOG_2PI


def normal_sample(key, batch_shape, mu, sigma):
    mu, sigma = floats(mu, sigma)
    return mu + sigma * jax.random.normal(key, batch_of(batch_shape, mu, sigma))


def half_normal_lpdf(x, sigma):
    ok, xs = _positive_part(as_float(x))
    return mask(ok, LOG_2 + normal_lpdf(xs, 0.0, sigma))


def half_normal_cdfs(x, sigma):
    x, sigma = floats(x, sigma)
    z = jnp.abs(x) / sigma
    lccdf = LOG_2 + log_ndtr(-z)
    return _cdf_below_zero(x, log1mexp(lccdf), lccdf)


def lognormal_lpdf(x, mu, sigma):
    x = as_float(x)
    ok = x > 0
    lx = jnp.log(jnp.where(ok, x, 1.0))
    return mask(ok, normal_lpdf(lx, mu, sigma) - lx)


def lognormal_cdfs(x, mu, sigma):
    x, mu, sigma = floats(x, mu, sigma)
    z = (jnp.log(jnp.where(x > 0, x, 1.0)) - mu) / sigma
    return jnp.where(x > 0, log_ndtr(z), NEG_INF), jnp.where(x > 0, log_ndtr(-z), 0.0)


# ---------------------------------------------------------------- student t / cauchy
def student_t_lpdf(x, nu, mu, sigma):
    x, nu, mu, sigma = floats(x, nu, mu, sigma)
    z = (x - mu) / sigma
    return (gammaln(0.5 * (nu + 1)) - gammaln(0.5 * nu) - 0.5 * jnp.log(nu * jnp.pi)
            - jnp.log(sigma) - 0.5 * (nu + 1) * jnp.log1p(z * z / nu))


def _t_tail(t, nu):
    """P(T > |t|) for a standard t with nu degrees of freedom."""
    return 0.5 * betainc(0.5 * nu, 0.5, nu / (nu + t * t))


def student_t_cdfs(x, nu, mu, sigma):
    x, nu, mu, sigma = floats(x, nu, mu, sigma)
    t = (x - mu) / sigma
    tail = _t_tail(t, nu)
    return (jnp.where(t > 0, jnp.log1p(-tail), jnp.log(tail)),
            jnp.where(t > 0, jnp.log(tail), jnp.log1p(-tail)))


def student_t_sample(key, batch_shape, nu, mu, sigma):
    nu, mu, sigma = floats(nu, mu, sigma)
    shape = batch_of(batch_shape, nu, mu, sigma)
    k1, k2 = jax.random.split(key)
    chi2_over_nu = std_gamma(k2, shape, 0.5 * nu) / (0.5 * nu)
    return mu + sigma * jax.random.normal(k1, shape) / jnp.sqrt(chi2_over_nu)


def half_student_t_lpdf(x, nu, sigma):
    ok, xs = _positive_part(as_float(x))
    return mask(ok, LOG_2 + student_t_lpdf(xs, nu, 0.0, sigma))


def half_student_t_cdfs(x, nu, sigma):
    x, nu, sigma = floats(x, nu, sigma)
    two_tail = 2.0 * _t_tail(x / sigma, nu)
    return _cdf_below_zero(x, jnp.log1p(-two_tail), jnp.log(two_tail))


def half_student_t_mean(nu, sigma):
    nu, sigma = floats(nu, sigma)
    m = (2 * sigma * jnp.sqrt(nu / jnp.pi)
         * jnp.exp(gammaln(0.5 * (nu + 1)) - gammaln(0.5 * nu)) / (nu - 1))
    return _undefined_unless(nu > 1, m)


def half_student_t_variance(nu, sigma):
    nu, sigma = floats(nu, sigma)
    v = sigma ** 2 * nu / (nu - 2) - half_student_t_mean(nu, sigma) ** 2
    return _undefined_unless(nu > 2, v)


def cauchy_lpdf(x, mu, sigma):
    x, mu, sigma = floats(x, mu, sigma)
    z = (x - mu) / sigma
    return -LOG_PI - jnp.log(sigma) - jnp.log1p(z * z)


def cauchy_cdfs(x, mu, sigma):
    x, mu, sigma = floats(x, mu, sigma)
    z = (x - mu) / sigma
    return jnp.log(jnp.arctan2(1.0, -z) / jnp.pi), jnp.log(jnp.arctan2(1.0, z) / jnp.pi)


def cauchy_sample(key, batch_shape, mu, sigma):
    mu, sigma = floats(mu, sigma)
    return mu + sigma * jnp.tan(jnp.pi * (std_uniform(key, batch_of(batch_shape, mu, sigma)) - 0.5))


def half_cauchy_lpdf(x, sigma):
    ok, xs = _positive_part(as_float(x))
    return mask(ok, LOG_2 + cauchy_lpdf(xs, 0.0, sigma))


def half_cauchy_cdfs(x, sigma):
    x, sigma = floats(x, sigma)
    z = jnp.abs(x) / sigma
    c = math.log(2 / math.pi)
    return _cdf_below_zero(x, c + jnp.log(jnp.arctan(z)), c + jnp.log(jnp.arctan2(1.0, z)))


def _abs_sample(sampler):
    return lambda key, batch_shape, *params: jnp.abs(sampler(key, batch_shape, *params))


# ---------------------------------------------------------------- gamma family
def exponential_lpdf(x, rate):
    x, rate = floats(x, rate)
    return mask(x >= 0, jnp.log(rate) - rate * x)


def exponential_cdfs(x, rate):
    x, rate = floats(x, rate)
    lccdf = -rate * jnp.maximum(x, 0.0)
    return _cdf_below_zero(x, log1mexp(lccdf), lccdf)


def exponential_sample(key, batch_shape, rate):
    rate = as_float(rate)
    return -jnp.log(std_uniform(key, batch_of(batch_shape, rate))) / rate


def gamma_lpdf(x, shape, rate):
    x, shape, rate = floats(x, shape, rate)
    ok, xs = _positive_part(x)
    lp = xlogy(shape, rate) - gammaln(shape) + xlogy(shape - 1, xs) - rate * xs
    return mask(ok, lp)


def gamma_cdfs(x, shape, rate):
    x, shape, rate = floats(x, shape, rate)
    y = rate * jnp.maximum(x, 0.0)
    return _cdf_below_zero(x, jnp.log(gammainc(shape, y)), jnp.log(gammaincc(shape, y)))


def gamma_sample(key, batch_shape, shape, rate):
    shape, rate = floats(shape, rate)
    out = batch_of(batch_shape, shape, rate)
    return std_gamma(key, out, shape) / rate


def inv_gamma_lpdf(x, shape, scale):
    x, shape, scale = floats(x, shape, scale)
    ok = x > 0
    xs = jnp.where(ok, x, 1.0)
    lp = xlogy(shape, scale) - gammaln(shape) - (shape + 1) * jnp.log(xs) - scale / xs
    return mask(ok, lp)


def inv_gamma_cdfs(x, shape, scale):
    x, shape, scale = floats(x, shape, scale)
    y = scale / jnp.where(x > 0, x, 1.0)
    lcdf, lccdf = jnp.log(gammaincc(shape, y)), jnp.log(gammainc(shape, y))
    return jnp.where(x > 0, lcdf, NEG_INF), jnp.where(x > 0, lccdf, 0.0)


def inv_gamma_sample(key, batch_shape, shape, scale):
    shape, scale = floats(shape, scale)
    out = batch_of(batch_shape, shape, scale)
    return scale / std_gamma(key, out, shape)


def chi_square_lpdf(x, nu):
    return gamma_lpdf(x, 0.5 * as_float(nu), 0.5)


def chi_square_cdfs(x, nu):
    return gamma_cdfs(x, 0.5 * as_float(nu), 0.5)


def chi_square_sample(key, batch_shape, nu):
    return gamma_sample(key, batch_shape, 0.5 * as_float(nu), 0.5)


def weibull_lpdf(x, alpha, sigma):
    x, alpha, sigma = floats(x, alpha, sigma)
    ok, xs = _positive_part(x)
    lp = jnp.log(alpha) - alpha * jnp.log(sigma) + xlogy(alpha - 1, xs) - (xs / sigma) ** alpha
    return mask(ok, lp)


def weibull_cdfs(x, alpha, sigma):
    x, alpha, sigma = floats(x, alpha, sigma)
    lccdf = -(jnp.maximum(x, 0.0) / sigma) ** alpha
    return _cdf_below_zero(x, log1mexp(lccdf), lccdf)


def weibull_icdf(q, alpha, sigma):
    q, alpha, sigma = floats(q, alpha, sigma)
    return sigma * (-jnp.log1p(-q)) ** (1 / alpha)


def weibull_sample(key, batch_shape, alpha, sigma):
    return weibull_icdf(std_uniform(key, batch_of(batch_shape, alpha, sigma)), alpha, sigma)


# ---------------------------------------------------------------- bounded
def beta_lpdf(x, a, b):
    x, a, b = floats(x, a, b)
    ok = (x >= 0) & (x <= 1)
    xs = jnp.where(ok, x, 0.5)
    return mask(ok, xlogy(a - 1, xs) + xlog1py(b - 1, -xs) - betaln(a, b))


def beta_cdfs(x, a, b):
    x, a, b = floats(x, a, b)
    xc = jnp.clip(x, 0.0, 1.0)
    return jnp.log(betainc(a, b, xc)), jnp.log(betainc(b, a, 1.0 - xc))


def beta_sample(key, batch_shape, a, b):
    a, b = floats(a, b)
    out = batch_of(batch_shape, a, b)
    return beta_draws(key, out, a, b)


def beta_draws(key, shape, a, b):
    """Beta(a, b) from two log-gamma draws (stable for small a, b)."""
    k1, k2 = jax.random.split(key)
    la, lb = log_gamma_draws(k1, shape, a), log_gamma_draws(k2, shape, b)
    return jnp.exp(la - jnp.logaddexp(la, lb))


def uniform_lpdf(x, lo, hi):
    x, lo, hi = floats(x, lo, hi)
    return mask((x >= lo) & (x <= hi), -jnp.log(hi - lo))


def uniform_cdfs(x, lo, hi):
    x, lo, hi = floats(x, lo, hi)
    xc = jnp.clip(x, lo, hi)
    return jnp.log((xc - lo) / (hi - lo)), jnp.log((hi - xc) / (hi - lo))


def uniform_sample(key, batch_shape, lo, hi):
    lo, hi = floats(lo, hi)
    return lo + (hi - lo) * std_uniform(key, batch_of(batch_shape, lo, hi))


def von_mises_lpdf(x, mu, kappa):
    x, mu, kappa = floats(x, mu, kappa)
    ok = (x >= -jnp.pi) & (x <= jnp.pi)
    lp = kappa * (jnp.cos(x - mu) - 1.0) - math.log(2 * math.pi) - jnp.log(i0e(kappa))
    return mask(ok, lp)


@jax.jit
def _von_mises_centered(key, kappa):
    """Best & Fisher (1979) rejection sampler, vectorised with a while_loop."""
    kappa = jnp.maximum(kappa, 1e-30)  # kappa = 0 (uniform) stays finite
    r = 1.0 + jnp.sqrt(1.0 + 4.0 * kappa ** 2)
    rho = (r - jnp.sqrt(2.0 * r)) / (2.0 * kappa)
    s = jnp.where(kappa > 1e-4, (1.0 + rho ** 2) / (2.0 * rho), 1.0 / kappa)

    def cond(state):
        i, _, done, _ = state
        return (i < 1000) & ~jnp.all(done)

    def body(state):
        i, k, done, w = state
        k, k1, k2 = jax.random.split(k, 3)
        z = jnp.cos(jnp.pi * jax.random.uniform(k1, kappa.shape))
        w_new = (1.0 + s * z) / (s + z)
        y = kappa * (s - w_new)
        v = jax.random.uniform(k2, kappa.shape)
        accept = (y * (2.0 - y) >= v) | (jnp.log(y / v) + 1.0 >= y)
        return i + 1, k, done | accept, jnp.where(done, w, w_new)

    key, ksign = jax.random.split(key)
    init = (jnp.array(0), key, jnp.zeros(kappa.shape, bool), jnp.zeros(kappa.shape, kappa.dtype))
    w = lax.while_loop(cond, body, init)[3]
    sign = jnp.where(jax.random.bernoulli(ksign, 0.5, kappa.shape), 1.0, -1.0)
    return sign * jnp.arccos(jnp.clip(w, -1.0, 1.0))


def von_mises_sample(key, batch_shape, mu, kappa):
    mu, kappa = floats(mu, kappa)
    out = batch_of(batch_shape, mu, kappa)
    theta = _von_mises_centered(key, jnp.broadcast_to(kappa, out))
    return jnp.mod(mu + theta + jnp.pi, 2 * jnp.pi) - jnp.pi


# ---------------------------------------------------------------- location-scale
def laplace_lpdf(x, mu, b):
    x, mu, b = floats(x, mu, b)
    return -LOG_2 - jnp.log(b) - jnp.abs(x - mu) / b


def laplace_cdfs(x, mu, b):
    x, mu, b = floats(x, mu, b)
    z = (x - mu) / b
    near = jnp.log1p(-0.5 * jnp.exp(-jnp.abs(z)))
    far = -LOG_2 - jnp.abs(z)
    return jnp.where(z < 0, far, near), jnp.where(z < 0, near, far)


def laplace_icdf(q, mu, b):
    q, mu, b = floats(q, mu, b)
    return mu - b * jnp.sign(q - 0.5) * jnp.log1p(-2 * jnp.abs(q - 0.5))


def laplace_sample(key, batch_shape, mu, b):
    return laplace_icdf(std_uniform(key, batch_of(batch_shape, mu, b)), mu, b)


def logistic_lpdf(x, mu, s):
    x, mu, s = floats(x, mu, s)
    z = (x - mu) / s
    return -z - jnp.log(s) + 2.0 * log_sigmoid(z)


def logistic_cdfs(x, mu, s):
    x, mu, s = floats(x, mu, s)
    z = (x - mu) / s
    return log_sigmoid_pair(z)


def logistic_sample(key, batch_shape, mu, s):
    mu, s = floats(mu, s)
    u = std_uniform(key, batch_of(batch_shape, mu, s))
    return mu + s * (jnp.log(u) - jnp.log1p(-u))


# ---------------------------------------------------------------- registry
def _split(cdfs):
    """(lcdf, lccdf) functions from one function returning both."""
    return dict(lcdf=lambda *a: cdfs(*a)[0], lccdf=lambda *a: cdfs(*a)[1])


def _const(c):
    return lambda *params: c


def _scale_family_icdf(std_icdf):
    return lambda q, mu, sigma: as_float(mu) + as_float(sigma) * std_icdf(as_float(q))


SPECS = {
    "normal": dict(
        params=("mu", "sigma"), logpdf=normal_lpdf, sample=normal_sample, support=_const(C.real),
        **_split(lambda x, mu, s: (log_ndtr((as_float(x) - mu) / s), log_ndtr((mu - as_float(x)) / s))),
        icdf=_scale_family_icdf(ndtri), mean=lambda mu, s: mu + 0.0 * s, variance=lambda mu, s: s ** 2 + 0.0 * mu),
    "half_normal": dict(
        params=("sigma",), logpdf=half_normal_lpdf, sample=_abs_sample(lambda k, b, s: normal_sample(k, b, 0.0, s)),
        support=_const(C.positive), **_split(half_normal_cdfs),
        icdf=lambda q, s: as_float(s) * ndtri(0.5 * (1 + as_float(q))),
        mean=lambda s: s * math.sqrt(2 / math.pi), variance=lambda s: s ** 2 * (1 - 2 / math.pi)),
    "student_t": dict(
        params=("nu", "mu", "sigma"), logpdf=student_t_lpdf, sample=student_t_sample, support=_const(C.real),
        **_split(student_t_cdfs),
        mean=lambda nu, mu, s: _undefined_unless(nu > 1, mu + 0.0 * s),
        variance=lambda nu, mu, s: _undefined_unless(nu > 2, s ** 2 * nu / (nu - 2.0) + 0.0 * mu)),
    "half_student_t": dict(
        params=("nu", "sigma"), logpdf=half_student_t_lpdf,
        sample=_abs_sample(lambda k, b, nu, s: student_t_sample(k, b, nu, 0.0, s)),
        support=_const(C.positive), **_split(half_student_t_cdfs),
        mean=half_student_t_mean, variance=half_student_t_variance),
    "cauchy": dict(
        params=("mu", "sigma"), logpdf=cauchy_lpdf, sample=cauchy_sample, support=_const(C.real),
        **_split(cauchy_cdfs), icdf=_scale_family_icdf(lambda q: jnp.tan(jnp.pi * (q - 0.5)))),
    "half_cauchy": dict(
        params=("sigma",), logpdf=half_cauchy_lpdf, sample=_abs_sample(lambda k, b, s: cauchy_sample(k, b, 0.0, s)),
        support=_const(C.positive), **_split(half_cauchy_cdfs),
        icdf=lambda q, s: as_float(s) * jnp.tan(0.5 * jnp.pi * as_float(q))),
    "lognormal": dict(
        params=("mu", "sigma"), logpdf=lognormal_lpdf,
        sample=lambda k, b, mu, s: jnp.exp(normal_sample(k, b, mu, s)), support=_const(C.positive),
        **_split(lognormal_cdfs), icdf=lambda q, mu, s: jnp.exp(_scale_family_icdf(ndtri)(q, mu, s)),
        mean=lambda mu, s: jnp.exp(mu + 0.5 * s ** 2),
        variance=lambda mu, s: jnp.expm1(s ** 2) * jnp.exp(2 * mu + s ** 2)),
    "exponential": dict(
        params=("rate",), logpdf=exponential_lpdf, sample=exponential_sample, support=_const(C.positive),
        **_split(exponential_cdfs), icdf=lambda q, r: -jnp.log1p(-as_float(q)) / r,
        mean=lambda r: 1.0 / r, variance=lambda r: 1.0 / r ** 2),
    "gamma": dict(
        params=("shape", "rate"), logpdf=gamma_lpdf, sample=gamma_sample, support=_const(C.positive),
        **_split(gamma_cdfs), mean=lambda a, r: a / r, variance=lambda a, r: a / r ** 2),
    "inv_gamma": dict(
        params=("shape", "scale"), logpdf=inv_gamma_lpdf, sample=inv_gamma_sample, support=_const(C.positive),
        **_split(inv_gamma_cdfs), mean=lambda a, s: _undefined_unless(a > 1, s / (a - 1.0)),
        variance=lambda a, s: _undefined_unless(a > 2, s ** 2 / ((a - 1.0) ** 2 * (a - 2.0)))),
    "beta": dict(
        params=("a", "b"), logpdf=beta_lpdf, sample=beta_sample, support=_const(C.unit_interval),
        **_split(beta_cdfs), mean=lambda a, b: a / (a + b),
        variance=lambda a, b: a * b / ((a + b) ** 2 * (a + b + 1.0))),
    "uniform": dict(
        params=("lo", "hi"), logpdf=uniform_lpdf, sample=uniform_sample, support=C.interval,
        **_split(uniform_cdfs), icdf=lambda q, lo, hi: lo + as_float(q) * (as_float(hi) - lo),
        mean=lambda lo, hi: 0.5 * (lo + hi), variance=lambda lo, hi: (hi - lo) ** 2 / 12.0),
    "laplace": dict(
        params=("mu", "b"), logpdf=laplace_lpdf, sample=laplace_sample, support=_const(C.real),
        **_split(laplace_cdfs), icdf=laplace_icdf, mean=lambda mu, b: mu + 0.0 * b,
        variance=lambda mu, b: 2.0 * b ** 2 + 0.0 * mu),
    "logistic": dict(
        params=("mu", "s"), logpdf=logistic_lpdf, sample=logistic_sample, support=_const(C.real),
        **_split(logistic_cdfs), icdf=_scale_family_icdf(lambda q: jnp.log(q) - jnp.log1p(-q)),
        mean=lambda mu, s: mu + 0.0 * s, variance=lambda mu, s: (s * jnp.pi) ** 2 / 3.0 + 0.0 * mu),
    "weibull": dict(
        params=("alpha", "sigma"), logpdf=weibull_lpdf, sample=weibull_sample, support=_const(C.positive),
        **_split(weibull_cdfs), icdf=weibull_icdf,
        mean=lambda a, s: s * jnp.exp(gammaln(1.0 + 1.0 / a)),
        variance=lambda a, s: s ** 2 * (jnp.exp(gammaln(1.0 + 2.0 / a)) - jnp.exp(2 * gammaln(1.0 + 1.0 / a)))),
    "chi_square": dict(
        params=("nu",), logpdf=chi_square_lpdf, sample=chi_square_sample, support=_const(C.positive),
        **_split(chi_square_cdfs), mean=lambda nu: 1.0 * nu, variance=lambda nu: 2.0 * nu),
    "von_mises": dict(
        params=("mu", "kappa"), logpdf=von_mises_lpdf, sample=von_mises_sample,
        support=_const(C.interval(-math.pi, math.pi))),
}
