"""NUTS reproduces exact conjugate posteriors; ancestral simulation reproduces prior moments.

All three conjugate pairs live in one model so that one compiled program serves them."""
import numpy as np
import pytest
from scipy import stats

import ppl
from mcse import assert_mean, assert_sd

CONJUGATE = """
data n: int
p ~ beta(2, 3)
k ~ binomial(n, p)                 # beta-binomial: p | k ~ Beta(2 + k, 3 + n - k)
mu ~ normal(1, 2)
y ~ normal(mu, 1.5)                # normal-normal with known sigma
lam ~ gamma(3, 2)
c ~ poisson(lam)                   # gamma-Poisson: lam | c ~ Gamma(3 + sum c, 2 + len c)
"""
Y = np.array([2.1, 0.3, 1.7, 3.2, 2.4, 1.1, 0.9, 2.8])
C = np.array([2, 0, 3, 1, 1, 4, 2])
DATA = {"n": 20, "k": 7, "y": Y, "c": C}


@pytest.fixture(scope="module")
def conjugate_posterior():
    model = ppl.compile(CONJUGATE)
    return model.sample(DATA, chains=4, warmup=500, draws=1000, seed=3)


def exact():
    prec = 1 / 2 ** 2 + len(Y) / 1.5 ** 2
    mean = (1 / 2 ** 2 * 1 + Y.sum() / 1.5 ** 2) / prec
    return {
        "p": stats.beta(2 + 7, 3 + 13),
        "mu": stats.norm(mean, prec ** -0.5),
        "lam": stats.gamma(3 + C.sum(), scale=1 / (2 + len(C))),
    }


@pytest.mark.parametrize("name", ["p", "mu", "lam"])
def test_conjugate_posteriors(conjugate_posterior, name):
    x = conjugate_posterior[name]
    d = exact()[name]
    assert x.shape == (4, 1000)
    assert_mean(x, d.mean(), name=name)
    assert_sd(x, d.std(), name=name)


def test_sampler_health(conjugate_posterior):
    post = conjugate_posterior
    assert post.completed
    assert post.divergences == 0
    s = post.summary()
    for row in s.rows:
        assert row["r_hat"] < 1.01, row
        assert row["ess_bulk"] > 400, row
    assert set(post.stats) >= {"lp__", "accept_stat__", "stepsize__", "treedepth__", "n_leapfrog__",
                               "divergent__", "energy__"}
    # dual averaging aims at 0.8 during warm-up; the final averaged step size usually accepts a
    # little more often (as in Stan), never much less
    assert 0.75 < post.stats["accept_stat__"].mean() < 0.98


def test_same_shapes_reuse_the_compiled_program(conjugate_posterior):
    from ppl.inference import nuts
    model = ppl.compile(CONJUGATE)
    model.sample(DATA, chains=2, warmup=20, draws=20, seed=0)
    before = nuts.compile_count()
    new = dict(DATA, y=Y + 1.0, k=9)
    post = model.sample(new, chains=2, warmup=20, draws=30, seed=1)
    assert nuts.compile_count() == before
    assert post["mu"].shape == (2, 30)


def test_mass_matrix_choices_are_checked():
    model = ppl.compile(CONJUGATE)
    with pytest.raises(ValueError, match="mass_matrix must be"):
        model.sample(DATA, chains=2, warmup=20, draws=20, mass_matrix="low-rank")
    with pytest.raises(ValueError, match="mass_matrix must be"):
        model.sample(DATA, chains=2, warmup=20, draws=20, dense_mass=True, mass_matrix="fisher")
    with pytest.raises(ValueError, match="fisher mass matrix is adapted for nuts and gibbs, not mh"):
        model.sample(DATA, chains=2, warmup=20, draws=20, algorithm="mh", mass_matrix="fisher")
    with pytest.raises(ValueError, match="lowrank mass matrix is adapted for nuts and gibbs, not hmc"):
        model.sample(DATA, chains=2, warmup=20, draws=20, algorithm="hmc", mass_matrix="lowrank")


# ---------------------------------------------------------------- ancestral simulation

