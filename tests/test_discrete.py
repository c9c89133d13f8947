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


def test_prior_simulation_draws_summed_out_variables_like_any_other():
    # (it raised KeyError 'z.prob': the conditional probabilities exist only given the data)
    model = ppl.compile("""data N: int
w: simplex[2] ~ dirichlet(ones(2))
z: int[N] ~ categorical(w)
y: real[N] ~ normal(z * 3.0, 1)""")
    sims = model.prior({"N": 5}, draws=2000, seed=2)
    assert "z.prob" not in sims.draws and sims["z"].shape == (1, 2000, 5)
    # marginally E z = 1/2 and E y = 1.5; the 2000 draws are independent (the values within one
    # share w), so the standard error is that of the draws' means; 4 of them allowed
    for name, mean in (("z", 0.5), ("y", 1.5)):
        per_draw = sims[name][0].mean(axis=1)
        assert abs(per_draw.mean() - mean) < 4 * per_draw.std() / np.sqrt(2000)


def test_infinite_discrete_support_is_a_clear_error():
    model = ppl.compile("lam ~ gamma(2, 1)\nk ~ poisson(lam)\ny ~ normal(k, 1)", file="m.gm")
    with pytest.raises(ppl.ModelError, match="infinite support") as err:
        model.log_density({"y": 1.0})
    assert err.value.line == 2


# ---------------------------------------------------------------- enumeration vs combinators vs reference
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

from conftest import SHARED  # noqa: E402

MODELS = os.path.join(os.path.dirname(__file__), "discrete_models")
PAIRS = [("low_dim_gauss_mix-low_dim_gauss_mix", "low_dim_gauss_mix"), ("hmm_example-hmm_example", "hmm_example")]


def _posteriordb(name):
    folder = os.path.join(SHARED, "posteriordb", name)
    if not os.path.isdir(folder):
        pytest.skip(f"shared/posteriordb/{name} not available")
    with open(os.path.join(folder, "reference.json")) as fh:
        return ppl.load_data(os.path.join(folder, "data.json")), json.load(fh)


@pytest.mark.parametrize("posterior,stem", PAIRS)
def test_enumerated_equals_combinator_density(posterior, stem):
    data, _ = _posteriordb(posterior)
    other = "enumerated" if stem.startswith("low") else "written"
    a = ppl.load(os.path.join(MODELS, f"{stem}-{other}.gm")).log_density(data)
    b = ppl.load(os.path.join(MODELS, f"{stem}-combinator.gm")).log_density(data)
    assert a.dim == b.dim
    for u in RNG.uniform(-1, 1, size=(3, a.dim)):
        np.testing.assert_allclose(float(a(jnp.asarray(u))), float(b(jnp.asarray(u))), rtol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("posterior,stem", PAIRS)
def test_enumerated_model_reproduces_reference(posterior, stem):
    from mcse import assert_sd
    data, ref = _posteriordb(posterior)
    other = "enumerated" if stem.startswith("low") else "written"
    post = ppl.load(os.path.join(MODELS, f"{stem}-{other}.gm")).sample(data, seed=1)
    for pname, r in ref["parameters"].items():
        name, idx = (pname.split("[") + [None])[:2]
        x = post[name] if idx is None else post[name][..., int(idx.rstrip("]")) - 1]
        assert_mean(x, r["mean"], r["mcse_mean"], name=pname, floor=1e-3 * r["sd"])
        assert_sd(x, r["sd"], r["sd"] / np.sqrt(2 * max((r["sd"] / r["mcse_mean"]) ** 2, 1)), name=pname,
                  floor=1e-3 * r["sd"])


def test_hmm_state_probabilities_match_brute_force():
    y = np.array([0.2, 2.9, 3.2, -0.1])
    src = """
    data y: real[4]
    mu: real[2] ~ normal(0, 5)
    z[0] ~ categorical([0.7, 0.3])
    for t in range(1, 4) {
      z[t] ~ categorical([[0.8, 0.2], [0.3, 0.7]][z[t - 1]])
    }
    y ~ normal(mu[z], 1)
    """
    model = ppl.compile(src)
    lw = model.bind({"y": y})
    u = jnp.asarray([0.1, 3.0])
    out = lw.generate(jax.random.PRNGKey(0), u, lw.arrays())
    trans = np.array([[0.8, 0.2], [0.3, 0.7]])
    joint = {}
    for zs in itertools.product([0, 1], repeat=4):
        lp = np.log([0.7, 0.3][zs[0]]) + sum(np.log(trans[zs[t - 1], zs[t]]) for t in range(1, 4))
        joint[zs] = lp + stats.norm.logpdf(y, np.array([0.1, 3.0])[list(zs)], 1).sum()
    total = np.logaddexp.reduce(list(joint.values()))
    marg = np.zeros((4, 2))
    for zs, lp in joint.items():
        for t, k in enumerate(zs):
            marg[t, k] += np.exp(lp - total)
    np.testing.assert_allclose(out["z.prob"], marg, rtol=1e-9)
    np.testing.assert_allclose(float(model.log_density({"y": y})(u)),
                               total + stats.norm.logpdf([0.1, 3.0], 0, 5).sum(), rtol=1e-10)
    # backward sampling draws whole sequences with the joint posterior's probabilities
    keys = jax.random.split(jax.random.PRNGKey(2), 3000)
    zs = np.asarray(jax.vmap(lambda k: lw.generate(k, u, lw.arrays())["z"])(keys))
    freq = zs.mean(axis=0)
    assert np.all(np.abs(freq - marg[:, 1]) < 4 * np.sqrt(marg[:, 1] * (1 - marg[:, 1]) / 3000) + 1e-3)


def test_gibbs_and_enumeration_agree():
    """NUTS within exact Gibbs sweeps of z, and NUTS on the enumerated marginal, give the same
    posterior for the continuous parameters (MCSE-based tolerance on the difference)."""
    from mcse import mean_se
    model = ppl.compile(MIX)
    enum = model.sample({"y": Y}, chains=2, warmup=300, draws=600, seed=4)
    gibbs = model.sample({"y": Y}, chains=2, warmup=300, draws=600, seed=4, algorithm="gibbs")
    assert gibbs.meta["algorithm"] == "gibbs" and gibbs["z"].shape == (2, 600, 50)
    for name, x, y in [("theta", enum["theta"], gibbs["theta"]), ("mu[0]", enum["mu"][..., 0], gibbs["mu"][..., 0]),
                       ("mu[1]", enum["mu"][..., 1], gibbs["mu"][..., 1])]:
        se = np.hypot(mean_se(x), mean_se(y))
        assert abs(x.mean() - y.mean()) < 4 * se + 1e-3, (name, x.mean(), y.mean(), se)


def test_gibbs_needs_discrete_latents():
    with pytest.raises(ValueError, match="has none"):
        ppl.compile("mu ~ normal(0, 1)\ny ~ normal(mu, 1)").sample({"y": 1.0}, algorithm="gibbs", chains=1,
                                                                   warmup=10, draws=10)
