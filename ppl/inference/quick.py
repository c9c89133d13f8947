"""A quick first program for short NUTS runs.

At XLA's backend optimisation level 0 (LLVM without its optimisation passes) a NUTS chunk compiles
about half a second sooner and runs 2-4x slower (over the 45 posteriordb models of the conformance
suite, 4 chains x 2000 iterations on 2 cores: compile 0.78x, warm-up + sampling 2.56x, geometric
means; eight schools' chunk 1.47 -> 0.94 s of XLA, its 2000 iterations 0.04 -> 0.09 s). For a run
whose sampling is short that is the sooner result; for a long one it is not, and how long a NUTS
run is depends on its trees, which are not known before it starts. So:

* :func:`quick_start`: the chunk is first compiled at level 0 when the run, at a typical
  TYPICAL_LEAPFROGS steps an iteration, would lose less than QUICK_LOSS_S to it
  (:func:`level0_loss`);
* :class:`QuickCheck`: at iteration CHECK_AT the leapfrog steps of the CHECK_SPAN iterations
  before it give the rest of the run's loss; above SWITCH_S (about what compiling the optimised
  program costs) that program is compiled and runs the rest. The seed decides those steps, so a
  call decides the same way every time and its draws are reproducible. With Stan's warm-up the
  span is the first after the mass matrix's first update (iteration 100 of 1000): before it,
  with a unit metric, trees are often 5-20x longer than later (kidiq, mesquite).

Programs that run once (an optimiser's, ADVI's, Pathfinder's: :func:`one_shot_options`) are
compiled at level 0 when the most they could lose, at their iteration cap, is under ONE_SHOT_LOSS_S:
there the saving is larger (eight schools' ADVI compiles in 1.8 s against 4.6 s, its L-BFGS in
1.4 against 1.8 s) and nothing switches, since the programs are not run in long stretches.

``PPL_QUICK_START=0`` never compiles a quick program, ``=1`` always does (NUTS still switches).
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from ppl.inference.parallel import chains_per_lane, compile_lowered, density_profile
from ppl.inference.xla_options import compiler_options

__all__ = ["quick_start", "level0_loss", "QuickCheck", "ChunkPrograms", "one_shot_options", "one_shot_loss", "QUICK_LOSS_S", "SWITCH_S", "CHECK_AT",
           "CHECK_SPAN", "ONE_SHOT_LOSS_S"]

# Seconds lost at level 0, fitted (non-negative least squares) over the 38 posteriordb models whose
# log density has at most 5,000 operations, 4 chains x 2000 iterations on 2 cores
# (bench/loop_survey.py --options '{"xla_backend_optimization_level": 0}',
# bench/results/optlevel0_survey.md): per iteration of a chain, per gradient, per density
# operation of a gradient (ppl.inference.parallel.density_ops); residuals 0.11 s rms.
PER_ITERATION_S = 25e-6
PER_GRADIENT_S = 0.32e-6
PER_OPERATION_S = 1.1e-9

TYPICAL_LEAPFROGS = 40   # steps an iteration assumed before any is run (the survey's median: 41)
QUICK_LOSS_S = 0.25      # level 0 first when the run would lose less (it saves 0.3-0.6 s of compile, quartiles)
SWITCH_S = 1.5           # the optimised program takes over when the rest would lose more
CHECK_AT = 150           # the iterations before it (CHECK_SPAN of them) decide
CHECK_SPAN = 50
# What an ADVI step loses at level 0 (its gradient, and an ELBO of 100 draws every 100 steps),
# fitted (non-negative least squares, relative errors) over 16 models: 14 posteriordb ones, eight
# schools and hierarchical linear regression; the fit is within a factor 2-6 (low_dim_gauss_mix,
# hmm_example lose more than it says), hence the factor 2 in one_shot_loss. Per step, per density
# operation (parallel.density_ops), per squared dimension (hierarchical linear, 105 dimensions,
# loses 235 us a step; mcycle_gp, 66, 294 us)
ONE_SHOT_STEP_S = 7.3e-6
ONE_SHOT_OP_S = 0.9e-9
ONE_SHOT_DIM2_S = 2.7e-8
ONE_SHOT_LOSS_S = 0.5    # a one-shot program at level 0 when its iteration cap would lose less


def level0_loss(ops: int, iterations: int, chains: int, devices: list, leapfrogs: float) -> float:
    """Seconds a run of ``iterations`` loses at level 0 on each core, at ``leapfrogs`` steps an
    iteration, for a log density of ``ops`` operations."""
    per_iteration = PER_ITERATION_S + leapfrogs * (PER_GRADIENT_S + PER_OPERATION_S * ops)
    return float(iterations) * chains_per_lane(chains, devices) * per_iteration


def _forced(devices: list) -> bool | None:
    """``PPL_QUICK_START``'s answer (level 0 only ever on CPU), or None when it is not set."""
    forced = os.environ.get("PPL_QUICK_START", "").strip()
    if devices[0].platform != "cpu":
        return False
    return forced == "1" if forced in ("0", "1") else None


