"""Random-walk Metropolis-Hastings with adaptive Gaussian proposals, on the chunked machinery.

The transition is BlackJAX's additive random-walk kernel
(``blackjax.mcmc.random_walk.build_additive_step``) with the proposal
``scale * L z``, ``z ~ N(0, I)``, where ``L L' = Sigma`` is the proposal covariance
(diagonal by default, dense with ``dense_mass``).  Warm-up reuses NUTS's pieces with
the scale in place of the step size: ``Sigma`` is the regularised variance (or
covariance) of the draws in Stan's slow windows (``I`` before the first window ends;
the terminal buffer is a fifth of the warm-up, not 50 iterations),
and the scale is adapted by dual averaging toward ``target_accept`` (0.234, the
optimal acceptance rate of a random walk in many dimensions), restarted at
``2.38 / sqrt(dim)`` (Roberts, Gelman & Gilks 1997) whenever ``Sigma`` changes.  After
warm-up both are fixed, so the sampling phase is a plain Metropolis chain.

Statistics: ``lp__``, ``accept_stat__`` (the acceptance probability) and
``stepsize__`` (the proposal scale).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ppl.inference import lean_blackjax  # noqa: F401  (first: BlackJAX without scipy.fft or optax)
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.mcmc import random_walk as rw

from ppl.config import float_dtype
from ppl.inference.adaptation import (AdaptationState, Schedule, _like, build_schedule, init_adaptation_state,
                                     stan_windows, update_adaptation)
from ppl.inference.chunks import all_finite, as_data, chain_keys, drive, starting_carry
from ppl.inference.nuts import SamplerResult
from ppl.inference.parallel import StartingPoints

__all__ = ["MHConfig", "MHChainState", "MHDraw", "make_mh_step", "sample_mh", "initial_scale"]


class MHConfig(NamedTuple):
    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    target_accept: float = 0.234
    chunk_size: int = 100
    dense_mass: bool = False
    thin: int = 1
    devices: int | None = None  # None: ppl.inference.parallel.chain_devices decides


class MHChainState(NamedTuple):
    rw: rw.RWState            # position, logdensity
    adapt: AdaptationState    # step_size = proposal scale; inverse mass matrix = proposal covariance
    rng_key: jax.Array


class MHDraw(NamedTuple):
    position: jax.Array
    lp: jax.Array
    accept_stat: jax.Array
    stepsize: jax.Array


def initial_scale(dim: int) -> float:
    return 2.38 / np.sqrt(max(dim, 1))


def restart_scale(adapt: AdaptationState, dim: int, target_accept) -> AdaptationState:
    """Scale back to 2.38/sqrt(dim) and dual averaging restarted there, shrinking toward that
    scale (not toward 10x the start, as NUTS's step size does)."""
    da_init, _, _ = dual_averaging_adaptation(target_accept)
    eps = jnp.full_like(adapt.step_size, initial_scale(dim))
    da = da_init(eps)._replace(mu=jnp.log(eps))
    return _like(AdaptationState(eps, adapt.mm, da, adapt.grads), adapt)


def proposal_step(cov, scale, dense: bool) -> Callable:
    """``random_step(key, position) -> move`` with covariance ``scale^2 * cov``."""
    factor = jnp.linalg.cholesky(cov) if dense else jnp.sqrt(cov)

    def random_step(key, position):
        z = jax.random.normal(key, position.shape, position.dtype)
        return scale * (factor @ z if dense else factor * z)

    return random_step


def mh_schedule(warmup: int, draws: int) -> Schedule:
    """Stan's schedule with a longer terminal buffer (a fifth of the warm-up, at least 50):
    dual averaging of a random walk's noisy acceptance needs more than NUTS's 50 iterations."""
    s = build_schedule(warmup, draws)
    slow, end = stan_windows(warmup, final_buffer=max(50, warmup // 5))
    if warmup < 20:
        return s
    s.slow[:warmup], s.window_end[:warmup] = slow, end
    s.reinit[1:warmup] = end[:-1]
    return s


def make_mh_step(logdensity_fn: Callable, dim: int, dense: bool):
    """One-chain MH iteration: ``(step, None, empty_out)`` for ``make_chunk_fn``. The chain state
    carries the log density at its position (the starting points come with theirs), so the chunk
    evaluates the density at one site, the proposal."""
    kernel = rw.build_additive_step()

    def step(state: MHChainState, flags: Schedule, data, target_accept):
        ld = lambda x: logdensity_fn(x, data)  # noqa: E731
        key, k_trans = jax.random.split(state.rng_key)
        adapt = jax.lax.cond(flags.reinit, lambda a: restart_scale(a, dim, target_accept), lambda a: a, state.adapt)
        scale = adapt.step_size
        new, info = kernel(k_trans, state.rw, ld, proposal_step(adapt.mm.inverse_mass_matrix, scale, dense))
        ok = all_finite(new)
        new = jax.tree.map(lambda a, b: jnp.where(ok, a.astype(b.dtype), b), new, state.rw)
        accept = jnp.where(ok & jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0).astype(scale.dtype)
        new_adapt = update_adaptation(adapt, flags, new.position, accept, target_accept, dense)
        return MHChainState(new, new_adapt, key), MHDraw(new.position, new.logdensity, accept, scale)

    def empty_out(state: MHChainState) -> MHDraw:
        z = jnp.zeros_like(state.rw.logdensity)
        return MHDraw(jnp.zeros_like(state.rw.position), z, z, z)

    return step, None, empty_out


def sample_mh(logdensity_fn: Callable, data, init_positions, key, config: MHConfig = MHConfig(),
              callback: Callable | None = None) -> SamplerResult:
    """Run ``config.chains`` random-walk Metropolis chains on ``logdensity_fn(position, data)`` from
    ``init_positions``: (chains, dim) positions, :class:`~ppl.inference.parallel.StartingPoints`
    or a :class:`~ppl.inference.parallel.DeferredInit` (searched for while XLA compiles)."""
    if not 0 < config.target_accept < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {config.target_accept}")
    dtype = float_dtype()
    data = as_data(data)
    keys = chain_keys(key, config.chains)

    def state_of(start: StartingPoints) -> MHChainState:
        chains, dim = start.position.shape
        return MHChainState(rw.RWState(start.position, start.logdensity),
                            init_adaptation_state(chains, dim, initial_scale(dim), config.dense_mass, dtype), keys)

    carry, start = starting_carry(init_positions, config.chains, logdensity_fn, data, state_of)
    dim = carry.rw.position.shape[1]
    dense = bool(config.dense_mass)
    run = drive("mh", lambda: make_mh_step(logdensity_fn, dim, dense), logdensity_fn, data, carry,
                np.asarray(config.target_accept, dtype), warmup=int(config.warmup), draws=int(config.draws),
                chunk_size=int(config.chunk_size), thin=int(config.thin), static=(dense,), callback=callback,
                schedule=mh_schedule(int(config.warmup), int(config.draws)), devices=config.devices,
                draw_type=MHDraw, start=start, leapfrogs=0.5)   # (one density an iteration: half a gradient)
    stats = {"lp__": run.draws.lp, "accept_stat__": run.draws.accept_stat, "stepsize__": run.draws.stepsize}
    return SamplerResult(positions=np.asarray(run.draws.position), stats={k: np.asarray(v) for k, v in stats.items()},
                         warmup_divergences=0, step_size=np.asarray(run.carry.adapt.step_size),
                         inverse_mass_matrix=np.asarray(run.carry.adapt.mm.inverse_mass_matrix),
                         completed=run.completed, compile_s=run.compile_s, warmup_s=run.warmup_s,
                         sampling_s=run.sampling_s, devices=run.devices)
