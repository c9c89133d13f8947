"""One measurement in a fresh Python process (started by bench/run.py; not for direct use).

    python bench/worker.py '<json spec>'

The spec names the system (ppl | numpyro | blackjax | stan), the model, the data, the run
size and the tasks:

* ``ttfd``  — one fit with the full warm-up and a single draw; reports the wall-clock time
  from the parent's spawn of this process until the draw is in hand (interpreter start,
  imports, model build, compilation, warm-up and the draw);
* ``fit``   — the full fit; writes the draws of the sampled parameters to ``out_dir`` (the
  parent computes ESS and R-hat with ppl.diagnostics) and reports timings, leapfrog steps
  and divergences;
* ``prime`` — after ``fit``, the ttfd fit again, only so that its compiled programs land in
  the persistent cache the next process reads;
* ``logp``  — the time of a jitted value_and_grad of the system's log density at a fixed
  point, and (ppl, NumPyro) a check against the hand-written density.

The process environment (set by the parent) decides the caches: PPL_CACHE / PPL_CACHE_DIR for
ppl, JAX_ENABLE_COMPILATION_CACHE / JAX_COMPILATION_CACHE_DIR for the JAX peers, XDG_CACHE_HOME
for PyStan's model builds; XLA_FLAGS gives NumPyro's parallel runs their host devices.
The result is one line on stdout: ``@@BENCH@@ {json}``.
"""
from __future__ import annotations

import time

T_WORKER = time.time()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import MODELS, MODELS_DIR, load_data  # noqa: E402

MARK = "@@BENCH@@ "
COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "backend_s",  # includes persistent-cache reads
}


class Unsupported(Exception):
    """The system cannot express or run this model."""


# ----------------------------------------------------------------------------- instruments


class CompileMeter:
    """Sums JAX's trace / lower / XLA-compile durations (jax.monitoring) between marks."""

    def __init__(self):
        self.acc = defaultdict(float)
        self.hits = 0
        self.enabled = False

    def install(self):
        if self.enabled:
            return
        from jax import monitoring

        def on_duration(event, duration, **_):
            key = COMPILE_EVENTS.get(event)
            if key:
                self.acc[key] += duration

        def on_event(event, **_):
            if event == "/jax/compilation_cache/cache_hits":
                self.hits += 1

        monitoring.register_event_duration_secs_listener(on_duration)
        monitoring.register_event_listener(on_event)
        self.enabled = True

    def snapshot(self):
        return dict(self.acc), self.hits

    def since(self, snap):
        acc0, hits0 = snap
        out = {k: self.acc.get(k, 0.0) - acc0.get(k, 0.0) for k in COMPILE_EVENTS.values()}
        out["compile_s"] = sum(out[k] for k in COMPILE_EVENTS.values())
        out["cache_hits"] = self.hits - hits0
        return out


METER = CompileMeter()


def setup_jax(spec):
    import jax

    if spec["system"] != "ppl":  # ppl sets its own precision from PPL_PRECISION
        jax.config.update("jax_enable_x64", int(spec.get("precision", 64)) == 64)
    METER.install()
    return jax


# ----------------------------------------------------------------------------- systems