def quick_start(ops: int | None, iterations: int, chains: int, devices: list,
                leapfrogs: float = TYPICAL_LEAPFROGS) -> bool:
    """Whether a chunk of MCMC iterations of ``leapfrogs`` gradients each (NUTS: unknown before it
    runs, TYPICAL_LEAPFROGS) is first compiled at level 0 (CPU only; ``ops`` None: unknown, no)."""
    forced = _forced(devices)
    if forced is not None:
        return forced
    if ops is None:
        return False
    return level0_loss(ops, iterations, chains, devices, leapfrogs) < QUICK_LOSS_S


def one_shot_loss(ops: int, dim: int, steps: float) -> float:
    """Seconds ``steps`` ADVI steps (or their equivalent in another one-shot program) lose at level 0,
    at twice the fitted rate (:data:`ONE_SHOT_STEP_S` and the two after it)."""
    return 2.0 * steps * (ONE_SHOT_STEP_S + ONE_SHOT_OP_S * ops + ONE_SHOT_DIM2_S * dim * dim)


def one_shot_options(logdensity_fn, dim: int, dtype, data, steps: float, devices: list | None = None) -> dict | None:
    """XLA's options for a program that runs once, as long as at most ``steps`` ADVI steps (its
    iteration cap, in those units) with ``logdensity_fn(position, data)`` for a ``dim`` position:
    level 0 (:func:`~ppl.inference.xla_options.compiler_options`' ``quick``) when that would lose
    under ONE_SHOT_LOSS_S (:func:`one_shot_loss`), and the fusion emitters as the data decide."""
    import jax
    devices = jax.devices()[:1] if devices is None else devices
    profile = density_profile(logdensity_fn, dim, dtype, data)
    forced = _forced(devices)
    quick = forced if forced is not None else one_shot_loss(profile.ops, dim, steps) < ONE_SHOT_LOSS_S
    return compiler_options(profile.data_size, devices, float(profile.ops) * max(4.0 * steps, 1.0), quick=quick)


class QuickCheck:
    """Counts the leapfrog steps of the CHECK_SPAN iterations before ``at`` (``observe``, from
    each chunk's outputs) and says there whether the rest should run on the optimised program
    (``switch``). ``at`` is CHECK_AT rounded up to a multiple of ``aligned`` (where calls may
    end); None when the run ends first."""

    def __init__(self, ops: int, total: int, chains: int, devices: list, aligned: int = 1):
        at = -(-CHECK_AT // aligned) * aligned
        self.at = at if at < total else None
        self.ops, self.total, self.chains, self.devices = ops, total, chains, devices
        self.steps = 0

    def observe(self, start: int, n_valid: int, outs) -> None:
        if self.at is None:
            return
        a, b = max(start, self.at - CHECK_SPAN), min(start + n_valid, self.at)
        if a < b:
            self.steps += int(np.asarray(outs.n_leapfrog)[:, a - start:b - start].sum())

    def leapfrogs(self) -> float:
        """Mean steps an iteration of a chain over the CHECK_SPAN iterations before ``at``."""
        return self.steps / (self.chains * CHECK_SPAN)

    def switch(self) -> bool:
        rest = level0_loss(self.ops, self.total - self.at, self.chains, self.devices, self.leapfrogs())
        return rest > SWITCH_S

    def hooks(self, to_optimised: Callable) -> list:
        """``run_chunked``'s hook at ``at`` (none when the run ends first): there, if :meth:`switch`
        says so, ``to_optimised(carry)`` compiles the optimised program that runs the rest."""
        if self.at is None:
            return []

        def hook(carry):
            if self.switch():
                to_optimised(carry)
            return carry
        return [(self.at, hook)]


class ChunkPrograms:
    """A sampler's compiled chunks in this process, by ``program`` (what shapes it: the functions,
    the data's and the carry's signatures, the settings) and XLA's options. The last quick
    program's lowering is kept, so that the switch to the optimised program
    (:class:`QuickCheck`) compiles that lowering again instead of tracing the chunk anew."""

    def __init__(self):
        self.compiled: dict = {}
        self.quick_lowered: dict = {}
        self.count = 0          # programs compiled

    def get(self, program: tuple, options: dict | None, quick: bool, lower: Callable,
            meanwhile: Callable | None = None):
        """``(compiled, seconds, other)``: the program compiled with ``options`` (``quick``: they
        are level 0's), ``lower()`` giving its lowering when there is none to reuse; the seconds it
        took (0 if it was here) and what ``meanwhile()`` returned (called while XLA compiles, or at
        once when nothing compiles)."""
        key = program + (tuple(sorted((options or {}).items())),)
        if key in self.compiled:
            return self.compiled[key], 0.0, meanwhile() if meanwhile is not None else None
        t0 = time.perf_counter()
        lowered = None if quick else self.quick_lowered.pop(program, None)
        if lowered is None:
            lowered = lower()
        compiled, other = compile_lowered(lowered, options, meanwhile)
        if quick:
            self.quick_lowered.clear()
            self.quick_lowered[program] = lowered
        self.compiled[key] = compiled
        self.count += 1
        return compiled, time.perf_counter() - t0, other

    def clear(self) -> None:
        self.compiled.clear()
        self.quick_lowered.clear()
