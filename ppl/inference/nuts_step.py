"""One chain's NUTS program: warm-up and sampling rows, Stan's step-size heuristic folded in.

A chunk (:func:`make_nuts_chunk`) loops over the active rows of its schedule, and each row is a
small ``while`` loop of passes, every pass one call of the NUTS kernel
(:func:`ppl.inference.nuts_kernel.build_kernel`), so the compiled program holds a single copy of
the log density and its gradient:

* a row's transition is one pass at the adapted step size and the full tree depth;
* a row that restarts the step size (``Schedule.reinit``: the first warm-up iteration and the one
  after each slow window) first runs Stan's ``init_stepsize`` heuristic, one trial per pass: a
  tree of depth 1 (one leapfrog step from a fresh momentum, whose acceptance statistic is
  ``min(1, exp(H0 - H1))``) at the trial step size, doubling or halving it until that statistic
  crosses 0.8 (at most 100 doublings or halvings, step sizes in [1e-12, 1e7]); the chain does not
  move, dual averaging restarts at the step size found, and the row's transition follows.

The row index stays one number when chains are vectorised (each chain's passes are the inner
loop's), so rows are read and draws written without gathers or scatters.

The chain state carries the log density and gradient at its position (the starting points come
with theirs: ``sample_nuts``), so no chunk evaluates them afresh.  Until 2026-12 the heuristic had
its own leapfrog loop and each chunk began by re-evaluating the density: three copies of the
density in one program, and XLA compiles each (bench/README.md, "Cold start").

NUTS within Gibbs (:func:`make_gibbs_step`) draws the discrete variables first in each iteration,
which changes the density, so its step evaluates the density at the start of every iteration (a
second copy), then runs the same loop of passes.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from ppl.inference import lean_blackjax  # noqa: F401  (first: BlackJAX without scipy.fft or optax)
from blackjax.mcmc import hmc, metrics

from ppl.inference.adaptation import (AdaptationState, LowRankBuffer, Schedule, _select, restart_dual_averaging,
                                      record_low_rank, update_adaptation)
from ppl.inference.nuts_kernel import build_kernel
from ppl.inference.rng import sampler_key

__all__ = ["NUTSChainState", "NUTSDraw", "all_finite", "make_nuts_chunk", "make_gibbs_step", "search_then_move",
           "MAX_TRIALS"]

MAX_TRIALS = 100  # doublings or halvings of the step-size heuristic (Stan's has no bound; it throws)


class NUTSChainState(NamedTuple):
    """State of one chain carried between chunks (leading chain axis when batched)."""

    hmc: hmc.HMCState  # position, logdensity, logdensity_grad
    adapt: AdaptationState  # step size, mass matrix + Welford, dual averaging
    rng_key: jax.Array  # raw uint32 key


class NUTSDraw(NamedTuple):
    """Per-iteration output of one chain."""

    position: jax.Array
    lp: jax.Array
    accept_stat: jax.Array
    stepsize: jax.Array
    treedepth: jax.Array
    n_leapfrog: jax.Array
    divergent: jax.Array
    energy: jax.Array
    extra: object = None  # the discrete values drawn by a Gibbs sweep, when there is one


class Search(NamedTuple):
    """Stan's step-size heuristic for the current row, one trial per pass."""

    trial: jax.Array       # trials made for this row (int32)
    step_size: jax.Array   # the last trial's step size
    direction: jax.Array   # +1 doubling, -1 halving (int32), set by the first trial
    done: jax.Array        # bool: the row's search is over (or it needs none)


def all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.bool_(True)


def _transition(kernel, state: NUTSChainState, ld, key, flags: Schedule, target_accept, depth, dense: bool):
    """A NUTS transition at the adapted step size, then the row's adaptation: (hmc, adapt, draw).
    The gradient at the new position goes to the adaptation when its state keeps gradients (the
    "fisher" and "lowrank" metrics: :func:`ppl.inference.adaptation.init_adaptation_state`).

    A proposal with a non-finite log density, gradient or position is rejected and counted as
    divergent (nan never enters the chain state)."""
    eps, imm = state.adapt.step_size, state.adapt.mm.inverse_mass_matrix
    proposal, info = kernel(key, state.hmc, ld, eps, imm, depth)
    ok = all_finite(proposal)
    new_hmc = _select(ok, proposal, state.hmc)
    accept = jnp.where(ok & jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0).astype(eps.dtype)
    # A rejected non-finite proposal keeps the old state: report its energy.
    old_energy = -state.hmc.logdensity + metrics.default_metric(imm).kinetic_energy(info.momentum)
    new_adapt = update_adaptation(state.adapt, flags, new_hmc.position, accept, target_accept, dense,
                                  new_hmc.logdensity_grad if state.adapt.grads is not None else None)
    draw = NUTSDraw(
        position=new_hmc.position,
        lp=new_hmc.logdensity,
        accept_stat=accept,
        stepsize=eps,
        treedepth=jnp.asarray(info.num_trajectory_expansions, jnp.int32),
        n_leapfrog=jnp.asarray(info.num_integration_steps, jnp.int32),
        divergent=info.is_divergent | ~ok,
        energy=jnp.where(ok, info.energy, old_energy).astype(eps.dtype),
    )
    return new_hmc, new_adapt, draw


