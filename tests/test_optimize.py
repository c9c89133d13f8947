"""MAP and maximum likelihood against closed forms: least squares, a flat-prior MAP, a Laplace sd,
and the train-then-generate flow through the command line."""
import json

import numpy as np
import pytest

import ppl
from ppl.cli import main

REGRESSION = """
data x: real[N]
alpha: real
beta: real
sigma: real<lower=0>
mu = alpha + beta * x
y ~ normal(mu, sigma)
"""


@pytest.fixture(scope="module")
def reg():
    rng = np.random.default_rng(1)
    x = rng.uniform(2, 6, 50)
    y = 1.0 + 0.5 * x + rng.normal(size=50)
    X = np.column_stack([np.ones_like(x), x])
    coef, rss, *_ = np.linalg.lstsq(X, y, rcond=None)
    return ppl.compile(REGRESSION), {"x": x, "y": y}, np.r_[coef, np.sqrt(rss[0] / len(y))]


def _est(res):
    return np.array([res["alpha"], res["beta"], res["sigma"]])


def test_mle_is_least_squares(reg):
    model, data, ls = reg
    res = model.optimize(data, mle=True, restarts=3, seed=2)     # the MAP test below reuses this program
    assert res.converged and res.mle and res.sd is None
    np.testing.assert_allclose(_est(res), ls, rtol=0, atol=1e-5)
    np.testing.assert_allclose(res["mu"], ls[0] + ls[1] * data["x"], atol=1e-5)   # deterministic nodes too
    n = len(data["y"])
    assert res.log_density == pytest.approx(-0.5 * n * (np.log(2 * np.pi * ls[2] ** 2) + 1), abs=1e-8)


def test_flat_prior_map_equals_mle_and_restarts_agree(reg):
    model, data, ls = reg
    res = model.optimize(data, restarts=3, seed=2)
    assert res.converged and not res.mle
    np.testing.assert_allclose(_est(res), ls, atol=1e-5)
    assert all(ok for _, ok, _ in res.restarts) and np.ptp([lp for lp, _, _ in res.restarts]) < 1e-8
    assert set(res.sd) == {"alpha", "beta", "sigma", "mu"}
    text = str(res)
    assert "MAP estimate" in text and "beta" in text and "sd (Laplace)" in text


def test_adam_gets_close(reg):
    model, data, ls = reg
    res = model.optimize(data, method="adam", mle=True)
    assert res.converged and res.method == "adam"
    np.testing.assert_allclose(_est(res), ls, atol=1e-3)        # looser than L-BFGS's 1e-5


NORMAL = """
mu ~ normal(1, 2)
y: real[N] ~ normal(mu, 1.5)
"""
Y = np.array([2.1, 0.3, 1.7, 3.2, 2.4, 1.1, 0.9, 2.8])


@pytest.fixture(scope="module")
def normal_fit():
    return ppl.compile(NORMAL).optimize({"y": Y}, laplace_draws=4000)


def test_laplace_sd_of_normal_normal(normal_fit):
    prec = 1 / 2 ** 2 + len(Y) / 1.5 ** 2
    mean, sd = (1 / 2 ** 2 + Y.sum() / 1.5 ** 2) / prec, prec ** -0.5
    res = normal_fit
    assert res["mu"] == pytest.approx(mean, abs=1e-7)
    assert res.cov[0, 0] == pytest.approx(sd ** 2, rel=1e-8)          # inverse Hessian: exact
    # the reported sd comes from 4000 draws: standard error sd / sqrt(2 * 4000), 4 of them allowed
    assert abs(res.sd["mu"] - sd) < 4 * sd / np.sqrt(2 * 4000)
    assert res.laplace["mu"].shape == (1, 4000)


def test_laplace_draws_come_from_the_hessians_factor():
    from ppl.inference.optimize import laplace_draws_from, laplace_factor
    a = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]])
    factor, why = laplace_factor(lambda u: 0.5 * u @ (a @ u), np.zeros(3))
    assert why == "" and np.allclose(factor @ factor.T, a)

    class Columns:      # "draws" at z = the unit vectors: their outer products sum to the covariance
        def standard_normal(self, shape):
            return np.eye(shape[1])[: shape[0]]

    x = laplace_draws_from(np.zeros(3), factor, 3, Columns())
    np.testing.assert_allclose(x.T @ x, np.linalg.inv(a), rtol=1e-12, atol=1e-14)


def test_a_degenerate_or_saddle_optimum_has_no_laplace_sd_and_says_why():
    from ppl.inference.optimize import laplace_factor
    # a collapsing scale: curvature 1 along one axis, 1e-30 along the other (the inverse would be
    # rounding error; before, numpy's multivariate_normal raised LinAlgError on such a mixture MAP)
    factor, why = laplace_factor(lambda u: 0.5 * (u[0] ** 2 + 1e-30 * u[1] ** 2), np.zeros(2))
    assert factor is None and "ill-conditioned" in why and "degenerate" in why
    factor, why = laplace_factor(lambda u: 0.5 * (u[0] ** 2 - u[1] ** 2), np.zeros(2))
    assert factor is None and "not positive definite" in why


def test_fit_json_holds_parameters_and_inputs(reg, tmp_path):
    model, data, ls = reg
    res = model.optimize(data, mle=True, restarts=3, seed=2)
    assert set(res.to_dict()) == {"x", "N", "alpha", "beta", "sigma"}     # no y, no deterministic mu
    path = tmp_path / "fit.json"
    res.to_json(path)
    back = ppl.load_data(str(path))
    np.testing.assert_array_equal(back["x"], data["x"])
    assert back["alpha"] == res["alpha"] and back["N"] == 50            # floats round-trip exactly
    assert set(model.roles(back).values()) == {"data", "transformed data", "generated"}


def test_train_then_generate_through_the_cli(normal_fit, tmp_path, capsys):
    gm, data, fit, gen = (tmp_path / n for n in ("m.gm", "d.json", "fit.json", "gen.csv"))
    gm.write_text(NORMAL)
    data.write_text(json.dumps({"y": Y.tolist()}))
    assert main(["optimize", str(gm), "--data", str(data), "-o", str(fit)]) == 0
    out = capsys.readouterr()
    assert "MAP estimate" in out.out and "sd (Laplace)" in out.out and "wrote" in out.err
    written = json.loads(fit.read_text())
    assert written == {"N": 8, "mu": pytest.approx(normal_fit["mu"], abs=1e-9)}
    # -o JSON is accepted by --data: simulate new y from the fitted model, without warnings
    assert main(["prior", str(gm), "--data", str(fit), "--draws", "1000", "--seed", "1", "-o", str(gen)]) == 0
    out = capsys.readouterr()
    assert "warning" not in out.err
    from ppl.results import load
    y = load(str(gen))["y"]
    assert y.shape == (1, 1000, 8)
    # 8000 draws of N(mu, 1.5): mean and sd within 4 standard errors
    assert abs(y.mean() - written["mu"]) < 4 * 1.5 / np.sqrt(y.size)
    assert abs(y.std() - 1.5) < 4 * 1.5 / np.sqrt(2 * y.size)
