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

import time
from typing import Callable, NamedTuple

import jax

from ppl.inference.adaptation import build_schedule, pad_schedule
from ppl.inference.nuts import (ChunkRecorder, all_finite, as_data, chain_keys,  # noqa: F401
                               make_chunk_fn, run_chunked, signature, starting_carry)
from ppl.inference.parallel import (chain_devices, compile_chunk, compiler_options, density_profile, place,
                                   place_chains, run_work)
from ppl.inference.program_cache import chunk_key

__all__ = ["ChunkedRun", "compiled_chunk", "drive", "starting_carry", "as_data", "chain_keys", "all_finite",
           "compile_count", "clear_cache"]

_CACHE: dict = {}
_COMPILES = [0]


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
    return _COMPILES[0]


def clear_cache() -> None:
    _CACHE.clear()


def compiled_chunk(tag: str, build: Callable, logdensity_fn, data, carry, rows, params, static: tuple,
                   devices: list, draw_type: type | None = None, meanwhile: Callable | None = None,
                   iterations: int | None = None):
    """The compiled ``chunk(carry, rows, data, params)`` program, its compile time (0 if cached) and
    what ``meanwhile()`` returned (called while XLA compiles, or at once when nothing compiles).
    With ``draw_type`` (the NamedTuple of one iteration's output) the lowered program is also kept
    on disk (:mod:`ppl.inference.program_cache`), as the NUTS chunk is. ``iterations``: the run's
    length, which with the density chooses XLA's options (None: a long run)."""
    # XLA's options go by the log density and the run's length, as for NUTS (the carry's first
    # field holds the chains' positions, (chains, dim))
    position = carry[0].position
    profile = density_profile(logdensity_fn, position.shape[1], position.dtype, data)
    work = run_work(profile.ops, iterations, position.shape[0], devices) if iterations is not None else None
    options = compiler_options(profile.data_size, devices, work)
    key = (tag, logdensity_fn, signature(data), signature(carry), signature(rows), signature(params),
           static, jax.config.jax_enable_x64, tuple(d.id for d in devices), tuple(sorted((options or {}).items())))
    if key in _CACHE:
        return _CACHE[key], 0.0, meanwhile() if meanwhile is not None else None
    t0 = time.perf_counter()
    cache_key = None
    if draw_type is not None:
        cache_key = chunk_key(profile.closed, (tag, static), (carry, rows, data, params), devices)
    compiled, found = compile_chunk(make_chunk_fn(*build()), carry, rows, data, params, devices, options=options,
                                    cache_key=cache_key, result_types=(draw_type,) if draw_type is not None else (),
                                    meanwhile=meanwhile)
    _CACHE[key] = compiled
    _COMPILES[0] += 1
    return compiled, time.perf_counter() - t0, found


def drive(tag: str, build: Callable, logdensity_fn, data, carry, params, *, warmup: int, draws: int,
          chunk_size: int, thin: int = 1, static: tuple = (), callback: Callable | None = None,
          schedule=None, devices: int | None = None, draw_type: type | None = None,
          start: Callable | None = None) -> ChunkedRun:
    """Warm up then sample with the kernel ``build`` gives; see the module docstring.

    ``start() -> carry``: the chains' real initial states (e.g. after a search for starting
    points), made while XLA compiles; ``carry`` then only gives the shapes.

    ``schedule`` defaults to Stan's (:func:`build_schedule`).  The per-iteration output
    may have a ``divergent`` field; it is counted per phase
    and reported through ``callback(Progress)`` after every chunk. ``draw_type``: that output's
    NamedTuple class, which lets the lowered chunk be kept on disk (:func:`compiled_chunk`).
    """
    if thin < 1 or chunk_size < 1 or warmup < 0 or draws < 0:
        raise ValueError("thin and chunk_size must be >= 1, warmup and draws >= 0")
    data = as_data(data)
    schedule = build_schedule(warmup, draws) if schedule is None else schedule
    placed = chain_devices(jax.tree.leaves(carry)[0].shape[0], devices)
    carry, data = place(carry, data, placed)
    compiled, compile_s, found = compiled_chunk(tag, build, logdensity_fn, data, carry,
                                                pad_schedule(schedule, 0, chunk_size), params, static, placed,
                                                draw_type, meanwhile=start, iterations=warmup + draws)
    if start is not None:
        carry = place_chains(found, placed)
    record = ChunkRecorder(warmup, draws, thin, callback)
    run = lambda c, rows: compiled(c, rows, data, params)  # noqa: E731
    carry, _, completed = run_chunked(run, carry, schedule, warmup + draws, chunk_size, record)
    out = record.outputs()
    if out is None:
        # No sampling iteration reached: one chunk of no-op rows gives the output shapes.
        _, outs = jax.device_get(run(carry, pad_schedule(schedule, warmup + draws, chunk_size)))  # no-op rows
        out = jax.tree.map(lambda a: a[:, :0], outs)
    return ChunkedRun(out, jax.device_get(carry), completed, record.warmup_div, compile_s,
                      record.warmup_s, record.sampling_s, len(placed))
