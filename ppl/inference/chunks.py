"""Generic driver for chunked MCMC kernels other than NUTS (HMC, random-walk MH).

A kernel module supplies ``build() -> (step, prepare, empty_out)`` for
:func:`ppl.inference.nuts.make_chunk_fn` and an initial carry; this module compiles
the chunk once per (kernel, log density, data signature, carry signature, chunk
length, static options), runs it chunk after chunk with :func:`run_chunked` (so
Ctrl-C keeps the draws made so far), keeps the post-warm-up draws and counts
divergences and time per phase.  The same schedule (Stan's windows,
:func:`ppl.inference.adaptation.build_schedule`) drives every kernel's warm-up.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax

from ppl.inference.adaptation import build_schedule, pad_schedule
from ppl.inference.nuts import (ChunkRecorder, all_finite, as_data, chain_keys,  # noqa: F401
                               make_chunk_fn, run_chunked, signature, starting_carry)
from ppl.inference.parallel import (chain_devices, density_profile, lower_over_chains, place,
                                   place_chains, run_work)
from ppl.inference.program_cache import chunk_key
from ppl.inference.quick import ChunkPrograms, QuickCheck, quick_start
from ppl.inference.xla_options import compiler_options

__all__ = ["ChunkedRun", "compiled_chunk", "drive", "starting_carry", "as_data", "chain_keys", "all_finite",
           "compile_count", "clear_cache"]

_PROGRAMS = ChunkPrograms()


class ChunkedRun(NamedTuple):
    draws: object            # per-iteration output pytree, numpy, (chains, kept, ...)
    carry: object            # final chain states (numpy)
    completed: bool
    warmup_divergences: int
    compile_s: float
    warmup_s: float
    sampling_s: float
    devices: int = 1         # how many devices the chains ran on


def compile_count() -> int:
    """Number of chunk programs compiled here (HMC, MH) in this process."""
    return _PROGRAMS.count


def clear_cache() -> None:
    _PROGRAMS.clear()


def compiled_chunk(tag: str, build: Callable, logdensity_fn, data, carry, rows, params, static: tuple,
                   devices: list, draw_type: type | None = None, meanwhile: Callable | None = None,
                   iterations: int | None = None, leapfrogs: float | None = None, quick: bool | None = None):
    """The compiled ``chunk(carry, rows, data, params)`` program, its compile time (0 if cached),
    what ``meanwhile()`` returned (called while XLA compiles, or at once when nothing compiles) and
    the log density's operation count if the program is the quick one, else None.
    With ``draw_type`` (the NamedTuple of one iteration's output) the lowered program is also kept
    on disk (:mod:`ppl.inference.program_cache`), as the NUTS chunk is. ``iterations``: the run's
    length, which with the density chooses XLA's options (None: a long run); ``leapfrogs``: the
    gradients an iteration takes, by which :func:`~ppl.inference.quick.quick_start` decides on a
    quick first program (None: not one; ``quick`` True/False decides instead)."""
    # XLA's options go by the log density and the run's length, as for NUTS (the carry's first
    # field holds the chains' positions, (chains, dim))
    position = carry[0].position
    chains = position.shape[0]
    profile = density_profile(logdensity_fn, position.shape[1], position.dtype, data)
    work = run_work(profile.ops, iterations, chains, devices) if iterations is not None else None
    if quick is None:
        quick = (leapfrogs is not None and iterations is not None
                 and quick_start(profile.ops, iterations, chains, devices, leapfrogs))
    options = compiler_options(profile.data_size, devices, work, quick=quick)
    program = (tag, logdensity_fn, signature(data), signature(carry), signature(rows), signature(params),
               static, jax.config.jax_enable_x64, tuple(d.id for d in devices))

    def lower():
        cache_key = None
        if draw_type is not None:
            cache_key = chunk_key(profile.closed, (tag, static), (carry, rows, data, params), devices)
        return lower_over_chains(make_chunk_fn(*build()), carry, rows, data, params, devices, cache_key=cache_key,
                                 result_types=(draw_type,) if draw_type is not None else ())

    compiled, seconds, found = _PROGRAMS.get(program, options, bool(quick), lower, meanwhile)
    return compiled, seconds, found, profile.ops if quick else None


def drive(tag: str, build: Callable, logdensity_fn, data, carry, params, *, warmup: int, draws: int,
          chunk_size: int, thin: int = 1, static: tuple = (), callback: Callable | None = None,
          schedule=None, devices: int | None = None, draw_type: type | None = None,
          start: Callable | None = None, leapfrogs: float | None = None) -> ChunkedRun:
    """Warm up then sample with the kernel ``build`` gives; see the module docstring.

    ``start() -> carry``: the chains' real initial states (e.g. after a search for starting
    points), made while XLA compiles; ``carry`` then only gives the shapes.

    ``schedule`` defaults to Stan's (:func:`build_schedule`).  The per-iteration output
    may have a ``divergent`` field; it is counted per phase
    and reported through ``callback(Progress)`` after every chunk. ``draw_type``: that output's
    NamedTuple class, which lets the lowered chunk be kept on disk (:func:`compiled_chunk`).
    ``leapfrogs``: the gradients an iteration is expected to take, for the choice of a quick first
    program (:mod:`ppl.inference.quick`; None: never). When the draws count their ``n_leapfrog``,
    the steps before iteration CHECK_AT decide, as for NUTS, whether the optimised program runs
    the rest.
    """
    if thin < 1 or chunk_size < 1 or warmup < 0 or draws < 0:
        raise ValueError("thin and chunk_size must be >= 1, warmup and draws >= 0")
    data = as_data(data)
    schedule = build_schedule(warmup, draws) if schedule is None else schedule
    placed = chain_devices(jax.tree.leaves(carry)[0].shape[0], devices)
    carry, data = place(carry, data, placed)
    rows = pad_schedule(schedule, 0, chunk_size)
    compiled, compile_s, found, quick_ops = compiled_chunk(tag, build, logdensity_fn, data, carry, rows, params,
                                                           static, placed, draw_type, meanwhile=start,
                                                           iterations=warmup + draws, leapfrogs=leapfrogs)
    if start is not None:
        carry = place_chains(found, placed)
    record = ChunkRecorder(warmup, draws, thin, callback)
    counted = quick_ops is not None and draw_type is not None and "n_leapfrog" in draw_type._fields
    chains = jax.tree.leaves(carry)[0].shape[0]
    check = QuickCheck(quick_ops, warmup + draws, chains, placed, chunk_size) if counted else None
    hooks = []
    if check is not None:
        def to_optimised(c):    # the quick program (level 0) hands a long rest over to the optimised one
            nonlocal compiled, compile_s
            compiled, seconds, _, _ = compiled_chunk(tag, build, logdensity_fn, data, c, rows, params, static,
                                                     placed, draw_type, iterations=warmup + draws, quick=False)
            compile_s += seconds
        hooks += check.hooks(to_optimised)

    def on_chunk(start, n_valid, outs, seconds):
        if check is not None:
            check.observe(start, n_valid, outs)
        record(start, n_valid, outs, seconds)

    run = lambda c, rows: compiled(c, rows, data, params)  # noqa: E731
    carry, _, completed = run_chunked(run, carry, schedule, warmup + draws, chunk_size, on_chunk, hooks)
    out = record.outputs()
    if out is None:
        # No sampling iteration reached: one chunk of no-op rows gives the output shapes.
        _, outs = jax.device_get(run(carry, pad_schedule(schedule, warmup + draws, chunk_size)))  # no-op rows
        out = jax.tree.map(lambda a: a[:, :0], outs)
    return ChunkedRun(out, jax.device_get(carry), completed, record.warmup_div, compile_s,
                      record.warmup_s, record.sampling_s, len(placed))
