"""Tests for ppl.inference.nuts (chunked, compile-once NUTS with Stan warm-up).

One log density serves every test (a Gaussian given by its precision matrix, nan
beyond ``x[0] > nan_above``), so only three programs are compiled: dim 10 / chunk 100,
dim 2 dense / chunk 100, dim 2 / chunk 64.  Tolerances are 5 Monte Carlo standard
errors, from an ESS computed here (Geyer's initial monotone sequence, multi-chain).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root, if not installed

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl  # noqa: F401  (float64)
from ppl.inference import nuts
from blackjax.mcmc.metrics import LowRankInverseMassMatrix

from ppl.inference.adaptation import build_schedule, init_adaptation_state, stan_windows
from ppl.inference.nuts import NUTSConfig, Progress, sample_nuts
from jaxpr_calls import calls_of


def gauss_ld(x, data):
    lp = -0.5 * x @ data["prec"] @ x
    return jnp.where(x[0] > data["nan_above"], jnp.nan, lp)


def gauss_data(cov, nan_above=np.inf):
    return {"prec": np.linalg.inv(np.asarray(cov, float)), "nan_above": np.asarray(nan_above, float)}


def ess(x):
    """Multi-chain ESS of x[chains, draws] (Stan's formula without rank normalisation)."""
    x = np.asarray(x, float)
    m, n = x.shape
    xc = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(xc, n=2 * n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), axis=1)[:, :n] / n
    w = acov[:, 0].mean() * n / (n - 1)
    var_plus = w * (n - 1) / n + (x.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
    rho = 1.0 - (w - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    tau, prev, t = -1.0, np.inf, 0
    while t + 1 < n:
        pair = rho[t] + rho[t + 1]
        if pair < 0:
            break
        pair = min(pair, prev)
        tau += 2 * pair
        prev = pair
        t += 2
    return m * n / max(tau, 1.0 / np.log10(m * n))


def check_moments(draws, mean, sd, k=5.0):
    """Means and sds of draws[chains, n, dim] within k MCSE of the truth."""
    for j in range(draws.shape[-1]):
        x = draws[..., j]
        m_hat, s_hat = x.mean(), x.std()
        assert abs(m_hat - mean[j]) < k * s_hat / np.sqrt(ess(x)), (j, m_hat, mean[j])
        sq = (x - m_hat) ** 2
        mcse_sd = sq.std() / np.sqrt(ess(sq)) / (2 * s_hat)
        assert abs(s_hat - sd[j]) < k * mcse_sd, (j, s_hat, sd[j])


INIT10 = np.random.default_rng(0).uniform(-2, 2, size=(4, 10))
INIT2 = np.random.default_rng(1).uniform(-0.5, 0.5, size=(4, 2))


@pytest.fixture(scope="module")
def normal10():
    nuts.clear_cache()
    before = nuts.compile_count()
    res = sample_nuts(gauss_ld, gauss_data(np.eye(10)), INIT10, jax.random.PRNGKey(0), NUTSConfig())
    return res, nuts.compile_count() - before


@pytest.fixture(scope="module")
def scaled10(normal10):
    scales = np.logspace(-2, 2, 10)
    before = nuts.compile_count()
    res = sample_nuts(gauss_ld, gauss_data(np.diag(scales**2)), INIT10 * scales, jax.random.PRNGKey(1), NUTSConfig())
    return res, scales, nuts.compile_count() - before


def check_acceptance(res, target=0.8):
    """Dual averaging holds warm-up's mean acceptance at the target; sampling runs at its averaged
    step size, which is smaller than the last iterate, so acceptance after warm-up sits above the
    target, as in Stan (these 10-dimensional Gaussians: 0.87-0.91 over 12 seeds and both of
    ppl's XLA optimisation levels). Below the target, or near 1 (a step size far too small), the
    adaptation is wrong."""
    accept = res.stats["accept_stat__"].mean()
    assert target - 0.05 < accept < 0.95, accept


def test_standard_normal_10d(normal10):
    res, n_compiles = normal10
    assert n_compiles == 1 and res.compile_s > 0
    assert res.completed and res.positions.shape == (4, 1000, 10)
    check_moments(res.positions, np.zeros(10), np.ones(10))
    assert np.all((res.step_size > 0.4) & (res.step_size < 1.3)), res.step_size
    check_acceptance(res)
    assert np.all(np.abs(res.inverse_mass_matrix - 1) < 0.5)
    assert res.stats["divergent__"].sum() == 0
    assert res.warmup_s > 0 and res.sampling_s > 0


def test_stats_layout(normal10):
    res, _ = normal10
    names = {"lp__", "accept_stat__", "stepsize__", "treedepth__", "n_leapfrog__", "divergent__", "energy__"}
    assert set(res.stats) == names
    for v in res.stats.values():
        assert v.shape == (4, 1000) and np.all(np.isfinite(v))
    assert np.issubdtype(res.stats["treedepth__"].dtype, np.integer)
    assert set(np.unique(res.stats["divergent__"])) <= {0, 1}
    np.testing.assert_allclose(res.stats["lp__"], -0.5 * (res.positions**2).sum(-1), rtol=1e-10)
    # constant step size after warm-up, equal to the reported adapted one
    np.testing.assert_array_equal(res.stats["stepsize__"], np.repeat(res.step_size[:, None], 1000, 1))
    depth, nleap = res.stats["treedepth__"], res.stats["n_leapfrog__"]
    assert np.all(nleap <= 2**depth - 1) and np.all(nleap >= 2 ** (depth - 1))
    assert np.all(res.stats["energy__"] >= -res.stats["lp__"])  # H = -lp + kinetic


def test_mass_matrix_adaptation_scales(scaled10):
    res, scales, n_compiles = scaled10
    assert n_compiles == 0  # new data values of the same shapes: same program
    check_moments(res.positions, np.zeros(10), scales)
    ratio = res.inverse_mass_matrix / scales**2
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    assert np.all((res.step_size > 0.4) & (res.step_size < 1.3)), res.step_size
    check_acceptance(res)
    assert res.stats["treedepth__"].max() <= 5  # well adapted: no long trajectories


def test_fisher_mass_matrix_recovers_gaussian_scales(scaled10):
    """The gradient-informed diagonal (sqrt(Var[x] / Var[grad])) equals the variances for a
    Gaussian, as Stan's estimate does; the draws keep their moments."""
    _, scales, _ = scaled10
    res = sample_nuts(gauss_ld, gauss_data(np.diag(scales**2)), INIT10 * scales, jax.random.PRNGKey(3),
                      NUTSConfig(fisher_mass=True))
    check_moments(res.positions, np.zeros(10), scales)
    ratio = res.inverse_mass_matrix / scales**2
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    assert res.stats["treedepth__"].max() <= 5
    stan = sample_nuts(gauss_ld, gauss_data(np.diag(scales**2)), INIT10 * scales, jax.random.PRNGKey(3), NUTSConfig())
    assert not np.allclose(res.inverse_mass_matrix, stan.inverse_mass_matrix, rtol=1e-3)  # the other estimator ran


def test_other_counts_do_not_recompile(normal10):
    before = nuts.compile_count()
    res = sample_nuts(gauss_ld, gauss_data(2 * np.eye(10)), INIT10, jax.random.PRNGKey(2),
                      NUTSConfig(warmup=230, draws=170, target_accept=0.9))
    assert nuts.compile_count() == before and res.compile_s == 0.0
    assert res.positions.shape == (4, 170, 10)
    assert res.stats["accept_stat__"].mean() > 0.8


def test_correlated_2d_dense():
    cov = np.array([[1.0, 1.8], [1.8, 4.0]])  # sds 1, 2; rho 0.9
    res = sample_nuts(gauss_ld, gauss_data(cov), INIT2, jax.random.PRNGKey(3),
                      NUTSConfig(warmup=500, draws=1000, dense_mass=True))
    assert res.inverse_mass_matrix.shape == (4, 2, 2)
    np.testing.assert_allclose(res.inverse_mass_matrix, np.broadcast_to(cov, (4, 2, 2)), rtol=0.35, atol=0.35)
    x = res.positions
    check_moments(x, np.zeros(2), np.sqrt(np.diag(cov)))
    prod = (x[..., 0] - x[..., 0].mean()) * (x[..., 1] - x[..., 1].mean())
    assert abs(prod.mean() - 1.8) < 5 * prod.std() / np.sqrt(ess(prod))


def test_chunk_boundaries_and_progress():
    seen = []
    cfg = NUTSConfig(warmup=150, draws=130, chunk_size=64)
    res = sample_nuts(gauss_ld, gauss_data(np.eye(2)), INIT2, jax.random.PRNGKey(4), cfg, callback=seen.append)
    assert res.completed and res.positions.shape == (4, 130, 2)
    assert all(v.shape == (4, 130) for v in res.stats.values())
    assert [p.iteration for p in seen] == [64, 128, 192, 256, 280]
    assert [p.phase for p in seen] == ["warmup"] * 2 + ["sampling"] * 3
    assert all(isinstance(p, Progress) and p.total == 280 for p in seen)
    assert seen[-1].divergences == res.stats["divergent__"].sum()
    # thinning keeps every 3rd post-warm-up draw, from the same program
    before = nuts.compile_count()
    thin = sample_nuts(gauss_ld, gauss_data(np.eye(2)), INIT2, jax.random.PRNGKey(4), cfg._replace(thin=3))
    assert nuts.compile_count() == before
    assert thin.positions.shape == (4, 44, 2)
    np.testing.assert_array_equal(thin.positions, res.positions[:, ::3])


def test_timed_calls_give_the_same_draws():
    """With call_seconds each call runs as many iterations as fit in that time (the rest of the
    compiled chunk's rows are not run): other call boundaries, the same program, the same draws."""
    cfg = NUTSConfig(warmup=150, draws=130, chunk_size=64)
    fixed = sample_nuts(gauss_ld, gauss_data(np.eye(2)), INIT2, jax.random.PRNGKey(4), cfg)
    seen, before = [], nuts.compile_count()
    timed = sample_nuts(gauss_ld, gauss_data(np.eye(2)), INIT2, jax.random.PRNGKey(4),
                        cfg._replace(call_seconds=1e-9), callback=lambda p: seen.append(p.iteration))
    assert nuts.compile_count() == before
    np.testing.assert_array_equal(timed.positions, fixed.positions)
    assert seen[:2] == [8, 16]          # an eighth of the chunk until a call has been timed
    assert 75 in seen and seen[-1] == 280 and seen == sorted(seen)   # a call ends at the stuck-chain check
    assert len(seen) > 100              # then one iteration a call: 1e-9 s is less than one takes


def test_keyboard_interrupt_returns_draws_so_far():
    sampling_calls = []

    def callback(p):
        if p.phase == "sampling":
            sampling_calls.append(p.iteration)
            if len(sampling_calls) == 2:
                raise KeyboardInterrupt

    cfg = NUTSConfig(warmup=150, draws=130, chunk_size=64)
    res = sample_nuts(gauss_ld, gauss_data(np.eye(2)), INIT2, jax.random.PRNGKey(5), cfg, callback=callback)
    assert not res.completed
    n = sampling_calls[-1] - 150  # 256 - 150 = 106 draws made
    assert res.positions.shape == (4, n, 2)
    assert all(v.shape == (4, n) for v in res.stats.values())
    assert np.all(np.isfinite(res.positions))


def test_nan_region_counts_divergences():
    # log density nan for x0 > 1: a standard normal truncated at x0 = 1
    res = sample_nuts(gauss_ld, gauss_data(np.eye(2), nan_above=1.0), INIT2, jax.random.PRNGKey(6),
                      NUTSConfig(warmup=300, draws=1000, chunk_size=64))
    x = res.positions
    assert res.completed and np.all(np.isfinite(x)) and np.all(x[..., 0] <= 1.0)
    for v in res.stats.values():
        assert np.all(np.isfinite(v))
    assert res.stats["divergent__"].sum() > 0 and res.warmup_divergences > 0
    assert np.all(np.isfinite(res.step_size)) and np.all(np.isfinite(res.inverse_mass_matrix))
    mean0 = -np.exp(-0.5) / np.sqrt(2 * np.pi) / 0.8413447460685429  # truncated-normal mean
    x0 = x[..., 0]
    assert abs(x0.mean() - mean0) < 5 * x0.std() / np.sqrt(ess(x0))


def test_short_warmup_and_no_warmup():
    cfg = NUTSConfig(warmup=10, draws=50, chunk_size=64)
    res = sample_nuts(gauss_ld, gauss_data(np.eye(2)), INIT2, jax.random.PRNGKey(7), cfg)
    np.testing.assert_array_equal(res.inverse_mass_matrix, 1.0)  # < 20 warm-up: no mass adaptation
    assert res.positions.shape == (4, 50, 2)
    res = sample_nuts(gauss_ld, gauss_data(np.eye(2)), INIT2, jax.random.PRNGKey(7),
                      cfg._replace(warmup=0, init_step_size=0.5))
    np.testing.assert_array_equal(res.step_size, 0.5)
    assert res.warmup_divergences == 0 and res.positions.shape == (4, 50, 2)


@pytest.mark.parametrize("n", [0, 10, 19, 20, 100, 149, 150, 151, 500, 1000, 2000])
def test_windows_match_blackjax(n):
    from blackjax.adaptation.window_adaptation import build_schedule as bj_schedule

    slow, end = stan_windows(n)
    bj = np.asarray(bj_schedule(n)).reshape(-1, 2) if n else np.zeros((0, 2))
    np.testing.assert_array_equal(slow, bj[:, 0] == 1)
    np.testing.assert_array_equal(end, bj[:, 1] == 1)
    sched = build_schedule(n, 7)
    assert sched.adapt.sum() == n and sched.warmup_end.sum() == (n > 0)
    assert sched.reinit.sum() == (n > 0) + end.sum() - (end[-1] if n else 0)


def test_stan_default_windows():
    slow, end = stan_windows(1000)
    ends = np.flatnonzero(end) + 1
    np.testing.assert_array_equal(ends, [100, 150, 250, 450, 950])
    assert slow[75:950].all() and not slow[:75].any() and not slow[950:].any()


# ------------------------------------------------------------------ one call site of the density
@pytest.mark.parametrize("loops_apart", [False, True])
def test_kernel_at_full_depth_is_blackjax_nuts(loops_apart):
    from blackjax.mcmc import hmc
    from blackjax.mcmc import nuts as bj_nuts

    from ppl.inference.nuts_kernel import build_kernel
    from ppl.inference.rng import sampler_key

    data = gauss_data(np.diag([1.0, 4.0, 0.25]))
    ld = lambda x: gauss_ld(x, data)  # noqa: E731
    state = hmc.init(jnp.array([0.3, -1.0, 0.2]), ld)
    imm = jnp.array([1.0, 2.0, 0.5])
    key = jax.random.PRNGKey(5)
    # ppl's kernel draws through its counter-based keys (ppl.inference.rng.sampler_key): BlackJAX's
    # kernel given the same key must make the same tree
    theirs = jax.jit(lambda k, e: bj_nuts.build_kernel()(sampler_key(k), state, ld, e, imm, 10))(key, 0.6)
    ours = jax.jit(lambda k, e, d: build_kernel(10, loops_apart=loops_apart)(k, state, ld, e, imm, d))(key, 0.6, 10)
    for a, b in zip(jax.tree.leaves(theirs), jax.tree.leaves(ours)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_tree_of_depth_one_is_the_step_size_heuristic_s_leapfrog_step():
    from blackjax.mcmc import hmc

    from ppl.inference.nuts_kernel import build_kernel

    data = gauss_data(np.diag([1.0, 4.0, 0.25]))
    ld = lambda x: gauss_ld(x, data)  # noqa: E731
    state = hmc.init(jnp.array([0.3, -1.0, 0.2]), ld)
    step = jax.jit(lambda k, e: build_kernel(10)(k, state, ld, e, jnp.ones(3), 1))
    seen = []
    for i, eps in enumerate([0.05, 0.5, 1.2, 2.5]):
        new, info = step(jax.random.PRNGKey(i), eps)
        assert int(info.num_integration_steps) == 1 and int(info.num_trajectory_expansions) == 1
        # the one new state is the end of the trajectory that is not the start
        ends = (info.trajectory_leftmost_state, info.trajectory_rightmost_state)
        end = next(e for e in ends if not np.array_equal(np.asarray(e.position), np.asarray(state.position)))
        h0 = -state.logdensity + 0.5 * jnp.sum(info.momentum ** 2)
        h1 = -end.logdensity + 0.5 * jnp.sum(end.momentum ** 2)
        expected = min(1.0, float(jnp.exp(h0 - h1)))
        np.testing.assert_allclose(float(info.acceptance_rate), expected, rtol=1e-12)
        seen.append(expected)
    assert min(seen) < 0.8 < max(seen)   # the step sizes straddle the heuristic's threshold


def test_the_chunk_evaluates_the_density_at_one_site():
    # Each place the chunk evaluates the log density and its gradient is a copy of them in the
    # compiled program (two calls of the jitted density: the forward pass and its transpose).
    # The step-size search and the transitions share one (until 2026-12 there were three: the
    # chunk's start, the heuristic's leapfrog step and the NUTS kernel).
    from blackjax.mcmc import hmc

    from ppl.inference.adaptation import init_adaptation_state, pad_schedule
    from ppl.inference.nuts_step import NUTSChainState, make_nuts_chunk

    @jax.jit
    def log_density(x, data):
        return gauss_ld(x, data)

    for dense in (False, True):
        chunk = make_nuts_chunk(log_density, 10, dense)
        state = NUTSChainState(hmc.HMCState(jnp.zeros(2), jnp.zeros(()), jnp.zeros(2)),
                               jax.tree.map(lambda a: a[0], init_adaptation_state(1, 2, 1.0, dense, np.float64)),
                               jnp.zeros(2, jnp.uint32))
        rows = pad_schedule(build_schedule(20, 10), 0, 32)
        program = jax.make_jaxpr(chunk)(state, rows, gauss_data(np.eye(2)), 0.8)
        assert calls_of("log_density", program.jaxpr) == 2, dense


@pytest.mark.parametrize("start", [1e-3, 1e3])
def test_a_restarting_row_searches_the_step_size_first(start):
    # Stan's heuristic from far too small (doubling) and far too large (halving): on a standard
    # normal one leapfrog step's acceptance crosses 0.8 at a step size of order 1, and the row's
    # transition then runs at the step size found; a row that does not restart keeps its own.
    from blackjax.mcmc import hmc

    from ppl.inference.adaptation import Schedule, init_adaptation_state
    from ppl.inference.nuts_step import NUTSChainState, make_nuts_chunk

    data = gauss_data(np.eye(1))
    chunk = jax.jit(make_nuts_chunk(gauss_ld, 10, False))
    x0 = jnp.array([0.5])
    state = NUTSChainState(hmc.init(x0, lambda x: gauss_ld(x, data)),
                           jax.tree.map(lambda a: a[0], init_adaptation_state(1, 1, start, False, np.float64)),
                           jnp.array([0, 7], jnp.uint32))
    on, off = np.array([True, False]), np.array([False, False])
    rows = Schedule(active=np.array([True, True]), adapt=off, reinit=on, slow=off, window_end=off, warmup_end=off)
    _, draws = chunk(state, rows, data, 0.8)
    found = float(draws.stepsize[0])
    assert 0.05 < found < 8.0, found
    assert float(draws.stepsize[1]) == found and int(draws.n_leapfrog[0]) >= 1


def test_the_chunk_traces_the_density_once():
    # Tracing is part of every cold start: a weakly typed loop carry that the loop's body returns
    # strongly typed makes JAX trace the loop a second time, and with it every leapfrog step
    # inside (the tree-expansion loop was traced twice, the leapfrog loop four times).
    from blackjax.mcmc import hmc

    from ppl.inference.adaptation import init_adaptation_state, pad_schedule
    from ppl.inference.nuts_step import NUTSChainState, make_nuts_chunk

    traced = []

    def log_density(x, data):
        traced.append(1)
        return gauss_ld(x, data)

    chunk = make_nuts_chunk(log_density, 10, False)
    state = NUTSChainState(hmc.HMCState(jnp.zeros(2), jnp.zeros(()), jnp.zeros(2)),
                           jax.tree.map(lambda a: a[0], init_adaptation_state(1, 2, 1.0, False, np.float64)),
                           jnp.zeros(2, jnp.uint32))
    jax.make_jaxpr(chunk)(state, pad_schedule(build_schedule(20, 10), 0, 32), gauss_data(np.eye(2)), 0.8)
    assert len(traced) == 1


def test_the_gibbs_step_evaluates_the_density_at_two_sites():
    # NUTS within Gibbs re-evaluates the density after each Gibbs sweep (the discrete values
    # changed it), then runs the same loop of kernel passes as the NUTS chunk: two copies of the
    # density and its gradient (four calls), where the separate heuristic made three.
    from blackjax.mcmc import hmc

    from ppl.inference.adaptation import init_adaptation_state, pad_schedule
    from ppl.inference.nuts import make_chunk_fn
    from ppl.inference.nuts_step import NUTSChainState, make_gibbs_step

    @jax.jit
    def log_density(x, data_extra):
        data, extra = data_extra
        return gauss_ld(x, data) + extra

    gibbs_fn = lambda key, x, data: jax.random.normal(key)  # noqa: E731
    chunk = make_chunk_fn(*make_gibbs_step(log_density, gibbs_fn, 10, False))
    state = NUTSChainState(hmc.HMCState(jnp.zeros(2), jnp.zeros(()), jnp.zeros(2)),
                           jax.tree.map(lambda a: a[0], init_adaptation_state(1, 2, 1.0, False, np.float64)),
                           jnp.zeros(2, jnp.uint32))
    program = jax.make_jaxpr(chunk)(state, pad_schedule(build_schedule(20, 10), 0, 32), gauss_data(np.eye(2)), 0.8)
    assert calls_of("log_density", program.jaxpr) == 4


@pytest.mark.parametrize("rank", [10, 4])
def test_low_rank_mass_matrix_learns_correlated_directions(rank):
    """nutpie's low-rank metric (BlackJAX's estimator, from each slow window's positions and
    gradients) on a Gaussian with scales 1..10 and two strongly correlated pairs: its dense
    equivalent approaches the covariance (a diagonal cannot: correlation 0.99 leaves tree depth
    near 5 with Stan's metric), the trees are short, and the draws keep their moments. Rank 10
    (the Gaussian rotated at random) is held as a dense matrix (dim <= 2 rank), rank 4 (not
    rotated: the pairs' four directions) as BlackJAX's factors."""
    rng = np.random.default_rng(5)
    scales = np.linspace(1.0, 10.0, 10)
    corr = np.eye(10)
    corr[0, 1] = corr[1, 0] = 0.99
    corr[2, 3] = corr[3, 2] = -0.99
    rot = np.linalg.qr(rng.normal(size=(10, 10)))[0] if rank == 10 else np.eye(10)   # rank 4: the pairs' 4 directions
    cov = rot @ (scales[:, None] * corr * scales[None, :]) @ rot.T
    init = rng.uniform(-2, 2, (4, 10))
    res = sample_nuts(gauss_ld, gauss_data(cov), init, jax.random.PRNGKey(4), NUTSConfig(low_rank=rank))
    held = init_adaptation_state(1, 10, 1.0, False, np.float64, low_rank=rank, buffer=4).mm.inverse_mass_matrix
    assert isinstance(held, LowRankInverseMassMatrix) == (rank == 4)
    sd = np.sqrt(np.diag(cov))
    check_moments(res.positions, np.zeros(10), sd)
    imm = res.inverse_mass_matrix                       # (chains, 10, 10), dense equivalent
    assert imm.shape == (4, 10, 10)
    for m in imm:
        # the metric whitens the target: the eigenvalues of M cov are all near 1
        ev = np.linalg.eigvals(np.linalg.solve(m, cov)).real
        assert ev.min() > 0.3 and ev.max() < 3.0, ev
    assert res.stats["treedepth__"].mean() < 3.5
    diag = sample_nuts(gauss_ld, gauss_data(cov), init, jax.random.PRNGKey(4), NUTSConfig())
    assert diag.stats["treedepth__"].mean() > res.stats["treedepth__"].mean() + 1
