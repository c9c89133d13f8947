"""Tests for the distribution registry against scipy.stats and Monte Carlo moments.

Every univariate distribution is exercised by ONE jitted "report" call (log density,
broadcasting, out-of-support values, gradients, cdfs, quantiles and draws), cached
per distribution, so the file compiles about one program per distribution.
Monte Carlo tolerances are 5 standard errors.
"""
import functools
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root, if not installed

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si
import scipy.stats as st
from scipy.special import expit, i0e, i1e, softmax

import ppl  # noqa: F401  (enables x64)
from ppl import constraints as C
from ppl import distributions as D

N_DRAWS = 40_000
QS = np.array([0.02, 0.1, 0.3, 0.45, 0.7, 0.9, 0.98])  # avoids kinks at the median (laplace)
FACTORS = np.array([0.6, 0.8, 1.0, 1.2, 1.4])
NEG = [-1.0, -1e-3]
INT_BAD = [-1.0, 0.5]


class HalfT:
    """Reference half-t: 2 * t(nu, 0, sigma) on x >= 0."""

    def __init__(self, nu, sigma):
        self.t = st.t(nu, 0.0, sigma)

    def logpdf(self, x):
        x = np.asarray(x, float)
        return np.where(x >= 0, np.log(2) + self.t.logpdf(x), -np.inf)

    def logcdf(self, x):
        x = np.asarray(x, float)
        with np.errstate(divide="ignore"):
            return np.where(x >= 0, np.log(np.clip(2 * self.t.cdf(x) - 1, 0, 1)), -np.inf)

    def logsf(self, x):
        x = np.asarray(x, float)
        return np.where(x >= 0, np.log(2 * self.t.sf(np.abs(x))), 0.0)

    def cdf(self, x):
        return np.exp(self.logcdf(x))

    def ppf(self, q):
        return self.t.ppf(0.5 * (1 + np.asarray(q)))

    def _moment(self, k):
        return si.quad(lambda x: x ** k * 2 * self.t.pdf(x), 0, np.inf)[0]

    def mean(self):
        return self._moment(1)

    def var(self):
        return self._moment(2) - self._moment(1) ** 2


def categorical_ref(p):
    p = np.asarray(p, float)
    return st.rv_discrete(values=(np.arange(p.size), p))


# name: (params, scipy reference factory, out-of-support points[, x points])
CASES = {
    "normal": ((0.3, 1.7), lambda mu, s: st.norm(mu, s), []),
    "half_normal": ((1.3,), lambda s: st.halfnorm(scale=s), NEG),
    "student_t": ((10.0, 0.5, 2.0), lambda nu, mu, s: st.t(nu, mu, s), []),
    "half_student_t": ((10.0, 1.5), HalfT, NEG),
    "cauchy": ((0.5, 2.0), lambda mu, s: st.cauchy(mu, s), []),
    "half_cauchy": ((1.5,), lambda s: st.halfcauchy(scale=s), NEG),
    "lognormal": ((0.2, 0.6), lambda mu, s: st.lognorm(s, scale=np.exp(mu)), NEG),
    "exponential": ((1.7,), lambda r: st.expon(scale=1 / r), NEG),
    "gamma": ((2.5, 1.5), lambda a, r: st.gamma(a, scale=1 / r), NEG),
    "inv_gamma": ((6.0, 2.0), lambda a, s: st.invgamma(a, scale=s), NEG),
    "beta": ((2.0, 3.5), lambda a, b: st.beta(a, b), [-0.1, 1.1]),
    "uniform": ((-1.0, 2.5), lambda lo, hi: st.uniform(lo, hi - lo), [-1.5, 3.9]),
    "laplace": ((0.5, 1.3), lambda mu, b: st.laplace(mu, b), []),
    "logistic": ((-0.5, 0.8), lambda mu, s: st.logistic(mu, s), []),
    "weibull": ((1.7, 2.0), lambda a, s: st.weibull_min(a, scale=s), NEG),
    "chi_square": ((3.5,), lambda nu: st.chi2(nu), NEG),
    "von_mises": ((0.5, 2.0), lambda mu, k: st.vonmises(k, loc=mu), [-4.0, 4.0], np.linspace(-3.0, 3.0, 7)),
    "bernoulli": ((0.3,), lambda p: st.bernoulli(p), INT_BAD + [2.0]),
    "bernoulli_logit": ((-0.4,), lambda a: st.bernoulli(expit(a)), INT_BAD + [2.0]),
    "binomial": ((12.0, 0.35), lambda n, p: st.binom(n, p), INT_BAD + [13.0]),
    "binomial_logit": ((12.0, 0.6), lambda n, a: st.binom(n, expit(a)), INT_BAD + [13.0]),
    "beta_binomial": ((10.0, 2.0, 3.0), lambda n, a, b: st.betabinom(n, a, b), INT_BAD + [11.0]),
    "poisson": ((3.5,), lambda r: st.poisson(r), INT_BAD),
    "poisson_log": ((1.1,), lambda a: st.poisson(np.exp(a)), INT_BAD),
    "neg_binomial_2": ((4.0, 2.5), lambda mu, phi: st.nbinom(phi, phi / (mu + phi)), INT_BAD),
    "geometric": ((0.3,), lambda p: st.geom(p, loc=-1), INT_BAD),
    "categorical": ((np.array([0.2, 0.4, 0.1, 0.3]),), categorical_ref, INT_BAD + [4.0]),
    "categorical_logit": ((np.array([0.1, -0.5, 1.0, 0.3]),), lambda a: categorical_ref(softmax(a)),
                          INT_BAD + [4.0]),
}
NAMES = sorted(CASES)
INTEGER_PARAMS = {"n"}
NO_MOMENTS = {"cauchy", "half_cauchy", "von_mises"}