PRIOR = """
mu ~ normal(1, 5)
tau ~ half_cauchy(5)
sigma: real<lower=0> ~ normal(0, 2)       # declared bound: truncated to a half-normal
lam: real<lower=0> ~ gamma(3, 2)         # a bound that holds the support: a plain draw
b: real<lower=0, upper=1> ~ beta(2, 3)
ht: real<lower=0> ~ student_t(5, 0, 2)    # cut at its centre: a half-t (no inverse CDF needed)
k: int[3] ~ poisson(lam)
y = mu + tau
"""


@pytest.fixture(scope="module")
def prior_draws():
    return ppl.compile(PRIOR).prior(draws=20000, seed=5)


def test_prior_moments(prior_draws):
    post = prior_draws
    assert post.kind == "prior" and post["mu"].shape == (1, 20000)
    assert_mean(post["mu"], 1.0, name="mu")
    assert_sd(post["mu"], 5.0, name="mu")
    assert_mean(post["sigma"], 2 * np.sqrt(2 / np.pi), name="sigma")
    assert_sd(post["sigma"], stats.halfnorm(scale=2).std(), name="sigma")
    assert_mean(post["lam"], 1.5, name="lam")
    assert_sd(post["lam"], np.sqrt(3) / 2, name="lam")
    assert_mean(post["b"], 0.4, name="b")
    assert_sd(post["b"], stats.beta(2, 3).std(), name="b")
    k = post["k"]
    assert k.shape == (1, 20000, 3) and np.issubdtype(k.dtype, np.integer)
    assert_mean(k.reshape(1, -1), 1.5, name="k")                      # E[k] = E[lam]
    assert_sd(k.reshape(1, -1), np.sqrt(1.5 + 0.75), name="k")        # Var = E[lam] + Var[lam]
    np.testing.assert_allclose(post["y"], post["mu"] + post["tau"])


def test_prior_half_student_t_from_a_declared_bound(prior_draws):
    ht = prior_draws["ht"].ravel()
    t = stats.t(5, scale=2)
    m = t.ppf(0.75)                              # the median of |T|
    se = 1 / (2 * 2 * t.pdf(m) * np.sqrt(ht.size))
    assert ht.min() >= 0 and abs(np.median(ht) - m) < 4 * se
    assert_mean(prior_draws["ht"], 2 * t.expect(lambda x: x, lb=0), name="ht")


def test_prior_refuses_a_truncation_it_cannot_draw():
    # gamma has no inverse CDF here, and lower=1 cuts its support: no plain draw is within the bound
    with pytest.raises(ppl.ModelError, match="cannot simulate `s`: `gamma` restricted to the declared bounds"):
        ppl.compile("s: real<lower=1> ~ gamma(2, 1)").prior(draws=10, seed=0)


def test_prior_median_of_half_cauchy(prior_draws):
    tau = prior_draws["tau"].ravel()
    # median of half-Cauchy(5) is 5; its standard error is 1 / (2 f(5) sqrt(n)) with f(5) = 1/(5 pi)
    se = 5 * np.pi / (2 * np.sqrt(tau.size))
    assert abs(np.median(tau) - 5) < 4 * se


def test_prior_with_fitted_parameters_simulates_data():
    """Train, then generate: data for the parameters fixes them; y is simulated."""
    model = ppl.compile("mu ~ normal(0, 1)\nsigma ~ half_normal(1)\ny: real[5] ~ normal(mu, sigma)")
    post = model.prior({"mu": 10.0, "sigma": 0.5}, draws=4000, seed=1)
    assert "mu" not in post.draws
    assert post["y"].shape == (1, 4000, 5)
    assert_mean(post["y"].reshape(1, -1), 10.0, name="y")
    assert_sd(post["y"].reshape(1, -1), 0.5, name="y")


def test_generated_quantities_are_drawn_from_each_posterior_draw(conjugate_posterior):
    model = ppl.compile(CONJUGATE + "\nc_new ~ poisson(lam)\n")
    roles = model.roles(DATA)
    assert roles["c_new"] == "generated" and roles["lam"] == "latent"
    post = model.sample(DATA, chains=2, warmup=300, draws=1000, seed=2)
    lam = exact()["lam"]
    # posterior predictive of a Poisson with Gamma(a, b) rate: mean a/b, var a/b + a/b^2
    a, b = 3 + C.sum(), 2 + len(C)
    assert_mean(post["c_new"], a / b, name="c_new")
    assert_sd(post["c_new"], np.sqrt(a / b + a / b ** 2), name="c_new")
    assert_mean(post["lam"], lam.mean(), name="lam")
