"""BlackJAX's NUTS transition with the tree depth as an argument of the compiled program.

``blackjax.mcmc.nuts.build_kernel`` takes the most tree doublings as a Python number, which sizes
the U-turn checkpoints and bounds the expansion loop.  Here the two are apart: the checkpoints
are sized by ``max_depth`` (fixed when the chunk is traced), and the loop stops at ``depth``, a
traced value at most ``max_depth``.  With ``depth = 1`` a transition is one leapfrog step from a
fresh momentum whose acceptance statistic is ``min(1, exp(H0 - H1))`` — exactly the quantity
Stan's step-size heuristic compares with 0.8 — so the NUTS chunk runs that heuristic through the
same call site as its transitions (:func:`ppl.inference.nuts.make_nuts_chunk`), and the compiled
program holds a single copy of the log density and its gradient instead of three.

The pieces are BlackJAX's own (``termination.iterative_uturn_numpyro``,
``trajectory.dynamic_progressive_integration``, ``trajectory.dynamic_multiplicative_expansion``,
the velocity Verlet integrator, the metric); only their assembly, as in
``blackjax.mcmc.nuts.iterative_nuts_proposal``, is repeated here.  With ``depth = max_depth`` the
transition is BlackJAX's, draw for draw (``tests/test_nuts.py``).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from ppl.inference import lean_blackjax  # noqa: F401  (first: BlackJAX without scipy.fft or optax)
from blackjax.mcmc import hmc, integrators, metrics, proposal, termination, trajectory
from blackjax.mcmc.nuts import NUTSInfo

from ppl.inference.rng import sampler_key

__all__ = ["build_kernel"]


def build_kernel(max_depth: int, divergence_threshold: float = 1000, loops_apart: bool = False) -> Callable:
    """``kernel(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix, depth) -> (state, info)``:
    a NUTS transition (``blackjax.mcmc.hmc.HMCState``, ``blackjax.mcmc.nuts.NUTSInfo``) whose tree
    stops after ``depth`` doublings (a traced integer, 1 <= depth <= ``max_depth``).

    ``loops_apart``: each doubling passes its step count through a two-element sort, an operation
    XLA's CPU compiler never hoists, so the doubling loop and the loops around it run from XLA's
    runtime and only the leapfrog and U-turn loops inside are compiled as one function each
    (:func:`ppl.inference.parallel.outer_loops_apart`; a sort costs about 0.1 us a doubling)."""
    max_depth = int(max_depth)

    def kernel(rng_key, state: hmc.HMCState, logdensity_fn: Callable, step_size, inverse_mass_matrix, depth):
        metric = metrics.default_metric(inverse_mass_matrix)
        integrator = integrators.velocity_verlet(logdensity_fn, metric.kinetic_energy)
        new_checkpoints, update_checkpoints, is_criterion_met = termination.iterative_uturn_numpyro(
            metric.check_turning)
        integrate = trajectory.dynamic_progressive_integration(
            integrator, metric.kinetic_energy, update_checkpoints, is_criterion_met, divergence_threshold)
        if loops_apart:
            integrate = _apart(integrate)
        expand = trajectory.dynamic_multiplicative_expansion(integrate, metric.check_turning, depth)

        # a counter-based key: BlackJAX's many key derivations cost a few integer operations each
        key_momentum, key_integrator = jax.random.split(sampler_key(rng_key), 2)
        position, logdensity, logdensity_grad = state
        momentum = metric.sample_momentum(key_momentum, position)
        start = integrators.IntegratorState(position, momentum, logdensity, logdensity_grad)
        energy = -logdensity + metric.kinetic_energy(momentum)
        # Typed, not Python, zeros: a weakly typed loop carry that the body returns strongly typed
        # makes JAX trace the whole expansion loop (and the leapfrog steps in it) a second time.
        expansion = trajectory.DynamicExpansionState(
            jnp.zeros((), jnp.int32),
            proposal.Proposal(start, energy, jnp.zeros((), energy.dtype), jnp.full((), -np.inf, energy.dtype)),
            trajectory.Trajectory(start, start, momentum, jnp.zeros((), int)),
            new_checkpoints(start, max_depth)._replace(idx_min=jnp.zeros((), jnp.int32),
                                                       idx_max=jnp.zeros((), jnp.int32)),
        )
        (num_doublings, sampled, whole, _), (is_diverging, is_turning) = expand(
            key_integrator, expansion, energy, step_size)
        info = NUTSInfo(
            momentum,
            is_diverging,
            is_turning,
            sampled.energy,
            whole.leftmost_state,
            whole.rightmost_state,
            num_doublings,
            whole.num_states,
            jax.numpy.exp(sampled.sum_log_p_accept) / whole.num_states,
        )
        chosen = sampled.state
        return hmc.HMCState(chosen.position, chosen.logdensity, chosen.logdensity_grad), info

    return kernel


def _apart(integrate: Callable) -> Callable:
    """``integrate`` (BlackJAX's trajectory integration, called once per doubling) with its step
    count passed through a sort of two elements (one would be simplified away)."""

    def apart(rng_key, initial_state, direction, termination_state, max_num_steps, step_size, initial_energy):
        n = jnp.asarray(max_num_steps)
        n = jax.lax.sort(jnp.stack([n, n]))[0]
        return integrate(rng_key, initial_state, direction, termination_state, n, step_size, initial_energy)

    return apart
