"""Stan-style warm-up for NUTS, written as data (a schedule) plus pure update functions.

The warm-up is driven by a per-iteration *schedule*: a :class:`Schedule` of boolean
arrays, one entry per MCMC iteration.  It is built here in plain numpy and passed to
the compiled chunk program as an argument, so the same compiled program serves any
number of warm-up and sampling iterations (the warm-up/sampling switch is data).

Pieces used from BlackJAX: the dual-averaging step-size adaptation
(``blackjax.adaptation.step_size.dual_averaging_adaptation``) and the Welford
mass-matrix adaptation (``blackjax.adaptation.mass_matrix.mass_matrix_adaptation``,
whose ``final`` gives Stan's regularised window variance
``(n/(n+5))*var + 1e-3*(5/(n+5))``), and for ``mass_matrix="fisher"`` nutpie's
gradient-informed diagonal
(``blackjax.adaptation.metric_estimators.fisher_score_diagonal_from_moments``) with the same
shrinkage.  The window layout follows Stan's (and BlackJAX's ``build_schedule``): initial
fast buffer 75, doubling slow windows from 25, terminal fast buffer 50, shrunk to
15%/75%/10% when the warm-up is shorter than 150, and no mass-matrix adaptation at all
under 20 warm-up iterations.  The step-size restart
uses Stan's ``init_stepsize`` heuristic (one leapfrog step, doubling/halving until the
acceptance of that single step crosses 0.8) at the first warm-up iteration and after
every slow window, run through each sampler's one call of its kernel (NUTS, NUTS within Gibbs:
:mod:`ppl.inference.nuts_step`; static HMC: :mod:`ppl.inference.hmc`), which then restarts dual
averaging with :func:`restart_dual_averaging`.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ppl.inference import lean_blackjax  # noqa: F401  (first: BlackJAX without scipy.fft or optax)
from blackjax.adaptation.mass_matrix import (MassMatrixAdaptationState, WelfordAlgorithmState, mass_matrix_adaptation,
                                             welford_algorithm)
from blackjax.adaptation.metric_estimators import _compute_low_rank_metric, fisher_score_diagonal_from_moments
from blackjax.adaptation.step_size import DualAveragingAdaptationState, dual_averaging_adaptation
from blackjax.mcmc.metrics import LowRankInverseMassMatrix

__all__ = [
    "Schedule",
    "AdaptationState",
    "stan_windows",
    "build_schedule",
    "pad_schedule",
    "init_adaptation_state",
    "LowRankBuffer",
    "low_rank_buffer_size",
    "low_rank_is_dense",
    "dense_inverse_mass_matrix",
    "restart_dual_averaging",
    "update_adaptation",
    "record_low_rank",
    "estimate_low_rank",
]


# ----------------------------------------------------------------------------------
# Schedule (pure numpy, no device work, no compilation)
# ----------------------------------------------------------------------------------


class Schedule(NamedTuple):
    """Per-iteration flags (each a bool array with a leading iteration axis).

    An all-False row is a no-op: the chunk program leaves the chain untouched, which is
    how the final partial chunk is padded.
    """

    active: np.ndarray  # real iteration (False only for padding)
    adapt: np.ndarray  # dual-averaging step-size update after the transition (warm-up)
    reinit: np.ndarray  # Stan's step-size heuristic + dual-averaging restart, before the transition
    slow: np.ndarray  # add the new position to the Welford accumulator
    window_end: np.ndarray  # inverse mass matrix <- regularised window variance; reset Welford
    warmup_end: np.ndarray  # step size <- exp(dual-averaging average)


def stan_windows(
    num_warmup: int,
    initial_buffer: int = 75,
    first_window: int = 25,
    final_buffer: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Stan's slow windows, as (slow, window_end) bool arrays of length ``num_warmup``.

    Same layout as ``blackjax.adaptation.window_adaptation.build_schedule``.
    """
    slow = np.zeros(num_warmup, dtype=bool)
    end = np.zeros(num_warmup, dtype=bool)
    if num_warmup < 20:
        return slow, end
    if initial_buffer + first_window + final_buffer > num_warmup:
        initial_buffer = int(0.15 * num_warmup)
        final_buffer = int(0.1 * num_warmup)
        first_window = num_warmup - initial_buffer - final_buffer
    final_start = num_warmup - final_buffer
    start, size = initial_buffer, first_window
    while start < final_start:
        if 3 * size <= final_start - start:
            nxt = 2 * size
        else:
            size = final_start - start
            nxt = size
        slow[start : start + size] = True
        end[start + size - 1] = True
        start, size = start + size, nxt
    return slow, end


