"""The samplers' counter-based keys (ppl.inference.rng.sampler_key): split and fold_in move a
counter under the chain's threefry key, random bits are Threefry outputs of distinct counters.
Derived keys must not repeat, and the numbers drawn must look uniform and independent."""
import jax
import jax.numpy as jnp
import numpy as np

from ppl.inference.rng import sampler_key

KEY = sampler_key(jnp.array([7, 11], jnp.uint32))


def _counters(keys):
    data = np.asarray(jax.random.key_data(keys))
    return {tuple(row) for row in data.reshape(-1, 4)[:, 2:]}


def test_derived_keys_do_not_repeat():
    children = jax.random.split(KEY, 4096)
    folded = jax.vmap(lambda i: jax.random.fold_in(KEY, i))(jnp.arange(4096))
    grand = jax.vmap(lambda k: jax.random.split(k, 8))(children[:512])
    c, f, g = _counters(children), _counters(folded), _counters(grand)
    assert len(c) == 4096 and len(f) == 4096 and len(g) == 512 * 8
    assert not (c & f) and not (c & g) and not (f & g)
    # the chain's own threefry key is kept; another chain's key gives other numbers
    assert np.all(np.asarray(jax.random.key_data(children))[:, :2] == [7, 11])
    other = sampler_key(jnp.array([7, 12], jnp.uint32))
    assert not np.array_equal(jax.random.bits(KEY, (8,)), jax.random.bits(other, (8,)))


def test_uniforms_look_uniform_and_independent():
    n = 200_000
    u = np.asarray(jax.random.uniform(jax.random.fold_in(KEY, 3), (n,)))
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 4 * np.sqrt(1 / 180 / n)      # var of (u - 1/2)^2 is 1/180
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 4 / np.sqrt(n)
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    assert ((counts - n / 20) ** 2 / (n / 20)).sum() < 19 + 4 * np.sqrt(2 * 19)    # chi-square, 19 df
    # one number from each of many sibling keys (as a sampler draws them), and neighbours' pairs
    first = np.asarray(jax.vmap(lambda k: jax.random.uniform(k))(jax.random.split(KEY, 20_000)))
    assert abs(first.mean() - 0.5) < 4 * np.sqrt(1 / 12 / first.size)
    assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 4 / np.sqrt(first.size)


def test_bits_of_every_width_and_normals():
    for dtype in (jnp.uint8, jnp.uint16, jnp.uint32, jnp.uint64):
        b = np.asarray(jax.random.bits(KEY, (3, 5), dtype))
        assert b.shape == (3, 5) and b.dtype == dtype and len(np.unique(b)) > 1
    wide = np.asarray(jax.random.bits(KEY, (1000,), jnp.uint64))
    assert (wide >> 32).any() and (wide & 0xFFFFFFFF).any()
    z = np.asarray(jax.random.normal(KEY, (100_000,)))
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.var() - 1) < 4 * np.sqrt(2 / z.size)
    np.testing.assert_array_equal(z, np.asarray(jax.random.normal(KEY, (100_000,))))   # the same key, the same draws


def test_bits_are_jax_threefry_of_the_counters():
    """The straight-line Threefry-2x32 is JAX's own, word for word: the bits of a key with counter
    (c0, c1) are threefry_2x32(key, [c0, ..., c0, c1, c1 + 1, ...]), as Random123 counts."""
    from jax.extend.random import threefry_2x32
    key = jax.random.fold_in(jax.random.split(KEY, 3)[2], 5)     # a counter far from zero
    k0, k1, c0, c1 = (jnp.uint32(w) for w in np.asarray(jax.random.key_data(key)))
    for size in (1, 2, 7, 1000):
        pairs = -(-size // 2)
        count = jnp.concatenate([jnp.full((pairs,), c0), c1 + jnp.arange(pairs, dtype=jnp.uint32)])
        expected = np.asarray(threefry_2x32((k0, k1), count))[:size]
        np.testing.assert_array_equal(np.asarray(jax.random.bits(key, (size,), jnp.uint32)), expected)
        np.testing.assert_array_equal(np.asarray(jax.random.bits(key, (size,), jnp.uint8)), expected.astype(np.uint8))
