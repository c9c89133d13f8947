"""Variational inference: ADVI (mean-field and full-rank Gaussians) and Pathfinder.

ADVI (Kucukelbir et al. 2017, as in Stan) fits a Gaussian ``q`` on the unconstrained
space by maximising the ELBO ``E_q[log p(u)] + H[q]`` (``log p`` with every part of
the density, Jacobian included), estimated by reparameterised Monte Carlo
(``grad_draws`` draws per gradient), with Optax's Adam.  Mean-field: ``u = mu +
exp(omega) * z``; full-rank: ``u = mu + L z`` with ``L`` lower-triangular and a
positive diagonal (``exp`` of the raw diagonal).  Start: a Stan-style random point for
``mu`` (uniform(-2, 2)), unit scale.

Convergence is Stan's rule: every ``eval_elbo`` iterations the ELBO is estimated with
``elbo_draws`` draws, the relative change ``|(elbo_prev - elbo) / elbo|`` enters a
circular buffer of ``max(0.1 * max_iter / eval_elbo, 2)`` entries, and the fit stops
when the buffer's mean or median is below ``tol_rel_obj`` (or after ``max_iter``).
The returned approximation is the average of the iterates of the last ``eval_elbo``
iterations (Polyak averaging, which removes most of Adam's stochastic jitter).

One compiled program runs ``n`` optimisation steps (``n`` an argument, so the initial
ELBO is the same program with ``n = 0``) plus the ELBO estimate; the Python loop
between calls applies the stopping rule.  A second one draws from ``q``.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl.inference.quick import one_shot_options
from ppl.inference.rng import raw_keys, stream
from ppl.inference.xla_options import compile_with

__all__ = ["VIConfig", "Gaussian", "FAMILIES", "fit_advi", "fit_pathfinder", "relative_change", "stan_converged"]

FAMILIES = ("meanfield", "fullrank", "pathfinder")


class VIConfig(NamedTuple):
    family: str = "meanfield"
    learning_rate: float = 0.1
    grad_draws: int = 1
    elbo_draws: int = 100
    eval_elbo: int = 100
    tol_rel_obj: float = 0.01
    max_iter: int = 10000
    decay_steps: float = 1000.0   # learning rate * (1 + t / decay_steps)^(-1/2); 0: constant


class Gaussian(NamedTuple):
    mu: jax.Array      # (dim,)
    scale: jax.Array   # (dim,) log sd (mean-field) or (dim, dim) raw Cholesky factor (full-rank)


class ADVIState(NamedTuple):
    params: Gaussian
    opt: object
    key: jax.Array


def cholesky_factor(q: Gaussian, xp=jnp) -> jax.Array:
    """The lower-triangular factor of q's covariance (diagonal: a vector of sds); ``xp=np`` for
    a fitted ``q`` already in numpy (no program compiled)."""
    if q.scale.ndim == 1:
        return xp.exp(q.scale)
    return xp.tril(q.scale, -1) + xp.diag(xp.exp(xp.diag(q.scale)))


def draw(q: Gaussian, key, n: int):
    """``n`` draws from q and their log densities under q."""
    z = jax.random.normal(key, (n,) + q.mu.shape, q.mu.dtype)
    L = cholesky_factor(q)
    u = q.mu + (z * L if L.ndim == 1 else z @ L.T)
    return u, -0.5 * jnp.sum(z ** 2, -1) - log_det(q) - 0.5 * q.mu.size * jnp.log(2 * jnp.pi)


def log_det(q: Gaussian) -> jax.Array:
    """log |L| (half the log-determinant of the covariance)."""
    return jnp.sum(q.scale) if q.scale.ndim == 1 else jnp.sum(jnp.diag(q.scale))


def entropy(q: Gaussian) -> jax.Array:
    return 0.5 * q.mu.size * (1.0 + jnp.log(2 * jnp.pi)) + log_det(q)


def elbo_estimate(logp: Callable, q: Gaussian, key, n: int, finite_only: bool = False):
    """Monte Carlo ELBO; with ``finite_only`` draws with a non-finite log density are dropped."""
    u, _ = draw(q, key, n)
    lp = jax.vmap(logp)(u)
    if finite_only:
        ok = jnp.isfinite(lp)
        return jnp.sum(jnp.where(ok, lp, 0.0)) / jnp.maximum(jnp.sum(ok), 1) + entropy(q)
    return jnp.mean(lp) + entropy(q)


def relative_change(prev: float, curr: float) -> float:
    return abs((prev - curr) / curr) if curr != 0 else float("inf")


def stan_converged(changes: list, tol: float) -> bool:
    return bool(changes) and (float(np.mean(changes)) < tol or float(np.median(changes)) < tol)


def make_advi_chunk(logdensity_fn: Callable, config: VIConfig):
    """``chunk(state, n_steps, data) -> (state, elbo, averaged params, skipped steps)``."""
    lr = config.learning_rate
    if config.decay_steps > 0:
        lr = lambda t: config.learning_rate / jnp.sqrt(1.0 + t / config.decay_steps)  # noqa: E731
    opt = optax.adam(lr)

    def chunk(state: ADVIState, n_steps, data):
        logp = lambda u: logdensity_fn(u, data)  # noqa: E731
        loss = lambda q, k: -elbo_estimate(logp, q, k, config.grad_draws)  # noqa: E731

        def body(_, carry):
            q, opt_state, key, total, skipped = carry
            key, k = jax.random.split(key)
            value, grad = jax.value_and_grad(loss)(q, k)
            updates, new_opt = opt.update(grad, opt_state, q)
            ok = jnp.isfinite(value) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad)]))
            pick = lambda a, b: jax.tree.map(lambda x, y: jnp.where(ok, x, y), a, b)  # noqa: E731
            q = pick(optax.apply_updates(q, updates), q)
            opt_state = pick(new_opt, opt_state)
            total = jax.tree.map(jnp.add, total, q)
            return q, opt_state, key, total, skipped + (~ok).astype(jnp.int32)

        zero = jax.tree.map(jnp.zeros_like, state.params)
        q, opt_state, key, total, skipped = jax.lax.fori_loop(
            0, n_steps, body, (state.params, state.opt, state.key, zero, jnp.int32(0)))
        key, k = jax.random.split(key)
        avg = jax.tree.map(lambda t, p: jnp.where(n_steps > 0, t / jnp.maximum(n_steps, 1).astype(t.dtype), p),
                           total, q)
        elbo = elbo_estimate(logp, avg, k, config.elbo_draws, finite_only=True)
        return ADVIState(q, opt_state, key), elbo, avg, skipped

    return chunk, opt


def init_gaussian(u0, family: str) -> Gaussian:
    u0 = np.asarray(u0)     # numpy throughout the set-up: each eager JAX operation is a compilation
    dim = u0.shape[0]
    scale = np.zeros(dim, u0.dtype) if family == "meanfield" else np.zeros((dim, dim), u0.dtype)
    return Gaussian(u0, scale)


def zeros_state(opt, params):
    """``opt.init(params)`` for an optimiser whose state starts at zero (Adam: its count and
    moments), made in numpy from the state's shapes (``opt.init`` would compile its zeros)."""
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(opt.init, params))


