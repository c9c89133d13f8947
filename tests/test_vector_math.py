"""ppl.vector_math: float64 log1p(e) on [0, 1] as a vectorisable polynomial on CPU, checked
against numpy's long double over its whole domain, compiled (XLA must not rewrite the range
reduction away) and eager, with its derivatives, its edge cases and the switch that turns it off."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root, if not installed

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl  # noqa: F401  (enables float64)
from ppl.numerics import log1p_exp
from ppl.vector_math import log1p_unit, polynomial_path

ULP = np.finfo(np.float64).eps
RNG = np.random.default_rng(0)
E = np.concatenate([[0.0, 1e-300, 1e-20, 1e-16, np.sqrt(2) - 1, np.nextafter(np.sqrt(2) - 1, 1), 0.5, 1.0],
                    RNG.uniform(0.0, 1.0, 20000), np.exp(-RNG.uniform(0.0, 700.0, 20000))])

MODES = {"jit": jax.jit, "eager": lambda f: f}


def test_the_polynomials_are_used_for_float64_on_cpu_only():
    # (an accelerator's own log1p is vectorised: there the polynomial is not used)
    assert polynomial_path(jnp.zeros(3)) == (jax.default_backend() == "cpu")
    assert not polynomial_path(jnp.zeros(3, jnp.float32))


@pytest.mark.parametrize("mode", MODES)
def test_log1p_unit_within_three_ulp(mode):
    got = np.asarray(MODES[mode](log1p_unit)(jnp.asarray(E)))
    exact = np.log1p(E.astype(np.longdouble))
    pos = exact > 0
    rel = np.abs(got[pos] - exact[pos]) / exact[pos]
    assert rel.max() <= 3.0 * ULP, rel.max() / ULP
    assert np.all(got[~pos] == 0.0)


def test_edge_values():
    g = jax.jit(log1p_unit)
    assert float(g(0.0)) == 0.0 and float(g(1.0)) == np.log(2.0) and np.isnan(float(g(jnp.nan)))


def test_derivatives_are_exact_to_second_order():
    e = jnp.asarray(E[:2000])
    l1 = jax.jit(jax.vmap(jax.grad(log1p_unit)))(e)
    l2 = jax.jit(jax.vmap(jax.grad(jax.grad(log1p_unit))))(e)
    np.testing.assert_allclose(np.asarray(l1), 1.0 / (1.0 + E[:2000]), rtol=4 * ULP)
    np.testing.assert_allclose(np.asarray(l2), -1.0 / (1.0 + E[:2000]) ** 2, rtol=8 * ULP)


def test_float32_uses_xla_log1p():
    e = jnp.asarray(E[:1000], jnp.float32)
    np.testing.assert_array_equal(np.asarray(jax.jit(log1p_unit)(e)), np.asarray(jax.jit(jnp.log1p)(e)))


def test_switch_turns_the_polynomial_off(monkeypatch):
    """PPL_VECTOR_MATH=0 traces XLA's log1p instead; softplus agrees either way."""
    x = jnp.asarray(np.random.default_rng(1).normal(0.0, 5.0, 500))
    on = np.asarray(jax.jit(log1p_exp)(x))
    monkeypatch.setenv("PPL_VECTOR_MATH", "0")
    assert not polynomial_path(x)
    off = np.asarray(jax.jit(lambda v: log1p_exp(v))(x))    # a new function: traced again
    np.testing.assert_allclose(on, off, rtol=4 * ULP)