def _empty_draw(state: NUTSChainState) -> NUTSDraw:
    return jax.tree.map(lambda a: a[0], _empty_draws(state, 1))


def _empty_draws(state: NUTSChainState, length: int) -> NUTSDraw:
    z = jnp.zeros((length,), state.hmc.logdensity.dtype)
    i = jnp.zeros((length,), jnp.int32)
    return NUTSDraw(jnp.zeros((length,) + state.hmc.position.shape, state.hmc.position.dtype), z, z, z, i, i,
                    jnp.zeros((length,), bool), z)


def _trial_step_size(search: Search, current):
    """The heuristic's next trial: the current step size first, then the last trial doubled or halved."""
    doubled_or_halved = jnp.where(search.direction == 1, 2.0 * search.step_size, 0.5 * search.step_size)
    return jnp.where(search.trial == 0, current, doubled_or_halved).astype(current.dtype)


def _after_trial(search: Search, trial, accept_stat, current):
    """Stan's heuristic after one trial at step size ``trial`` whose one leapfrog step had acceptance
    statistic ``accept_stat`` (log of it against log 0.8; a non-finite energy is a rejection): the
    next search state and the step size found (meaningful once ``search.done``)."""
    first = search.trial == 0
    log_accept = jnp.log(jnp.where(jnp.isfinite(accept_stat), accept_stat, 0.0))
    up, down = log_accept > _LOG_08, log_accept < _LOG_08
    direction = jnp.where(first, jnp.where(up, 1, -1), search.direction).astype(jnp.int32)
    crossed = jnp.where(direction == 1, ~up, ~down)
    skip = (current == 0) | (current > 1e7) | jnp.isnan(current)    # Stan's guard: no search at all
    out_of_range = (trial > 1e7) | (trial < 1e-12)
    stop = skip | (~first & (crossed | out_of_range)) | (search.trial >= MAX_TRIALS)
    found = jnp.clip(jnp.where(skip, current, trial), 1e-12, 1e7)
    return Search(search.trial + 1, trial, direction, stop), found


_LOG_08 = math.log(0.8)   # (not jnp: an eager JAX operation at import is an XLA compilation)


def search_then_move(s, flags: Schedule, target_accept, move: Callable, empty):
    """One iteration of a sampler whose state has ``hmc``, ``adapt`` and ``rng_key`` fields: a
    ``while`` loop of passes, each one call of ``move(state, key, step_size, searching) ->
    (moved state, draw, acceptance statistic)`` (its one kernel call), so the compiled program
    holds one copy of the log density. A row that restarts the step size first runs Stan's
    heuristic, one trial per pass (``searching``: ``move`` takes one leapfrog step at the trial
    step size, and the chain stays), then the transition at the adapted step size. Returns the
    state and the transition's draw (``empty`` gives its shapes)."""

    def one_pass(c):
        s, search, _, _ = c
        searching = ~search.done
        key, k_search, k_move = jax.random.split(s.rng_key, 3)
        current = s.adapt.step_size
        trial = _trial_step_size(search, current)
        # the pass's keys are counter-based (rng.sampler_key): the trial's fold_in is a counter move
        k_trial = jax.random.fold_in(sampler_key(k_search), search.trial)
        k = sampler_key(jnp.where(searching, jax.random.key_data(k_trial), jax.random.key_data(sampler_key(k_move))))
        moved, draw, accept = move(s, k, jnp.where(searching, trial, current), searching)
        after, found = _after_trial(search, trial, accept, current)
        restarted = _select(after.done, restart_dual_averaging(s.adapt, found, target_accept), s.adapt)
        s = _select(searching, s._replace(adapt=restarted), moved._replace(rng_key=key))
        return s, _select(searching, after, search), draw, ~searching

    no_search = Search(jnp.int32(0), s.adapt.step_size, jnp.int32(1), ~flags.reinit)
    s, _, draw, _ = jax.lax.while_loop(lambda c: ~c[3], one_pass, (s, no_search, empty, jnp.bool_(False)))
    return s, draw


