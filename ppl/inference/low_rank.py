"""nutpie's low-rank metric during NUTS warm-up: estimated between chunks, in its own program.

Inside the chunk each slow iteration writes its position and gradient into the chain's window
buffer (:func:`ppl.inference.adaptation.record_low_rank`). At each slow window's end the sampling
loop stops (a :func:`ppl.inference.nuts.run_chunked` hook) and one small program replaces every
chain's metric with the estimate from its buffer and empties the buffer
(:func:`ppl.inference.adaptation.estimate_low_rank`: two SVDs, a QR and eigendecompositions).

That program is compiled beside the chunk's, on another thread, from the start of the fit. Inside
the chunk, under a ``cond`` at every iteration, the estimate made the chunk compile 0.9-1.0 s
longer than the diagonal metric's (eight schools 1.60 against 0.68 s; mixture_separated 3.13
against 2.09 s), all of it before the first draw.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from ppl.inference.adaptation import estimate_low_rank
from ppl.inference.parallel import lower_split
from ppl.inference.xla_options import compile_with, compiler_options

__all__ = ["LowRankWindows"]


class LowRankWindows:
    """The hooks that end each slow window of ``schedule`` with the low-rank estimate (rank at most
    ``rank``) for every chain of a NUTS carry. :meth:`start` lowers the program for the carry's
    shapes and placement and compiles it on a thread; the first hook waits for it. ``wait_s``:
    the time hooks waited for the compilation; ``run_s``: the time the estimates took."""

    def __init__(self, schedule, rank: int):
        # a window's last row is an iteration; the metric changes before the next one runs (rank 0:
        # another metric, no hooks)
        self.at = [int(i) + 1 for i in np.flatnonzero(np.asarray(schedule.window_end))] if rank else []
        self.rank = int(rank)
        self.wait_s = self.run_s = 0.0
        self._compiling = None

    def start(self, carry, devices: list) -> None:
        """Lower the estimate for ``carry``'s chains (their metrics and buffers, placed on
        ``devices`` as the chunk's: a chain per device where there are enough) and begin compiling
        it on a thread (XLA lets go of Python while it compiles)."""
        if not self.at:
            return
        rank = self.rank
        chains = jax.tree.leaves(carry)[0].shape[0]
        state = (carry.adapt.mm.inverse_mass_matrix, carry.adapt.grads)
        # a replica per device, as the chunk's
        lowered = lower_split(lambda state: estimate_low_rank(*state, rank), (state,), chains, devices,
                              lambda fn, args, per_device: jax.jit(fn).lower(*args))
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ppl-lowrank")
        # run a handful of times per fit, reading no data: XLA's quickest level
        self._compiling = pool.submit(compile_with, lowered, compiler_options(0, devices, quick=True))
        pool.shutdown(wait=False)

    def hooks(self) -> list:
        """``(iteration, fn)`` pairs for :func:`ppl.inference.nuts.run_chunked`."""
        return [(at, self.update) for at in self.at]

    def update(self, carry):
        """``carry`` with every chain's metric estimated from its buffer, and the buffers emptied."""
        t0 = time.perf_counter()
        program = self._compiling.result()
        t1 = time.perf_counter()
        new_imm, new_buf = jax.block_until_ready(program((carry.adapt.mm.inverse_mass_matrix, carry.adapt.grads)))
        self.wait_s += t1 - t0
        self.run_s += time.perf_counter() - t1
        mm = carry.adapt.mm._replace(inverse_mass_matrix=new_imm)
        return carry._replace(adapt=carry.adapt._replace(mm=mm, grads=new_buf))
