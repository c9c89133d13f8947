"""Random streams derived with numpy, so that no JAX program is compiled just to make or
split a key (``jax.random.uniform`` and ``split`` alone cost 0.1-0.9 s of a cold start)."""
from __future__ import annotations

import numpy as np

__all__ = ["stream", "raw_keys"]


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
