import math
import pathlib
import sys
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root, if not installed

import numpy as np
import pytest

from ppl import diagnostics as D


def iid(chains=4, draws=1000, seed=0):
    return np.random.default_rng(seed).standard_normal((chains, draws))


def ar1(phi, chains, draws, seed):
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((chains, draws))
    x = np.empty((chains, draws))
    x[:, 0] = eps[:, 0] / math.sqrt(1 - phi**2)  # start in the stationary distribution
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


# ------------------------------------------------------------------ behaviour on known chains
def test_iid_normal_ess_near_n_and_rhat_near_one():
    x = iid()
    assert abs(D.ess_bulk(x) - 4000) / 4000 < 0.15
    assert abs(D.ess_mean(x) - 4000) / 4000 < 0.15
    assert abs(D.ess_tail(x) - 4000) / 4000 < 0.25
    assert D.rhat(x) < 1.01
    assert D.mcse_mean(x) == pytest.approx(np.std(x, ddof=1) / math.sqrt(D.ess_mean(x)))
    assert D.mcse_mean(x) == pytest.approx(1 / math.sqrt(4000), rel=0.15)


@pytest.mark.parametrize("seed", [1, 2])
def test_ar1_ess_matches_theory(seed):
    phi, chains, draws = 0.9, 4, 5000
    x = ar1(phi, chains, draws, seed)
    theory = chains * draws * (1 - phi) / (1 + phi)   # ~1053, far below the 20000 draws
    for ess in (D.ess_mean(x), D.ess_bulk(x)):
        assert abs(ess - theory) / theory < 0.25, (ess, theory)
    assert D.rhat(x) < 1.02


def test_antithetic_chain_has_ess_above_n():
    x = ar1(-0.5, 4, 2000, seed=3)
    theory = 8000 * 1.5 / 0.5
    assert D.ess_mean(x) > 8000
    assert abs(D.ess_mean(x) - theory) / theory < 0.3


def test_different_means_give_large_rhat():
    x = iid() + np.array([0.0, 0.0, 0.0, 2.0])[:, None]
    assert D.rhat(x) > 1.1


def test_folded_rhat_catches_different_scales():
    x = iid(seed=5) * np.array([1.0, 1.0, 1.0, 4.0])[:, None]   # same mean, different sd
    assert D.rhat(x) > 1.05


def test_split_rhat_catches_drift_within_single_chain():
    x = np.random.default_rng(4).standard_normal((1, 1000)) + np.linspace(0, 3, 1000)
    assert D.rhat(x) > 1.1
    assert D.rhat(iid(1, 1000)) < 1.02


def test_one_dimensional_input_is_one_chain():
    x = iid(1, 500, seed=6)
    assert D.ess_bulk(x[0]) == D.ess_bulk(x)
    assert D.rhat(x[0]) == D.rhat(x)


