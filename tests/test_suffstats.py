"""Gaussian likelihoods linear in the parameters go through sufficient statistics
(ppl.suffstats): the rewritten log density and gradient equal the row-by-row ones, the rewrite
applies exactly where it is valid and pays, and new data of the same shapes get new statistics."""
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl

RNG = np.random.default_rng(7)
N, J, D = 400, 8, 3
G = RNG.integers(0, J, N)
X = RNG.normal(size=(N, D))
XV = RNG.normal(size=N)
S = RNG.uniform(0.5, 2.0, N)
Y = 0.3 + X @ np.array([1.0, -2.0, 0.5]) + RNG.normal(size=J)[G] * XV + RNG.normal(size=N)
DATA = dict(g=G, x=XV, X=X, s=S, y=Y, J=J)

HEAD = """
data J: int
data g: int[N]
data x: real[N]
data X: real[N, D]
data s: real[N]
alpha ~ normal(0, 1)
beta: real[D] ~ normal(0, 1)
a: real[J] ~ normal(0, 1)
b: real[J] ~ normal(0, 1)
sigma ~ half_normal(1)
tau: real[J] ~ half_normal(1)
"""

# (likelihood lines, expected description of the rewrite)
APPLIES = {
    "gathers and data sigma": ("y ~ normal(a[g] + b[g] * x, s)", "8 groups × 3 columns"),
    "matmul, offset, signs": ("y ~ normal(alpha - X @ beta + 2 * x - (-b[g]) * x * 3, sigma)", "8 groups × 6"),
    "inlined definitions": ("m = alpha + bx\nbx = b[g] * x\ny ~ normal(m, sigma)", "8 groups × 3"),
    "per-group sigma": ("y ~ normal(a[g] + alpha * x, tau[g])", "8 groups × 3"),
    "scale times data per row": ("y ~ normal(a[g] + b[g] * x, sigma * s / 2)", "8 groups × 3"),
    "per-group scale times data per row": ("y ~ normal(alpha * x + a[g], s * tau[g])", "8 groups × 3"),
    "declared data observed": ("data y: real[N]\ny ~ normal(alpha + X @ beta, sigma * 2)", "1 group × 5"),
    "vector times data matrix": ("data L: real[D, N]\ny ~ normal(alpha + beta @ L, sigma)", "1 group × 5"),
    # observations written as a loop, as in Stan or BUGS
    "loop with gathers": ("data y: real[N]\nfor i in range(0, N) {\n  y[i] ~ normal(a[g[i]] + b[g[i]] * x[i], s[i])\n}",
                          "8 groups × 3 columns"),
    "loop over a definition": ("data y: real[N]\nm = alpha + X @ beta\nfor i in range(0, N) {\n"
                               "  y[i] ~ normal(m[i] - 2 * x[i], sigma)\n}", "1 group × 5"),
    "loop over matrix rows": ("data y: real[N]\nfor i in range(0, N) {\n  y[i] ~ normal(alpha + X[i] @ beta, sigma)\n}",
                              "1 group × 5"),
    "loop over part of the rows": ("data y: real[N]\nfor i in range(10, N) {\n"
                                   "  y[i] ~ normal(a[g[i]] + exp(x[i]) * alpha / 2, sigma)\n}", "8 groups × 3"),
}
REFUSED = {
    "crossed indices": "data h: int[N]\ny ~ normal(a[g] + b[h], sigma)",
    "vector not gathered": "m: real[N] ~ normal(0, 1)\ny ~ normal(m, sigma)",
    "nonlinear": "y ~ normal(exp(alpha) * x + a[g] * a[g], sigma)",
    "parameter in sigma per row, not a factor": "y ~ normal(alpha, exp(alpha * x))",
    "two parameters in sigma": "y ~ normal(a[g], sigma * tau[g])",
    "not normal": "y ~ student_t(4, a[g], sigma)",
    "too few rows per group": "y ~ normal(alpha + X @ beta + b[g] * x, sigma)",
    "loop: not element-wise": "data y: real[N]\nfor i in range(0, N) {\n  y[i] ~ normal(alpha * sum(x[i]), sigma)\n}",
    "loop: index arithmetic": "data y: real[N]\nfor i in range(1, N) {\n  y[i] ~ normal(alpha * y[i - 1], sigma)\n}",
    "loop: variable as a value": "data y: real[N]\nfor i in range(0, N) {\n  y[i] ~ normal(alpha * i, sigma)\n}",
}


def _lowered(lines, data=DATA, **extra):
    model = ppl.compile(HEAD + lines)
    return model.bind({**data, **extra})


def _value_and_grad(lw, arrays, u):
    return jax.value_and_grad(lambda v: lw.log_density(v, arrays))(u)


@contextmanager
def _row_by_row(lw):
    """``lw`` without its rewrites for the duration (the data arguments stay as they are)."""
    plans = dict(lw.suffstats)
    lw.suffstats.clear()
    try:
        yield
    finally:
        lw.suffstats.update(plans)


def _compare(lw, points=3):
    """The rewritten density against the row-by-row one at random points."""
    arrays = lw.arrays()
    for k in range(points):
        u = jax.random.normal(jax.random.PRNGKey(k), (lw.dim,))
        v1, g1 = _value_and_grad(lw, arrays, u)
        with _row_by_row(lw):
            v2, g2 = _value_and_grad(lw, arrays, u)
        np.testing.assert_allclose(v1, v2, rtol=1e-11)
        np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", list(APPLIES))