def _iteration(kernel, s: NUTSChainState, ld, flags: Schedule, target_accept, max_depth: int, dense: bool,
               empty: NUTSDraw):
    """One NUTS iteration (:func:`search_then_move`): trials are trees of depth 1, the transition
    a tree of up to ``max_depth`` doublings. The low-rank metric's window buffer stays outside the
    passes' loop and takes the transition's position and gradient after it
    (:func:`ppl.inference.adaptation.record_low_rank`; the sampler estimates the metric between
    chunks: :mod:`ppl.inference.low_rank`)."""
    buf = s.adapt.grads if isinstance(s.adapt.grads, LowRankBuffer) else None
    if buf is not None:   # zero rows in its place (update_adaptation then leaves the metric alone)
        s = s._replace(adapt=s.adapt._replace(grads=buf._replace(draws=buf.draws[:0], grads=buf.grads[:0])))

    def move(s, key, step_size, searching):
        at = s._replace(adapt=s.adapt._replace(step_size=step_size))
        new_hmc, new_adapt, draw = _transition(kernel, at, ld, key, flags, target_accept,
                                               jnp.where(searching, 1, max_depth), dense)
        return s._replace(hmc=new_hmc, adapt=new_adapt), draw, draw.accept_stat

    s, draw = search_then_move(s, flags, target_accept, move, empty)
    if buf is not None:
        s = s._replace(adapt=s.adapt._replace(grads=record_low_rank(buf, flags, s.hmc.position, s.hmc.logdensity_grad)))
    return s, draw


def make_nuts_chunk(logdensity_fn: Callable, max_depth: int, dense: bool, loops_apart: bool = False) -> Callable:
    """The one-chain chunk ``(state, schedule, data, target_accept) -> (state, draws)`` (see the
    module docstring); :func:`ppl.inference.parallel.over_chains` runs it for every chain.

    The schedule's active rows are a prefix (padding comes last); only they run, and the draws of
    the others stay zero. ``loops_apart``: see :func:`ppl.inference.nuts_kernel.build_kernel`."""
    kernel = build_kernel(max_depth, loops_apart=loops_apart)

    def one_chain(state: NUTSChainState, schedule: Schedule, data, target_accept):
        ld = lambda x: logdensity_fn(x, data)  # noqa: E731

        def row(i, carry):
            s, draws = carry
            flags = jax.tree.map(lambda a: a[i], schedule)
            s, draw = _iteration(kernel, s, ld, flags, target_accept, max_depth, dense,
                                 jax.tree.map(lambda b: b[i], draws))
            return s, jax.tree.map(lambda b, d: b.at[i].set(d), draws, draw)

        n = jnp.sum(schedule.active.astype(jnp.int32))
        return jax.lax.fori_loop(0, n, row, (state, _empty_draws(state, schedule.active.shape[0])))

    return one_chain


def make_gibbs_step(logdensity_fn: Callable, gibbs_fn: Callable, max_depth: int, dense: bool,
                    loops_apart: bool = False):
    """NUTS within Gibbs: ``(step, None, None)`` for :func:`ppl.inference.nuts.make_chunk_fn`. Each
    iteration draws ``extra`` (the discrete variables, from their exact conditional given the
    position: ``gibbs_fn(key, position, data)``), then takes a NUTS step on
    ``logdensity_fn(position, (data, extra))``."""
    kernel = build_kernel(max_depth, loops_apart=loops_apart)

    def step(state: NUTSChainState, flags: Schedule, data, target_accept):
        key, k_gibbs = jax.random.split(state.rng_key)
        extra = gibbs_fn(k_gibbs, state.hmc.position, data)
        ld = lambda x: logdensity_fn(x, (data, extra))  # noqa: E731
        fresh = hmc.init(state.hmc.position, ld)
        s = NUTSChainState(jax.tree.map(lambda n, o: n.astype(o.dtype), fresh, state.hmc), state.adapt, key)
        s, draw = _iteration(kernel, s, ld, flags, target_accept, max_depth, dense, _empty_draw(s))
        return s, draw._replace(extra=extra)

    return step, None, None
