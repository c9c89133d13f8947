"""The Python API: compile a model once, then sample, simulate or evaluate it on data."""
from __future__ import annotations

import time
import warnings
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import binding as B
from .checks import check_graph
from .config import enable_compile_cache, float_dtype, gc_paused
from .errors import ModelError
from .graph import Graph, build_graph
from .inference.parallel import DeferredInit, StartingPoints, density_profile
from .inference.program_cache import chunk_key, lower_chunk
from .inference.quick import one_shot_options
from .inference.rng import raw_keys, stream
from .inference.xla_options import compile_with
from .lower import Lowered
from .modules import collect_functions
from .parser import parse
from .arviz_export import data_groups
from .results import Posterior


MASS_MATRICES = ("diag", "dense", "fisher", "lowrank")
LOW_RANK = 10   # nutpie's default rank


class ModelWarning(UserWarning):
    """Something in a model or its data that is probably a mistake."""


class Model:
    """A parsed and checked GM model; data are bound at each call."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._lowered: dict = {}
        self._compiled: dict = {}

    # ------------------------------------------------------------------ binding
    def bind(self, data: Optional[dict] = None, *, strict: bool = False, warn: bool = True) -> Lowered:
        """Decide roles from ``data``, check everything, and lower to JAX (cached by shapes)."""
        b = B.bind(self.graph, data, strict=strict)
        if warn:
            for w in b.warnings:
                warnings.warn(w, ModelWarning, stacklevel=3)
        key = b.signature()
        lw = self._lowered.get(key)
        if lw is None:
            lw = self._lowered[key] = Lowered(b)
        else:
            lw.binding.arrays = b.arrays     # same shapes, new values
        return lw

    def roles(self, data: Optional[dict] = None) -> dict:
        return dict(self.bind(data, warn=False).binding.roles)

    def log_density(self, data: Optional[dict] = None) -> Callable:
        """A jit-able function of the flat unconstrained vector (attributes: dim, slots)."""
        lw = self.bind(data)
        arrays = lw.arrays()

        def logp(u):
            return lw.log_density(u, arrays)

        logp.dim, logp.slots = lw.dim, lw.slots
        logp.terms = lambda u: lw.log_density_terms(u, arrays)
        return logp

    # ------------------------------------------------------------------ inference
    def sample(self, data: Optional[dict] = None, *, chains: int = 4, warmup: int = 1000, draws: int = 1000,
               seed: int = 0, target_accept: Optional[float] = None, max_depth: int = 10,
               chunk_size: Optional[int] = None, progress: Optional[Callable] = None, strict: bool = False,
               algorithm: str = "nuts", dense_mass: bool = False, path_length: Optional[float] = None,
               num_steps: Optional[int] = None, devices: Optional[int] = None,
               shard_data: bool = False, restart_stuck: bool = True, mass_matrix: Optional[str] = None) -> Posterior:
        """MCMC with Stan-style window adaptation; returns a Posterior.

        ``algorithm``: "nuts" (default), "hmc" (static path length: ``path_length``, or a fixed
        ``num_steps``), "mh" (random-walk Metropolis) or "gibbs" (NUTS on the continuous
        parameters interleaved with exact Gibbs updates of the discrete ones, as JAGS and PyMC do).
        ``devices`` splits the chains across that many devices (default: on CPU, one host device
        per chain where there are enough, see ``ppl.inference.parallel``; on GPU, one device);
        ``shard_data`` also splits the data arrays along their first axis, for large N.
        ``restart_stuck`` (NUTS, Gibbs): halfway through warm-up, a chain in a mode holding less
        than e^-20 of the best chain's mass continues from that chain's state (reported in the
        warnings; see ``ppl.inference.stuck``). ``target_accept`` defaults to 0.8
        (0.234 for "mh"); ``dense_mass`` adapts a dense mass matrix (proposal covariance for mh).
        ``mass_matrix``: "diag" (default: Stan's window variances), "dense" (= ``dense_mass``),
        "fisher" (NUTS, Gibbs: a diagonal from sqrt(Var[x] / Var[grad log p]) per window, as
        nutpie; fewer gradients per effective draw on hierarchical models, more on mixtures;
        bench/README.md has the measurements) or "lowrank" (NUTS, Gibbs: nutpie's low-rank metric,
        diag(sigma) (I + U (lam - 1) U^T) diag(sigma) with at most 10 directions, from each slow
        window's positions and gradients; the longest window's draws are kept during warm-up)."""
        with gc_paused():     # (BlackJAX's and optax's imports)
            from .inference.samplers import check_algorithm, run_mcmc
        check_algorithm(algorithm)
        mass_matrix = "dense" if dense_mass and mass_matrix is None else (mass_matrix or "diag")
        if mass_matrix not in MASS_MATRICES or (dense_mass and mass_matrix != "dense"):
            raise ValueError(f"mass_matrix must be 'diag', 'dense', 'fisher' or 'lowrank' (got {mass_matrix!r}"
                             + (" with dense_mass=True" if dense_mass else "") + ")")
        dense_mass = mass_matrix == "dense"
        _check_counts(chains=chains, draws=draws, warmup=warmup)
        enable_compile_cache()
        lw = self.bind(data, strict=strict)
        b = lw.binding
        if not b.nodes_with(B.ROLE_OBSERVED) and not self.graph.factors:
            warnings.warn("nothing in the model is observed, so these are draws from the prior "
                          "(a data name that does not match a node is reported above)", ModelWarning, stacklevel=2)
        arrays = lw.arrays()
        if lw.dim == 0:
            return self._ancestral(lw, arrays, seed, chains, draws, kind="posterior")
        t0 = time.perf_counter()
        logdensity, gibbs = self._log_density_fn(lw), None
        if algorithm == "gibbs":
            if not lw.enumerated:
                raise ValueError("--algorithm gibbs updates discrete latent variables, and this model has none; "
                                 "use nuts")
            logdensity = self._compiled_fn(lw, "logdensity_gibbs", lambda: jax.jit(lw.log_density_gibbs))
            gibbs = lw.draw_discrete
        # The starting points are searched for, and the program that turns draws into outputs is
        # compiled, while XLA compiles the sampler's chunk (DeferredInit; eight schools, cold:
        # a first fit of 1.76-1.85 s took 1.55-1.69 s).
        programs = {}

        def find():
            init = self._initial_points(lw, arrays, stream(seed, 1), chains, values=algorithm != "gibbs")[0]
            if draws:
                programs[chains * draws] = self._generate_program(lw, arrays, chains * draws)
            return init

        # NUTS by default: a chunk of up to _nuts_rows iterations, each call as many as take about
        # CALL_SECONDS; a chunk_size given (or HMC, MH) runs that many per call
        adaptive = chunk_size is None and algorithm in ("nuts", "gibbs")
        rows = _nuts_rows(chains, lw.dim) if adaptive else chunk_size or _chunk_size(warmup + draws)
        res = run_mcmc(algorithm, logdensity, arrays, DeferredInit((chains, lw.dim), find), stream(seed, 2),
                       chains=chains, warmup=warmup, draws=draws, chunk_size=rows,
                       target_accept=target_accept, max_depth=max_depth, dense_mass=dense_mass,
                       path_length=path_length, num_steps=num_steps, callback=progress, gibbs_fn=gibbs,
                       devices=devices, shard_data=shard_data, restart_stuck=restart_stuck,
                       fisher_mass=mass_matrix == "fisher", low_rank=LOW_RANK if mass_matrix == "lowrank" else 0,
                       call_seconds=CALL_SECONDS if adaptive else None)
        out, gen_compile, gen_s = self._outputs(lw, arrays, res.positions, stream(seed, 3), programs)
        # compile_s: the time before the first iteration (the search included) and for the outputs' program
        timings = {"compile_s": res.compile_s + gen_compile, "warmup_s": res.warmup_s,
                   "sampling_s": res.sampling_s + gen_s, "total_s": time.perf_counter() - t0}
        meta = {"algorithm": algorithm, "dense_mass": bool(dense_mass), "mass_matrix": mass_matrix, "seed": seed,
                "dims": self._dims(lw),
                "step_size": res.step_size.tolist(), "warmup_divergences": res.warmup_divergences,
                "roles": dict(b.roles), "max_depth": max_depth, "target_accept": target_accept,
                "devices": res.devices, "moved_chains": list(res.moved_chains)}
        observed, constant, data_dims = data_groups(b)
        meta["dims"] = {**data_dims, **meta["dims"]}
        return Posterior(out, res.stats, kind="posterior", completed=res.completed, timings=timings, meta=meta,
                         observed=observed, constant_data=constant)

    def prior(self, data: Optional[dict] = None, *, draws: int = 1000, seed: int = 0) -> Posterior:
        """Ancestral simulation of every node the data does not fix (a result with one chain)."""
        _check_counts(draws=draws)
        enable_compile_cache()
        lw = self.bind(data)
        return self._ancestral(lw, lw.arrays(), seed, 1, draws, kind="prior")

    def vi(self, data: Optional[dict] = None, *, family: str = "meanfield", draws: int = 1000, seed: int = 0,
           strict: bool = False, **options) -> Posterior:
        """Variational inference: ADVI ("meanfield" | "fullrank") or "pathfinder"; returns draws from the
        approximation (kind "vi", one chain). ``options``: fields of ``ppl.inference.vi.VIConfig``
        (learning_rate, grad_draws, elbo_draws, eval_elbo, tol_rel_obj, max_iter)."""
        with gc_paused():     # (BlackJAX's and optax's imports)
            from .inference.vi import VIConfig, vi_posterior
        _check_counts(draws=draws)
        config = VIConfig(family=family, **options)
        enable_compile_cache()
        lw = self._bind_for_fit(data, strict, "variational inference")
        post = vi_posterior(self, lw, lw.arrays(), config, draws, seed)
        m = post.meta
        if m.get("iterations") is not None and not m["converged"] and post.completed:
            warnings.warn(f"{family} ADVI did not converge in {m['iterations']} iterations (the relative ELBO "
                          f"change stayed above tol_rel_obj = {config.tol_rel_obj}), so its draws may be far from "
                          f"the posterior. Try more iterations (max_iter, --max-iter), a smaller learning rate "
                          f"(learning_rate, --learning-rate; it was {config.learning_rate}), family "
                          f"\"pathfinder\", or NUTS (sample) for the reference", ModelWarning, stacklevel=2)
        return post

    def optimize(self, data: Optional[dict] = None, *, method: str = "lbfgs", mle: bool = False, seed: int = 0,
                 restarts: int = 1, laplace_draws: int = 1000, strict: bool = False, **options):
        """MAP (prior + likelihood, no Jacobian) or, with ``mle``, maximum likelihood, by "lbfgs" or "adam";
        returns an ``OptimizeResult`` (MAP: with Laplace sds). ``options``: fields of
        ``ppl.inference.optimize.OptimizeConfig`` (max_iter, tol_grad, learning_rate, ...)."""
        with gc_paused():     # (BlackJAX's and optax's imports)
            from .inference.optimize import OptimizeConfig, optimize_model
        config = OptimizeConfig(method=method, **options)
        enable_compile_cache()
        lw = self._bind_for_fit(data, strict, "optimisation")
        return optimize_model(self, lw, lw.arrays(), config, mle=mle,
                              restarts=restarts, laplace_draws=laplace_draws, seed=seed)

    def _bind_for_fit(self, data, strict, what):
        lw = self.bind(data, strict=strict)
        if not lw.binding.nodes_with(B.ROLE_OBSERVED) and not self.graph.factors:
            warnings.warn(f"nothing in the model is observed, so this {what} is of the prior "
                          "(a data name that does not match a node is reported above)", ModelWarning, stacklevel=3)
        if lw.dim == 0:
            raise ValueError(f"nothing to fit: the model has no latent node that the data inform ({what} needs one)")
        return lw

    # ------------------------------------------------------------------ pieces
    def _compiled_fn(self, lw, name, build):
        key = (id(lw), name)
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = build()
        return fn

    def _log_density_fn(self, lw):
        """``lw.log_density`` jitted once per binding: the sampler's chunk traces the model once, not
        at each of its several call sites, and the starting-point search's and the outputs' programs
        (and their operation counts) reuse that trace (a logistic regression's model traced under
        ``vmap`` and ``value_and_grad`` took 0.086 s against 0.030 s from the jitted trace)."""
        return self._compiled_fn(lw, "logdensity", lambda: jax.jit(lw.log_density))

    def _ancestral(self, lw, arrays, seed, chains, draws, kind):
        t0 = time.perf_counter()
        sim = self._compiled_fn(lw, "simulate", lambda: jax.jit(jax.vmap(lw.simulate, in_axes=(0, None))))
        keys = raw_keys(stream(seed, 5), chains * draws)     # numpy: no program compiled to split a key
        try:
            lowered = sim.lower(keys, arrays)
            t1 = time.perf_counter()
            # a program that runs once: XLA level 0 unless even that could lose 0.5 s (a draw costs
            # about a log density, a quarter of an ADVI step); compiles 0.5-2.2 s sooner
            options = one_shot_options(self._log_density_fn(lw), lw.dim, float_dtype(), arrays,
                                       chains * draws / 4)
            compiled = compile_with(lowered, options)
        except ModelError as err:
            raise err.located(self.graph.file, self.graph.source) from None
        t2 = time.perf_counter()
        out = jax.device_get(compiled(keys, arrays))
        t3 = time.perf_counter()
        values = {n: np.asarray(v).reshape((chains, draws) + np.shape(v)[1:]) for n, v in out.items()}
        return Posterior(values, {}, kind=kind, completed=True,
                         timings={"compile_s": t2 - t0, "sampling_s": t3 - t2, "total_s": t3 - t0},
                         meta={"dims": self._dims(lw), "roles": dict(lw.binding.roles), "trace_s": t1 - t0})

    def _initial_points(self, lw, arrays, seq, chains, tries: int = 100, best_of: int = 4, values: bool = False):
        """Stan's initialisation: uniform(-2, 2) on the unconstrained space, retried until finite;
        each chain starts at the most probable of its first ``best_of`` finite points, which keeps
        chains out of regions where the density is finite but astronomically small (an explosive
        recurrence, say) without pulling them all to one mode. ``values``: the points come as
        ``StartingPoints``, with the log density and gradient computed there (NUTS starts from them).

        The candidates are evaluated ``best_of`` tries at a time (one small program, called again
        only while a chain still lacks ``best_of`` finite points), so the usual search evaluates
        ``best_of`` x chains points, not ``tries`` x chains: the same choice, from the same
        candidates, at a fraction of the work (it runs beside the sampler's XLA compilation)."""
        t0 = time.perf_counter()
        # numpy draws the candidates: a JAX uniform would be one more program to compile
        cand = np.random.default_rng(seq).uniform(-2.0, 2.0, (tries, chains, lw.dim))
        batch = max(1, min(best_of, tries))
        program = self._init_program(lw, arrays, batch * chains)
        lp = np.full((tries, chains), -np.inf)
        grad = np.zeros((tries, chains, lw.dim))
        ok = np.zeros((tries, chains), bool)
        done = 0
        while done < tries and (done == 0 or (ok.sum(axis=0) < best_of).any()):
            rows = cand[done:done + batch]
            n = rows.shape[0]
            if n < batch:      # the last tries: padded with the first candidates (their results unused)
                rows = np.concatenate([rows, cand[:batch - n]])
            got_lp, got_grad = jax.device_get(program(rows.reshape(batch * chains, lw.dim), arrays))
            got_lp = np.asarray(got_lp).reshape(batch, chains)[:n]
            got_grad = np.asarray(got_grad).reshape(batch, chains, lw.dim)[:n]
            lp[done:done + n], grad[done:done + n] = got_lp, got_grad
            ok[done:done + n] = np.isfinite(got_lp) & np.all(np.isfinite(got_grad), axis=-1)
            done += n
        t1 = time.perf_counter()
        if not ok.any():
            raise self._init_failure(lw, arrays, cand[0, 0])
        out, out_lp, out_grad = np.empty((chains, lw.dim)), np.empty(chains), np.empty((chains, lw.dim))
        good_at = np.argwhere(ok)
        for c in range(chains):
            rows = np.nonzero(ok[:, c])[0][:best_of]
            t, k = (rows[np.argmax(lp[rows, c])], c) if rows.size else tuple(good_at[c % len(good_at)])
            out[c], out_lp[c], out_grad[c] = cand[t, k], lp[t, k], grad[t, k]
        return (StartingPoints(out, out_lp, out_grad) if values else out), t1 - t0

    def _init_failure(self, lw, arrays, u) -> ModelError:
        terms = lw.log_density_terms(jnp.asarray(u), arrays)
        bad = list(dict.fromkeys(n for (_, n), v in terms.items() if not np.isfinite(float(v))))
        values = lw.generate(jax.random.PRNGKey(0), jnp.asarray(u), arrays)
        names = [n for n in bad if n in self.graph.nodes]
        node = self.graph.nodes[names[0]] if names else None
        shown = ", ".join(f"`{n}`" for n in bad) or "the total"
        detail = ""
        if node is not None and names[0] in values:
            detail = f" (at {names[0]} = {np.round(np.asarray(values[names[0]]), 4).tolist()})"
        hint = ("check the data lie in the support of each distribution, and that "
                "parameters used as scales are declared positive")
        t = node.type if node is not None else None
        if t is not None and t.lower is not None and t.upper is not None:
            hint = f"check that the lower bound of `{node.name}` is below its upper bound"
        return ModelError(f"could not find a starting point with a finite log density after 100 tries: "
                          f"the density of {shown} is not finite{detail}",
                          node.span if node is not None else None, hint=hint,
                          file=self.graph.file, source=self.graph.source)

    def _init_program(self, lw, arrays, rows: int):
        """The compiled log density and gradient at ``rows`` candidate starting points. It runs once,
        so it is compiled as one-shot programs are (XLA level 0 unless that could cost 0.5 s: a
        gradient counted as an ADVI step); it compiles while XLA compiles the sampler's chunk, on
        the same cores. The points are evaluated one after another (``lax.map``), not vmapped: the
        same values up to the last bit, and for the mixtures half the tracing and compiling (0.13
        against 0.26-0.29 s of a core that the chunk's compile also wants); the others within noise."""
        def build():
            dtype = float_dtype()
            density = self._log_density_fn(lw)
            density_and_grad = jax.value_and_grad(density)
            check = jax.jit(lambda points, data: jax.lax.map(lambda x: density_and_grad(x, data), points))
            options = one_shot_options(density, lw.dim, dtype, arrays, rows)
            args = (jax.ShapeDtypeStruct((rows, lw.dim), dtype), arrays)
            # kept on disk beside the chunk (a later process skips tracing it), keyed as the chunk is
            closed = density_profile(density, lw.dim, dtype, arrays).closed
            key = chunk_key(closed, ("init", rows), args, jax.devices()[:1])
            return compile_with(lower_chunk(check, args, key)[0], options)
        return self._compiled_fn(lw, ("init", rows), build)

    def _generate_program(self, lw, arrays, rows: int):
        """The compiled program giving every output node's value at ``rows`` positions (run once
        per fit: compiled as a one-shot program, a row counted as a quarter of an ADVI step)."""
        gen = self._compiled_fn(lw, "generate", lambda: jax.jit(jax.vmap(lw.generate, in_axes=(0, 0, None))))
        dtype = float_dtype()
        keys = jax.ShapeDtypeStruct((rows, 2), np.uint32)
        flat = jax.ShapeDtypeStruct((rows, lw.dim), dtype)
        options = one_shot_options(self._log_density_fn(lw), lw.dim, dtype, arrays, rows / 4)
        return compile_with(gen.lower(keys, flat, arrays), options)

    def _outputs(self, lw, arrays, positions, seq, programs=None):
        """Constrained values of every output node for every draw (posterior predictive included).
        ``programs``: compiled :meth:`_generate_program` by number of rows, if any were made."""
        chains, n = positions.shape[:2]
        if n == 0:
            return {name: np.zeros((chains, 0) + lw.shapes.get(name, ())) for name in lw.output_names}, 0.0, 0.0
        t0 = time.perf_counter()
        compiled = (programs or {}).get(chains * n)     # none for fewer draws (an interrupted run)
        if compiled is None:
            compiled = self._generate_program(lw, arrays, chains * n)
        flat = np.asarray(positions, dtype=float_dtype()).reshape(chains * n, -1)
        keys = raw_keys(seq, chains * n)
        t1 = time.perf_counter()
        out = jax.device_get(compiled(keys, flat, arrays))
        t2 = time.perf_counter()
        return {k: np.asarray(v).reshape((chains, n) + np.shape(v)[1:]) for k, v in out.items()}, t1 - t0, t2 - t1

    def _dims(self, lw) -> dict:
        """Dimension names of each output node from its declared type (`theta: real[J]` -> ('J',))."""
        from . import ast as A
        out = {}
        for name in lw.output_names:
            if name not in self.graph.nodes:        # e.g. `z.prob` of a summed-out variable
                continue
            t = self.graph.nodes[name].type
            if t is not None and t.shape:
                out[name] = tuple(e.id if isinstance(e, A.Name) else None for e in t.shape)
        return out


CALL_SECONDS = 0.5
"""NUTS runs about this long per call into XLA (progress, Ctrl-C between calls)."""


def _nuts_rows(chains: int, dim: int) -> int:
    """The compiled length of a NUTS chunk: 1000 iterations, fewer when its outputs (chains x
    rows x (dim + 8) numbers, copied out whole at every call) would pass 8 MiB. Calls run as many
    of them as take about CALL_SECONDS (``run_chunked``; rows not run cost nothing): eight schools
    (4 x 2000 iterations, 2 cores) makes 5 calls and takes 0.052-0.057 s against 8 calls of 250
    and 0.060-0.072 s, and a model at 50 ms an iteration reports progress every half second
    rather than every 12 s."""
    cap = (8 << 20) // (8 * max(1, chains) * (int(dim) + 8))
    return int(max(10, min(1000, cap)))


def _chunk_size(total: int) -> int:
    """Iterations per compiled chunk: about an eighth of the run (at most 250). Each chunk is one
    call into XLA, between which progress is reported and Ctrl-C is honoured; fewer calls cut
    the per-call cost that dominates small models (eight schools, 4 x 2000 iterations: 20 chunks
    of 100 took 0.29-0.38 s, 8 chunks of 250 0.21-0.24 s)."""
    return int(min(250, max(10, total // 8)))


def _check_counts(**counts):
    for name, value in counts.items():
        if not isinstance(value, (int, np.integer)) or value < (1 if name in ("chains", "draws") else 0):
            raise ValueError(f"{name} must be a whole number >= {1 if name in ('chains', 'draws') else 0}, "
                             f"got {value!r}")


def compile(source: str, *, file: Optional[str] = None) -> Model:  # noqa: A001 - the API's name
    """Parse and check GM source text; raises ModelError on bad input."""
    program = parse(source, file=file)
    functions = collect_functions(program, parse)
    return Model(check_graph(build_graph(program, functions)))


def load(path: str) -> Model:
    """Read, parse and check a .gm file."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as err:
        raise ModelError(f"cannot read model file: {err.strerror}", file=path) from None
    except UnicodeDecodeError:
        raise ModelError("the model file is not UTF-8 text", file=path) from None
    return compile(text, file=path)