def build_schedule(num_warmup: int, num_draws: int) -> Schedule:
    """The full schedule for ``num_warmup`` warm-up then ``num_draws`` sampling iterations."""
    n = num_warmup + num_draws
    it = np.arange(n)
    warm = it < num_warmup
    slow_w, end_w = stan_windows(num_warmup)
    slow = np.zeros(n, dtype=bool)
    end = np.zeros(n, dtype=bool)
    slow[:num_warmup], end[:num_warmup] = slow_w, end_w
    reinit = np.zeros(n, dtype=bool)
    if num_warmup > 0:
        reinit[0] = True
        reinit[1:] = end[:-1]
        reinit &= warm
    return Schedule(
        active=np.ones(n, dtype=bool),
        adapt=warm,
        reinit=reinit,
        slow=slow,
        window_end=end,
        warmup_end=it == num_warmup - 1,
    )


def pad_schedule(schedule, start: int, length: int, rows: int | None = None):
    """Rows ``start:start+rows`` (default ``length``) of a schedule pytree, padded with all-False
    (not run) rows to ``length``."""
    take = length if rows is None else min(rows, length)

    def cut(a):
        piece = a[start : start + take]
        if piece.shape[0] < length:
            pad = np.zeros((length - piece.shape[0],) + a.shape[1:], dtype=a.dtype)
            piece = np.concatenate([piece, pad])
        return piece

    return type(schedule)(*(cut(a) for a in schedule))


# ----------------------------------------------------------------------------------
# Adaptation state and its updates (pure jax functions of one chain)
# ----------------------------------------------------------------------------------


class AdaptationState(NamedTuple):
    step_size: jax.Array  # () step size used by the next transition
    mm: MassMatrixAdaptationState  # inverse mass matrix + Welford accumulator of positions
    da: DualAveragingAdaptationState  # dual-averaging state
    # gradients: a Welford accumulator (the "fisher" metric) or a window's buffer ("lowrank")
    grads: "WelfordAlgorithmState | LowRankBuffer | None" = None


class LowRankBuffer(NamedTuple):
    """The current slow window's positions and gradients, for the low-rank metric."""

    draws: jax.Array   # (B, dim), the first ``count`` rows filled
    grads: jax.Array   # (B, dim)
    count: jax.Array   # ()


LOW_RANK_GAMMA, LOW_RANK_CUTOFF = 1e-5, 2.0   # nutpie's defaults (BlackJAX's too)


def low_rank_is_dense(dim: int, rank: int) -> bool:
    """Whether the low-rank metric of ``rank`` directions is held and applied as a dense matrix: where
    dim <= 2 rank its factors are no smaller, and NUTS runs faster with the dense matrix than with
    BlackJAX's factored operations (one leapfrog step on a 10-dimensional Gaussian, 2 cores: 0.50
    us dense, 3.7 us factored, 0.53 diagonal; at dim 20: 2.8 / 5.8 / 0.9; at 28: 5.1 / 4.4 / 2.3)."""
    return dim <= 2 * rank


def low_rank_buffer_size(schedule: Schedule) -> int:
    """The longest slow window of ``schedule``: the rows a low-rank buffer needs."""
    longest = run = 0
    for slow, end in zip(np.asarray(schedule.slow), np.asarray(schedule.window_end)):
        run = run + 1 if slow else 0
        longest = max(longest, run)
        if end:
            run = 0
    return max(longest, 1)


