"""The starting-point search (Stan's: uniform(-2, 2) on the unconstrained space, retried until
finite; each chain from the most probable of its first four finite points) evaluates its
candidates a few tries at a time: the choice must be the one the whole batch of tries gives."""
import jax
import numpy as np

import ppl
from ppl.inference.rng import stream

# `s` is a scale that may be negative: about half the candidates have no finite density, so the
# search needs several rounds before every chain has four finite points
MODEL = """
mu ~ normal(0, 1)
s ~ normal(0, 1)
y ~ normal(mu, s)
"""


def _reference(model, lw, arrays, seq, chains, tries=100, best_of=4):
    """The rule applied to every candidate at once."""
    cand = np.random.default_rng(seq).uniform(-2.0, 2.0, (tries, chains, lw.dim))
    f = jax.jit(jax.vmap(jax.value_and_grad(lw.log_density), in_axes=(0, None)))
    lp, grad = jax.device_get(f(cand.reshape(tries * chains, lw.dim), arrays))
    lp, grad = np.asarray(lp).reshape(tries, chains), np.asarray(grad).reshape(tries, chains, lw.dim)
    ok = np.isfinite(lp) & np.all(np.isfinite(grad), axis=-1)
    chosen = []
    for c in range(chains):
        rows = np.nonzero(ok[:, c])[0][:best_of]
        chosen.append(rows[np.argmax(lp[rows, c])])
    return np.array([cand[t, c] for c, t in enumerate(chosen)]), ok


def test_the_search_in_rounds_chooses_as_the_whole_search_would():
    model = ppl.compile(MODEL)
    lw = model.bind({"y": 0.3})
    arrays = lw.arrays()
    for seed in range(3):
        expected, ok = _reference(model, lw, arrays, stream(seed, 1), chains=4)
        assert (~ok[:4]).any(), "the model should reject some of the first candidates"
        found, _ = model._initial_points(lw, arrays, stream(seed, 1), 4, values=True)
        np.testing.assert_array_equal(found.position, expected)
        lp, grad = jax.vmap(jax.value_and_grad(lw.log_density), in_axes=(0, None))(expected, arrays)
        np.testing.assert_allclose(found.logdensity, lp, rtol=1e-12)
        np.testing.assert_allclose(found.grad, grad, rtol=1e-12)
