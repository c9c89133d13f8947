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