EXPECTED_SUPPORT = {
    "normal": "real", "student_t": "real", "cauchy": "real", "laplace": "real", "logistic": "real",
    "half_normal": "positive", "half_student_t": "positive", "half_cauchy": "positive",
    "lognormal": "positive", "exponential": "positive", "gamma": "positive", "inv_gamma": "positive",
    "weibull": "positive", "chi_square": "positive", "beta": "unit_interval", "uniform": "interval",
    "von_mises": "interval", "bernoulli": "boolean", "bernoulli_logit": "boolean",
    "binomial": "integer_interval", "binomial_logit": "integer_interval", "beta_binomial": "integer_interval",
    "poisson": "nonnegative_integer", "poisson_log": "nonnegative_integer",
    "neg_binomial_2": "nonnegative_integer", "geometric": "nonnegative_integer",
    "categorical": "integer_interval", "categorical_logit": "integer_interval",
}


def _case(name):
    params, factory, out = CASES[name][:3]
    ref = factory(*params)
    xs = CASES[name][3] if len(CASES[name]) > 3 else ref.ppf(QS)
    return params, ref, np.asarray(xs, float), np.asarray(out, float)


def _variants(name, params):
    """Five values of the last parameter (an array param broadcast against the others).

    Index 2 is always the base value, so draws[:, 2] are draws from the base case.
    """
    rng = np.random.default_rng(1)
    if name == "categorical":
        return [params[-1] if j == 2 else rng.dirichlet(np.ones(4)) for j in range(5)]
    if name == "categorical_logit":
        return [params[-1] if j == 2 else rng.normal(size=4) for j in range(5)]
    return [params[-1] * f for f in FACTORS]


def _ref_logpdf(ref, x, discrete):
    return ref.logpmf(x) if discrete else ref.logpdf(x)


