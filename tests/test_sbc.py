"""Simulation-based calibration (ppl/sbc.py, `ppl sbc`).

The default run checks the machinery on one small conjugate model (ranks in range, shapes,
statistics, the rank-histogram file, the command). The slow suite (`-m slow`) runs SBC of
NUTS on five models and asserts uniform ranks at a fixed seed: every scalar's chi-square
p-value above 0.001 (with at most 10 scalars per model, a family-wise level of 0.01).
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

import ppl
from ppl.cli import main
from ppl.errors import ModelError
from ppl.sbc import SBCResult, chi2_sf, ks_sf, rank_statistics, run_sbc

CONJUGATE = "mu ~ normal(0, 1)\ny: real[N] ~ normal(mu, 1)\n"


def test_rank_statistics_tell_uniform_from_not():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 100, size=2000)          # L = 99: ranks 0..99
    s = rank_statistics(uniform, 99, 20)
    assert s["df"] == 19 and s["p"] > 0.01 and s["ks_p"] > 0.01
    too_narrow = np.clip(rng.normal(50, 60, size=2000).round(), 0, 99).astype(int)   # a smile: piles at the ends
    s = rank_statistics(too_narrow, 99, 20)
    assert s["p"] < 1e-6
    biased = rng.integers(0, 60, size=500)
    s = rank_statistics(biased, 99, 10)
    assert s["p"] < 1e-6 and s["ks_p"] < 1e-6 and s["ks"] > 0.3


def test_tail_probabilities_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for x, df in [(0.3, 1), (5.0, 3), (19.0, 19), (45.0, 19), (200.0, 9)]:
        assert math.isclose(chi2_sf(x, df), stats.chi2.sf(x, df), rel_tol=1e-9, abs_tol=1e-300)
    for x in [0.5, 1.0, 1.36, 2.0]:
        assert math.isclose(ks_sf(x), stats.kstwobign.sf(x), rel_tol=1e-9)


def test_unequal_bins_have_exact_expected_counts():
    # 51 possible ranks in 10 bins: bin sizes 6, 5, 5, ...; a perfectly uniform set of ranks fits exactly
    ranks = np.tile(np.arange(51), 4)
    s = rank_statistics(ranks, 50, 10)
    assert s["chi2"] < 1e-12 and s["p"] > 0.999


def test_sbc_machinery_on_a_conjugate_model(tmp_path):
    model = ppl.compile(CONJUGATE)
    seen = []
    res = run_sbc(model, {"N": 4}, sims=20, draws=30, warmup=100, thin=2, seed=3,
                  progress=lambda i, n: seen.append((i, n)))
    assert isinstance(res, SBCResult)
    assert res.observed == ["y"] and res.params == ["mu"]
    assert res.sims == 20 and res.num_draws == 30 and list(res.ranks) == ["mu"]
    r = res.ranks["mu"]
    assert r.shape == (20,) and r.dtype.kind == "i" and r.min() >= 0 and r.max() <= 30
    assert seen[-1] == (20, 20) and len(seen) == 20
    assert res.bins == 2 and set(res.stats["mu"]) == {"chi2", "df", "p", "ks", "ks_p"}
    assert 0 <= res.stats["mu"]["p"] <= 1 and res.failed == 0 and res.divergences.shape == (20,)
    text = str(res)
    assert "SBC: 20 simulations, 30 posterior draws each" in text and "mu" in text
    assert res.timings["per_fit_s"] < res.timings["first_fit_s"]     # the compiled sampler is reused
    pytest.importorskip("matplotlib")
    out = tmp_path / "ranks.png"
    assert res.plot(str(out)) == ["mu"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sbc_command(tmp_path, capsys):
    (tmp_path / "m.gm").write_text(CONJUGATE)
    (tmp_path / "d.json").write_text('{"N": 3}')
    out = tmp_path / "ranks.png"
    code = main(["sbc", str(tmp_path / "m.gm"), "--data", str(tmp_path / "d.json"), "--sims", "10",
                 "--draws", "19", "--warmup", "50", "--bins", "4", "--seed", "1", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "SBC: 10 simulations, 19 posterior draws each" in captured.out
    assert "ranks in 4 bins; observed: y" in captured.out
    assert "sbc: 10/10 fits" in captured.err
    try:
        import matplotlib  # noqa: F401
        assert out.exists() and f"wrote {out}" in captured.err
    except ImportError:
        assert "no rank histograms" in captured.err


def test_which_nodes_are_observed(tmp_path, capsys):
    from ppl.sbc import _observed_nodes
    g = ppl.compile("data x: real[N]\na ~ normal(0, 1)\nz ~ normal(a, 1)\ny ~ normal(a + x, 1)\n"
                    "w ~ normal(z, 1)\n").graph
    assert _observed_nodes(g, {"x": [1.0]}, None) == ["y", "w"]            # stochastic leaves
    assert _observed_nodes(g, {"x": [1.0], "z": 0.0}, None) == ["z"]       # named by the data
    assert _observed_nodes(g, {}, ["y"]) == ["y"]
    with pytest.raises(ModelError, match="`x` is declared data, so SBC cannot simulate it"):
        _observed_nodes(g, {}, ["x"])
    with pytest.raises(ModelError, match="is not a node of the model"):
        _observed_nodes(g, {}, ["yy"])
    (tmp_path / "m.gm").write_text("data y: real[N]\nmu ~ normal(0, 1)\ny ~ normal(mu, 1)\n")
    assert main(["sbc", str(tmp_path / "m.gm"), "--observed", "y", "--sims", "5"]) == 2
    err = capsys.readouterr().err
    assert ":1:1: error: `y` is declared data, so SBC cannot simulate it" in err
    assert "hint: SBC simulates observed nodes" in err


# ---------------------------------------------------------------------------- the slow suite

SBC_MODELS = {
    "normal-normal": ("mu ~ normal(0, 1)\ny: real[N] ~ normal(mu, 1)\n", {"N": 10}),
    "regression": ("data x: real[N]\nalpha ~ normal(0, 2)\nbeta ~ normal(0, 1)\nsigma ~ half_normal(1)\n"
                   "y ~ normal(alpha + beta * x, sigma)\n",
                   {"x": np.linspace(-2, 2, 20).round(3).tolist()}),
    "eight-schools-noncentred": ("data sigma: real<lower=0>[J]\nmu ~ normal(0, 5)\ntau ~ half_cauchy(5)\n"
                                 "theta_raw: real[J] ~ normal(0, 1)\ntheta = mu + tau * theta_raw\n"
                                 "y ~ normal(theta, sigma)\n",
                                 {"sigma": [15, 10, 16, 11, 9, 11, 10, 18]}),
    "mixture-2": ("data N: int\nmu1 ~ normal(-2, 0.5)\nmu2 ~ normal(2, 0.5)\nsigma ~ half_normal(1)\n"
                  "theta ~ beta(5, 5)\n"
                  "y: real[N] ~ mixture([theta, 1 - theta], normal([mu1, mu2], sigma))\n", {"N": 30}),
    "poisson-glm": ("data x: real[N]\nalpha ~ normal(1, 0.5)\nbeta ~ normal(0, 0.5)\n"
                    "y ~ poisson_log(alpha + beta * x)\n", {"x": np.linspace(-1.5, 1.5, 15).round(3).tolist()}),
}
SBC_SETTINGS = dict(sims=200, draws=100, warmup=300, thin=2, bins=20, seed=20240611)
REPORT = os.environ.get("PPL_SBC_REPORT")        # a folder: write each model's table and rank histograms there


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SBC_MODELS))
def test_sbc_nuts_is_calibrated(name):
    text, data = SBC_MODELS[name]
    t0 = time.perf_counter()
    res = run_sbc(ppl.compile(text), data, **SBC_SETTINGS)
    print(f"\n[{name}] ({time.perf_counter() - t0:.1f} s)\n{res}")
    if REPORT:
        os.makedirs(REPORT, exist_ok=True)
        with open(os.path.join(REPORT, f"{name}.txt"), "w") as fh:
            fh.write(f"{name} ({time.perf_counter() - t0:.1f} s)\n{res}\n")
        try:
            res.plot(os.path.join(REPORT, f"{name}.png"))
        except ImportError:
            pass
    assert res.failed == 0
    assert len(res.stats) <= 10
    bad = {k: s["p"] for k, s in res.stats.items() if s["p"] <= 0.001}
    assert not bad, f"ranks not uniform: {bad}\n{res}"


@pytest.mark.slow
def test_sbc_mixture_with_ordered_locations():
    text = ("data N: int\nmu: ordered[2] ~ normal(0, 3)\nsigma ~ half_normal(1)\ntheta ~ beta(5, 5)\n"
            "y: real[N] ~ mixture([theta, 1 - theta], normal(mu, sigma))\n")
    res = run_sbc(ppl.compile(text), {"N": 30}, **{**SBC_SETTINGS, "sims": 100})
    print(f"\n[mixture-ordered]\n{res}")
    assert all(s["p"] > 0.001 for s in res.stats.values())
