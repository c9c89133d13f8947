"""The quick first program of short NUTS runs (ppl.inference.quick): when it is chosen, how the
leapfrog steps of the first iterations decide whether the optimised program takes over, and that
the hand-over happens at a fixed iteration, so a call's draws do not depend on timing."""
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl  # (asks XLA for host devices before JAX starts)
import ppl.inference.nuts as nuts_module
import ppl.inference.quick as quick
from ppl.inference.nuts import NUTSConfig, sample_nuts
from ppl.inference.quick import (CHECK_AT, CHECK_SPAN, ONE_SHOT_LOSS_S, QuickCheck, level0_loss, one_shot_loss,
                               one_shot_options, quick_start)
from ppl.inference.rng import stream

CPU = [SimpleNamespace(platform="cpu")] * 2
GPU = [SimpleNamespace(platform="gpu")]


def test_level0_loss_grows_with_the_run_its_trees_and_the_density():
    base = level0_loss(200, 2000, 4, CPU, 40)
    assert base > 0
    assert level0_loss(200, 4000, 4, CPU, 40) == pytest.approx(2 * base)    # twice the iterations
    assert level0_loss(200, 2000, 8, CPU, 40) == pytest.approx(2 * base)    # twice the chains per core
    assert level0_loss(200, 2000, 4, CPU, 400) > 5 * base                   # longer trees
    assert level0_loss(20000, 2000, 4, CPU, 40) > 5 * base                  # a costlier density


def test_quick_start_for_small_densities_and_short_runs(monkeypatch):
    monkeypatch.delenv("PPL_QUICK_START", raising=False)
    assert quick_start(200, 2000, 4, CPU)               # eight schools' size, Stan's default run
    assert not quick_start(200, 200000, 4, CPU)         # a hundred times longer
    assert not quick_start(50000, 2000, 4, CPU)         # the mixtures' density
    assert not quick_start(None, 2000, 4, CPU)          # operations unknown (NUTS within Gibbs)
    assert not quick_start(200, 2000, 4, GPU)           # CPU only
    monkeypatch.setenv("PPL_QUICK_START", "0")
    assert not quick_start(200, 2000, 4, CPU)
    monkeypatch.setenv("PPL_QUICK_START", "1")
    assert quick_start(50000, 200000, 4, CPU) and not quick_start(200, 2000, 4, GPU)


def _outs(n_leapfrog):
    return SimpleNamespace(n_leapfrog=np.asarray(n_leapfrog))