@functools.lru_cache(maxsize=None)
def report(name):
    d = D.get(name)
    params, ref, xs, out = _case(name)
    xb = (xs[[2, 3, 4]] if name != "von_mises" else np.array([-1.0, 0.5, 2.0]))[:, None]
    bparam = np.stack(_variants(name, params))

    @jax.jit
    def run(params, bparam):
        ps = tuple(params)
        lp_sum = lambda x: (lambda q: jnp.sum(d.logpdf(x, *q)))
        r = dict(
            lp=d.logpdf(xs, *ps), lp_b=d.logpdf(xb, *ps[:-1], bparam), lp_out=d.logpdf(out, *ps),
            grad=jax.grad(lp_sum(xs))(ps), grad_out=jax.grad(lp_sum(out))(ps),
        )
        sup = d.support(*ps)
        r.update(ok_out=sup.check(out), ok_xs=sup.check(xs))
        pts = np.concatenate([xs, out])
        if d.lcdf is not None:
            r.update(lcdf=d.lcdf(pts, *ps), lccdf=d.lccdf(pts, *ps))
        if d.icdf is not None:
            r["icdf"] = d.icdf(QS, *ps)
        if d.mean is not None:
            r.update(mean=d.mean(*ps), variance=d.variance(*ps))
        return r

    key = jax.random.key(sum(map(ord, name)))
    ps, bp = tuple(jnp.asarray(p, float) for p in params), jnp.asarray(bparam, float)
    r = jax.tree_util.tree_map(np.asarray, run(ps, bp))
    # Sampling runs eagerly: jax.random's own jitted kernels (gamma, binomial, ...) are then
    # compiled once per shape and shared between distributions, which keeps this file fast.
    r["draws_all"] = np.asarray(d.sample(key, (N_DRAWS, 5), *ps[:-1], bp))
    r["draws"] = r["draws_all"][:, 2]
    r["ok_draws"] = np.asarray(d.support(*ps).check(r["draws"]))
    # shapes only (no compile): scalar batch with an array param broadcasts to the param's batch
    r["shape_b2"] = jax.eval_shape(lambda k: d.sample(k, (), *ps[:-1], bp), key).shape
    r["shape_b3"] = jax.eval_shape(lambda k: d.sample(k, (3, 1), *ps[:-1], bp), key).shape
    return r, dict(params=params, ref=ref, xs=xs, out=out, xb=xb, bparam=bparam)


@pytest.mark.parametrize("name", NAMES)
def test_logpdf_matches_scipy(name):
    d = D.get(name)
    r, c = report(name)
    np.testing.assert_allclose(r["lp"], _ref_logpdf(c["ref"], c["xs"], d.discrete), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_logpdf_broadcasts_array_param(name):
    d = D.get(name)
    r, c = report(name)
    assert r["lp_b"].shape == (3, 5)
    factory = CASES[name][1]
    for j, v in enumerate(c["bparam"]):
        ref = factory(*c["params"][:-1], v)
        np.testing.assert_allclose(r["lp_b"][:, j], _ref_logpdf(ref, c["xb"][:, 0], d.discrete), rtol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_outside_support_is_minus_inf_with_finite_gradients(name):
    r, c = report(name)
    assert np.all(r["lp_out"] == -np.inf)
    for g in r["grad"] + r["grad_out"]:
        assert np.all(np.isfinite(g)), (name, r["grad"], r["grad_out"])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(name):
    d = D.get(name)
    r, c = report(name)
    params, factory = c["params"], CASES[name][1]
    for i, (pname, p) in enumerate(zip(d.params, params)):
        if pname in INTEGER_PARAMS or np.ndim(p) > 0:
            continue
        h = 1e-6 * max(1.0, abs(p))
        hi = [*params[:i], p + h, *params[i + 1:]]
        lo = [*params[:i], p - h, *params[i + 1:]]
        fd = (np.sum(_ref_logpdf(factory(*hi), c["xs"], d.discrete))
              - np.sum(_ref_logpdf(factory(*lo), c["xs"], d.discrete))) / (2 * h)
        np.testing.assert_allclose(r["grad"][i], fd, rtol=1e-5, atol=1e-6, err_msg=pname)


@pytest.mark.parametrize("name", NAMES)
def test_support(name):
    d = D.get(name)
    r, c = report(name)
    sup = d.support(*c["params"])
    assert isinstance(sup, C.Constraint)
    assert sup.kind == EXPECTED_SUPPORT[name]
    assert sup.discrete == d.discrete
    assert np.all(r["ok_draws"]) and np.all(r["ok_xs"])
    if len(c["out"]):
        assert not np.any(r["ok_out"])
    if name == "uniform":
        assert (sup.lower, sup.upper) == c["params"]
    if name == "von_mises":
        np.testing.assert_allclose([sup.lower, sup.upper], [-np.pi, np.pi])
    if name in ("binomial", "binomial_logit", "beta_binomial"):
        np.testing.assert_array_equal(sup.finite_values(), np.arange(int(c["params"][0]) + 1))
    if name.startswith("categorical"):
        np.testing.assert_array_equal(sup.finite_values(), np.arange(len(c["params"][0])))
    if name.startswith("bernoulli"):
        np.testing.assert_array_equal(sup.finite_values(), [0, 1])


@pytest.mark.parametrize("name", [n for n in NAMES if D.get(n).lcdf is not None])
def test_lcdf_lccdf_match_scipy(name):
    r, c = report(name)
    pts = np.concatenate([c["xs"], c["out"]])
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(r["lcdf"], c["ref"].logcdf(pts), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(r["lccdf"], c["ref"].logsf(pts), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", [n for n in NAMES if D.get(n).icdf is not None])
def test_icdf_matches_scipy(name):
    r, c = report(name)
    np.testing.assert_allclose(r["icdf"], c["ref"].ppf(QS), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NO_MOMENTS])
def test_analytic_moments_match_scipy(name):
    r, c = report(name)
    np.testing.assert_allclose(r["mean"], c["ref"].mean(), rtol=1e-8)
    np.testing.assert_allclose(r["variance"], c["ref"].var(), rtol=1e-7)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NO_MOMENTS])
def test_sampler_moments(name):
    r, c = report(name)
    x = r["draws"].astype(float)
    assert x.shape == (N_DRAWS,)
    mean, var = c["ref"].mean(), c["ref"].var()
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / N_DRAWS), (x.mean(), mean)
    m4 = np.mean((x - x.mean()) ** 4)
    assert abs(x.var() - var) < 5 * math.sqrt((m4 - x.var() ** 2) / N_DRAWS), (x.var(), var)


