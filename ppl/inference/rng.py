"""Random streams derived with numpy, so that no JAX program is compiled just to make or
split a key (``jax.random.uniform`` and ``split`` alone cost 0.1-0.9 s of a cold start)."""
from __future__ import annotations

import numpy as np

__all__ = ["stream", "raw_keys", "sampler_key"]


def stream(seed: int, purpose: int) -> np.random.SeedSequence:
    """The random stream of one use of ``seed`` (1: initial points, 2: the sampler, 3: generated
    quantities, 4: draws of an approximation, 5: ancestral simulation, 6: fitting an
    approximation).  In a run of several processes (``jax.distributed``) each process's stream
    also depends on its index, so the same seed on every host gives independent chains, not
    copies."""
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, purpose]
    process = _process_index()
    return np.random.SeedSequence(entropy + ([process] if process is not None else []))


def _process_index():
    """This process's index in a ``jax.distributed`` run of several processes, else None."""
    import jax
    return jax.process_index() if jax.process_count() > 1 else None


def raw_keys(seq: np.random.SeedSequence, n: int) -> np.ndarray:
    """``n`` raw threefry keys (uint32 pairs, what ``jax.random.PRNGKey`` makes) from ``seq``."""
    return seq.generate_state(2 * n, np.uint32).reshape(n, 2)


# ----------------------------------------------------------------------------- the samplers' keys
# JAX's threefry keys run the Threefry-2x32 block function (20 rounds, a loop on CPU) at every
# split and fold_in as well as for every random number: BlackJAX's NUTS derives keys at each
# leapfrog step and each doubling, and those derivations were about a fifth of a NUTS chunk's XLA
# compilation (eight schools 0.44 -> 0.36 s, logistic regression 0.62 -> 0.52 s with them cheap).
# Inside the sampler's transition a key is the chain's threefry key and a 64-bit counter: split
# and fold_in only move the counter (a few integer operations, injective for a given parent), and
# random bits are Threefry-2x32 of (counter, counter + i) under the chain's key, the counter-based
# construction of Salmon et al. (Random123, 2011). Every random number is still a full Threefry
# output; distinct derivations give distinct counters (siblings exactly, unrelated paths but for
# 2^-64 chances).

_SPLIT, _FOLD = 0x243F6A88, 0x85A308D3   # tags that keep split's and fold_in's counters apart


def _hash32(x):
    """A bijection of uint32 with full avalanche (Wellons' lowbias32)."""
    import jax.numpy as jnp
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _derive(key, data, tag: int):
    """``key`` (..., 4) with its counter moved by ``data`` (broadcast against key[..., 0])."""
    import jax.numpy as jnp
    d = jnp.asarray(data).astype(jnp.uint32)
    a = _hash32(key[..., 2] ^ _hash32(d ^ jnp.uint32(tag)))
    b = _hash32(key[..., 3] ^ a ^ jnp.uint32(tag))
    return jnp.stack([jnp.broadcast_to(key[..., 0], a.shape), jnp.broadcast_to(key[..., 1], a.shape), a, b], axis=-1)


def _split(key, shape):
    import jax.numpy as jnp
    n = int(np.prod(shape)) if shape else 1
    return _derive(key, jnp.arange(n, dtype=jnp.uint32), _SPLIT).reshape(tuple(shape) + (4,))


def _fold_in(key, data):
    return _derive(key, data, _FOLD)


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))   # Threefry-2x32's rotations, alternate blocks of four rounds


def _threefry_2x32(k0, k1, x0, x1):
    """Threefry-2x32 (20 rounds) of the counter pairs (x0, x1) under the key (k0, k1): the function
    of ``jax.extend.random.threefry_2x32``, word for word, written as straight-line integer
    operations. JAX lowers its own as a five-trip loop on CPU, and each random number's loop stayed
    a loop of its own in the compiled transition; these fuse with the operations around them (eight
    schools' 2000 iterations 0.047 -> 0.039 s, medians of 6 cold fits; the same draws)."""
    import jax.numpy as jnp
    u = jnp.uint32
    keys = (k0, k1, k0 ^ k1 ^ u(0x1BD11BDA))
    x0, x1 = x0 + keys[0], x1 + keys[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << u(r)) | (x1 >> u(32 - r)))
        x0 = x0 + keys[(block + 1) % 3]
        x1 = x1 + keys[(block + 2) % 3] + u(block + 1)
    return x0, x1


def _random_bits(key, bit_width: int, shape):
    import jax
    import jax.numpy as jnp
    from jax import lax
    size = int(np.prod(shape)) if shape else 1
    words = size * (2 if bit_width == 64 else 1)
    pairs = max(1, -(-words // 2))
    i = jnp.arange(pairs, dtype=jnp.uint32)
    with jax.named_scope("threefry"):    # (named so in profiles and compiled programs)
        first, second = _threefry_2x32(key[0], key[1], jnp.broadcast_to(key[2], (pairs,)), key[3] + i)
        out = jnp.concatenate([first, second])[:words]
    if bit_width == 64:
        hi, lo = out[:size].astype(jnp.uint64), out[size:].astype(jnp.uint64)
        return ((hi << jnp.uint64(32)) | lo).reshape(shape)
    dtype = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}[bit_width]
    return lax.convert_element_type(out, dtype).reshape(shape)


def _seed(seed):
    import jax.numpy as jnp
    s = jnp.asarray(seed).astype(jnp.uint32)
    z = jnp.zeros((), jnp.uint32)
    return jnp.stack([z, s, z, z])


_IMPL: list = []


def sampler_key(raw):
    """The sampler's typed key for ``raw``: a threefry key (a uint32 pair, raw or typed) with a zero
    counter (see above), the four words of one of the sampler's keys, or such a key itself."""
    import jax
    import jax.numpy as jnp
    if not _IMPL:
        try:    # JAX's own module: ``jax.extend.random`` re-exports it, but ``import jax.extend`` imports
            # Pallas and the rest of ``jax.extend`` (20-25 ms of a cold first draw)
            from jax._src.extend.random import define_prng_impl
        except ImportError:  # pragma: no cover - a JAX that moved it
            from jax.extend.random import define_prng_impl
        _IMPL.append(define_prng_impl(key_shape=(4,), seed=_seed, split=_split, random_bits=_random_bits,
                                      fold_in=_fold_in, name="ppl_counter", tag="ppl"))
    if jnp.issubdtype(raw.dtype, jax.dtypes.prng_key):
        if jax.random.key_impl(raw) == _IMPL[0]:
            return raw
        raw = jax.random.key_data(raw)
    if raw.shape[-1] == 2:    # a threefry key: the counter starts at zero
        raw = jnp.concatenate([raw.astype(jnp.uint32), jnp.zeros(raw.shape[:-1] + (2,), jnp.uint32)], axis=-1)
    return jax.random.wrap_key_data(raw, impl=_IMPL[0])
