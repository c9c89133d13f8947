"""Static HMC and random-walk Metropolis reproduce exact conjugate posteriors (within Monte Carlo
standard errors from the draws' ESS, tests/mcse.py), through the same chunked machinery as NUTS."""
import numpy as np
import pytest
from scipy import stats

import ppl
from jaxpr_calls import calls_of
from mcse import assert_mean, assert_sd

CONJUGATE = """
data n: int
p ~ beta(2, 3)
k ~ binomial(n, p)                 # beta-binomial: p | k ~ Beta(2 + k, 3 + n - k)
mu ~ normal(1, 2)
y ~ normal(mu, 1.5)                # normal-normal with known sigma
"""
Y = np.array([2.1, 0.3, 1.7, 3.2, 2.4, 1.1, 0.9, 2.8])
DATA = {"n": 20, "k": 7, "y": Y}
HMC_RUN = dict(chains=4, warmup=500, draws=1000, seed=3, algorithm="hmc")
MH_RUN = dict(chains=4, warmup=1000, draws=4000, seed=3, algorithm="mh")


def exact():
    prec = 1 / 2 ** 2 + len(Y) / 1.5 ** 2
    return {"p": stats.beta(2 + 7, 3 + 13),
            "mu": stats.norm((1 / 2 ** 2 + Y.sum() / 1.5 ** 2) / prec, prec ** -0.5)}


@pytest.fixture(scope="module")
def model():
    return ppl.compile(CONJUGATE)


@pytest.fixture(scope="module")
def hmc_post(model):
    return model.sample(DATA, **HMC_RUN)


@pytest.fixture(scope="module")
def mh_post(model):
    return model.sample(DATA, **MH_RUN)


@pytest.mark.parametrize("name", ["p", "mu"])
def test_hmc_conjugate(hmc_post, name):
    assert hmc_post[name].shape == (4, 1000)
    assert_mean(hmc_post[name], exact()[name].mean(), name=name)
    assert_sd(hmc_post[name], exact()[name].std(), name=name)


@pytest.mark.parametrize("name", ["p", "mu"])
def test_mh_conjugate(mh_post, name):
    assert mh_post[name].shape == (4, 4000)
    assert_mean(mh_post[name], exact()[name].mean(), name=name)
    assert_sd(mh_post[name], exact()[name].std(), name=name)


def test_hmc_stats_and_adaptation(hmc_post):
    s = hmc_post.stats
    assert set(s) == {"lp__", "accept_stat__", "stepsize__", "int_time__", "n_leapfrog__", "divergent__", "energy__"}
    assert hmc_post.meta["algorithm"] == "hmc" and hmc_post.divergences == 0
    assert 0.7 < s["accept_stat__"].mean() < 0.99            # dual averaging aims at 0.8
    # path length 2 (jittered by 20%) over the adapted step size, per chain
    eps = s["stepsize__"][:, 0]
    assert np.all(s["stepsize__"] == eps[:, None])             # fixed after warm-up
    steps = s["n_leapfrog__"]
    assert np.all(steps >= np.floor(1.6 / eps)[:, None]) and np.all(steps <= np.floor(2.4 / eps)[:, None])
    for row in hmc_post.summary().rows:
        assert row["r_hat"] < 1.01 and row["ess_bulk"] > 400, row


def test_mh_adapts_toward_0234(mh_post):
    s = mh_post.stats
    assert set(s) == {"lp__", "accept_stat__", "stepsize__"} and mh_post.meta["algorithm"] == "mh"
    assert 0.15 < s["accept_stat__"].mean() < 0.35
    for row in mh_post.summary().rows:
        assert row["r_hat"] < 1.01 and row["ess_bulk"] > 400, row


def test_fixed_num_steps_and_interrupt_keep_draws(model):
    """Ctrl-C (a KeyboardInterrupt from the progress callback) returns the draws so far; a fixed
    number of leapfrog steps is an argument of the same compiled program."""
    calls = []

    def progress(p):
        calls.append(p)
        if p.phase == "sampling" and p.iteration >= 700:
            raise KeyboardInterrupt

    post = model.sample(DATA, **{**HMC_RUN, "seed": 4}, num_steps=3, progress=progress)
    assert not post.completed and 0 < post.num_draws < 1000
    assert np.all(post.stats["n_leapfrog__"] == 3)
    assert calls[-1].iteration == 500 + post.num_draws


def test_unknown_algorithm(model):
    with pytest.raises(ValueError, match="unknown algorithm"):
        model.sample(DATA, algorithm="slice", chains=1, warmup=10, draws=10)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["nuts", "hmc"])