@pytest.mark.parametrize("name", [n for n in NAMES if D.get(n).lcdf is not None])
def test_sampler_ecdf_matches_cdf(name):
    r, c = report(name)
    x = r["draws"]
    cdf = np.exp(r["lcdf"][: len(c["xs"])])
    ecdf = np.mean(x[:, None] <= c["xs"][None, :], axis=0)
    tol = 5 * np.sqrt(cdf * (1 - cdf) / N_DRAWS) + 1.0 / N_DRAWS
    assert np.all(np.abs(ecdf - cdf) < tol), (ecdf, cdf)


@pytest.mark.parametrize("name", NAMES)
def test_sample_shapes_and_broadcasting(name):
    d = D.get(name)
    r, c = report(name)
    assert r["draws_all"].shape == (N_DRAWS, 5)
    assert r["shape_b2"] == (5,) and r["shape_b3"] == (3, 5)
    if d.discrete:
        assert np.issubdtype(r["draws"].dtype, np.integer)
    assert d.event_shape(*[np.shape(p) for p in c["params"]]) == ()


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NO_MOMENTS])
def test_sampler_broadcast_columns_follow_their_params(name):
    """Column j of a (N, 5) draw with an array last parameter follows variant j."""
    r, c = report(name)
    factory = CASES[name][1]
    for j, v in enumerate(c["bparam"]):
        ref = factory(*c["params"][:-1], v)
        x = r["draws_all"][:, j].astype(float)
        assert abs(x.mean() - ref.mean()) < 5 * math.sqrt(ref.var() / N_DRAWS), (j, x.mean(), ref.mean())


def test_von_mises_sampler_circular_moments():
    r, c = report("von_mises")
    mu, kappa = c["params"]
    x = r["draws"]
    assert np.all((x >= -np.pi) & (x <= np.pi))
    rho = i1e(kappa) / i0e(kappa)  # E[cos(x - mu)] = I1(kappa) / I0(kappa)
    cos_d, sin_d = np.cos(x - mu), np.sin(x - mu)
    assert abs(cos_d.mean() - rho) < 5 * cos_d.std() / math.sqrt(len(x))
    assert abs(sin_d.mean()) < 5 * sin_d.std() / math.sqrt(len(x))
    edges = np.linspace(-np.pi, np.pi, 9)
    probs = np.diff(st.vonmises(kappa, loc=mu).cdf(edges))
    probs = probs / probs.sum()
    freq = np.histogram(x, edges)[0] / len(x)
    assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / len(x)) + 1e-4), (freq, probs)