def fit_advi(logdensity_fn: Callable, data, u0, key, config: VIConfig = VIConfig()):
    """Run ADVI from ``u0``; returns (Gaussian, info dict)."""
    if config.family not in ("meanfield", "fullrank"):
        raise ValueError(f"unknown ADVI family {config.family!r}: use meanfield or fullrank")
    if config.eval_elbo < 1 or config.max_iter < 1 or config.grad_draws < 1 or config.elbo_draws < 1:
        raise ValueError("eval_elbo, max_iter, grad_draws and elbo_draws must be >= 1")
    chunk, opt = make_advi_chunk(logdensity_fn, config)
    q0 = init_gaussian(u0, config.family)
    typed = jax.dtypes.issubdtype(getattr(key, "dtype", np.uint32), jax.dtypes.prng_key)
    state = ADVIState(q0, zeros_state(opt, q0), jax.random.key_data(key) if typed else np.asarray(key))
    t0 = time.perf_counter()
    # at most max_iter steps (of grad_draws gradients: a step's cost grows with them)
    steps = config.max_iter * (1 + 0.5 * (config.grad_draws - 1))
    options = one_shot_options(logdensity_fn, q0.mu.shape[0], q0.mu.dtype, data, steps)
    compiled = compile_with(jax.jit(chunk).lower(state, np.int32(0), data), options)
    compile_s = time.perf_counter() - t0
    state, elbo, _, _ = compiled(state, np.int32(0), data)
    trace = [(0, float(elbo))]
    changes: list = []
    size = int(max(0.1 * config.max_iter / config.eval_elbo, 2.0))
    it, converged, skipped, avg, completed = 0, False, 0, state.params, True
    try:
        while it < config.max_iter and not converged:
            n = min(config.eval_elbo, config.max_iter - it)
            state, elbo, avg, bad = compiled(state, np.int32(n), data)
            it += n
            skipped += int(bad)
            prev, cur = trace[-1][1], float(elbo)
            trace.append((it, cur))
            changes = (changes + [relative_change(prev, cur)])[-size:]
            converged = np.isfinite(cur) and stan_converged(changes, config.tol_rel_obj)
    except KeyboardInterrupt:
        completed = False
    q = jax.device_get(avg if it > 0 else state.params)
    info = {"iterations": it, "converged": bool(converged), "elbo": trace, "skipped_steps": skipped,
            "compile_s": compile_s, "fit_s": time.perf_counter() - t0 - compile_s, "completed": completed}
    return q, info


