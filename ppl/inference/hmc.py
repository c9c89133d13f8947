"""Static HMC (fixed path length) with Stan-style warm-up, on the chunked machinery.

The transition is BlackJAX's HMC kernel (``blackjax.mcmc.hmc.build_kernel``: velocity
Verlet, Metropolis accept/reject of the trajectory's end).  The number of leapfrog
steps is ``num_steps`` when given, else ``floor(path_length * j / step_size)`` (at
least 1, at most ``max_steps``) where ``j`` is drawn uniformly from
``[1 - jitter, 1 + jitter]`` at every iteration -- Stan's ``int_time`` rule plus a
jitter of the path length, which keeps the sampler from locking onto a period of the
dynamics.  Warm-up is NUTS's: Stan's step-size heuristic and dual averaging toward
``target_accept``, and a diagonal (or dense) inverse mass matrix from Stan's windows.

Statistics (Stan's names): ``lp__ accept_stat__ stepsize__ int_time__ n_leapfrog__
divergent__ energy__``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from ppl.inference import lean_blackjax  # noqa: F401  (first: BlackJAX without scipy.fft or optax)
from blackjax.mcmc import hmc, metrics

from ppl.config import float_dtype
from ppl.inference.adaptation import AdaptationState, Schedule, _select, init_adaptation_state, update_adaptation
from ppl.inference.chunks import all_finite, as_data, chain_keys, drive, starting_carry
from ppl.inference.nuts import SamplerResult
from ppl.inference.nuts_step import search_then_move
from ppl.inference.parallel import StartingPoints
from ppl.inference.quick import TYPICAL_LEAPFROGS

__all__ = ["HMCConfig", "HMCChainState", "HMCDraw", "make_hmc_step", "sample_hmc"]


class HMCConfig(NamedTuple):
    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    target_accept: float = 0.8
    path_length: float = 2.0      # integration time (Stan's int_time) in the metric's units
    num_steps: Optional[int] = None   # fixed number of leapfrog steps (overrides path_length)
    jitter: float = 0.2           # relative jitter of the path length
    max_steps: int = 1024         # cap on leapfrog steps per iteration
    chunk_size: int = 100
    init_step_size: float = 1.0
    dense_mass: bool = False
    thin: int = 1
    devices: int | None = None  # None: ppl.inference.parallel.chain_devices decides


class HMCParams(NamedTuple):
    target_accept: jax.Array
    path_length: jax.Array
    num_steps: jax.Array          # 0: use path_length
    jitter: jax.Array


class HMCChainState(NamedTuple):
    hmc: hmc.HMCState
    adapt: AdaptationState
    rng_key: jax.Array


class HMCDraw(NamedTuple):
    position: jax.Array
    lp: jax.Array
    accept_stat: jax.Array
    stepsize: jax.Array
    int_time: jax.Array
    n_leapfrog: jax.Array
    divergent: jax.Array
    energy: jax.Array


def num_leapfrog(key, step_size, params: HMCParams, max_steps: int):
    """Leapfrog steps for one iteration: fixed, or the (jittered) path length over the step size."""
    j = jax.random.uniform(key, (), step_size.dtype, 1.0 - params.jitter, 1.0 + params.jitter)
    from_path = jnp.floor(params.path_length * j / step_size)
    n = jnp.where(params.num_steps > 0, params.num_steps, jnp.clip(from_path, 1, max_steps))
    return n.astype(jnp.int32)


def make_hmc_step(logdensity_fn: Callable, max_steps: int, dense: bool):
    """One-chain static-HMC iteration: ``(step, None, empty_out)`` for ``make_chunk_fn``.

    As in the NUTS chunk (:mod:`ppl.inference.nuts_step`), an iteration is a small ``while`` loop
    of passes, each one call of BlackJAX's HMC kernel, so the compiled program holds one copy of
    the log density and its gradient: an iteration that restarts the step size first runs Stan's
    heuristic, one trial per pass (one leapfrog step from a fresh momentum, whose acceptance
    statistic is ``min(1, exp(H0 - H1))``; the chain does not move), then its transition. The
    chain state carries the density and gradient at its position (the starting points come with
    theirs), so no chunk evaluates them afresh."""
    kernel = hmc.build_kernel()

    def step(state: HMCChainState, flags: Schedule, data, params: HMCParams):
        ld = lambda x: logdensity_fn(x, data)  # noqa: E731

        def move(s, key, eps, searching):
            k_len, k_trans = jax.random.split(key)
            imm = s.adapt.mm.inverse_mass_matrix
            n = jnp.where(searching, 1, num_leapfrog(k_len, s.adapt.step_size, params, max_steps))
            proposal, info = kernel(k_trans, s.hmc, ld, eps, imm, n)
            ok = all_finite(proposal)
            new = _select(ok, proposal, s.hmc)
            accept = jnp.where(ok & jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0).astype(eps.dtype)
            moved = ok & info.is_accepted
            old_energy = -s.hmc.logdensity + metrics.default_metric(imm).kinetic_energy(info.momentum)
            energy = jnp.where(moved, info.energy, old_energy).astype(eps.dtype)
            out = HMCDraw(new.position, new.logdensity, accept, eps, (n * eps).astype(eps.dtype), n,
                          info.is_divergent | ~ok, energy)
            new_adapt = update_adaptation(s.adapt, flags, new.position, accept, params.target_accept, dense)
            return s._replace(hmc=new, adapt=new_adapt), out, accept

        return search_then_move(state, flags, params.target_accept, move, empty_out(state))

    def empty_out(state: HMCChainState) -> HMCDraw:
        z = jnp.zeros_like(state.hmc.logdensity)
        return HMCDraw(jnp.zeros_like(state.hmc.position), z, z, z, z, jnp.zeros((), jnp.int32),
                       jnp.zeros((), bool), z)

    return step, None, empty_out


_STATS = {"lp__": "lp", "accept_stat__": "accept_stat", "stepsize__": "stepsize", "int_time__": "int_time",
          "n_leapfrog__": "n_leapfrog", "divergent__": "divergent", "energy__": "energy"}


def sample_hmc(logdensity_fn: Callable, data, init_positions, key, config: HMCConfig = HMCConfig(),
               callback: Callable | None = None) -> SamplerResult:
    """Run ``config.chains`` static-HMC chains on ``logdensity_fn(position, data)`` from
    ``init_positions``: (chains, dim) positions, :class:`~ppl.inference.parallel.StartingPoints`
    (with their log density and gradient), or a :class:`~ppl.inference.parallel.DeferredInit`
    (searched for while XLA compiles the chunk)."""
    if config.num_steps is not None and config.num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {config.num_steps}")
    if not config.path_length > 0 or not 0 <= config.jitter < 1:
        raise ValueError("path_length must be > 0 and jitter in [0, 1)")
    dtype = float_dtype()
    data = as_data(data)
    keys = chain_keys(key, config.chains)

    def state_of(start: StartingPoints) -> HMCChainState:
        chains, dim = start.position.shape
        return HMCChainState(hmc.HMCState(*start),
                             init_adaptation_state(chains, dim, config.init_step_size, config.dense_mass, dtype),
                             keys)

    carry, start = starting_carry(init_positions, config.chains, logdensity_fn, data, state_of)
    params = HMCParams(np.asarray(config.target_accept, dtype), np.asarray(config.path_length, dtype),
                       np.asarray(config.num_steps or 0, np.int32), np.asarray(config.jitter, dtype))
    max_steps, dense = int(config.max_steps), bool(config.dense_mass)
    run = drive("hmc", lambda: make_hmc_step(logdensity_fn, max_steps, dense), logdensity_fn, data, carry,
                params, warmup=int(config.warmup), draws=int(config.draws), chunk_size=int(config.chunk_size),
                thin=int(config.thin), static=(max_steps, dense), callback=callback, devices=config.devices,
                draw_type=HMCDraw, start=start, leapfrogs=config.num_steps or TYPICAL_LEAPFROGS)
    stats = {name: np.asarray(getattr(run.draws, f)) for name, f in _STATS.items()}
    stats["n_leapfrog__"] = stats["n_leapfrog__"].astype(np.int64)
    stats["divergent__"] = stats["divergent__"].astype(np.int64)
    return SamplerResult(positions=np.asarray(run.draws.position), stats=stats,
                         warmup_divergences=run.warmup_divergences,
                         step_size=np.asarray(run.carry.adapt.step_size),
                         inverse_mass_matrix=np.asarray(run.carry.adapt.mm.inverse_mass_matrix),
                         completed=run.completed, compile_s=run.compile_s, warmup_s=run.warmup_s,
                         sampling_s=run.sampling_s, devices=run.devices)
