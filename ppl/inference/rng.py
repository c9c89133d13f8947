"""Random streams derived with numpy, so that no JAX program is compiled just to make or
split a key (``jax.random.uniform`` and ``split`` alone cost 0.1-0.9 s of a cold start)."""
from __future__ import annotations

import numpy as np

__all__ = ["stream", "raw_keys"]


def stream(seed: int, purpose: int) -> np.random.SeedSequence:
    """The random stream of one use of ``seed`` (1: initial points, 2: the sampler, 3: generated
    quantities, 4: draws of an approximation)."""
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, purpose])


def raw_keys(seq: np.random.SeedSequence, n: int) -> np.ndarray:
    """``n`` raw threefry keys (uint32 pairs, what ``jax.random.PRNGKey`` makes) from ``seq``."""
    return seq.generate_state(2 * n, np.uint32).reshape(n, 2)