def draw_fn(logdensity_fn: Callable):
    """Jitted ``(q, key, data, n) -> (u, log p(u), log q(u))``; ``n`` static."""
    def f(q, key, data, n):
        u, lq = draw(q, key, n)
        return u, jax.vmap(lambda x: logdensity_fn(x, data))(u), lq
    return jax.jit(f, static_argnums=3)


def fit_pathfinder(logdensity_fn: Callable, data, u0, key, draws: int, maxiter: int = 1000, elbo_draws: int = 100):
    """BlackJAX's single-path Pathfinder; returns (u, log p, log q) for ``draws`` draws and info."""
    from ppl.inference import lean_blackjax  # noqa: F401  (first: BlackJAX without scipy.fft or optax)
    from blackjax.vi import pathfinder

    def run(key, u0, data):
        ld = lambda u: logdensity_fn(u, data)  # noqa: E731
        k1, k2 = jax.random.split(key)
        state, _ = pathfinder.approximate(k1, ld, u0, num_samples=elbo_draws, maxiter=maxiter)
        u, lq = pathfinder.sample(k2, state, draws)
        return u, jax.vmap(ld)(u), lq, state.elbo

    t0 = time.perf_counter()
    # at most maxiter L-BFGS iterations, each with its line search and an ELBO: about ten ADVI steps
    # (measured at level 0: arK, diamonds, low_dim_gauss_mix and mcycle_gp compile 1.0-3.9 s sooner
    # and run 0.2-3.4 s longer)
    u0 = np.asarray(u0)
    options = one_shot_options(logdensity_fn, u0.shape[0], u0.dtype, data, 10 * maxiter)
    compiled = compile_with(jax.jit(run).lower(key, u0, data), options)
    compile_s = time.perf_counter() - t0
    u, lp, lq, elbo = jax.device_get(compiled(key, u0, data))
    info = {"elbo": float(elbo), "converged": bool(np.isfinite(elbo)), "compile_s": compile_s,
            "fit_s": time.perf_counter() - t0 - compile_s, "iterations": None, "completed": True}
    return (np.asarray(u), np.asarray(lp), np.asarray(lq)), info


def vi_posterior(model, lw, arrays, config: VIConfig, draws: int, seed: int = 0):
    """Fit ``config.family`` to a bound model and return draws from it as a Posterior (kind 'vi')."""
    from ppl.results import Posterior
    if config.family not in FAMILIES:
        raise ValueError(f"unknown family {config.family!r}: use one of {', '.join(FAMILIES)}")
    t0 = time.perf_counter()
    u0, init_s = model._initial_points(lw, arrays, stream(seed, 1), 1, best_of=1)
    k_fit, k_draw = raw_keys(stream(seed, 6), 1)[0], raw_keys(stream(seed, 4), 1)[0]   # numpy: nothing eager
    if config.family == "pathfinder":
        (u, lp, lq), info = fit_pathfinder(lw.log_density, arrays, u0[0], k_fit, draws,
                                           elbo_draws=config.elbo_draws)
        extra = {}
    else:
        q, info = fit_advi(lw.log_density, arrays, u0[0], k_fit, config)
        t1 = time.perf_counter()
        draws_of = compile_with(draw_fn(lw.log_density).lower(q, k_draw, arrays, draws),
                                one_shot_options(lw.log_density, lw.dim, q.mu.dtype, arrays, draws / 4))  # (a step: ~4 densities)
        u, lp, lq = jax.device_get(draws_of(q, k_draw, arrays))
        info["compile_s"] += time.perf_counter() - t1    # includes the (fast) draws
        L = cholesky_factor(q, np)
        sd = L if L.ndim == 1 else np.sqrt(np.sum(L ** 2, axis=1))
        extra = {"mean": np.asarray(q.mu).tolist(), "sd": sd.tolist()}    # of q, on the unconstrained space
    out, gen_compile, gen_s = model._outputs(lw, arrays, np.asarray(u)[None], stream(seed, 4))
    stats = {"log_p__": np.asarray(lp)[None], "log_g__": np.asarray(lq)[None]}
    timings = {"compile_s": info["compile_s"] + init_s + gen_compile, "sampling_s": info["fit_s"] + gen_s,
               "total_s": time.perf_counter() - t0}
    meta = {"algorithm": "pathfinder" if config.family == "pathfinder" else "advi", "family": config.family,
            "seed": seed, "iterations": info["iterations"], "converged": info["converged"],
            "elbo": info["elbo"], "dims": model._dims(lw), "roles": dict(lw.binding.roles), **extra}
    if config.family != "pathfinder":
        meta.update(learning_rate=config.learning_rate, tol_rel_obj=config.tol_rel_obj,
                    skipped_steps=info["skipped_steps"])
    return Posterior(out, stats, kind="vi", completed=info["completed"], timings=timings, meta=meta)