def init_adaptation_state(chains: int, dim: int, step_size: float, dense: bool, dtype,
                          fisher: bool = False, low_rank: int = 0, buffer: int = 0) -> AdaptationState:
    """Initial adaptation state for ``chains`` chains, built in numpy (no device work). ``fisher``
    adds the gradient accumulator of :func:`update_adaptation`'s gradient-informed metric (the
    other metrics do not carry it through every iteration); ``low_rank=k`` (with ``buffer``, the
    longest slow window: :func:`low_rank_buffer_size`) starts nutpie's low-rank metric of rank at
    most k from the identity, with a buffer of one window's positions and gradients."""
    dtype = np.dtype(dtype)
    itype = np.dtype(jax.dtypes.canonicalize_dtype(np.int64))
    eps = np.full((chains,), step_size, dtype=dtype)
    wc = WelfordAlgorithmState(np.zeros((chains, dim), dtype), np.zeros((chains, dim, dim) if dense else (chains, dim),
                                                                         dtype), np.zeros(chains, itype))
    if low_rank:
        k = max(1, min(int(low_rank), dim))
        # U = 0 and lam = 1: M^-1 = diag(sigma^2) = I until the first slow window ends; held as a
        # dense matrix where dim <= 2k (low_rank_is_dense)
        imm = (np.broadcast_to(np.eye(dim, dtype=dtype), (chains, dim, dim)).copy() if low_rank_is_dense(dim, k) else
               LowRankInverseMassMatrix(np.ones((chains, dim), dtype), np.zeros((chains, dim, k), dtype),
                                        np.ones((chains, k), dtype)))
        wg = LowRankBuffer(np.zeros((chains, buffer, dim), dtype), np.zeros((chains, buffer, dim), dtype),
                           np.zeros(chains, itype))
    else:
        imm = np.broadcast_to(np.eye(dim, dtype=dtype), (chains, dim, dim)).copy() if dense else \
            np.ones((chains, dim), dtype=dtype)
        wg = (WelfordAlgorithmState(np.zeros((chains, dim), dtype), np.zeros((chains, dim), dtype),
                                    np.zeros(chains, itype)) if fisher and not dense else None)
    da = DualAveragingAdaptationState(
        np.log(eps), np.zeros_like(eps), np.ones(chains, itype), np.zeros_like(eps), np.log(10 * eps)
    )
    return AdaptationState(eps, MassMatrixAdaptationState(imm, wc), da, wg)


def _like(new, old):
    """Cast a pytree to the dtypes of a reference pytree (keeps scan/cond carries stable)."""
    return jax.tree.map(lambda n, o: jnp.asarray(n, dtype=jnp.result_type(o)), new, old)