def test_cdf_tails_are_stable():
    @jax.jit
    def tails():
        g = D.get
        return dict(
            normal=g("normal").lcdf(-40.0, 0.0, 1.0), normal_c=g("normal").lccdf(40.0, 0.0, 1.0),
            logistic=g("logistic").lcdf(-800.0, 0.0, 1.0), expo=g("exponential").lcdf(1e-12, 1.0),
            cauchy=g("cauchy").lcdf(-1e10, 0.0, 1.0), laplace=g("laplace").lccdf(60.0, 0.0, 1.0),
            hn=g("half_normal").lccdf(30.0, 1.0), weib=g("weibull").lcdf(1e-10, 2.0, 1.0),
            bern=g("bernoulli_logit").logpdf(1, -800.0), pois=g("poisson_log").logpdf(3, 50.0),
            cat=g("categorical_logit").logpdf(0, jnp.array([-1e3, 0.0])),
            binl=g("binomial_logit").logpdf(2, 10, 700.0),
        )

    r = tails()
    np.testing.assert_allclose(r["normal"], st.norm.logcdf(-40.0), rtol=1e-10)
    np.testing.assert_allclose(r["normal_c"], st.norm.logsf(40.0), rtol=1e-10)
    np.testing.assert_allclose(r["logistic"], -800.0, rtol=1e-12)
    np.testing.assert_allclose(r["expo"], np.log(1e-12), rtol=1e-9)
    np.testing.assert_allclose(r["cauchy"], np.log(1 / (np.pi * 1e10)), rtol=1e-8)
    np.testing.assert_allclose(r["laplace"], np.log(0.5) - 60.0, rtol=1e-12)
    np.testing.assert_allclose(r["hn"], st.halfnorm.logsf(30.0), rtol=1e-10)
    np.testing.assert_allclose(r["weib"], np.log(1e-20), rtol=1e-9)
    np.testing.assert_allclose(r["bern"], -800.0, rtol=1e-12)
    np.testing.assert_allclose(r["pois"], st.poisson.logpmf(3, np.exp(50.0)), rtol=1e-10)
    np.testing.assert_allclose(r["cat"], -1000.0, rtol=1e-12)
    np.testing.assert_allclose(r["binl"], np.log(45) - 8 * 700.0, rtol=1e-10)  # C(10,2) (1 - p)^8, p = sigmoid(700)


# ---------------------------------------------------------------- multivariate
def _mc_close(sample_mean, mean, sample_var, n):
    assert np.all(np.abs(sample_mean - mean) < 5 * np.sqrt(sample_var / n)), (sample_mean, mean)


def test_dirichlet():
    d = D.get("dirichlet")
    rng = np.random.default_rng(2)
    alpha = np.array([1.5, 2.0, 0.7, 3.0, 1.0])
    xs = rng.dirichlet(alpha, size=6)
    alphas = rng.uniform(0.5, 3.0, size=(3, 5))
    bad = np.array([[0.5, 0.5, 0.5, -0.5, 0.0], [0.2, 0.2, 0.2, 0.2, 0.1], [1.0, 0.0, 0.0, 0.0, 0.0]])

    @jax.jit
    def run(key):
        return dict(lp=d.logpdf(xs, alpha), lp_b=d.logpdf(xs[:, None, :], alphas), lp_bad=d.logpdf(bad, alpha),
                    grad=jax.grad(lambda a: jnp.sum(d.logpdf(bad[:2], a)))(jnp.asarray(alpha)),
                    mean=d.mean(alpha), var=d.variance(alpha))

    r = run(jax.random.key(3))
    r["draws"] = d.sample(jax.random.key(3), (N_DRAWS,), alpha)  # eager: shares the loggamma kernel
    r["draws_b"] = jax.eval_shape(lambda k: d.sample(k, (2, 3), alphas), jax.random.key(0))
    np.testing.assert_allclose(r["lp"], [st.dirichlet.logpdf(x, alpha) for x in xs], rtol=1e-10)
    assert r["lp_b"].shape == (6, 3)
    np.testing.assert_allclose(r["lp_b"], [[st.dirichlet.logpdf(x, a) for a in alphas] for x in xs], rtol=1e-10)
    assert r["lp_bad"][0] == -np.inf and r["lp_bad"][1] == -np.inf and np.all(np.isfinite(r["grad"]))
    np.testing.assert_allclose(r["mean"], st.dirichlet.mean(alpha))
    np.testing.assert_allclose(r["var"], st.dirichlet.var(alpha))
    x = np.asarray(r["draws"])
    assert x.shape == (N_DRAWS, 5) and r["draws_b"].shape == (2, 3, 5)
    assert np.all(C.simplex.check(x))
    _mc_close(x.mean(0), st.dirichlet.mean(alpha), st.dirichlet.var(alpha), N_DRAWS)
    assert d.event_shape((5,)) == (5,) and d.support(alpha) == C.simplex
    assert d.param_event_dims == (1,) and d.event_dim == 1