def test_quick_check_counts_the_span_before_its_iteration():
    check = QuickCheck(100, 2000, 2, CPU)
    assert check.at == CHECK_AT
    lo = CHECK_AT - CHECK_SPAN
    # calls of 40 iterations: steps before the span and after the check do not count
    for start in range(0, CHECK_AT + 40, 40):
        steps = np.where(np.arange(start, start + 40) < lo, 1000, 7)
        check.observe(start, 40, _outs(np.tile(steps, (2, 1))))
    assert check.leapfrogs() == pytest.approx(7.0)
    assert not check.switch()                        # short trees: the rest stays quick
    # the longest trees NUTS makes, two chains a core: the rest would lose more than a compile
    long = QuickCheck(100, 2000, 4, CPU)
    long.observe(lo, CHECK_SPAN, _outs(np.full((4, CHECK_SPAN), 1023)))
    assert long.leapfrogs() == 1023 and long.switch()
    # calls that may only end at multiples of 100 move the check to one; a run that ends first has none
    assert QuickCheck(100, 2000, 2, CPU, aligned=100).at == -(-CHECK_AT // 100) * 100
    assert QuickCheck(100, CHECK_AT, 2, CPU).at is None


def _std_normal(x, data):
    return -0.5 * jnp.sum((x - data["m"]) ** 2)


def test_the_optimised_program_takes_over_at_the_check(monkeypatch):
    monkeypatch.delenv("PPL_QUICK_START", raising=False)
    asked = []      # the quick flag of each program compiled

    def spy(size, devices, work=None, quick=False):
        asked.append(quick)
        return chosen(size, devices, work, quick=quick)

    chosen = nuts_module.compiler_options
    monkeypatch.setattr(nuts_module, "compiler_options", spy)
    data = {"m": np.array([0.5, -1.0, 2.0])}
    init = np.array([[0.1, 0.2, 0.3], [-0.3, 0.0, 1.0]])
    config = NUTSConfig(chains=2, warmup=CHECK_AT + 50, draws=100, chunk_size=25)
    logp = jax.jit(_std_normal)
    nuts_module.clear_cache()

    stays = sample_nuts(logp, data, init, stream(5, 2), config)
    assert asked == [True]              # a short run of a small density: the quick program, kept
    monkeypatch.setattr(quick, "SWITCH_S", -1.0)   # any rest is too long at level 0
    lowerings = []
    lower = nuts_module.lower_over_chains
    monkeypatch.setattr(nuts_module, "lower_over_chains", lambda *a, **k: lowerings.append(1) or lower(*a, **k))
    before = nuts_module.compile_count()
    switched = sample_nuts(logp, data, init, stream(5, 2), config)
    assert asked == [True, True, False]     # the quick program (cached), then the optimised one
    assert nuts_module.compile_count() - before == 1 and switched.compile_s > 0
    assert lowerings == []                  # compiled from the quick program's lowering: nothing traced
    again = sample_nuts(logp, data, init, stream(5, 2), config)    # both cached now: the same draws
    assert again.compile_s == 0
    np.testing.assert_array_equal(again.positions, switched.positions)
    # both samplers target N(m, I): 200 draws each, a mean within about 5 standard errors
    for res in (stays, switched):
        assert res.positions.shape == (2, 100, 3)
        np.testing.assert_allclose(res.positions.mean(axis=(0, 1)), data["m"], atol=0.4)
        np.testing.assert_allclose(res.positions.std(axis=(0, 1)), 1.0, atol=0.3)


def test_one_shot_programs_start_quick_when_their_iteration_cap_loses_little(monkeypatch):
    monkeypatch.delenv("PPL_QUICK_START", raising=False)
    assert one_shot_loss(201, 10, 10000) < ONE_SHOT_LOSS_S        # eight schools' ADVI, 10,000 steps
    assert one_shot_loss(2882, 105, 10000) > ONE_SHOT_LOSS_S      # hierarchical linear's: 105 dimensions
    assert one_shot_loss(248038, 4, 10000) > ONE_SHOT_LOSS_S      # a costly density (arma11)
    assert one_shot_loss(201, 10, 20000) == pytest.approx(2 * one_shot_loss(201, 10, 10000))
    data = {"m": np.zeros(3)}
    level = lambda options: (options or {}).get("xla_backend_optimization_level")  # noqa: E731
    assert level(one_shot_options(_std_normal, 3, np.float64, data, 10000)) == 0
    assert level(one_shot_options(_std_normal, 3, np.float64, data, 1e7)) is None
    monkeypatch.setenv("PPL_QUICK_START", "0")
    assert level(one_shot_options(_std_normal, 3, np.float64, data, 10000)) is None
    monkeypatch.setenv("PPL_QUICK_START", "1")
    assert level(one_shot_options(_std_normal, 3, np.float64, data, 1e7)) == 0


def test_vi_and_optimize_compile_with_the_one_shot_choice(monkeypatch):
    monkeypatch.delenv("PPL_QUICK_START", raising=False)
    asked = []
    chosen = quick.compiler_options
    monkeypatch.setattr(quick, "compiler_options",
                        lambda size, devices, work=None, quick=False: asked.append(quick) or chosen(size, devices, work,
                                                                                                     quick=quick))
    model = ppl.compile("mu ~ normal(0, 10)\ny: real[N] ~ normal(mu, 1)")
    data = {"y": np.array([0.3, 1.2, 0.8, 1.9])}
    fit = model.vi(data, seed=1)
    # the starting points' program, ADVI's, its draws' and the outputs' (constrained values), all
    # small: level 0
    assert asked == [True] * 4
    assert abs(fit["mu"].mean() - data["y"].sum() / (4 + 1e-2)) < 0.2
    before = len(asked)
    model.optimize(data, seed=1, max_iter=10 ** 7)     # a cap this long could lose seconds: optimised
    assert sorted(asked[before:]) == [False, True]     # L-BFGS's program; the outputs' at level 0
    prior = model.prior(data, draws=2000, seed=1)      # ancestral draws, one program run once: level 0
    assert asked[-1] is True and abs(prior["mu"].std() - 10) < 1.0      # mu ~ normal(0, 10): sd within ~6 se


def test_hmc_and_mh_start_quick_and_hmc_switches_at_the_check(monkeypatch):
    import ppl.inference.chunks as chunks
    from ppl.inference.hmc import HMCConfig, sample_hmc
    from ppl.inference.mh import MHConfig, sample_mh
    monkeypatch.delenv("PPL_QUICK_START", raising=False)
    asked, lowerings = [], []
    chosen, lower = chunks.compiler_options, chunks.lower_over_chains
    monkeypatch.setattr(chunks, "compiler_options",
                        lambda size, devices, work=None, quick=False: asked.append(quick) or chosen(size, devices, work,
                                                                                                     quick=quick))
    monkeypatch.setattr(chunks, "lower_over_chains", lambda *a, **k: lowerings.append(1) or lower(*a, **k))
    data = {"m": np.array([0.5, -1.0, 2.0])}
    init = np.array([[0.1, 0.2, 0.3], [-0.3, 0.0, 1.0]])
    logp = jax.jit(_std_normal)
    chunks.clear_cache()
    mh = sample_mh(logp, data, init, stream(5, 2), MHConfig(chains=2, warmup=200, draws=200, chunk_size=50))
    assert asked == [True] and mh.positions.shape == (2, 200, 3)       # one density an iteration: quick
    config = HMCConfig(chains=2, warmup=CHECK_AT + 50, draws=100, chunk_size=25)
    stays = sample_hmc(logp, data, init, stream(5, 2), config)
    assert asked[1:] == [True]                                         # short trees: kept
    monkeypatch.setattr(quick, "SWITCH_S", -1.0)
    del asked[:], lowerings[:]
    switched = sample_hmc(logp, data, init, stream(5, 2), config)
    assert asked == [True, False] and lowerings == []   # the quick program (cached), then its lowering optimised
    again = sample_hmc(logp, data, init, stream(5, 2), config)
    np.testing.assert_array_equal(again.positions, switched.positions)
    for res in (stays, switched):   # N(m, I): 200 draws, means within about 5 standard errors
        np.testing.assert_allclose(res.positions.mean(axis=(0, 1)), data["m"], atol=0.4)
