"""Loops, recurrences, piecewise arrays, functions, imports and distribution combinators: each
compiled log density equals a hand-written one at random points."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats as jst
from jax.scipy.special import logsumexp
from scipy import stats

import ppl

RNG = np.random.default_rng(7)
Y = RNG.normal(size=12).cumsum() * 0.3


def density(src, data, **kw):
    return jax.jit(ppl.compile(src, **kw).log_density(data))


def points(dim, n=4):
    return [jnp.asarray(u) for u in RNG.uniform(-1.5, 1.5, size=(n, dim))]


def close(a, b):
    np.testing.assert_allclose(float(a), float(b), rtol=1e-9, atol=1e-9)


def test_ar1_loop_equals_vectorised():
    f = density("""
    data y: real[T]
    alpha ~ normal(0, 1); beta ~ normal(0, 1); sigma ~ half_normal(1)
    for t in range(1, T) {
      y[t] ~ normal(alpha + beta * y[t - 1], sigma)
    }""", {"y": Y})
    for u in points(3):
        s = jnp.exp(u[2])
        hand = (jst.norm.logpdf(u[0]) + jst.norm.logpdf(u[1]) + jnp.log(2) + jst.norm.logpdf(s) + u[2]
                + jst.norm.logpdf(Y[1:], u[0] + u[1] * Y[:-1], s).sum())
        close(f(u), hand)


ARMA = """
data y: real[T]
mu ~ normal(0, 10); phi ~ normal(0, 2); theta ~ normal(0, 2); sigma ~ half_cauchy(2.5)
nu[0] = mu + phi * mu
err[0] = y[0] - nu[0]
for t in range(1, T) {
  nu[t] = mu + phi * y[t - 1] + theta * err[t - 1]
  err[t] = y[t] - nu[t]
}
err ~ normal(0, sigma)
"""


def test_arma_recurrence_scan_equals_python_loop():
    model = ppl.compile(ARMA)
    assert model.roles({"y": Y})["err"] == "deterministic"
    f = jax.jit(model.log_density({"y": Y}))
    for u in points(4):
        mu, phi, theta, ls = map(float, u)
        sigma = np.exp(ls)
        nu, err = np.zeros(len(Y)), np.zeros(len(Y))
        nu[0] = mu + phi * mu
        err[0] = Y[0] - nu[0]
        for t in range(1, len(Y)):
            nu[t] = mu + phi * Y[t - 1] + theta * err[t - 1]
            err[t] = Y[t] - nu[t]
        hand = (stats.norm.logpdf(mu, 0, 10) + stats.norm.logpdf(phi, 0, 2) + stats.norm.logpdf(theta, 0, 2)
                + np.log(2) + stats.cauchy.logpdf(sigma, 0, 2.5) + ls + stats.norm.logpdf(err, 0, sigma).sum())
        close(f(u), hand)


def test_garch_recurrence_with_piecewise_start_and_dependent_bound():
    src = """
    data y: real[T]
    data sigma1: real<lower=0>
    mu ~ normal(0, 1)
    alpha0: real<lower=0>
    alpha1: real<lower=0, upper=1>
    beta1: real<lower=0, upper=1 - alpha1>
    sigma[0] = sigma1
    for t in range(1, T) {
      sigma[t] = sqrt(alpha0 + alpha1 * square(y[t - 1] - mu) + beta1 * square(sigma[t - 1]))
    }
    y ~ normal(mu, sigma)
    """
    f = density(src, {"y": Y, "sigma1": 0.5})
    for u in points(4):
        mu, la0, u1, u2 = map(float, u)
        a0 = np.exp(la0)
        a1 = 1 / (1 + np.exp(-u1))
        b1 = (1 - a1) / (1 + np.exp(-u2))
        jac = la0 + np.log(a1 * (1 - a1)) + np.log(1 - a1) + np.log(1 / (1 + np.exp(-u2))) + np.log(
            1 - 1 / (1 + np.exp(-u2)))
        s = np.zeros(len(Y))
        s[0] = 0.5
        for t in range(1, len(Y)):
            s[t] = np.sqrt(a0 + a1 * (Y[t - 1] - mu) ** 2 + b1 * s[t - 1] ** 2)
        hand = stats.norm.logpdf(mu) + jac + stats.norm.logpdf(Y, mu, s).sum()
        close(f(u), hand)


def test_latent_random_walk_density_and_prior_simulation():
    src = """
    s ~ half_normal(1)
    x[0] ~ normal(0, 1)
    for t in range(1, 6) { x[t] ~ normal(x[t - 1], s) }
    y ~ normal(x, 0.5)
    """
    y = np.arange(6) * 0.2
    f = density(src, {"y": y})
    for u in points(7):
        s, x = jnp.exp(u[0]), u[1:]
        hand = (jnp.log(2) + jst.norm.logpdf(s) + u[0] + jst.norm.logpdf(x[0]) +
                jst.norm.logpdf(x[1:], x[:-1], s).sum() + jst.norm.logpdf(y, x, 0.5).sum())
        close(f(u), hand)
    prior = ppl.compile(src).prior(draws=4000, seed=3)
    x = prior["x"][0]
    assert x.shape == (4000, 6)
    # Var x[5] = 1 + 5 E[s^2] = 6 for s ~ half-normal(1); its sd of the sample variance ~ 6 sqrt(2/n)
    assert abs(x[:, 5].var() - 6.0) < 4 * 6.0 * np.sqrt(2 / 4000) * 1.5


def test_nested_loops_and_moving_slices():
    src = """
    data y: real[N]
    a: real[3] ~ normal(0, 1)
    b: real[2] ~ normal(0, 1)
    for i in range(0, 3) {
      for j in range(0, 2) {
        m[i, j] = a[i] + 2 * b[j]
      }
    }
    for t in range(2, N) {
      s[t - 2] = sum(y[t - 2:t])
    }
    target += normal_lpdf(sum(m) | 0, 10) + normal_lpdf(s | 0, 5)
    """
    f = density(src, {"y": Y})
    for u in points(5):
        a, b = u[:3], u[3:]
        m = a[:, None] + 2 * b[None, :]
        s = np.array([Y[t - 2:t].sum() for t in range(2, len(Y))])
        hand = jst.norm.logpdf(a).sum() + jst.norm.logpdf(b).sum() + jst.norm.logpdf(m.sum(), 0, 10) \
            + jst.norm.logpdf(s, 0, 5).sum()
        close(f(u), hand)


def test_functions_imports_and_stdlib_kernels():
    src = """
    import gp
    import glm
    fn scaled(a, k) {
      b = a * k
      return b + 1
    }
    data x: real[N]
    rho ~ half_normal(1)
    K = add_jitter(exp_quad(x, 1.5, rho), 1e-6)
    p = inv_cloglog(scaled(x, 0.5))
    y ~ multi_normal(zeros(N), K)
    """
    x = np.linspace(0, 2, 4)
    y = np.sin(x)
    f = density(src, {"x": x, "y": y})
    for u in points(1):
        rho = np.exp(float(u[0]))
        K = 1.5 ** 2 * np.exp(-np.subtract.outer(x, x) ** 2 / (2 * rho ** 2)) + 1e-6 * np.eye(4)
        hand = np.log(2) + stats.norm.logpdf(rho) + float(u[0]) + stats.multivariate_normal.logpdf(y, np.zeros(4), K)
        np.testing.assert_allclose(float(f(u)), hand, rtol=1e-7)
    lw = ppl.compile(src).bind({"x": x, "y": y})      # p depends on data only: transformed data
    np.testing.assert_allclose(lw.binding.arrays["p"], 1 - np.exp(-np.exp(x * 0.5 + 1)))


def test_import_from_the_model_folder_and_refusals(tmp_path):
    (tmp_path / "helpers.gm").write_text("fn twice(a) = 2 * a\n")
    (tmp_path / "m.gm").write_text("import helpers\nmu ~ normal(0, 1)\nz = twice(mu)\n")
    assert ppl.load(str(tmp_path / "m.gm")).graph.functions["twice"].definition.params == ("a",)
    (tmp_path / "bad.gm").write_text("mu ~ normal(0, 1)\n")
    (tmp_path / "m2.gm").write_text("import bad\n")
    with pytest.raises(ppl.ModelError, match="a module may only define functions"):
        ppl.load(str(tmp_path / "m2.gm"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.gm").write_text("fn f(a) = a\n")
    inner = tmp_path / "inner"
    inner.mkdir()
    os.symlink(outside / "evil.gm", inner / "evil.gm")
    (inner / "m.gm").write_text("import evil\n")
    with pytest.raises(ppl.ModelError, match="resolves outside its folder"):
        ppl.load(str(inner / "m.gm"))
    with pytest.raises(ppl.ModelError, match="no module named `helpers`"):
        ppl.compile("import helpers\n")          # a string model sees only stdlib/


def test_mixture_truncated_and_hmm_combinators():
    y = np.array([-1.2, 0.3, 2.5, 3.1])
    f = density("""
    w ~ dirichlet([1, 1])
    mu: ordered[2] ~ normal(0, 5)
    y ~ mixture(w, normal(mu, 1))
    """, {"y": y})
    from ppl.constraints import bijector, ordered, simplex
    for u in points(3):
        w = bijector(simplex).forward(u[:1])
        mu = bijector(ordered).forward(u[1:])
        hand = (bijector(simplex).log_det_jacobian(u[:1]) + bijector(ordered).log_det_jacobian(u[1:])
                + jst.dirichlet.logpdf(w, jnp.ones(2)) + jst.norm.logpdf(mu, 0, 5).sum()
                + logsumexp(jnp.log(w) + jst.norm.logpdf(y[:, None], mu, 1), axis=-1).sum())
        close(f(u), hand)

    yt = np.array([0.2, 1.0, 2.5])
    f = density("mu ~ normal(0, 2)\ny ~ truncated(normal(mu, 1), 0, 3)", {"y": yt})
    for u in points(1):
        m = float(u[0])
        hand = stats.norm.logpdf(m, 0, 2) + stats.truncnorm.logpdf(yt, -m, 3 - m, loc=m).sum()
        close(f(u), hand)
    sims = ppl.compile("y: real[3] ~ truncated(normal(1, 2), 0, 3)").prior(draws=5000, seed=1)["y"].ravel()
    d = stats.truncnorm(-0.5, 1, loc=1, scale=2)
    assert sims.min() >= 0 and sims.max() <= 3
    assert abs(sims.mean() - d.mean()) < 4 * d.std() / np.sqrt(sims.size)

    yh = np.array([0.1, -0.3, 3.1, 2.8, 3.3, 0.2])
    f = density("""
    p ~ beta(2, 2)
    mu: ordered[2] ~ normal(0, 5)
    y ~ hmm([0.6, 0.4], [[p, 1 - p], [1 - p, p]], normal(mu, 1))
    """, {"y": yh})
    for u in points(3):
        p = 1 / (1 + np.exp(-float(u[0])))
        mu = np.asarray(bijector(ordered).forward(u[1:]))
        trans = np.array([[p, 1 - p], [1 - p, p]])
        alpha = np.log([0.6, 0.4]) + stats.norm.logpdf(yh[0], mu, 1)
        for t in range(1, len(yh)):
            alpha = np.array([np.logaddexp.reduce(alpha + np.log(trans[:, k])) for k in range(2)]) \
                + stats.norm.logpdf(yh[t], mu, 1)
        jac = np.log(p * (1 - p)) + float(bijector(ordered).log_det_jacobian(u[1:]))
        hand = jac + stats.beta.logpdf(p, 2, 2) + stats.norm.logpdf(mu, 0, 5).sum() + np.logaddexp.reduce(alpha)
        close(f(u), hand)
    sim = ppl.compile("y: real[7] ~ hmm([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], normal([-5, 5], 0.1))").prior(
        draws=200, seed=2)["y"][0]
    assert sim.shape == (200, 7)
    switches = (np.diff(np.sign(sim), axis=1) != 0).mean()
    assert abs(switches - 0.1) < 4 * np.sqrt(0.09 / sim[:, 1:].size)


def test_transformed_data_is_computed_once_and_not_recorded():
    model = ppl.compile("""
    data x: real[N]
    x_c = x - mean(x)
    beta ~ normal(0, 1)
    y ~ normal(beta * x_c, 1)
    """)
    lw = model.bind({"x": [1.0, 2.0, 4.0], "y": [0.0, 1.0, 2.0]})
    assert lw.binding.roles["x_c"] == "transformed data"
    np.testing.assert_allclose(lw.binding.arrays["x_c"], [-4 / 3, -1 / 3, 5 / 3])
    assert "x_c" not in lw.output_names