def test_multi_normal_and_cholesky():
    mn, mnc = D.get("multi_normal"), D.get("multi_normal_cholesky")
    rng = np.random.default_rng(4)
    k = 3
    a = rng.normal(size=(k, k))
    sigma = a @ a.T + k * np.eye(k)
    chol = np.linalg.cholesky(sigma)
    mu = np.array([0.5, -1.0, 2.0])
    xs = rng.normal(size=(5, k))
    mus = rng.normal(size=(2, 1, k))
    sigmas = np.stack([sigma * s for s in (0.5, 1.0, 2.0)])

    @jax.jit
    def run(key):
        return dict(lp=mn.logpdf(xs, mu, sigma), lpc=mnc.logpdf(xs, mu, chol),
                    lp_b=mn.logpdf(xs[0], mus, sigmas),
                    grad=jax.grad(lambda m, s: jnp.sum(mn.logpdf(xs, m, s)), (0, 1))(jnp.asarray(mu), sigma),
                    draws=mn.sample(key, (N_DRAWS,), mu, sigma), drawsc=mnc.sample(key, (N_DRAWS,), mu, chol),
                    draws_b=mn.sample(key, (), mus, sigmas), var=mnc.variance(mu, chol))

    r = run(jax.random.key(5))
    ref = st.multivariate_normal(mu, sigma)
    np.testing.assert_allclose(r["lp"], ref.logpdf(xs), rtol=1e-10)
    np.testing.assert_allclose(r["lpc"], ref.logpdf(xs), rtol=1e-10)
    assert r["lp_b"].shape == (2, 3)
    want = [[st.multivariate_normal(m[0], s).logpdf(xs[0]) for s in sigmas] for m in mus]
    np.testing.assert_allclose(r["lp_b"], want, rtol=1e-10)
    np.testing.assert_allclose(r["grad"][0], np.linalg.solve(sigma, (xs - mu).T).sum(1), rtol=1e-8)
    assert np.all(np.isfinite(r["grad"][1]))
    np.testing.assert_allclose(r["var"], np.diag(sigma))
    assert r["draws_b"].shape == (2, 3, k)
    for key in ("draws", "drawsc"):
        x = np.asarray(r[key])
        _mc_close(x.mean(0), mu, np.diag(sigma), N_DRAWS)
        cov = np.cov(x.T)
        se = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma ** 2) / N_DRAWS)
        assert np.all(np.abs(cov - sigma) < 5 * se), (cov, sigma)
    for d in (mn, mnc):
        assert d.event_shape((k,), (k, k)) == (k,) and d.param_event_dims == (1, 2) and d.event_dim == 1
        assert d.support(mu, sigma).kind == "real" and d.support(mu, sigma).event_dim == 1