# ------------------------------------------------------------------ degenerate input never raises
DEGENERATE = {
    "constant": np.full((4, 100), 3.0),
    "three_draws": iid(4, 3),
    "nan": np.where(np.arange(400).reshape(4, 100) == 7, np.nan, iid(4, 100)),
    "inf": np.where(np.arange(400).reshape(4, 100) == 7, np.inf, iid(4, 100)),
    "empty": np.empty((4, 0)),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_degenerate_input_gives_nan_without_warnings(case):
    x = DEGENERATE[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (D.rhat, D.ess_bulk, D.ess_tail, D.ess_mean, D.mcse_mean):
            assert math.isnan(f(x)), f.__name__
        assert math.isnan(D.mcse_quantile(x, 0.5))
        s = D.summarize(x)
    assert math.isnan(s["r_hat"]) and math.isnan(s["ess_bulk"])


def test_constant_summary_keeps_location():
    s = D.summarize(np.full((2, 50), 3.0))
    assert s["mean"] == 3.0 and s["sd"] == 0.0 and s["q5"] == s["q95"] == 3.0


def test_stuck_chains_at_different_values_give_huge_rhat():
    x = np.repeat(np.array([[0.0], [1.0], [2.0], [3.0]]), 100, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert D.rhat(x) > 1e3   # inf, or enormous from rounding in the zero variance
        assert not math.isnan(D.ess_bulk(x))


def test_integer_draws_are_accepted():
    x = np.random.default_rng(7).poisson(3.0, size=(4, 500))
    s = D.summarize(x)
    assert abs(s["mean"] - 3.0) < 0.2
    assert s["r_hat"] < 1.02 and s["ess_bulk"] > 1000


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="chains, draws"):
        D.rhat(np.zeros((2, 3, 4)))


# ------------------------------------------------------------------ pieces
def test_summarize_keys_and_quantiles():
    x = iid(seed=8)
    s = D.summarize(x, probs=(0.025, 0.5, 0.975))
    assert list(s) == ["mean", "sd", "q2.5", "q50", "q97.5", "mcse_mean",
                       "ess_bulk", "ess_tail", "r_hat"]
    assert s["q2.5"] == pytest.approx(np.quantile(x, 0.025))
    assert list(D.summarize(x)) [2:5] == ["q5", "q50", "q95"]
    assert all(isinstance(v, float) for v in s.values())


def test_summarize_agrees_with_the_single_functions():
    x = ar1(0.7, 3, 401, seed=12) * np.array([1.0, 1.0, 1.5])[:, None]
    s = D.summarize(x)
    assert s["r_hat"] == D.rhat(x) and s["ess_bulk"] == D.ess_bulk(x)
    assert s["ess_tail"] == D.ess_tail(x) and s["mcse_mean"] == D.mcse_mean(x)
    assert s["mean"] == pytest.approx(x.mean()) and s["sd"] == pytest.approx(x.std(ddof=1))


def test_autocorrelation_matches_direct_sum():
    x = np.random.default_rng(9).standard_normal(64)
    xc = x - x.mean()
    direct = np.array([np.sum(xc[: 64 - k] * xc[k:]) for k in range(64)]) / 64
    np.testing.assert_allclose(D.autocovariance(x), direct, atol=1e-12)
    np.testing.assert_allclose(D.autocorrelation(x), direct / direct[0], atol=1e-12)


def test_ranks_and_z_scale_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(10).integers(0, 20, size=(3, 50)).astype(float)  # many ties
    np.testing.assert_allclose(D._average_ranks(x.ravel()), stats.rankdata(x, method="average"))
    r = stats.rankdata(x, method="average").reshape(x.shape)
    np.testing.assert_allclose(D.z_scale(x), stats.norm.ppf((r - 0.375) / (x.size + 0.25)))


def test_split_chains_drops_middle_draw():
    x = np.arange(10.0).reshape(2, 5)
    np.testing.assert_array_equal(D.split_chains(x), [[0, 1], [5, 6], [3, 4], [8, 9]])


def _smooth(k):
    for p in (2, 3, 5):
        while k % p == 0:
            k //= p
    return k == 1


@pytest.mark.parametrize("n", [1, 7, 100, 2002, 4001])
def test_next_fast_len_is_smallest_5_smooth(n):
    expected = next(k for k in range(n, 4 * n + 2) if _smooth(k))
    assert D._next_fast_len(n) == expected


def test_mcse_quantile_is_sane():
    x = iid(seed=11)
    se = D.mcse_quantile(x, 0.5)
    # iid normal median: sqrt(p(1-p)/n)/phi(0) = 0.5*sqrt(2*pi)/sqrt(4000) ~ 0.0198
    assert se == pytest.approx(0.0198, rel=0.3)


# ------------------------------------------------------------------ cross-check against ArviZ
def _arviz():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import arviz
    except Exception:
        return None
    return arviz


@pytest.mark.skipif(_arviz() is None, reason="arviz not installed")
@pytest.mark.parametrize("shape", [(4, 500), (4, 501), (2, 37), (3, 1000)])
def test_matches_arviz(shape):
    az = _arviz()
    rng = np.random.default_rng(sum(shape))
    x = 0.3 * rng.standard_normal(shape).cumsum(axis=1) + rng.standard_normal(shape)
    x += 0.2 * np.arange(shape[0])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = {
            "rhat": (D.rhat(x), az.rhat(x, method="rank")),
            "ess_bulk": (D.ess_bulk(x), az.ess(x, method="bulk")),
            "ess_tail": (D.ess_tail(x), az.ess(x, method="tail")),
            "ess_mean": (D.ess_mean(x), az.ess(x, method="mean")),
            "mcse_mean": (D.mcse_mean(x), az.mcse(x, method="mean")),
            "mcse_q": (D.mcse_quantile(x, 0.3), az.mcse(x, method="quantile", prob=0.3)),
        }
    for name, (ours, theirs) in pairs.items():
        assert ours == pytest.approx(float(theirs), rel=1e-6), name