def test_dense_mass_on_correlated_gaussian(algorithm):
    """With a dense mass matrix, a strongly correlated Gaussian is sampled right."""
    model = ppl.compile("x: real[2] ~ multi_normal(m, S)\ndata m: real[2]\ndata S: real[2, 2]\n"
                        "target += 0 * sum(x)")        # makes x a sampled parameter, not a generated node
    S = np.array([[1.0, 0.95 * 2], [0.95 * 2, 4.0]])
    post = model.sample({"m": [1.0, -1.0], "S": S}, chains=4, warmup=1000, draws=1000, seed=1,
                        algorithm=algorithm, dense_mass=True)
    x = post["x"]
    for j in range(2):
        assert_mean(x[..., j], [1.0, -1.0][j])
        assert_sd(x[..., j], np.sqrt(S[j, j]))
    assert abs(np.corrcoef(x[..., 0].ravel(), x[..., 1].ravel())[0, 1] - 0.95) < 0.02


def _hmc_chunk_inputs(log_density, dim, step_size=1.0, reinit_first=True):
    import jax
    import jax.numpy as jnp
    from blackjax.mcmc import hmc

    from ppl.inference.adaptation import Schedule, init_adaptation_state
    from ppl.inference.hmc import HMCChainState, HMCParams

    x0 = jnp.full((dim,), 0.5)
    state = HMCChainState(hmc.init(x0, log_density),
                          jax.tree.map(lambda a: a[0], init_adaptation_state(1, dim, step_size, False, np.float64)),
                          jnp.array([0, 7], jnp.uint32))
    on, off = np.array([reinit_first, False]), np.array([False, False])
    rows = Schedule(active=np.array([True, True]), adapt=off, reinit=on, slow=off, window_end=off, warmup_end=off)
    params = HMCParams(np.float64(0.8), np.float64(2.0), np.int32(0), np.float64(0.2))
    return state, rows, params


def test_the_hmc_chunk_evaluates_the_density_at_one_site():
    # As the NUTS chunk: Stan's step-size heuristic runs through the kernel's one call (one
    # leapfrog step), and the chain state carries the density, so the compiled program holds one
    # copy of the density and its gradient (two calls of the jitted density: forward and
    # transpose). Until 2026-12 it held three (the chunk's start, the heuristic, the kernel).
    import jax

    from ppl.inference.hmc import make_hmc_step
    from ppl.inference.nuts import make_chunk_fn

    @jax.jit
    def log_density(x, data):
        return -0.5 * (x ** 2).sum() * data

    state, rows, params = _hmc_chunk_inputs(lambda x: log_density(x, 1.0), 2)
    chunk = make_chunk_fn(*make_hmc_step(log_density, 64, False))
    program = jax.make_jaxpr(chunk)(state, rows, 1.0, params)
    assert calls_of("log_density", program.jaxpr) == 2


@pytest.mark.parametrize("start", [1e-3, 1e3])
def test_an_hmc_row_that_restarts_searches_the_step_size_first(start):
    # Stan's heuristic from far too small (doubling) and far too large (halving) on a standard
    # normal: one leapfrog step's acceptance crosses 0.8 at a step size of order 1; the row's
    # transition runs at the step size found and the next row (no restart) keeps it.
    import jax

    from ppl.inference.hmc import make_hmc_step
    from ppl.inference.nuts import make_chunk_fn

    ld = lambda x, data: -0.5 * (x ** 2).sum()  # noqa: E731
    state, rows, params = _hmc_chunk_inputs(lambda x: ld(x, None), 1, step_size=start)
    chunk = jax.jit(make_chunk_fn(*make_hmc_step(ld, 1024, False)))
    _, draws = chunk(state, rows, np.zeros(()), params)
    found = float(draws.stepsize[0])
    assert 0.05 < found < 8.0, found
    assert float(draws.stepsize[1]) == found and int(draws.n_leapfrog[0]) >= 1


def test_the_mh_chunk_evaluates_the_density_at_one_site():
    # The chain state carries the log density from its starting point, so the only evaluation in
    # the compiled chunk is the proposal's (until 2026-12 each chunk also re-evaluated it at the
    # carried position).
    import jax
    import jax.numpy as jnp
    from blackjax.mcmc import random_walk as rw

    from ppl.inference.adaptation import Schedule, init_adaptation_state
    from ppl.inference.mh import MHChainState, make_mh_step
    from ppl.inference.nuts import make_chunk_fn

    @jax.jit
    def log_density(x, data):
        return -0.5 * (x ** 2).sum() * data

    state = MHChainState(rw.RWState(jnp.zeros(2), jnp.zeros(())),
                         jax.tree.map(lambda a: a[0], init_adaptation_state(1, 2, 1.0, False, np.float64)),
                         jnp.array([0, 7], jnp.uint32))
    on, off = np.array([True, False]), np.array([False, False])
    rows = Schedule(active=np.array([True, True]), adapt=off, reinit=on, slow=off, window_end=off, warmup_end=off)
    program = jax.make_jaxpr(make_chunk_fn(*make_mh_step(log_density, 2, False)))(state, rows, 1.0, np.float64(0.234))
    assert calls_of("log_density", program.jaxpr) == 1