def test_multinomial():
    d = D.get("multinomial")
    p = np.array([0.2, 0.5, 0.3])
    n = 7
    xs = np.array([[7, 0, 0], [2, 3, 2], [1, 1, 5], [0, 4, 3]])
    bad = np.array([[2, 3, 3], [-1, 4, 4], [1.5, 2.5, 3], [7, 0, 0]])

    @jax.jit
    def run(key):
        return dict(lp=d.logpdf(xs, n, p), lp_bad=d.logpdf(bad, n, p),
                    lp_b=d.logpdf(xs[1], jnp.array([7, 8]), p),
                    grad=jax.grad(lambda q: jnp.sum(d.logpdf(bad, n, q)))(jnp.asarray(p)),
                    mean=d.mean(n, p), var=d.variance(n, p))

    r = run(jax.random.key(6))
    ns = np.array([n, 3, 5, 9])
    draws = np.asarray(d.sample(jax.random.key(6), (N_DRAWS, 4), ns, p))  # one compile: column 0 has n = 7
    assert draws.shape == (N_DRAWS, 4, 3) and np.all(draws.sum(-1) == ns)
    r["draws"] = draws[:, 0]
    for j in (1, 2, 3):
        _mc_close(draws[:, j].mean(0), ns[j] * p, ns[j] * p * (1 - p), N_DRAWS)
    np.testing.assert_allclose(r["lp"], st.multinomial.logpmf(xs, n, p), rtol=1e-10)
    np.testing.assert_array_equal(r["lp_bad"][:3], -np.inf)
    np.testing.assert_allclose(r["lp_bad"][3], st.multinomial.logpmf([7, 0, 0], n, p), rtol=1e-10)
    np.testing.assert_allclose(r["lp_b"], [st.multinomial.logpmf(xs[1], n, p), -np.inf])
    assert np.all(np.isfinite(r["grad"]))
    x = np.asarray(r["draws"])
    assert x.shape == (N_DRAWS, 3) and np.issubdtype(x.dtype, np.integer) and np.all(x.sum(1) == n)
    np.testing.assert_allclose(r["mean"], n * p)
    np.testing.assert_allclose(r["var"], n * p * (1 - p))
    _mc_close(x.mean(0), n * p, n * p * (1 - p), N_DRAWS)
    assert d.event_shape((), (3,)) == (3,) and d.discrete and d.param_event_dims == (0, 1)
    assert np.all(d.support(n, p).check(x))


def _lkj_grid(m=40):
    """Midpoint grid over theta in (-pi/2, pi/2)^3 for K = 3 CPCs z = sin(theta)."""
    th = (np.arange(m) + 0.5) / m * np.pi - np.pi / 2
    return np.stack(np.meshgrid(th, th, th, indexing="ij"), -1).reshape(-1, 3), (np.pi / m) ** 3


def _lkj_grid_moments(t, cell, eta):
    """Integrate the K=3 LKJ Cholesky density over the CPCs (midpoint rule in theta).

    dL/dz is triangular with determinant sqrt(1 - z20^2), and dz = cos(theta) dtheta.
    Returns (total mass, E[Omega_12^2] * mass).
    """
    d = D.get("lkj_corr_cholesky")
    z = jnp.sin(t)
    L = C.corr_cholesky_from_cpcs(z, 3)
    w = jnp.prod(jnp.cos(t), -1) * jnp.sqrt(1 - z[:, 1] ** 2) * cell
    dens = jnp.exp(d.logpdf(L, eta)) * w
    omega12 = jnp.sum(L[:, 1, :] * L[:, 2, :], -1)
    return jnp.sum(dens), jnp.sum(dens * omega12 ** 2)


def test_lkj_corr_cholesky_density():
    d = D.get("lkj_corr_cholesky")
    assert d.event_shape(()) is None and d.event_dim == 2 and d.support(1.0) == C.corr_cholesky
    etas = (1.0, 2.5, 0.7)
    t, cell = _lkj_grid()

    @jax.jit
    def run(r, eta, t):
        L2 = jax.vmap(lambda v: jnp.array([[1.0, 0.0], [v, jnp.sqrt(1 - v * v)]]))(r)
        bad = jnp.array([[1.0, 0.0], [0.9, 0.9]])
        return dict(k2=d.logpdf(L2, eta), bad=d.logpdf(bad, eta),
                    grid=jax.vmap(lambda e: jnp.stack(_lkj_grid_moments(t, cell, e)))(jnp.array(etas)),
                    grad=jax.grad(lambda e: jnp.sum(d.logpdf(L2, e)))(eta))

    r_vals = np.array([-0.9, -0.3, 0.0, 0.4, 0.8])
    eta = 1.7
    r = run(jnp.asarray(r_vals), eta, jnp.asarray(t))
    # K = 2: L[1,0] = r with (r + 1) / 2 ~ Beta(eta, eta)
    np.testing.assert_allclose(r["k2"], st.beta(eta, eta).logpdf((r_vals + 1) / 2) - np.log(2), rtol=1e-10)
    assert r["bad"] == -np.inf and np.isfinite(r["grad"])
    for e, (mass, m2) in zip(etas, np.asarray(r["grid"])):
        np.testing.assert_allclose(mass, 1.0, rtol=2e-3, err_msg=f"eta={e}")
        np.testing.assert_allclose(m2 / mass, 1.0 / (2 * e + 2), rtol=5e-3, err_msg=f"eta={e}")


