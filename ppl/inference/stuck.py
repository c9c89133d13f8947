"""Chains stuck in a mode that holds almost none of the posterior mass, moved during warm-up.

Mixtures and other multimodal posteriors trap some NUTS chains in local modes whose mass is a
vanishing fraction of the main mode's (``bench``'s ``mixture_hard``: two chains of four at a log
density 90 below the others; every peer's chains disagree there, R-hat 1.7-19).  Halfway
through warm-up, over the iterations since a quarter of it, each chain's share of mass is
estimated with a Gaussian (Laplace) approximation of the region it explores::

    log mass_c ~ mean(lp_c) + 1/2 sum_i log var_c,i      (+ a constant shared by all chains)

A chain whose log mass is more than ``GAP`` below the best chain's (its mode holds less than
e^-GAP of that mode's mass: it would be visited, in a long enough run, about that rarely)
continues from the state of the best chain — position, step size and adaptation — with its own
random stream, and the rest of warm-up separates them again.  Modes of comparable mass are left
alone (and R-hat then reports them).  The move is reported in the results' warnings;
``restart_stuck=False`` turns it off.
"""
from __future__ import annotations

import jax
import numpy as np

__all__ = ["GAP", "StuckChains"]

GAP = 20.0  # log units: a mode with less than e^-20 of the best one's mass is "stuck"


class StuckChains:
    """Collects warm-up log densities and positions from chunk outputs; at ``check_at`` decides
    which chains to move and moves them in the carried state."""

    def __init__(self, warmup: int, chunk_size: int, chains: int):
        half = (warmup // 2) // chunk_size * chunk_size
        self.check_at = half if chains >= 2 and warmup >= 100 and half > warmup // 4 else None
        self.window = (warmup // 4, half)
        self.sum = self.sumsq = self.lp = None
        self.count = 0
        self.moves: list[dict] = []

    def observe(self, start: int, n_valid: int, outs) -> None:
        """Called with each chunk's outputs (chains first, then iterations)."""
        if self.check_at is None:
            return
        lo, hi = self.window
        a, b = max(lo, start), min(hi, start + n_valid)
        if a >= b:
            return
        pos = np.asarray(outs.position[:, a - start:b - start], np.float64)
        lp = np.asarray(outs.lp[:, a - start:b - start], np.float64)
        if self.sum is None:
            chains, _, dim = pos.shape
            self.sum, self.sumsq, self.lp = np.zeros((chains, dim)), np.zeros((chains, dim)), np.zeros(chains)
        self.sum += pos.sum(1)
        self.sumsq += np.square(pos).sum(1)
        self.lp += lp.sum(1)
        self.count += b - a

    def log_mass(self) -> np.ndarray:
        n = self.count
        mean = self.sum / n
        var = np.maximum(self.sumsq / n - np.square(mean), 1e-300)
        return self.lp / n + 0.5 * np.log(var).sum(axis=1)

    def move(self, carry, place):
        """The carried state with stuck chains replaced by the best chain's (own random keys
        kept); ``place(state)`` puts a numpy state back where the chains run."""
        if self.count < 10 or self.lp is None:
            return carry
        mass = self.log_mass()
        if not np.all(np.isfinite(mass)):
            return carry
        best = int(np.argmax(mass))
        stuck = [c for c in range(mass.size) if mass[best] - mass[c] > GAP]
        if not stuck:
            return carry
        state = jax.device_get(carry)
        keys = np.array(state.rng_key)

        def copy(a):
            a = np.array(a)
            a[stuck] = a[best]
            return a

        state = jax.tree.map(copy, state)._replace(rng_key=keys)
        for c in stuck:
            self.moves.append({"chain": c, "to": best, "iteration": self.check_at,
                               "log_mass_gap": float(mass[best] - mass[c])})
        return place(state)
