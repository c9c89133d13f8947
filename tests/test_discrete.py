"""Discrete latent variables summed out by enumeration; drawn afterwards from their exact
conditionals, with membership probabilities."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from mcse import assert_mean

RNG = np.random.default_rng(0)
Y = np.concatenate([RNG.normal(-2, 1, 30), RNG.normal(2, 1, 20)])
MIX = """
theta ~ beta(1, 1)
mu: ordered[2] ~ normal(0, 5)
z: int[N] ~ bernoulli(theta)
data y: real[N]
y ~ normal(mu[z], 1)
"""


def mixture_logp(u, y):
    th = 1 / (1 + np.exp(-u[0]))
    mu = np.array([u[1], u[1] + np.exp(u[2])])
    return (np.log(th * (1 - th)) + u[2] + stats.norm.logpdf(mu, 0, 5).sum()
            + np.logaddexp(np.log(1 - th) + stats.norm.logpdf(y, mu[0], 1),
                           np.log(th) + stats.norm.logpdf(y, mu[1], 1)).sum())


def test_enumerated_mixture_density_equals_the_marginal():
    model = ppl.compile(MIX)
    logp = jax.jit(model.log_density({"y": Y}))
    assert logp.dim == 3                      # z is not part of the sampler's state
    for u in RNG.uniform(-1, 1, size=(4, 3)):
        np.testing.assert_allclose(float(logp(jnp.asarray(u))), mixture_logp(u, Y), rtol=1e-10)


def test_membership_probabilities_match_the_exact_conditional():
    model = ppl.compile(MIX)
    lw = model.bind({"y": Y})
    u = jnp.asarray([0.2, -1.5, 1.2])
    out = lw.generate(jax.random.PRNGKey(0), u, lw.arrays())
    th = 1 / (1 + np.exp(-0.2))
    mu = np.array([-1.5, -1.5 + np.exp(1.2)])
    a = np.log(1 - th) + stats.norm.logpdf(Y, mu[0], 1)
    b = np.log(th) + stats.norm.logpdf(Y, mu[1], 1)
    p1 = np.exp(b - np.logaddexp(a, b))
    np.testing.assert_allclose(out["z.prob"][:, 1], p1, rtol=1e-9)
    np.testing.assert_allclose(out["z.prob"].sum(-1), 1.0)
    # the draws follow those probabilities: many draws at a fixed state
    keys = jax.random.split(jax.random.PRNGKey(1), 4000)
    z = jax.vmap(lambda k: lw.generate(k, u, lw.arrays())["z"])(keys)
    freq = np.asarray(z).mean(axis=0)
    assert np.all(np.abs(freq - p1) < 4 * np.sqrt(p1 * (1 - p1) / 4000) + 1e-3)


def test_sampling_recovers_the_mixture_and_draws_memberships():
    post = ppl.compile(MIX).sample({"y": Y}, chains=2, warmup=300, draws=400, seed=1)
    assert post["z"].shape == (2, 400, 50) and post["z.prob"].shape == (2, 400, 50, 2)
    assert post.divergences == 0
    # memberships agree with the data's generating groups for well separated points
    z_mean = post["z"].mean(axis=(0, 1))
    assert (z_mean[Y < -3] < 0.05).all() and (z_mean[Y > 3] > 0.95).all()
    # E[z_n] equals E[P(z_n = 1)] (Rao-Blackwell): both estimate the same posterior mean
    assert_mean(post["z"][..., 10], float(post["z.prob"][..., 10, 1].mean()), name="z[10]", floor=0.02)


def test_scalar_change_point_is_summed_out():
    counts = np.array([4, 5, 3, 6, 4, 1, 0, 2, 1, 1])
    src = """
    data c: int[T]
    data t: int[T]
    s ~ categorical(rep(1.0 / T, T))
    early ~ exponential(0.5)
    late ~ exponential(0.5)
    c ~ poisson(if t < s then early else late)
    """
    model = ppl.compile(src)
    data = {"c": counts, "t": np.arange(10)}
    logp = model.log_density(data)
    assert logp.dim == 2
    u = jnp.asarray([1.2, -0.3])
    e, l_ = np.exp(1.2), np.exp(-0.3)
    per_s = [np.log(0.1) + stats.poisson.logpmf(counts, np.where(np.arange(10) < s, e, l_)).sum() for s in range(10)]
    hand = (stats.expon.logpdf(e, scale=2) + 1.2 + stats.expon.logpdf(l_, scale=2) - 0.3 + np.logaddexp.reduce(per_s))
    np.testing.assert_allclose(float(logp(u)), hand, rtol=1e-10)


def test_infinite_discrete_support_is_a_clear_error():
    model = ppl.compile("lam ~ gamma(2, 1)\nk ~ poisson(lam)\ny ~ normal(k, 1)", file="m.gm")
    with pytest.raises(ppl.ModelError, match="infinite support") as err:
        model.log_density({"y": 1.0})
    assert err.value.line == 2
