"""ADVI against the exact Gaussian posterior of a linear regression with known sigma.

The posterior of (alpha, beta) is Gaussian, so mean-field ADVI's optimum has the exact means
(and the conditional sds 1/sqrt(precision_ii)), and full-rank ADVI's optimum is the posterior
itself. x is uncentred, so intercept and slope are strongly correlated (about -0.96)."""
import json

import numpy as np
import pytest

import ppl
from ppl.cli import main
from ppl.results import load

MODEL = """
data x: real[N]
data sigma: real<lower=0>
alpha ~ normal(0, 100)
beta ~ normal(0, 100)
y ~ normal(alpha + beta * x, sigma)
"""
PRIOR_SD = 100.0


def make_data():
    rng = np.random.default_rng(1)
    n = 50
    x = rng.uniform(2, 6, n)
    y = 1.0 + 0.5 * x + rng.normal(size=n)
    return {"x": x, "y": y, "sigma": 1.0}


def exact(data):
    """Posterior mean, sds and intercept-slope correlation (conjugate Gaussian formula)."""
    X = np.column_stack([np.ones_like(data["x"]), data["x"]])
    prec = X.T @ X / data["sigma"] ** 2 + np.eye(2) / PRIOR_SD ** 2
    cov = np.linalg.inv(prec)
    mean = cov @ X.T @ data["y"] / data["sigma"] ** 2
    sd = np.sqrt(np.diag(cov))
    return mean, sd, cov[0, 1] / (sd[0] * sd[1])


@pytest.fixture(scope="module")
def fits():
    model, data = ppl.compile(MODEL), make_data()
    return {family: model.vi(data, family=family, draws=4000, seed=0) for family in ("meanfield", "fullrank")}


def test_meanfield_recovers_exact_means(fits):
    post = fits["meanfield"]
    mean, sd, _ = exact(make_data())
    assert post.kind == "vi" and post.num_chains == 1 and post.num_draws == 4000
    assert post.meta["converged"] and post.meta["family"] == "meanfield"
    assert set(post.stats) == {"log_p__", "log_g__"}
    for j, name in enumerate(["alpha", "beta"]):
        err = abs(post[name].mean() - mean[j]) / sd[j]
        assert err < 0.1, f"{name}: mean off by {err:.3f} posterior sd"


def test_fullrank_recovers_correlation(fits):
    post = fits["fullrank"]
    mean, sd, corr = exact(make_data())
    assert corr < -0.9                       # the test is only meaningful with a strong correlation
    a, b = post["alpha"][0], post["beta"][0]
    assert abs(np.corrcoef(a, b)[0, 1] - corr) < 0.1
    # full-rank stops earlier along the ridge (Stan's tol_rel_obj = 0.01): a looser bound on the means
    for j, x in enumerate([a, b]):
        assert abs(x.mean() - mean[j]) / sd[j] < 0.25
        assert 0.7 < x.std() / sd[j] < 1.3
    assert fits["meanfield"]["alpha"].std() < 0.5 * a.std()      # mean-field underestimates it


def test_the_numpy_set_up_is_what_optax_and_jax_would_make():
    import jax
    from ppl.inference.vi import VIConfig, cholesky_factor, init_gaussian, make_advi_chunk, zeros_state
    for family in ("meanfield", "fullrank"):
        q = init_gaussian(np.array([0.5, -1.0, 2.0]), family)
        _, opt = make_advi_chunk(lambda u, d: -0.5 * (u ** 2).sum(), VIConfig(family=family))
        ours, theirs = zeros_state(opt, q), opt.init(q)
        assert jax.tree.structure(ours) == jax.tree.structure(theirs)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        q = q._replace(scale=q.scale + 0.3 * np.tri(*q.scale.shape) if q.scale.ndim == 2 else q.scale - 0.2)
        np.testing.assert_allclose(cholesky_factor(q, np), cholesky_factor(q), rtol=1e-12)


def test_a_fit_that_does_not_converge_says_so_and_what_to_try():
    model = ppl.compile(MODEL)
    with pytest.warns(ppl.ModelWarning, match="did not converge in 100 iterations.*learning rate.*pathfinder"):
        post = model.vi(make_data(), max_iter=100, draws=10, seed=0)
    assert not post.meta["converged"] and post.meta["iterations"] == 100


def test_elbo_trace_and_stopping_rule(fits):
    from ppl.inference.vi import relative_change, stan_converged
    meta = fits["meanfield"].meta
    its = [i for i, _ in meta["elbo"]]
    assert its[0] == 0 and all(b - a == 100 for a, b in zip(its, its[1:])) and its[-1] == meta["iterations"]
    assert meta["elbo"][-1][1] > meta["elbo"][0][1]
    assert relative_change(-100.0, -99.0) == pytest.approx(1 / 99)
    assert stan_converged([0.5, 0.005, 0.004], 0.01) and not stan_converged([0.5, 0.02, 0.005], 0.01)


def test_cli_vi_writes_draws(tmp_path, capsys):
    gm, data, out = tmp_path / "m.gm", tmp_path / "d.json", tmp_path / "vi.csv"
    gm.write_text(MODEL)
    d = make_data()
    data.write_text(json.dumps({"x": d["x"].tolist(), "y": d["y"].tolist(), "sigma": 1.0}))
    assert main(["vi", str(gm), "--data", str(data), "--draws", "200", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "meanfield ADVI: converged" in captured.err and "alpha" in captured.out
    assert load(str(out))["beta"].shape == (1, 200)
