"""ppl.numerics: softplus and log-sigmoid written to share one exp between value and gradient,
checked against scipy in value and derivative across the whole real line (0 and far tails included)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root, if not installed

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps

import ppl  # noqa: F401  (enables float64)
from ppl.numerics import log1p_exp, log_sigmoid, log_sigmoid_pair

X = np.concatenate([[-1000.0, -745.0, -40.0, -1e-12, 0.0, 1e-12, 40.0, 745.0, 1000.0],
                    np.random.default_rng(0).normal(0.0, 5.0, 200)])

CASES = [
    ("log1p_exp", log1p_exp, lambda x: np.logaddexp(0.0, x), sps.expit),
    ("log_sigmoid", log_sigmoid, sps.log_expit, lambda x: sps.expit(-x)),
    ("log_sigmoid_pair[0]", lambda x: log_sigmoid_pair(x)[0], sps.log_expit, lambda x: sps.expit(-x)),
    ("log_sigmoid_pair[1]", lambda x: log_sigmoid_pair(x)[1], lambda x: sps.log_expit(-x), lambda x: -sps.expit(x)),
]


@pytest.mark.parametrize("name,f,value,deriv", CASES, ids=[c[0] for c in CASES])
def test_value_and_derivative_match_scipy(name, f, value, deriv):
    x = jnp.asarray(X)
    np.testing.assert_allclose(np.asarray(f(x)), value(X), rtol=1e-13, atol=1e-300)
    g = jax.vmap(jax.grad(f))(x)
    np.testing.assert_allclose(np.asarray(g), deriv(X), rtol=1e-13, atol=1e-300)


SECOND = [  # f'' for each function: the logistic density s(x) s(-x), with its sign
    ("log1p_exp", log1p_exp, 1.0),
    ("log_sigmoid", log_sigmoid, -1.0),
    ("log_sigmoid_pair[0]", lambda x: log_sigmoid_pair(x)[0], -1.0),
    ("log_sigmoid_pair[1]", lambda x: log_sigmoid_pair(x)[1], -1.0),
]


@pytest.mark.parametrize("name,f,sign", SECOND, ids=[c[0] for c in SECOND])
def test_second_derivative_is_the_logistic_density(name, f, sign):
    """ppl optimize takes Hessians: the curvature must be right everywhere, x = 0 included."""
    h = jax.vmap(jax.grad(jax.grad(f)))(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(h), sign * sps.expit(X) * sps.expit(-X), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("shape,axis,dtype", [((1000, 3), -1, np.float64), ((7, 130, 5), -1, np.float64),
                                              ((4, 333), 0, np.float64), ((200, 3), -1, np.float32),
                                              ((50, 200), -1, np.float64)])
def test_sum_logsumexp_matches_scipy_in_value_gradient_and_hessian(shape, axis, dtype):
    """The summed log-sum-exp (one log per group of terms) against scipy's, with its gradient (the
    softmax) and a Hessian-vector product against jax's own logsumexp, at spreads wide enough that
    a term's exponentials span hundreds of orders of magnitude."""
    from ppl.numerics import sum_logsumexp
    rng = np.random.default_rng(len(shape) + shape[-1])
    a = (rng.normal(0.0, 30.0, shape) + rng.normal(0.0, 300.0, shape[:1] + (1,) * (len(shape) - 1))).astype(dtype)
    ref = np.sum(sps.logsumexp(a.astype(np.float64), axis=axis))
    tol = 1e-13 if dtype == np.float64 else 1e-5
    got = sum_logsumexp(jnp.asarray(a), axis)
    assert got.dtype == dtype
    np.testing.assert_allclose(float(got), ref, rtol=tol)
    soft = np.exp(a - sps.logsumexp(a.astype(np.float64), axis=axis, keepdims=True))
    np.testing.assert_allclose(np.asarray(jax.grad(sum_logsumexp)(jnp.asarray(a), axis)), soft, rtol=tol * 100,
                               atol=tol)
    if dtype == np.float64:
        v = jnp.asarray(rng.normal(size=shape))
        plain = lambda x: jnp.sum(jax.scipy.special.logsumexp(x, axis=axis))  # noqa: E731
        hvp = lambda f: jax.jvp(jax.grad(f), (jnp.asarray(a),), (v,))[1]  # noqa: E731
        np.testing.assert_allclose(np.asarray(hvp(lambda x: sum_logsumexp(x, axis))), np.asarray(hvp(plain)),
                                   rtol=1e-10, atol=1e-12)


def test_sum_logsumexp_at_infinities_and_empty_sums():
    """-inf everywhere in a term gives -inf (a zero-probability observation), as logsumexp does;
    +inf gives +inf; nan propagates; an empty axis sums to -inf per term."""
    from ppl.numerics import sum_logsumexp
    ninf = -np.inf
    assert float(sum_logsumexp(jnp.array([[0.0, 1.0], [ninf, ninf]]))) == ninf
    assert float(sum_logsumexp(jnp.array([[0.0, 1.0], [ninf, 2.0]]))) == pytest.approx(
        float(np.sum(sps.logsumexp([[0.0, 1.0], [ninf, 2.0]], axis=-1))), rel=1e-14)
    assert float(sum_logsumexp(jnp.array([[0.0, np.inf]]))) == np.inf
    assert np.isnan(float(sum_logsumexp(jnp.array([[0.0, np.nan], [1.0, 2.0]]))))
    assert float(sum_logsumexp(jnp.zeros((3, 0)))) == ninf
