"""Tests for ppl.constraints: supports, bijectors, Jacobians, narrowing."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root, if not installed

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl  # noqa: F401  (enables x64)
from ppl import constraints as C

RNG = np.random.default_rng(0)

ELEMENTWISE = {
    "real": C.real,
    "positive": C.positive,
    "lower": C.lower(-2.0),
    "upper": C.upper(3.0),
    "interval": C.interval(-1.0, 2.5),
    "unit_interval": C.unit_interval,
    "lower_array": C.lower(np.array([-1.0, 0.0, 4.0])),
    "upper_array": C.upper(np.array([[1.0], [-3.0]])),
    "interval_array": C.interval(np.array([-1.0, 0.0, 2.0]), np.array([0.0, 5.0, 2.5])),
}


def _log_abs_det(f, u, out_index=None):
    """log|det J| of the flattened map u -> f(u)[out_index], via jacfwd + slogdet."""
    def flat(v):
        y = f(v.reshape(u.shape))
        y = y if out_index is None else y[out_index]
        return y.reshape(-1)

    jac = jax.jacfwd(flat)(u.reshape(-1))
    sign, logdet = jnp.linalg.slogdet(jac)
    return jnp.where(sign != 0, logdet, jnp.nan)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_roundtrip_support_and_jacobian(name):
    c = ELEMENTWISE[name]
    b = C.bijector(c)

    @jax.jit
    def report(u):
        x = b.forward(u)
        return dict(x=x, ok=c.check(x), back=b.inverse(x), again=b.forward(b.inverse(x)),
                    ldj=b.log_det_jacobian(u), ref=_log_abs_det(b.forward, u))

    u = jnp.asarray(RNG.normal(size=(2, 3)) * 2.0)
    r = report(u)
    assert r["x"].shape == (2, 3)
    assert bool(jnp.all(r["ok"]))
    np.testing.assert_allclose(r["back"], u, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r["again"], r["x"], rtol=1e-12, atol=1e-12)
    assert r["ldj"].shape == ()
    np.testing.assert_allclose(r["ldj"], r["ref"], rtol=1e-9, atol=1e-9)
    assert b.unconstrained_shape((2, 3)) == (2, 3)


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (-3.0, 7.0), (1e3, 1e3 + 1e-3)])
def test_interval_points_in_support_roundtrip(a, b):
    c = C.interval(a, b)
    bij = C.bijector(c)
    x = jnp.asarray(a + (b - a) * RNG.uniform(0.01, 0.99, size=50))
    again, ext_ok = jax.jit(lambda x, e: (bij.forward(bij.inverse(x)), c.check(bij.forward(e))))(
        x, jnp.array([-800.0, -40.0, 40.0, 800.0]))
    np.testing.assert_allclose(again, x, rtol=1e-12)
    assert bool(jnp.all(ext_ok))  # extreme u stays inside the closed interval despite rounding


def _structured_cases():
    k = 4
    return {
        "simplex": (C.simplex, (k - 1,), (k,), (Ellipsis, slice(0, k - 1))),
        "ordered": (C.ordered, (k,), (k,), None),
        "positive_ordered": (C.positive_ordered, (k,), (k,), None),
        "corr_cholesky": (C.corr_cholesky, (k * (k - 1) // 2,), (k, k), np.tril_indices(k, -1)),
        "cov_matrix": (C.cov_matrix, (k + k * (k - 1) // 2,), (k, k), np.tril_indices(k)),
    }


@pytest.mark.parametrize("name", sorted(_structured_cases()))
def test_structured_roundtrip_support_and_jacobian(name):
    c, ushape, xshape, free = _structured_cases()[name]
    b = C.bijector(c)
    assert b.unconstrained_shape(xshape) == ushape
    assert b.unconstrained_shape((5,) + xshape) == (5,) + ushape

    @jax.jit
    @jax.vmap
    def report(u):
        x = b.forward(u)
        return dict(x=x, ok=c.check(x), back=b.inverse(x), again=b.forward(b.inverse(x)),
                    ldj=b.log_det_jacobian(u), ref=_log_abs_det(b.forward, u, free))

    u = jnp.asarray(RNG.normal(size=(4,) + ushape))
    r = report(u)
    assert r["x"].shape == (4,) + xshape
    assert bool(jnp.all(r["ok"]))
    np.testing.assert_allclose(r["back"], u, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(r["again"], r["x"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r["ldj"], r["ref"], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", sorted(_structured_cases()))
def test_structured_batched(name):
    c, ushape, xshape, _ = _structured_cases()[name]
    b = C.bijector(c)

    @jax.jit
    def report(u):
        x = b.forward(u)
        flat = u.reshape((6,) + ushape)
        per_event = jax.vmap(b.log_det_jacobian)(flat)
        return dict(x=x, ok=c.check(x), ldj=b.log_det_jacobian(u), per_event=jnp.sum(per_event),
                    back=b.inverse(x), vm=jax.vmap(b.forward)(flat).reshape(x.shape))

    u = jnp.asarray(RNG.normal(size=(2, 3) + ushape))
    r = report(u)
    assert r["x"].shape == (2, 3) + xshape
    assert r["ok"].shape == (2, 3) and bool(jnp.all(r["ok"]))
    np.testing.assert_allclose(r["ldj"], r["per_event"], rtol=1e-10)
    np.testing.assert_allclose(r["back"], u, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(r["vm"], r["x"], rtol=1e-12)


def test_stan_reference_points():
    fwd = {k: C.bijector(c).forward for k, c in
           dict(simplex=C.simplex, corr=C.corr_cholesky, cov=C.cov_matrix, ordered=C.ordered,
                pordered=C.positive_ordered, unit=C.unit_interval, pos=C.positive).items()}

    @jax.jit
    def report():
        return dict(
            simplex=fwd["simplex"](jnp.zeros(4)), corr=fwd["corr"](jnp.zeros(3)), cov=fwd["cov"](jnp.zeros(6)),
            ordered=fwd["ordered"](jnp.zeros(3)), pordered=fwd["pordered"](jnp.zeros(3)),
            unit=fwd["unit"](jnp.array(0.0)), unit_ldj=C.bijector(C.unit_interval).log_det_jacobian(jnp.array(0.0)),
            pos=fwd["pos"](jnp.array(0.0)), L=fwd["corr"](jnp.array([0.3, -0.5, 1.2])),
            S=fwd["cov"](jnp.array([np.log(2.0), 0.5, np.log(3.0)])))

    r = report()
    # u = 0 maps to the uniform simplex / identity matrices / midpoint, as in Stan.
    np.testing.assert_allclose(r["simplex"], np.full(5, 0.2), rtol=1e-12)
    np.testing.assert_allclose(r["corr"], np.eye(3), atol=1e-15)
    np.testing.assert_allclose(r["cov"], np.eye(3), atol=1e-15)
    np.testing.assert_allclose(r["ordered"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(r["pordered"], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(r["unit"], 0.5)
    np.testing.assert_allclose(r["unit_ldj"], np.log(0.25))
    np.testing.assert_allclose(r["pos"], 1.0)
    # corr_cholesky: strictly-lower CPCs in row-major order, first column is tanh(y)
    L = r["L"]
    np.testing.assert_allclose([L[1, 0], L[2, 0]], np.tanh([0.3, -0.5]))
    np.testing.assert_allclose(L[2, 1], np.tanh(1.2) * np.sqrt(1 - np.tanh(-0.5) ** 2))
    # cov_matrix: row-major lower triangle, diagonal on the log scale
    np.testing.assert_allclose(r["S"], np.array([[4.0, 1.0], [1.0, 9.25]]), rtol=1e-12)


def test_array_bounds_broadcast_against_value():
    lo = jnp.array([0.0, 10.0, -5.0])
    hi = lo + jnp.array([1.0, 2.0, 3.0])
    b = C.bijector(C.interval(lo, hi))
    u = jnp.asarray(RNG.normal(size=(4, 3)))
    x, ldj, ref = jax.jit(lambda u: (b.forward(u), b.log_det_jacobian(u), _log_abs_det(b.forward, u)))(u)
    assert x.shape == (4, 3)
    assert bool(np.all((x >= lo) & (x <= hi)))
    un = np.asarray(u)
    expected = np.sum(np.log(np.asarray(hi - lo)) - np.logaddexp(0, -un) - np.logaddexp(0, un))
    np.testing.assert_allclose(ldj, expected, rtol=1e-10)
    np.testing.assert_allclose(ldj, ref, rtol=1e-9)


def test_traced_bounds_jit_vmap_grad():
    def logp(u, a, width):
        b = C.bijector(C.interval(a, a + width))
        x = b.forward(u)
        return jnp.sum(-0.5 * x ** 2) + b.log_det_jacobian(u)

    structured = [C.bijector(c) for c in (C.simplex, C.corr_cholesky, C.cov_matrix, C.ordered, C.positive_ordered)]

    @jax.jit
    def report(u, a, width):
        return dict(
            val=logp(u, a, width), grads=jax.grad(logp, argnums=(0, 1, 2))(u, a, width),
            batched=jax.vmap(logp, in_axes=(None, 0, None))(u, jnp.array([0.0, a]), width),
            structured=[jax.grad(lambda v: jnp.sum(b.forward(v) ** 2) + b.log_det_jacobian(v))(jnp.full(6, 0.3))
                        for b in structured])

    r = report(jnp.array([0.1, -2.0, 3.0]), 1.0, 2.0)
    assert np.isfinite(r["val"])
    assert all(bool(np.all(np.isfinite(g))) for g in r["grads"])
    np.testing.assert_allclose(r["batched"][1], r["val"])
    assert all(bool(np.all(np.isfinite(g))) for g in r["structured"])


def test_check_membership():
    cases = [
        (C.simplex, [0.2, 0.3, 0.5], True),
        (C.simplex, [0.2, 0.3, 0.6], False),
        (C.simplex, [-0.1, 0.6, 0.5], False),
        (C.ordered, [[0.0, 1.0], [1.0, 1.0]], [True, False]),
        (C.positive_ordered, [-1.0, 2.0], False),
        (C.corr_cholesky, [[1.0, 0.0], [0.9, 0.9]], False),
        (C.corr_cholesky, [[1.0, 0.1], [0.0, 1.0]], False),
        (C.corr_cholesky, [[1.0, 0.0], [0.6, 0.8]], True),
        (C.cov_matrix, [[2.0, 0.5], [0.5, 1.0]], True),
        (C.cov_matrix, [[1.0, 2.0], [2.0, 1.0]], False),  # not positive definite
        (C.cov_matrix, [[1.0, 0.1], [0.0, 1.0]], False),  # not symmetric
        (C.positive, [-1.0, 0.0, 2.0], [False, True, True]),
        (C.interval(0, 1), [-0.1, 0.5, 1.1], [False, True, False]),
        (C.upper(jnp.array([0.0, 5.0])), [1.0, 1.0], [False, True]),
        (C.real, [np.nan, np.inf, 1.0], [False, True, True]),
        (C.integer, [1.0, 1.5, -3.0], [True, False, True]),
        (C.nonnegative_integer, np.array([-1, 0, 7]), [False, True, True]),
        (C.boolean, np.array([0, 1, 2]), [True, True, False]),
        (C.integer_interval(1, 3), np.array([0, 1, 3, 4]), [False, True, True, False]),
        (C.Constraint("nonnegative_integer", lower=0, event_dim=1), np.array([[0, 2], [1, -1]]), [True, False]),
        (C.Constraint("real", event_dim=1), np.array([[0.0, 2.0], [np.nan, 1.0]]), [True, False]),
    ]
    got = jax.jit(lambda xs: [c.check(x) for (c, _, _), x in zip(cases, xs)])([jnp.asarray(x) for _, x, _ in cases])
    for (c, x, want), g in zip(cases, got):
        np.testing.assert_array_equal(g, want, err_msg=f"{c.kind} {x}")
    # concrete values (data, when a model is bound) take the numpy path: same answers, numpy out
    for c, x, want in cases:
        g = c.check(np.asarray(x))
        assert isinstance(g, (np.ndarray, np.bool_)), (c.kind, type(g))
        np.testing.assert_array_equal(g, want, err_msg=f"numpy path: {c.kind} {x}")


def test_discrete_flags_and_finite_values():
    assert C.integer.discrete and C.boolean.discrete and C.integer_interval(0, 2).discrete
    assert not C.real.discrete and not C.simplex.discrete
    np.testing.assert_array_equal(C.boolean.finite_values(), [0, 1])
    np.testing.assert_array_equal(C.integer_interval(2, 5).finite_values(), [2, 3, 4, 5])
    np.testing.assert_array_equal(C.integer_interval(0, np.array([1, 3])).finite_values(), [0, 1, 2, 3])
    assert C.integer.finite_values() is None
    assert C.nonnegative_integer.finite_values() is None
    assert C.real.finite_values() is None
    seen = []
    jax.jit(lambda n: seen.append(C.integer_interval(0, n).finite_values()) or n)(3)
    assert seen == [None]
    for c in (C.integer, C.nonnegative_integer, C.boolean, C.integer_interval(0, 3)):
        with pytest.raises(ValueError):
            C.bijector(c)


def test_narrow():
    c = C.narrow(C.positive, upper=5.0)
    assert c.kind == "interval" and c.lower == 0.0 and c.upper == 5.0
    c = C.narrow(C.real, lower=0.0)
    assert c.kind == "lower" and c.lower == 0.0
    np.testing.assert_allclose(C.bijector(c).forward(jnp.array(0.0)), 1.0)
    assert C.narrow(C.real, upper=2.0) == C.upper(2.0)
    assert C.narrow(C.real, lower=-1.0, upper=2.0) == C.interval(-1.0, 2.0)
    assert C.narrow(C.real) is C.real
    assert C.narrow(C.positive, lower=-3.0) == C.lower(0.0)
    assert C.narrow(C.positive, lower=2.0) == C.lower(2.0)
    assert C.narrow(C.lower(1.0), upper=4.0) == C.interval(1.0, 4.0)
    assert C.narrow(C.interval(0.0, 10.0), lower=2.0, upper=20.0) == C.interval(2.0, 10.0)
    assert C.narrow(C.unit_interval, upper=0.5) == C.interval(0.0, 0.5)
    assert C.narrow(C.real, lower=-np.inf, upper=np.inf) is C.real
    assert C.narrow(C.integer, lower=0, upper=3) == C.integer_interval(0, 3)
    assert C.narrow(C.nonnegative_integer, upper=4).kind == "integer_interval"
    assert C.narrow(C.integer, lower=0).kind == "nonnegative_integer"
    c = C.narrow(C.integer, lower=-2)
    assert c.discrete and not bool(c.check(-3)) and bool(c.check(-2))
    arr = C.narrow(C.positive, upper=np.array([1.0, 2.0]))
    assert arr.kind == "interval"
    np.testing.assert_array_equal(arr.upper, [1.0, 2.0])
    with pytest.raises(ValueError):
        C.narrow(C.simplex, lower=0.0)


def test_narrow_traced_bounds():
    def f(a):
        c = C.narrow(C.positive, lower=a, upper=a + 3.0)
        b = C.bijector(c)
        return b.forward(jnp.array(0.0)), c.lower

    x, lo = jax.jit(f)(-1.0)
    np.testing.assert_allclose(lo, 0.0)
    np.testing.assert_allclose(x, 1.0)  # interval(0, 2) at u = 0