def test_lkj_corr_cholesky_sampler():
    d = D.get("lkj_corr_cholesky")
    k, eta, n = 5, 2.0, N_DRAWS // 2  # n * K(K-1)/2 draws: shares the univariate loggamma kernel
    with pytest.raises(ValueError):
        d.sample(jax.random.key(0), (2,), eta)
    L = np.asarray(d.sample(jax.random.key(7), (n,), eta, event_shape=(k, k)))
    assert L.shape == (n, k, k)
    assert np.all(C.corr_cholesky.check(L))
    omega = L @ np.swapaxes(L, -1, -2)
    off = omega[:, np.tril_indices(k, -1)[0], np.tril_indices(k, -1)[1]]
    # marginal of each correlation: (r + 1) / 2 ~ Beta(eta - 1 + K/2, eta - 1 + K/2)
    b = eta - 1 + k / 2
    var = 1.0 / (2 * eta + k - 1)
    _mc_close(off.mean(0), 0.0, var, n)
    np.testing.assert_allclose(off.var(0), var, rtol=5 * np.sqrt(2.0 / n) * 1.5)
    pts = np.array([-0.5, -0.2, 0.0, 0.3, 0.6])
    cdf = st.beta(b, b).cdf((pts + 1) / 2)
    for j in range(off.shape[1]):
        ecdf = np.mean(off[:, j, None] <= pts, 0)
        assert np.all(np.abs(ecdf - cdf) < 5 * np.sqrt(cdf * (1 - cdf) / n)), (j, ecdf, cdf)
    batched = jax.eval_shape(lambda key: d.sample(key, (2, 3), jnp.array([1.0, 2.0, 3.0]), event_shape=(3, 3)),
                             jax.random.key(8))
    assert batched.shape == (2, 3, 3, 3)


# ---------------------------------------------------------------- registry
def test_registry():
    expected = set(CASES) | {"dirichlet", "multi_normal", "multi_normal_cholesky", "lkj_corr_cholesky",
                             "multinomial"}
    assert set(D.DISTRIBUTIONS) == expected
    with pytest.raises(KeyError):
        D.get("no_such_distribution")
    for name, d in D.DISTRIBUTIONS.items():
        assert d.name == name and len(d.params) == len(d.param_event_dims)
        assert d.discrete == (name in EXPECTED_SUPPORT and "integer" in EXPECTED_SUPPORT[name]
                              or EXPECTED_SUPPORT.get(name) == "boolean" or name == "multinomial")
    # every sampler takes the event_shape keyword (needed for lkj_corr_cholesky)
    x = D.get("normal").sample(jax.random.key(0), (2,), 0.0, 1.0, event_shape=())
    assert x.shape == (2,)


def test_prior_draws_of_ordered_vectors_are_increasing():
    """`x: ordered[K] ~ D(...)` is simulated as D restricted to increasing vectors: sorted iid
    draws for scalar arguments, rejection otherwise (ppl.distributions.sample_ordered)."""
    model = ppl.compile("x: ordered[3] ~ normal(0, 1)\nz: positive_ordered[2] ~ normal([0.0, 1.0], 1)")
    prior = model.prior(draws=200, seed=3)
    x, z = np.asarray(prior["x"]).reshape(-1, 3), np.asarray(prior["z"]).reshape(-1, 2)
    assert np.all(np.diff(x, axis=1) > 0) and np.all(np.diff(z, axis=1) > 0) and np.all(z > 0)
    assert abs(x.mean()) < 0.2                          # sorted iid N(0, 1): the mean stays 0
