"""NUTS with Stan-style warm-up, built for a short time to first draw.

One compiled program serves warm-up and sampling: a chunk of up to ``chunk_size`` iterations
(:mod:`ppl.inference.nuts_step`: a loop over rows, one call site of the NUTS kernel), run for
every chain (:func:`ppl.inference.parallel.over_chains`), whose step size, inverse mass matrix,
adaptation state, per-iteration :class:`~ppl.inference.adaptation.Schedule` and data are all
arguments.  It is compiled ahead of time once per (log density, data shapes/dtypes, chains, dim,
chunk_size, max_depth, dense, dtype) and cached; a Python loop (:func:`run_chunked`) calls it
chunk after chunk, reports progress between chunks, and returns what it has on
``KeyboardInterrupt``.

The transition is BlackJAX's NUTS (multinomial, iterative, generalised U-turn;
:mod:`ppl.inference.nuts_kernel`).  Non-finite energies are divergences there; on top of that a
proposal with a non-finite log density, gradient or position is rejected and counted as
divergent, so nan never enters the chain state.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ppl.inference import lean_blackjax  # noqa: F401  (first: BlackJAX without scipy.fft or optax)
from blackjax.mcmc import hmc

from ppl.config import float_dtype
from ppl.inference.adaptation import (build_schedule, dense_inverse_mass_matrix, init_adaptation_state,
                                      low_rank_buffer_size, pad_schedule)
from ppl.inference.low_rank import LowRankWindows
from ppl.inference.nuts_step import NUTSChainState, NUTSDraw, all_finite, make_gibbs_step, make_nuts_chunk
from ppl.inference.parallel import (DeferredInit, StartingPoints, chain_devices, density_profile,
                                   distribute, lower_over_chains, outer_loops_apart, place, place_chains, run_work)
from ppl.inference.program_cache import chunk_key
from ppl.inference.quick import ChunkPrograms, QuickCheck, quick_start
from ppl.inference.rng import raw_keys
from ppl.inference.stuck import StuckChains
from ppl.inference.xla_options import compiler_options

__all__ = ["NUTSConfig", "starting_carry", "SamplerResult", "Progress", "NUTSChainState", "NUTSDraw", "all_finite",
           "sample_nuts", "make_chunk_fn", "run_chunked", "compile_count", "clear_cache"]


class NUTSConfig(NamedTuple):
    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    target_accept: float = 0.8
    max_depth: int = 10
    chunk_size: int = 100
    init_step_size: float = 1.0  # start of Stan's step-size heuristic
    dense_mass: bool = False
    fisher_mass: bool = False  # diagonal metric from sqrt(Var[x] / Var[grad]) (adaptation.update_adaptation)
    low_rank: int = 0  # > 0: nutpie's low-rank metric of at most this rank (ppl.inference.low_rank)
    thin: int = 1
    devices: int | None = None  # chains split across this many devices; None: chain_devices decides
    shard_data: bool = False  # also split data arrays along their first axis (large N)
    restart_stuck: bool = True  # move chains stuck in a negligible mode halfway through warm-up (stuck.py)
    call_seconds: float | None = None  # None: every call runs chunk_size iterations; else about this long


class SamplerResult(NamedTuple):
    positions: np.ndarray  # (chains, kept_draws, dim) unconstrained draws after warm-up
    stats: dict  # name -> (chains, kept_draws)
    warmup_divergences: int
    step_size: np.ndarray  # (chains,)
    inverse_mass_matrix: np.ndarray  # (chains, dim) or (chains, dim, dim)
    completed: bool  # False if interrupted
    compile_s: float
    warmup_s: float
    sampling_s: float
    extra: object = None  # per-draw discrete values of a Gibbs sweep (chains, kept_draws, ...)
    devices: int = 1  # how many devices the chains ran on
    moved_chains: tuple = ()  # chains moved out of a negligible mode during warm-up (stuck.py)


class Progress(NamedTuple):
    iteration: int  # iterations done (warm-up included)
    total: int  # warm-up + draws
    phase: str  # 'warmup' | 'sampling': phase of the last iteration done
    divergences: int  # divergences so far in that phase, all chains
    elapsed_s: float  # seconds since the first chunk started (compile excluded)


# ----------------------------------------------------------------------------------
# Generic chunk machinery (reusable for other kernels)
# ----------------------------------------------------------------------------------


def make_chunk_fn(step_fn: Callable, prepare_fn: Callable | None = None, empty_out: Callable | None = None) -> Callable:
    """Turn a one-chain ``step_fn(state, flags, data, params) -> (state, out)`` into the one-chain
    ``chunk(state, schedule, data, params) -> (state, outs)``; :func:`ppl.inference.parallel.over_chains`
    runs it for every chain.

    The chunk loops over the schedule's rows (one per iteration); schedule, data and params
    are shared by all chains.  The rows with ``flags.active`` are a prefix (padding comes last:
    :func:`pad_schedule`); only they run (a loop of that many iterations, so rows not run cost
    nothing), and the outputs of the others stay zero, shaped like ``empty_out(state)`` (by
    default found with ``jax.eval_shape``, which costs one extra trace of ``step_fn``).
    ``prepare_fn(state, data, params) -> state`` runs once per chain at the chunk start (e.g. to
    recompute the log density at the carried position).
    """

    def one_chain(state, schedule, data, params):
        if prepare_fn is not None:
            state = prepare_fn(state, data, params)
        if empty_out is not None:
            make_empty = empty_out
        else:
            first = jax.tree.map(lambda a: a[0], schedule)
            shapes = jax.eval_shape(lambda s: step_fn(s, first, data, params)[1], state)
            make_empty = lambda s: jax.tree.map(lambda sd: jnp.zeros(sd.shape, sd.dtype), shapes)  # noqa: E731

        # The active rows are a prefix (run_chunked, pad_schedule): run those, leave the rest of
        # the outputs zero; a no-op row then costs nothing.
        length = jax.tree.leaves(schedule)[0].shape[0]
        outs = jax.tree.map(lambda e: jnp.zeros((length,) + e.shape, e.dtype), make_empty(state))

        def body(i, carry):
            s, buf = carry
            s, out = step_fn(s, jax.tree.map(lambda a: a[i], schedule), data, params)
            return s, jax.tree.map(lambda b, o: b.at[i].set(o), buf, out)

        n = jnp.sum(schedule.active.astype(jnp.int32))
        return jax.lax.fori_loop(0, n, body, (state, outs))

    return one_chain


def run_chunked(
    chunk_fn: Callable,
    carry,
    schedule,
    n_iter: int,
    chunk_size: int,
    on_chunk: Callable | None = None,
    hooks: tuple = (),
    call_seconds: float | None = None,
):
    """Run ``chunk_fn(carry, schedule_rows) -> (carry, outs)`` over ``n_iter`` iterations.

    ``schedule`` is a NamedTuple of numpy arrays with ``n_iter`` rows; each call gets
    ``chunk_size`` rows (the compiled length), the ones past its share all-False (not run).  Each
    call runs ``chunk_size`` iterations, or with ``call_seconds`` as many as take about that long
    at the pace measured so far (the first two calls, before any is measured, an eighth of
    ``chunk_size``): a fast model then makes few calls, each a fixed cost of a few milliseconds,
    and a slow one still reports progress and honours Ctrl-C every ``call_seconds``.  The draws
    do not depend on where calls end.  After each call, ``on_chunk(start, n_valid, outs,
    seconds)`` gets its outputs as numpy (only the first ``n_valid`` iterations are real).  A
    ``KeyboardInterrupt`` (from the user or from ``on_chunk``) stops the loop.
    ``hooks``: ``(iteration, fn)`` pairs; a call ends at each ``iteration``, where every earlier
    call is recorded and the carry becomes ``fn(carry)`` (whose time no call is charged with).
    Returns ``(carry, n_done, completed)``; ``n_done`` counts the iterations whose call reached
    ``on_chunk``.
    """
    n_done, completed = 0, True
    pending = None  # the call dispatched last, whose outputs are not yet read
    pace = None     # seconds per iteration of the last recorded call

    def flush():
        """Copy out and record the pending call, if any."""
        nonlocal pending, t_last, n_done, pace
        if pending is None:
            return
        (start, n_valid, outs), pending = pending, None
        outs = jax.device_get(outs)
        now = time.perf_counter()
        seconds, t_last = now - t_last, now
        pace = seconds / n_valid
        n_done = start + n_valid
        if on_chunk is not None:
            on_chunk(start, n_valid, outs, seconds)

    def rows(start):
        n = chunk_size
        if call_seconds is not None:
            n = max(1, chunk_size // 8) if pace is None else int(call_seconds / max(pace, 1e-9))
        n = max(1, min(n, chunk_size, n_iter - start))
        return min([n] + [at - start for at, _ in hooks if at > start])

    t_last = time.perf_counter()
    try:
        # JAX dispatches asynchronously: the next call is queued before the last one's
        # outputs are copied out and recorded, so the device never waits for Python.
        start = 0
        while start < n_iter:
            for at, fn in hooks:
                if at == start:
                    flush()
                    carry = fn(carry)
                    t_last = time.perf_counter()
            n = rows(start)
            carry, outs = chunk_fn(carry, pad_schedule(schedule, start, chunk_size, n))
            flush()
            pending = (start, n, outs)
            start += n
        flush()
    except KeyboardInterrupt:
        completed = False
    return carry, n_done, completed


class ChunkRecorder:
    """``on_chunk`` for :func:`run_chunked`, shared by every chunked sampler: keeps the
    (thinned) sampling iterations of each chunk, counts divergences (when the output has a
    ``divergent`` field) and time per phase, and reports :class:`Progress` after each chunk."""

    def __init__(self, warmup: int, draws: int, thin: int, callback: Callable | None):
        self.warmup, self.draws, self.thin, self.callback = warmup, draws, thin, callback
        self.kept: list = []
        self.warmup_div = self.sampling_div = 0
        self.warmup_s = self.sampling_s = 0.0
        self.t_start = time.perf_counter()

    def __call__(self, start, n_valid, outs, seconds):
        warmup = self.warmup
        n_warm = max(0, min(n_valid, warmup - start))
        div = getattr(outs, "divergent", None)
        if div is not None:
            div = np.asarray(div)
            self.warmup_div += int(div[:, :n_warm].sum())
            self.sampling_div += int(div[:, n_warm:n_valid].sum())
        self.warmup_s += seconds * n_warm / n_valid
        self.sampling_s += seconds * (n_valid - n_warm) / n_valid
        if n_valid > n_warm:
            idx = np.arange(start + n_warm, start + n_valid)
            sel = idx[(idx - warmup) % self.thin == 0] - start
            self.kept.append(jax.tree.map(lambda a: a[:, sel], outs))
        if self.callback is not None:
            done = start + n_valid
            sampling = done > warmup or warmup == 0
            self.callback(Progress(iteration=done, total=warmup + self.draws,
                                   phase="sampling" if sampling else "warmup",
                                   divergences=self.sampling_div if sampling else self.warmup_div,
                                   elapsed_s=time.perf_counter() - self.t_start))

    def outputs(self):
        """The kept iterations, concatenated along the draw axis (None when there are none)."""
        return jax.tree.map(lambda *a: np.concatenate(a, axis=1), *self.kept) if self.kept else None


# ----------------------------------------------------------------------------------
# Compilation cache
# ----------------------------------------------------------------------------------

_PROGRAMS = ChunkPrograms()


def compile_count() -> int:
    """Number of NUTS chunk programs compiled in this process."""
    return _PROGRAMS.count


def clear_cache() -> None:
    _PROGRAMS.clear()


def signature(tree):
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves)


def _get_compiled(logdensity_fn, data, carry, rows, target, config: NUTSConfig, devices: list, gibbs_fn=None,
                  meanwhile: Callable | None = None, quick: bool | None = None):
    """The compiled chunk, its compile time (0 if cached), what ``meanwhile()`` returned (called
    while XLA compiles, or at once if nothing is compiled) and the log density's operation count
    if the program is the quick one (:mod:`ppl.inference.quick`; ``quick`` None: as
    :func:`~ppl.inference.quick.quick_start` decides), else None."""
    chains, dim = carry.hmc.position.shape
    # what shapes the program besides the functions and the data layout (also the on-disk key's)
    settings = (
        chains,
        dim,
        str(carry.hmc.position.dtype),
        config.chunk_size,
        config.max_depth,
        bool(config.dense_mass),
        bool(config.fisher_mass),
        int(config.low_rank),
        tuple(np.shape(carry.adapt.grads.draws)) if int(config.low_rank) else (),
        jax.config.jax_enable_x64,
        tuple(d.id for d in devices),
        bool(config.shard_data),
    )
    # XLA's options go by the density and the run's length (compiler_options); within Gibbs the
    # density also reads the discrete draws, so every datum counts and its operations are unknown
    profile = density_profile(logdensity_fn, dim, carry.hmc.position.dtype, data) if gibbs_fn is None else None
    size = profile.data_size if profile is not None else sum(int(np.size(x)) for x in jax.tree.leaves(data))
    ops, iterations = (profile.ops if profile is not None else None), config.warmup + config.draws
    work = run_work(ops, iterations, chains, devices)
    if quick is None:
        quick = quick_start(ops, iterations, chains, devices)
    options = compiler_options(size, devices, work, quick=bool(quick))
    program = (logdensity_fn, gibbs_fn, signature(data)) + settings

    def lower():
        depth, dense = int(config.max_depth), bool(config.dense_mass)   # (the metric's kind is in the carry)
        apart = outer_loops_apart(ops if ops is not None else size)   # (within Gibbs: the count of data)
        if gibbs_fn is None:
            chunk = make_nuts_chunk(logdensity_fn, depth, dense, apart)
        else:
            chunk = make_chunk_fn(*make_gibbs_step(logdensity_fn, gibbs_fn, depth, dense, apart))
        cache_key = None
        if profile is not None:
            cache_key = chunk_key(profile.closed, ("nuts", settings), (carry, rows, data, target), devices)
        return lower_over_chains(chunk, carry, rows, data, target, devices, config.shard_data, cache_key,
                                 (NUTSDraw,))

    compiled, seconds, other = _PROGRAMS.get(program, options, bool(quick), lower, meanwhile)
    return compiled, seconds, other, ops if quick else None


# ----------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------

_STAT_NAMES = {
    "lp__": "lp",
    "accept_stat__": "accept_stat",
    "stepsize__": "stepsize",
    "treedepth__": "treedepth",
    "n_leapfrog__": "n_leapfrog",
    "divergent__": "divergent",
    "energy__": "energy",
}


def density_at(logdensity_fn: Callable, data, positions: np.ndarray) -> StartingPoints:
    """The log density and gradient at each row of ``positions`` (one small compiled program; the
    model's own starting-point search gives them without it)."""
    f = jax.jit(jax.vmap(jax.value_and_grad(logdensity_fn), in_axes=(0, None)))
    lp, grad = jax.device_get(f(positions, data))
    return StartingPoints(positions, np.asarray(lp, positions.dtype), np.asarray(grad, positions.dtype))


def starting_carry(init_positions, chains: int, logdensity_fn, data, state_of: Callable, values: bool = True):
    """``(carry, start)`` for a chunked sampler from ``init_positions``: (chains, dim) positions,
    :class:`~ppl.inference.parallel.StartingPoints` (with their log density and gradient) or a
    :class:`~ppl.inference.parallel.DeferredInit`. ``state_of(StartingPoints) -> carry`` builds
    the chains' states; positions without values get theirs from one small program
    (:func:`density_at`), or zeros with ``values=False`` (NUTS within Gibbs, whose step evaluates
    the density itself). A deferred start gives a carry of the right shapes now, and
    ``start() -> carry`` searches and builds the real one (called while XLA compiles the chunk)."""
    dtype = float_dtype()
    deferred = isinstance(init_positions, DeferredInit)
    given = init_positions.position if isinstance(init_positions, StartingPoints) else init_positions
    pos = np.zeros(init_positions.shape, dtype) if deferred else np.asarray(given, dtype=dtype)
    if pos.ndim != 2 or pos.shape[0] != chains:
        raise ValueError(f"init_positions must have shape (chains={chains}, dim), got {pos.shape}")

    def with_values(start) -> StartingPoints:
        if isinstance(start, StartingPoints):
            return StartingPoints(*(np.asarray(a, dtype) for a in start))
        p = np.asarray(start, dtype)
        if not values:
            return StartingPoints(p, np.zeros(p.shape[0], dtype), np.zeros_like(p))
        return density_at(logdensity_fn, data, p)

    if deferred:
        return state_of(StartingPoints(pos, np.zeros(chains, dtype), pos)), \
            lambda: state_of(with_values(init_positions.find()))
    return state_of(with_values(init_positions)), None


def as_data(data):
    return jax.tree.map(lambda x: x if isinstance(x, (jax.Array, np.ndarray)) else np.asarray(x), data)


def chain_keys(key, chains):
    if isinstance(key, np.random.SeedSequence):
        return raw_keys(key, chains)
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(jax.random.split(key, chains))


def sample_nuts(
    logdensity_fn: Callable,
    data,
    init_positions,
    key,
    config: NUTSConfig = NUTSConfig(),
    callback: Callable | None = None,
    gibbs_fn: Callable | None = None,
) -> SamplerResult:
    """Run ``config.chains`` NUTS chains on ``logdensity_fn(position, data) -> scalar``
    (or NUTS within Gibbs with ``gibbs_fn``: see :func:`ppl.inference.nuts_step.make_gibbs_step`).

    ``init_positions``: (chains, dim) unconstrained starting points with finite density, or
    :class:`~ppl.inference.parallel.StartingPoints` (the same with their log density and
    gradient), or a :class:`~ppl.inference.parallel.DeferredInit` that gives either.
    ``callback(Progress)`` is called after every chunk; raising ``KeyboardInterrupt``
    there (or pressing Ctrl-C) stops sampling and returns the draws made so far with
    ``completed=False``.  Each chain adapts its own step size and mass matrix.
    """
    if config.thin < 1 or config.chunk_size < 1 or config.warmup < 0 or config.draws < 0:
        raise ValueError("thin and chunk_size must be >= 1, warmup and draws >= 0")
    dtype = float_dtype()   # positions in JAX's default float (float64 under ppl's x64 default)
    chains = int(config.chains)
    data = as_data(data)
    keys = chain_keys(key, chains)
    devices = chain_devices(chains, config.devices)
    warmup, draws = int(config.warmup), int(config.draws)
    schedule = build_schedule(warmup, draws)
    rows = low_rank_buffer_size(schedule) if config.low_rank else 0   # the low-rank metric's window buffer

    def state_of(start: StartingPoints) -> NUTSChainState:
        """The chains' states at their starting points, with the density and gradient there: the
        chunk never re-evaluates them at a carried position."""
        return NUTSChainState(
            hmc.HMCState(*start),
            init_adaptation_state(chains, start.position.shape[1], config.init_step_size, config.dense_mass, dtype,
                                  config.fisher_mass, config.low_rank, rows),
            keys,
        )

    # (a deferred start gives the shapes now; its search runs while the chunk compiles)
    first, start = starting_carry(init_positions, chains, logdensity_fn, data, state_of, values=gibbs_fn is None)
    dim = first.hmc.position.shape[1]
    if config.shard_data and len(devices) > 1:
        carry, placed = distribute(first, data, devices, shard_data=True)
    else:
        carry, placed = place(first, data, devices)
    target = np.asarray(config.target_accept, dtype)
    low_rank = LowRankWindows(schedule, config.low_rank)   # (no windows with rank 0)
    low_rank.start(carry, devices)   # (its program compiles beside the chunk's)
    first_rows = pad_schedule(schedule, 0, config.chunk_size)   # (the rows' shapes the program takes)
    compiled, compile_s, found, quick_ops = _get_compiled(logdensity_fn, placed, carry, first_rows, target, config,
                                                          devices, gibbs_fn=gibbs_fn, meanwhile=start)
    if start is not None:
        carry = place_chains(found, devices)
    data = placed

    record = ChunkRecorder(warmup, draws, config.thin, callback)
    # (adaptive calls end wherever the check is; fixed ones only at multiples of chunk_size)
    aligned = 1 if config.call_seconds is not None else config.chunk_size
    stuck = StuckChains(warmup, aligned, chains) if config.restart_stuck else None
    hooks = low_rank.hooks()
    if stuck is not None and stuck.check_at is not None:
        hooks.append((stuck.check_at, lambda c: stuck.move(c, lambda s: place_chains(s, devices))))
    check = QuickCheck(quick_ops, warmup + draws, chains, devices, aligned) if quick_ops is not None else None
    if check is not None:
        def to_optimised(c):    # a quick program (level 0) hands a long rest over to the optimised one
            nonlocal compiled, compile_s
            compiled, seconds, _, _ = _get_compiled(logdensity_fn, data, c, first_rows, target, config, devices,
                                                    quick=False)
            compile_s += seconds
        hooks += check.hooks(to_optimised)

    def on_chunk(start, n_valid, outs, seconds):
        if stuck is not None:
            stuck.observe(start, n_valid, outs)
        if check is not None:
            check.observe(start, n_valid, outs)
        record(start, n_valid, outs, seconds)

    run = lambda c, rows: compiled(c, rows, data, target)  # noqa: E731
    carry, n_done, completed = run_chunked(run, carry, schedule, warmup + draws, config.chunk_size, on_chunk,
                                           sorted(hooks, key=lambda h: h[0]), config.call_seconds)

    draws_out = record.outputs()
    if draws_out is None:
        empty = lambda *s, dt=dtype: np.zeros((chains, 0) + s, dt)  # noqa: E731
        draws_out = NUTSDraw(empty(dim), empty(), empty(), empty(), empty(dt=np.int32),
                             empty(dt=np.int32), empty(dt=bool), empty())
    stats = {name: np.asarray(getattr(draws_out, field)) for name, field in _STAT_NAMES.items()}
    stats["treedepth__"] = stats["treedepth__"].astype(np.int64)
    stats["n_leapfrog__"] = stats["n_leapfrog__"].astype(np.int64)
    stats["divergent__"] = stats["divergent__"].astype(np.int64)
    carry = jax.device_get(carry)
    return SamplerResult(
        positions=np.asarray(draws_out.position),
        stats=stats,
        warmup_divergences=record.warmup_div,
        step_size=np.asarray(carry.adapt.step_size),
        inverse_mass_matrix=dense_inverse_mass_matrix(carry.adapt.mm.inverse_mass_matrix),
        completed=completed,
        compile_s=compile_s + low_rank.wait_s,
        warmup_s=record.warmup_s + low_rank.run_s,
        sampling_s=record.sampling_s,
        extra=None if getattr(draws_out, "extra", None) is None else jax.tree.map(np.asarray, draws_out.extra),
        devices=len(devices),
        moved_chains=tuple(stuck.moves) if stuck is not None else (),
    )
