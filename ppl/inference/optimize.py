"""Optimisation: MAP and maximum likelihood, by L-BFGS or Adam, with a Laplace approximation.

The objective is the log density on the unconstrained space *without* the Jacobian:
prior + likelihood for MAP (``PARTS_MAP``, the mode in the constrained space, as Stan's
optimiser) or the likelihood alone for MLE (``PARTS_MLE``); the prior's weight (1 or 0)
is an argument of the compiled program, so MAP and MLE share it.  Each run starts from a
Stan-style random point (uniform(-2, 2) on the unconstrained space); ``restarts``
runs are vmapped in one compiled program and the best is kept.

- L-BFGS: ``optax.lbfgs`` (zoom line search) in a ``lax.while_loop``; it stops on Stan's
  criteria: gradient max-norm < ``tol_grad`` (1e-8), relative objective change
  < ``tol_rel_obj`` (1e4 * machine epsilon), step max-norm < ``tol_param`` (1e-8), or
  ``max_iter``.
- Adam: ``optax.adam`` in blocks of ``check_every`` steps inside a ``lax.while_loop``;
  it stops when the gradient max-norm is below ``tol_grad`` or the objective changed by
  less than ``adam_tol_rel`` (relative) over a block.

Laplace (MAP only): ``H`` = Hessian of minus the objective on the unconstrained space at
the optimum; ``N(u*, H^-1)`` draws (``laplace_draws``, default 1000, as Stan's
``laplace``) are mapped through the constraining transforms and the model's
deterministic nodes, and ``sd`` is their standard deviation per element -- by draws,
not the delta method, so that bounded and derived nodes get honest spreads.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from ppl.config import float_dtype
from ppl.inference.quick import one_shot_options
from ppl.inference.rng import stream
from ppl.inference.xla_options import compile_with

__all__ = ["OptimizeConfig", "OptimizeResult", "minimize", "optimize_model", "METHODS"]

METHODS = ("lbfgs", "adam")
EPS = float(np.finfo(np.float64).eps)


class OptimizeConfig(NamedTuple):
    method: str = "lbfgs"
    max_iter: int = 2000
    tol_grad: float = 1e-8
    tol_rel_obj: float = 1e4 * EPS
    tol_param: float = 1e-8
    learning_rate: float = 0.05        # Adam
    check_every: int = 100             # Adam: steps per convergence check
    adam_tol_rel: float = 1e-10        # Adam: relative objective change per block
    memory_size: int = 10              # L-BFGS history


class Run(NamedTuple):
    u: jax.Array
    value: jax.Array          # objective (minus the log density) at u
    iterations: jax.Array
    status: jax.Array         # 0 running/max_iter, 1 grad, 2 rel_obj, 3 param, 4 non-finite


STATUS = {0: "reached the iteration limit", 1: "gradient below tolerance",
          2: "relative objective change below tolerance", 3: "step below tolerance",
          4: "stopped: non-finite objective or gradient"}


def _max_abs(x):
    return jnp.max(jnp.abs(x)) if x.size else jnp.zeros((), x.dtype)


def lbfgs_run(f: Callable, u0, config: OptimizeConfig) -> Run:
    opt = optax.lbfgs(memory_size=config.memory_size)
    vg = optax.value_and_grad_from_state(f)

    def cond(c):
        it, _, _, status = c
        return (status == 0) & (it < config.max_iter)

    def body(c):
        it, u, s, _ = c
        value, grad = vg(u, state=s)
        updates, s_new = opt.update(grad, s, u, value=value, grad=grad, value_fn=f)
        u_new = optax.apply_updates(u, updates)
        f_new, g_new = otu.tree_get(s_new, "value"), otu.tree_get(s_new, "grad")
        bad = ~(jnp.isfinite(f_new) & jnp.all(jnp.isfinite(g_new)) & jnp.all(jnp.isfinite(u_new)))
        rel = jnp.abs(f_new - value) / jnp.maximum(jnp.maximum(jnp.abs(f_new), jnp.abs(value)), EPS)
        status = jnp.select([bad, _max_abs(g_new) < config.tol_grad, rel < config.tol_rel_obj,
                             _max_abs(u_new - u) < config.tol_param], [4, 1, 2, 3], 0).astype(jnp.int32)
        return it + 1, jnp.where(bad, u, u_new), jax.tree.map(lambda a, b: jnp.where(bad, b, a), s_new, s), status

    value0, grad0 = jax.value_and_grad(f)(u0)
    start = jnp.where(jnp.isfinite(value0) & jnp.all(jnp.isfinite(grad0)),
                      jnp.where(_max_abs(grad0) < config.tol_grad, 1, 0), 4)
    it, u, _, status = jax.lax.while_loop(cond, body, (jnp.int32(0), u0, opt.init(u0), start.astype(jnp.int32)))
    return Run(u, f(u), it, status)


def adam_run(f: Callable, u0, config: OptimizeConfig) -> Run:
    opt = optax.adam(config.learning_rate)
    vg = jax.value_and_grad(f)

    def block(u, s):
        def step(carry, _):
            u, s = carry
            value, grad = vg(u)
            updates, s_new = opt.update(grad, s, u)
            ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
            return (jnp.where(ok, optax.apply_updates(u, updates), u),
                    jax.tree.map(lambda a, b: jnp.where(ok, a, b), s_new, s)), None
        return jax.lax.scan(step, (u, s), None, length=config.check_every)[0]

    def cond(c):
        it, _, _, _, status = c
        return (status == 0) & (it < config.max_iter)

    def body(c):
        it, u, s, f_prev, _ = c
        u, s = block(u, s)
        value, grad = vg(u)
        rel = jnp.abs(value - f_prev) / jnp.maximum(jnp.maximum(jnp.abs(value), jnp.abs(f_prev)), EPS)
        bad = ~(jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)))
        status = jnp.select([bad, _max_abs(grad) < config.tol_grad, rel < config.adam_tol_rel], [4, 1, 2], 0)
        status = status.astype(jnp.int32)
        return it + config.check_every, u, s, value, status

    value0 = f(u0)
    start = jnp.where(jnp.isfinite(value0), 0, 4).astype(jnp.int32)
    it, u, _, _, status = jax.lax.while_loop(cond, body, (jnp.int32(0), u0, opt.init(u0), value0, start))
    return Run(u, f(u), it, status)


def minimizer(f_data: Callable, config: OptimizeConfig) -> Callable:
    """``(starts, data) -> Run`` minimising ``f_data(u, data)`` from each row of ``starts`` (vmapped)."""
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}: use one of {', '.join(METHODS)}")
    runner = lbfgs_run if config.method == "lbfgs" else adam_run

    def one(u0, data):
        return runner(lambda u: f_data(u, data), u0, config)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def minimize(f_data: Callable, data, starts, config: OptimizeConfig, compiled=None):
    """Run (compiling unless ``compiled`` is given); returns (Run of numpy arrays, compiled, compile s, run s)."""
    t0 = time.perf_counter()
    starts = np.asarray(starts)     # numpy: nothing eager
    if compiled is None:
        # at most max_iter iterations a start: an Adam step costs about an ADVI step, an L-BFGS
        # iteration (its line search, its two-loop recursion) about ten
        steps = len(starts) * config.max_iter * (10 if config.method == "lbfgs" else 1)
        options = one_shot_options(f_data, starts.shape[1], starts.dtype, data, steps)
        compiled = compile_with(minimizer(f_data, config).lower(starts, data), options)
    t1 = time.perf_counter()
    run = jax.device_get(compiled(starts, data))
    return run, compiled, t1 - t0, time.perf_counter() - t1


def objective(lw) -> Callable:
    """``f((arrays, w), u)``: minus (``w`` * log prior + log likelihood), no Jacobian. ``w`` is an
    argument, so MAP (w = 1) and MLE (w = 0) share one compiled program."""
    from ppl.lower import LIKELIHOOD, PRIOR

    def f(u, data):
        arrays, w = data
        terms = lw.log_density_terms(u, arrays)
        prior = sum((v for (part, _), v in terms.items() if part == PRIOR), jnp.zeros(()))
        lik = sum((v for (part, _), v in terms.items() if part == LIKELIHOOD), jnp.zeros(()))
        return -(jnp.where(w > 0, w * prior, 0.0) + lik)

    return f


def laplace_factor(f: Callable, u):
    """``(L, why)``: the Cholesky factor ``L`` of the Hessian of ``f`` (minus the log density) at
    ``u`` (``H = L L^T``, so the Laplace covariance is ``L^-T L^-1``), or None and why not: a
    Hessian that is not positive definite, or so ill-conditioned that its inverse is rounding error
    (a degenerate optimum, such as a mixture component whose scale goes to 0)."""
    h = np.asarray(jax.jit(jax.hessian(f))(np.asarray(u)))
    h = 0.5 * (h + h.T)
    try:
        factor = np.linalg.cholesky(h) if np.all(np.isfinite(h)) else None
    except np.linalg.LinAlgError:
        factor = None
    if factor is None:
        return None, "the Hessian is not positive definite, so there is no Laplace sd"
    d = np.abs(np.diag(factor))
    condition = (d.max() / d.min()) ** 2       # a lower bound of H's condition number
    if not condition * np.finfo(h.dtype).eps < 1e-4:
        return None, (f"the Hessian is ill-conditioned (condition number {condition:.1e} or more), so there is "
                      "no Laplace sd: the optimum may be degenerate (a scale or weight going to 0, as when a "
                      "mixture component collapses onto one point); sample instead, or try restarts")
    return factor, ""


def laplace_draws_from(u, factor, n: int, rng) -> np.ndarray:
    """``n`` draws of N(u, H^-1) from the Hessian's Cholesky factor: ``u + L^-T z``. (Inverting H
    first and factoring the inverse fails for an ill-conditioned H whose inverse rounds to a matrix
    that is not positive definite.)"""
    z = rng.standard_normal((n, len(u)))
    return u + np.linalg.solve(factor.T, z.T).T


@dataclass(eq=False)
class OptimizeResult:
    """A MAP or maximum-likelihood estimate of every latent and deterministic node."""

    estimate: dict                      # name -> np.ndarray (constrained)
    sd: Optional[dict]                  # MAP: Laplace sd per node (None for MLE or a non-PD/singular Hessian)
    log_density: float                  # objective at the optimum: log prior + log likelihood (MAP), or log lik
    converged: bool
    iterations: int
    method: str = "lbfgs"
    mle: bool = False
    message: str = ""
    position: Optional[np.ndarray] = None   # optimum on the unconstrained space
    cov: Optional[np.ndarray] = None        # Laplace covariance on the unconstrained space
    laplace: object = None                  # Posterior of the Laplace draws (kind 'laplace')
    parameters: list = field(default_factory=list)   # the latent nodes (what to_json writes)
    inputs: dict = field(default_factory=dict)       # data inputs and sizes of the fit
    restarts: list = field(default_factory=list)     # (log_density, converged, iterations) per start
    timings: dict = field(default_factory=dict)

    def __getitem__(self, name):
        return self.estimate[name]

    def to_dict(self, inputs: bool = True) -> dict:
        """name -> number or nested lists: the latent nodes' estimates, plus (``inputs``) the
        data inputs and sizes of the fit, so ``ppl prior --data`` can simulate from the fit.
        Observed values and deterministic nodes are left out (the model recomputes them)."""
        out = {k: v.tolist() for k, v in self.inputs.items()} if inputs else {}
        out.update({n: np.asarray(self.estimate[n]).tolist() for n in self.parameters})
        return out

    def to_json(self, path, inputs: bool = True) -> None:
        """Write :meth:`to_dict` as JSON that ``--data`` accepts (atomically)."""
        from ppl.results import _atomic_write
        _atomic_write(path, [json.dumps(self.to_dict(inputs), indent=1), "\n"])

    def __str__(self) -> str:
        from ppl.results import column_names
        what = "maximum likelihood" if self.mle else "MAP"
        part = "log likelihood" if self.mle else "log density (prior + likelihood, no Jacobian)"
        lines = [f"{what} estimate ({self.method}, {self.iterations} iterations, "
                 f"{'converged' if self.converged else 'NOT converged'}: {self.message})",
                 f"{part} = {self.log_density:.6g}"]
        rows = []
        for name, value in self.estimate.items():
            value = np.asarray(value)
            sd = np.asarray(self.sd[name]) if self.sd and name in self.sd else None
            for j, col in enumerate(column_names(name, value.shape)):
                rows.append((col, f"{value.reshape(-1)[j]:.6g}", f"{sd.reshape(-1)[j]:.4g}" if sd is not None else ""))
        width = max([len(r[0]) for r in rows] + [4])
        head = f"{'name':<{width}}  {'estimate':>12}" + (f"  {'sd (Laplace)':>12}" if self.sd else "")
        lines.append(head)
        for col, est, sd in rows:
            lines.append(f"{col:<{width}}  {est:>12}" + (f"  {sd:>12}" if self.sd else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"OptimizeResult({'mle' if self.mle else 'map'}, method={self.method!r}, converged={self.converged}, "
                f"log_density={self.log_density:.6g}, estimate=[{', '.join(self.estimate)}])")


def _estimated_names(lw) -> list:
    """Latent and deterministic outputs that do not depend on a generated node."""
    from ppl.binding import ROLE_DETERMINISTIC, ROLE_GENERATED, ROLE_LATENT
    roles, g = lw.binding.roles, lw.graph
    # generated nodes, and summed-out discrete latents (with their `.prob`): drawn afresh when the fit
    # generates new data, so none of them is an estimate
    random = {n for n in lw.output_names if roles.get(n) == ROLE_GENERATED or n not in g.nodes}
    random |= set(lw.enumerated)
    for n in g.order:
        if roles[n] == ROLE_DETERMINISTIC and any(p in random for p in g.nodes[n].parents):
            random.add(n)
    return [n for n in lw.output_names if roles.get(n) in (ROLE_LATENT, ROLE_DETERMINISTIC) and n not in random]


def _inputs(lw) -> dict:
    """The data inputs (declared data, supplied flat nodes) and dimension sizes of a binding."""
    from ppl.binding import ROLE_DATA
    b, g = lw.binding, lw.graph
    out = {n: np.asarray(b.arrays[n]) for n in g.order if b.roles.get(n) == ROLE_DATA and n in b.arrays}
    out.update({n: np.asarray(v) for n, v in b.static.items()
                if (n not in g.nodes or b.roles.get(n) == ROLE_DATA) and n not in out})
    return out


def optimize_model(model, lw, arrays, config: OptimizeConfig, *, mle: bool = False, restarts: int = 1,
                   laplace: bool = True, laplace_draws: int = 1000, seed: int = 0) -> OptimizeResult:
    """MAP / MLE of a bound model (see the module docstring)."""
    from ppl.results import Posterior
    if restarts < 1 or laplace_draws < 0:
        raise ValueError("restarts must be >= 1 and laplace_draws >= 0")
    t0 = time.perf_counter()
    f = objective(lw)
    data = (arrays, np.asarray(0.0 if mle else 1.0, float_dtype()))  # numpy: nothing eager
    # plain Stan inits (no best-of-k): restarts of an optimiser gain from diverse starting points
    starts, init_s = model._initial_points(lw, arrays, stream(seed, 1), restarts, best_of=1)
    name = ("optimize", restarts, config)
    run, compiled, compile_s, fit_s = minimize(f, data, starts, config, model._compiled.get((id(lw), name)))
    model._compiled[(id(lw), name)] = compiled
    values = np.where(np.isfinite(run.value), run.value, np.inf)
    best = int(np.argmin(values))
    u, status = np.asarray(run.u[best]), int(run.status[best])
    cov = factor = None
    why_no_sd = ""
    if not mle and laplace and lw.dim:
        factor, why_no_sd = laplace_factor(lambda x: f(x, data), u)
    if factor is not None:
        inv_factor = np.linalg.solve(factor, np.eye(lw.dim))
        cov = inv_factor.T @ inv_factor
    rng = np.random.default_rng([seed, 2])
    n_draws = laplace_draws if factor is not None else 0
    extra = laplace_draws_from(u, factor, n_draws, rng) if n_draws else np.zeros((0, lw.dim))
    positions = np.concatenate([u[None], extra])[None]
    out, gen_compile, gen_s = model._outputs(lw, arrays, positions, stream(seed, 3))
    names = _estimated_names(lw)
    estimate = {n: np.asarray(out[n][0, 0]) for n in names}
    sd = {n: np.asarray(out[n][0, 1:]).std(axis=0, ddof=1) for n in names} if n_draws > 1 else None
    draws = None
    if n_draws:
        draws = Posterior({n: v[:, 1:] for n, v in out.items()}, {}, kind="laplace",
                          meta={"dims": model._dims(lw), "roles": dict(lw.binding.roles)})
    from ppl.binding import ROLE_LATENT
    params = [n for n in names if lw.binding.roles.get(n) == ROLE_LATENT]
    converged = status in (1, 2, 3)
    message = STATUS[status] + (f"; {why_no_sd}" if why_no_sd else "")
    return OptimizeResult(
        estimate=estimate, sd=sd, log_density=float(-run.value[best]), converged=converged,
        iterations=int(run.iterations[best]), method=config.method, mle=mle, message=message, position=u, cov=cov,
        laplace=draws, parameters=params, inputs=_inputs(lw),
        restarts=[(float(-v), int(s) in (1, 2, 3), int(i)) for v, s, i in zip(run.value, run.status, run.iterations)],
        timings={"compile_s": compile_s + init_s + gen_compile, "fit_s": fit_s + gen_s,
                 "total_s": time.perf_counter() - t0})