def _select(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def restart_dual_averaging(adapt: AdaptationState, step_size, target_accept) -> AdaptationState:
    """Dual averaging started afresh at ``step_size`` (the mass matrix and its accumulators kept)."""
    da_init, _, _ = dual_averaging_adaptation(target_accept)
    return _like(AdaptationState(step_size, adapt.mm, da_init(step_size), adapt.grads), adapt)


def update_adaptation(
    adapt: AdaptationState, flags, position, accept_stat, target_accept, dense: bool, grad=None
) -> AdaptationState:
    """Apply one iteration's (post-transition) schedule flags to the adaptation state.

    With ``grad`` (the log-density gradient at ``position``; the state then carries its
    accumulator, see :func:`init_adaptation_state`) and a diagonal metric, each window
    ends with the gradient-informed estimate of nutpie (Seyboldt et al.): the inverse mass matrix
    is sqrt(Var[x] / Var[grad log p]) per coordinate, which equals Var[x] for a Gaussian and
    minimises the Fisher divergence to a standard normal otherwise; shrunk towards 1e-3 with
    Stan's weights n/(n+5), 5/(n+5). Without ``grad``: Stan's regularised window variance."""
    _, da_update, _ = dual_averaging_adaptation(target_accept)
    _, mm_update, mm_final = mass_matrix_adaptation(not dense)

    da = _select(flags.adapt, _like(da_update(adapt.da, accept_stat), adapt.da), adapt.da)
    step_size = jnp.where(flags.adapt, jnp.exp(da.log_step_size), adapt.step_size)
    if isinstance(adapt.grads, LowRankBuffer):
        # the metric and its buffer: record_low_rank and estimate_low_rank
        step_size = jnp.where(flags.warmup_end, jnp.exp(da.log_step_size_avg), step_size)
        return AdaptationState(step_size.astype(adapt.step_size.dtype), adapt.mm, da, adapt.grads)
    mm = _select(flags.slow, _like(mm_update(adapt.mm, position), adapt.mm), adapt.mm)
    grads = adapt.grads
    if grad is not None and not dense:
        _, wg_update, _ = welford_algorithm(True)
        grads = _select(flags.slow, _like(wg_update(grads, grad), grads), grads)
        n = mm.wc_state.sample_size.astype(position.dtype)
        var_x = mm.wc_state.m2 / jnp.maximum(n - 1, 1)
        var_g = grads.m2 / jnp.maximum(n - 1, 1)
        fisher = fisher_score_diagonal_from_moments(var_x, var_g)   # BlackJAX's, as nutpie's
        fisher = jnp.minimum(fisher, jnp.finfo(fisher.dtype).max)   # its 1e40 bound overflows float32
        fisher = (n / (n + 5)) * fisher + 1e-3 * (5 / (n + 5))
        # a window's end: the new metric, and both accumulators start afresh (as mm_final does)
        restart = MassMatrixAdaptationState(fisher, jax.tree.map(jnp.zeros_like, mm.wc_state))
        mm = _select(flags.window_end, _like(restart, mm), mm)
        grads = _select(flags.window_end, jax.tree.map(jnp.zeros_like, grads), grads)
    else:
        mm = _select(flags.window_end, _like(mm_final(mm), mm), mm)
    step_size = jnp.where(flags.warmup_end, jnp.exp(da.log_step_size_avg), step_size)
    return AdaptationState(step_size.astype(adapt.step_size.dtype), mm, da, grads)


def record_low_rank(buf: LowRankBuffer, flags, position, grad) -> LowRankBuffer:
    """A slow iteration's position and gradient added to the low-rank metric's window buffer (the
    sampler calls this once per iteration, after the transition: carried through the loops inside
    an iteration, the buffer's B x dim rows were copied by every select of the chain state, and
    eight schools ran at 10 us a gradient against 2 with the diagonal). At a window's end
    :func:`estimate_low_rank` makes the metric from the buffer, in its own program
    (:mod:`ppl.inference.low_rank`); :func:`update_adaptation` leaves this metric alone."""
    # one row written in place (a select over the whole buffer would cost B x dim per iteration)
    rows = buf.draws.shape[0]
    i = jnp.minimum(buf.count, rows - 1)
    keep = lambda b, new: jnp.where(flags.slow, new.astype(b.dtype), b[i])  # noqa: E731
    return LowRankBuffer(buf.draws.at[i].set(keep(buf.draws, position)), buf.grads.at[i].set(keep(buf.grads, grad)),
                         jnp.where(flags.slow, jnp.minimum(buf.count + 1, rows), buf.count).astype(buf.count.dtype))


def estimate_low_rank(imm, buf: LowRankBuffer, rank: int):
    """nutpie's low-rank metric (Seyboldt et al.; BlackJAX's estimator) of at most ``rank``
    directions from one chain's window buffer, in the form ``imm`` holds (a dense matrix or
    BlackJAX's factors: :func:`low_rank_is_dense`), and the buffer emptied: ``(imm, buf)``."""
    dim = buf.draws.shape[1]
    sigma, _, U, lam = _compute_low_rank_metric(buf.draws, buf.grads, buf.count, min(int(rank), dim),
                                                LOW_RANK_GAMMA, LOW_RANK_CUTOFF)
    if isinstance(imm, LowRankInverseMassMatrix):
        new = LowRankInverseMassMatrix(sigma, U, lam)
    else:
        new = sigma[:, None] * (jnp.eye(dim, dtype=sigma.dtype) + (U * (lam - 1.0)) @ U.T) * sigma[None, :]
    return _like(new, imm), buf._replace(count=jnp.zeros_like(buf.count))


def dense_inverse_mass_matrix(imm) -> np.ndarray:
    """The adapted inverse mass matrices as numpy, (chains, dim) or (chains, dim, dim); a low-rank
    one as its dense equivalent diag(sigma) (I + U (lam - 1) U^T) diag(sigma)."""
    if not isinstance(imm, LowRankInverseMassMatrix):
        return np.asarray(imm)
    sigma, U, lam = (np.asarray(a) for a in imm)
    eye = np.eye(sigma.shape[-1])
    inner = eye + np.einsum("cik,ck,cjk->cij", U, lam - 1.0, U)
    return sigma[:, :, None] * inner * sigma[:, None, :]