def chunk_size_for(spec):
    """ppl's default chunk for the full run, so the ttfd run compiles the same NUTS program: None
    where ppl's default no longer depends on the run's length (calls timed by ppl itself)."""
    import ppl.model as pm

    if hasattr(pm, "_nuts_rows"):
        return None
    total = int(spec["warmup"]) + int(spec["draws_full"])
    fn = getattr(pm, "_chunk_size", None)
    return int(fn(total)) if fn else int(min(100, max(10, total // 20)))


class PplSystem:
    def __init__(self, spec, data):
        import ppl

        self.ppl = ppl
        self.spec, self.data = spec, data
        t = time.perf_counter()
        try:
            self.model = ppl.load(str(MODELS_DIR / MODELS[spec["model"]]["gm"]))
        except ppl.ModelError as err:
            raise Unsupported(str(err).strip().splitlines()[0]) from None
        self.build_s = time.perf_counter() - t
        self.chunk = chunk_size_for(spec)

    def fit(self, draws, seed):
        s = self.spec
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                post = self.model.sample(self.data, chains=s["chains"], warmup=s["warmup"], draws=draws, seed=seed,
                                         chunk_size=self.chunk, mass_matrix=s.get("mass_matrix"))
            except self.ppl.ModelError as err:
                raise Unsupported(str(err).strip().splitlines()[0]) from None
        values = {p: np.asarray(post[p]) for p in MODELS[s["model"]]["params"]}
        return {"values": values, "n_leapfrog": np.asarray(post.stats["n_leapfrog__"]),
                "divergent": np.asarray(post.stats["divergent__"]),
                "native": {k: float(v) for k, v in post.timings.items()}}

    def logdensity(self):
        return self.model.log_density(self.data)


class NumpyroSystem:
    def __init__(self, spec, data):
        import numpyro  # noqa: F401
        from peers import numpyro_model

        self.spec, self.data = spec, data
        t = time.perf_counter()
        self.fn, self.args = numpyro_model(spec["model"], data)
        self.build_s = time.perf_counter() - t

    def fit(self, draws, seed):
        import jax
        from numpyro.infer import MCMC, NUTS

        s = self.spec
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mcmc = MCMC(NUTS(self.fn, target_accept_prob=0.8, max_tree_depth=10), num_warmup=s["warmup"],
                        num_samples=draws, num_chains=s["chains"], chain_method=s.get("chain_method", "vectorized"),
                        progress_bar=False)
            mcmc.run(jax.random.PRNGKey(seed), *self.args, extra_fields=("num_steps", "diverging"))
            samples = jax.device_get(mcmc.get_samples(group_by_chain=True))
            extra = jax.device_get(mcmc.get_extra_fields(group_by_chain=True))
        params = MODELS[s["model"]]["params"]
        return {"values": {p: np.asarray(samples[p]) for p in params},
                "n_leapfrog": np.asarray(extra["num_steps"]), "divergent": np.asarray(extra["diverging"]),
                "native": {"chain_method_used": str(mcmc.chain_method), "devices": jax.local_device_count(),
                           "warnings": sorted({str(w.message)[:200] for w in caught})}}

    def logdensity(self):
        from peers import numpyro_logdensity

        f, dim, z, unravel = numpyro_logdensity(self.fn, self.args)
        f.dim, f.z, f.unravel = dim, z, unravel
        return f


class BlackjaxSystem:
    def __init__(self, spec, data):
        import blackjax  # noqa: F401
        from peers import hand_model

        self.spec = spec
        t = time.perf_counter()
        self.hm = hand_model(spec["model"], data)
        self.build_s = time.perf_counter() - t

    def fit(self, draws, seed):
        from peers import run_blackjax

        s = self.spec
        values, n_leap, div = run_blackjax(self.hm, s["chains"], s["warmup"], draws, seed)
        return {"values": values, "n_leapfrog": n_leap, "divergent": div, "native": {}}

    def logdensity(self):
        f = self.hm.logdensity
        return f


class StanSystem:
    def __init__(self, spec, data):
        try:
            import stan
        except Exception as err:  # noqa: BLE001
            raise Unsupported(f"PyStan is not installed ({type(err).__name__}: {err})") from None
        from peers import stan_data

        self.stan, self.spec = stan, spec
        self.code = (MODELS_DIR / MODELS[spec["model"]]["stan"]).read_text()
        self.sdata = stan_data(spec["model"], data)
        self.build_s = 0.0

    def fit(self, draws, seed):
        s = self.spec
        # httpstan caches finished fits by (model, data, arguments, seed): a repeated seed would return
        # the stored draws without sampling. So every call gets its own seed (the compiled model is
        # still found in the cache), and the time of the look-up counts as compilation.
        self.calls = getattr(self, "calls", 0) + 1
        stan_seed = (int(seed) * 1_000_003 + int(s.get("t_spawn", 0) * 1000) % 1_000_000 + self.calls) % (2 ** 31)
        t = time.perf_counter()
        self.posterior = self.stan.build(self.code, data=self.sdata, random_seed=stan_seed)
        self.last_build_s = time.perf_counter() - t
        if self.calls == 1:
            self.build_s = self.last_build_s
        fit = self.posterior.sample(num_chains=s["chains"], num_samples=draws, num_warmup=s["warmup"])
        names = list(fit.sample_and_sampler_param_names)
        raw = fit._draws  # (sampler + constrained params, draws, chains)
        values = {}
        for p in MODELS[s["model"]]["params"]:
            idx = fit._parameter_indexes(p)
            dims = fit.dims[fit.param_names.index(p)]
            a = np.transpose(raw[idx, :, :], (2, 1, 0))
            values[p] = a.reshape(a.shape[:2] + tuple(dims))
        return {"values": values, "n_leapfrog": raw[names.index("n_leapfrog__")].T,
                "divergent": raw[names.index("divergent__")].T, "native": {}}

    def logdensity(self):
        raise Unsupported("PyStan's log_prob goes over HTTP: not comparable")


SYSTEMS = {"ppl": PplSystem, "numpyro": NumpyroSystem, "blackjax": BlackjaxSystem, "stan": StanSystem}


# ----------------------------------------------------------------------------- tasks


def timed_fit(system, draws, seed):
    snap = METER.snapshot() if METER.enabled else None
    t = time.perf_counter()
    out = system.fit(draws, seed)
    wall = time.perf_counter() - t
    comp = METER.since(snap) if snap is not None else {"compile_s": 0.0}
    if isinstance(system, StanSystem):  # stan.build (C++ compilation or a cache look-up) ran inside fit
        comp = {"compile_s": system.last_build_s, "cache_hits": 0}
    out["wall_s"] = wall
    out["compile"] = comp
    out["run_s"] = wall - comp["compile_s"]
    # what the user waits for before sampling can start: model build (parse/check) + JAX compilation
    # (for Stan: stan.build, which is the C++ compilation, or a cache look-up)
    out["compile_total_s"] = comp["compile_s"] + (0.0 if isinstance(system, StanSystem) else system.build_s)
    return out


def _pipelined_seconds(call, n, batches):
    """Seconds per call in each of `batches` batches of n calls dispatched back to back, one wait
    at the end of a batch."""
    import jax

    times = []
    for _ in range(batches):
        t = time.perf_counter()
        for _ in range(n):
            out = call()
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t) / n)
    return times


def with_data_as_arguments(f, u):
    """f's log density with the arrays it closes over (the data) passed as arguments.

    Traced once to a jaxpr; its constants become a second argument, as a sampler that takes the
    data as an argument sees them (XLA cannot fold them into the compiled code)."""
    import jax

    closed = jax.make_jaxpr(f)(u)
    consts = list(closed.consts)

    def g(u, consts):
        return jax.core.eval_jaxpr(closed.jaxpr, consts, u)[0]
    return g, consts


LOOP_EVALUATIONS = 1000


def in_a_loop(g, evaluations=LOOP_EVALUATIONS):
    """``evaluations`` value-and-gradient evaluations of ``g(u, consts)`` inside one compiled
    ``fori_loop``, as a sampler's transition runs the log density; each step moves the point a
    little along the gradient, so nothing can be hoisted out of the loop."""
    import jax
    import jax.numpy as jnp

    vg = jax.value_and_grad(g)

    @jax.jit
    def loop(u, consts):
        def body(_, carry):
            u, total = carry
            value, grad = vg(u, consts)
            return u + 1e-6 * grad, total + value
        return jax.lax.fori_loop(0, evaluations, body, (u, jnp.zeros((), u.dtype)))
    return loop


def time_logp(f, dim, reps_min_s=0.2, batches=7):
    import jax
    import jax.numpy as jnp

    u = jnp.asarray(np.random.default_rng(123).normal(0.0, 0.5, dim), dtype=jnp.zeros(()).dtype)
    vg = jax.jit(jax.value_and_grad(f))
    t = time.perf_counter()
    val, _ = jax.block_until_ready(vg(u))
    first = time.perf_counter() - t
    for _ in range(20):
        jax.block_until_ready(vg(u))
    n = 20
    while True:
        t = time.perf_counter()
        for _ in range(n):
            jax.block_until_ready(vg(u))
        el = time.perf_counter() - t
        if el >= reps_min_s or n >= 1 << 20:
            break
        n *= 4
    synced = [el / n]
    for _ in range(batches - 1):
        t = time.perf_counter()
        for _ in range(n):
            jax.block_until_ready(vg(u))
        synced.append((time.perf_counter() - t) / n)
    # Back to back: n calls dispatched, one wait at the end. This is the number reported: a call
    # that waits for its result also pays the runtime's wake-up latency, which depends on the
    # process (measured on hier_linear: 47-76 us per synced call against 24-25 us back to back,
    # the same for ppl and the hand-written density, with 1 or 4 host devices).
    pipelined = _pipelined_seconds(lambda: vg(u), n, batches)
    # The same function with the data as arguments, as the samplers call it (each system's data
    # are closed over, so XLA folds them in as constants above; a sampler's loop receives them).
    g, consts = with_data_as_arguments(f, u)
    vga = jax.jit(jax.value_and_grad(g))
    val_args, _ = jax.block_until_ready(vga(u, consts))
    for _ in range(20):
        jax.block_until_ready(vga(u, consts))
    as_args = _pipelined_seconds(lambda: vga(u, consts), n, batches)
    # ... and inside one compiled loop (no per-call dispatch: what sampling costs)
    loop = in_a_loop(g)
    jax.block_until_ready(loop(u, consts))
    n_loop = max(1, int(reps_min_s / max(_pipelined_seconds(lambda: loop(u, consts), 1, 1)[0], 1e-9)))
    in_loop = _pipelined_seconds(lambda: loop(u, consts), n_loop, batches)
    # the fastest batch: on a shared machine other jobs only ever slow a batch down
    return {"logp_grad_us": float(np.min(pipelined)) * 1e6, "logp_grad_median_us": float(np.median(pipelined)) * 1e6,
            "logp_grad_synced_us": float(np.min(synced)) * 1e6, "logp_reps": n * batches, "logp_first_call_s": first,
            "logp_grad_args_us": float(np.min(as_args)) * 1e6, "logp_args_n_consts": len(consts),
            "logp_grad_loop_us": float(np.min(in_loop)) / LOOP_EVALUATIONS * 1e6,
            "logp_args_const_bytes": int(sum(np.asarray(c).nbytes for c in consts)),
            "logp_value": float(val), "logp_args_value": float(val_args), "dim": int(dim)}


def check_against_hand(spec, data, f, system):
    """Do the system's and the hand-written log densities differ by a constant? (same unconstrained
    coordinates: log for positive, Stan's ordered; not checked where a simplex is involved)."""
    import jax.numpy as jnp

    from peers import hand_model

    hm = hand_model(spec["model"], data)
    if any(t == "simplex" for _, _, t in hm.layout):
        return {"check": "skipped (simplex transforms differ between systems)"}
    rng = np.random.default_rng(7)
    diffs = []
    for _ in range(3):
        named = {n: rng.normal(0.0, 0.7, s) if s else float(rng.normal(0.0, 0.7)) for n, s, _ in hm.layout}
        uh = jnp.concatenate([jnp.atleast_1d(jnp.asarray(named[n], float)).ravel() for n, _, _ in hm.layout])
        if system == "ppl":
            us = np.zeros(f.dim)
            for slot in f.slots:
                us[slot.offset:slot.offset + slot.size] = np.ravel(named[slot.name])
        else:  # numpyro: a dict of unconstrained sites
            z = {k: jnp.reshape(jnp.asarray(named[k], float), np.shape(v)) for k, v in f.z.items()}
            from jax.flatten_util import ravel_pytree
            us = ravel_pytree(z)[0]
        diffs.append(float(f(jnp.asarray(us))) - float(hm.logdensity(uh)))
    spread = max(diffs) - min(diffs)
    ok = abs(spread) <= 1e-6 * max(1.0, max(abs(d) for d in diffs))
    return {"check": "ok" if ok else "MISMATCH", "check_spread": spread, "check_offset": diffs[0]}


def main():
    spec = json.loads(sys.argv[1])
    result = {"spec": spec, "t_worker_start_s": T_WORKER - spec.get("t_spawn", T_WORKER)}
    try:
        t = time.perf_counter()
        setup_jax(spec)
        data = load_data(spec["data"])
        system = SYSTEMS[spec["system"]](spec, data)
        result["import_build_s"] = time.perf_counter() - t
        result["build_s"] = system.build_s
        tasks = spec["tasks"]
        seed = int(spec.get("seed", 0))
        if "ttfd" in tasks:
            out = timed_fit(system, 1, seed)
            result["ttfd_s"] = time.time() - spec["t_spawn"]
            result["ttfd_compile"] = out["compile"]
            result["ttfd_compile_total_s"] = out["compile_total_s"]
            result["ttfd_wall_s"] = out["wall_s"]
        if "fit" in tasks:
            first = timed_fit(system, int(spec["draws"]), seed)
            # the same fit again (same seed, so the same work): its wall time less the compilation
            # recorded during it is the steady cost of warm-up + sampling, without one-off set-up
            out = timed_fit(system, int(spec["draws"]), seed) if spec.get("hot", True) else first
            result["first_fit"] = {"wall_s": first["wall_s"], "run_s": first["run_s"], "compile": first["compile"],
                                   "compile_total_s": first["compile_total_s"], "native": first["native"]}
            path = Path(spec["out_dir"]) / "draws.npz"
            np.savez(path, **{f"v_{k}": v for k, v in out["values"].items()})
            result.update({
                "draws_file": str(path), "wall_s": out["wall_s"], "run_s": out["run_s"],
                "compile": out["compile"], "compile_total_s": first["compile_total_s"], "build_s": system.build_s,
                "n_leapfrog": int(np.sum(out["n_leapfrog"])), "divergences": int(np.sum(out["divergent"])),
                "native": out["native"],
            })
        if "prime" in tasks:
            timed_fit(system, 1, seed)
        if "logp" in tasks:
            try:
                f = system.logdensity()
                dim = getattr(f, "dim", None) or getattr(system, "hm", None).dim
                result["logp"] = time_logp(f, dim)
                if spec["system"] in ("ppl", "numpyro"):
                    try:
                        result["logp"].update(check_against_hand(spec, data, f, spec["system"]))
                    except Exception as err:  # noqa: BLE001
                        result["logp"]["check"] = f"error: {type(err).__name__}: {err}"
            except Unsupported as err:
                result["logp"] = {"unsupported": str(err)}
    except Unsupported as err:
        result["unsupported"] = str(err)
    except Exception as err:  # noqa: BLE001
        result["error"] = f"{type(err).__name__}: {err}"
        result["traceback"] = traceback.format_exc()[-4000:]
    print(MARK + json.dumps(result, default=float), flush=True)


if __name__ == "__main__":
    main()