def test_rewrite_equals_row_by_row_density(case):
    lines, described = APPLIES[case]
    lw = _lowered(lines, **({"L": X.T.copy()} if "data L" in lines else {}))
    assert len(lw.suffstats) == 1
    assert described in next(iter(lw.suffstats.values())).describe()
    _compare(lw)


def test_rewrite_follows_new_data_of_the_same_shapes():
    model = ppl.compile(HEAD + APPLIES["gathers and data sigma"][0])
    lw = model.bind(DATA)
    first = lw.arrays()["y::R"]
    lw2 = model.bind({**DATA, "y": Y[::-1].copy(), "g": G[::-1].copy()})
    assert lw2 is lw                                    # the compiled form is reused...
    assert not np.allclose(lw2.arrays()["y::R"], first)  # ...with the new data's statistics
    _compare(lw2)


@pytest.mark.parametrize("case", list(REFUSED))
def test_rewrite_refused_where_invalid_or_unprofitable(case):
    extra = {"h": RNG.integers(0, J, N)} if "h:" in REFUSED[case] else {}
    data = dict(DATA, X=RNG.normal(size=(N, 40)), D=40) if "few rows" in case else DATA
    lw = _lowered(REFUSED[case], data, **extra)
    assert lw.suffstats == {}


def test_switch_off(monkeypatch):
    monkeypatch.setenv("PPL_SUFFSTATS", "0")
    assert _lowered(APPLIES["gathers and data sigma"][0]).suffstats == {}


def test_summed_out_discrete_parent_keeps_row_by_row_density():
    lw = _lowered("k ~ bernoulli(0.5)\ny ~ normal(alpha + k * x, sigma)")
    assert "k" in lw.enumerated and lw.suffstats == {}


def test_accurate_when_the_data_dwarf_the_residuals():
    """QR of the rows, not their Gram matrix: y ~ 1e6 with unit residuals keeps the density
    (a Gram matrix would lose ~1e-16 * sum(y^2) = 0.1 nats here)."""
    y = 1e6 + 3.0 * XV + RNG.normal(size=N)
    lw = _lowered("y ~ normal(alpha * 1e6 + b[g] * x, sigma)", y=y)
    assert lw.suffstats
    arrays = lw.arrays()
    z = np.zeros(lw.dim)
    for slot in lw.slots:                                # alpha = 1, b = 3, sigma = 1 (log 0)
        if slot.name == "alpha":
            z[slot.offset] = 1.0
        if slot.name == "b":
            z[slot.offset:slot.offset + slot.size] = 3.0
    u = jnp.asarray(z)
    v1 = lw.log_density(u, arrays)
    with _row_by_row(lw):
        v2 = lw.log_density(u, arrays)
    assert abs(float(v1 - v2)) < 1e-6


def test_out_of_range_index_in_new_data_is_an_error():
    model = ppl.compile(HEAD + APPLIES["gathers and data sigma"][0])
    model.bind(DATA)
    bad = G.copy()
    bad[5] = J
    with pytest.raises(ppl.ModelError, match="out of range"):
        model.bind({**DATA, "g": bad}).arrays()


def test_check_reports_the_rewrite(tmp_path, capsys):
    import json
    from ppl.cli import main
    (tmp_path / "m.gm").write_text(HEAD + APPLIES["gathers and data sigma"][0])
    (tmp_path / "d.json").write_text(json.dumps({k: np.asarray(v).tolist() for k, v in DATA.items()}))
    main(["check", str(tmp_path / "m.gm"), "--data", str(tmp_path / "d.json")])
    assert "y: Gaussian likelihood through sufficient statistics: 8 groups × 3 columns instead of 400 rows" \
        in capsys.readouterr().out
    # an observed expression (here a loop of rows) is named by its line
    (tmp_path / "m.gm").write_text(HEAD + APPLIES["loop with gathers"][0])
    main(["check", str(tmp_path / "m.gm"), "--data", str(tmp_path / "d.json")])
    line = len(HEAD.splitlines()) + 3
    assert f"[line {line}]: Gaussian likelihood through sufficient statistics: 8 groups × 3 columns" \
        in capsys.readouterr().out


def test_group_factors_one_group_at_a_time_equal_the_batched_ones(monkeypatch):
    """Groups too uneven to pad into one batched QR are factored one by one: the same R (up
    to the sign of each row, which the sum of squares does not see)."""
    from ppl import suffstats
    v = RNG.normal(size=(N, 4))
    batched = suffstats._factor_groups(v, G, J + 2)           # two empty groups
    monkeypatch.setattr(suffstats, "_PAD_LIMIT", 0)
    looped = suffstats._factor_groups(v, G, J + 2)
    w = RNG.normal(size=(J + 2, 4))
    ss = [np.sum(np.einsum("jab,jb->ja", r, w) ** 2, axis=1) for r in (batched, looped)]
    direct = np.array([np.sum((v[G == j] @ w[j]) ** 2) for j in range(J + 2)])
    np.testing.assert_allclose(ss[0], direct, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ss[1], direct, rtol=1e-12, atol=1e-12)
