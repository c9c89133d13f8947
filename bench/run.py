#!/usr/bin/env python
"""Benchmark harness: the same models in ppl, NumPyro, hand-written JAX + BlackJAX and PyStan.

    python bench/run.py                          # 4 chains x 1000 warm-up x 1000 draws, all models
    python bench/run.py --quick                  # 2 x 300 x 300, one repeat, no scaling series
    python bench/run.py --models eight_schools,logistic --repeats 3
    python bench/run.py --scaling                # also the scaling series (logistic N, chains)
    python bench/run.py --scaling-only --scaling-n 1000,10000

Every measurement runs in its own fresh Python process (bench/worker.py), one at a time, so
compilation is never shared by accident. Per model and system:

  A. cold: caches off (PPL_CACHE=0, JAX_ENABLE_COMPILATION_CACHE=false; PyStan with an empty
     XDG_CACHE_HOME, so the C++ model is built): a fit with the full warm-up and one draw ->
     time to first draw (cold) and compile time;
  B. the full fit (persistent cache on, in an empty folder) -> warm-up + sampling time, draws
     (ESS, R-hat computed here with ppl.diagnostics), leapfrog steps, divergences; then the
     log density + gradient timing; then the ttfd fit again, so its programs are cached;
  C. cached: the same cache folder, now warm (ppl: PPL_CACHE_DIR; JAX peers:
     JAX_COMPILATION_CACHE_DIR; PyStan: the same XDG_CACHE_HOME) -> time to first draw (cached).

Results: bench/results/latest.json (everything, per repeat and medians) and
bench/results/latest.md (the tables; the command that reproduces them at the top).
See bench/README.md for what each column means.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The user's XLA_FLAGS as this process started: importing ppl here (for its diagnostics) adds
# ppl's own XLA settings to os.environ, which must not leak into the peers' workers.
USER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import (CONFIGS, DEFAULT_CONFIGS, DEFAULT_MODELS, LOGP_CONFIGS, MODELS, REPO_ROOT, RESULTS_DIR,  # noqa: E402
                    SCALING_CONFIGS, median, scalar_columns)
from report import label, render, update_readme  # noqa: E402

WORKER = str(Path(__file__).resolve().parent / "worker.py")
MARK = "@@BENCH@@ "


METRICS = ["compile_s", "ttfd_cold_s", "ttfd_cached_s", "run_s", "ess_min", "ess_per_s", "ess_per_grad",
           "divergences", "rhat_max", "logp_us", "logp_args_us", "logp_loop_us", "n_leapfrog"]


# ----------------------------------------------------------------------------- processes


def clean_env(args) -> dict:
    env = dict(os.environ, XLA_FLAGS=USER_XLA_FLAGS)
    for k in ("PPL_CACHE", "PPL_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR",
              "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
              "JAX_ENABLE_X64", "PPL_SUFFSTATS"):
        env.pop(k, None)
    env["JAX_PLATFORMS"] = "cpu"
    env["PPL_PRECISION"] = str(args.precision)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def env_for(name: str, phase: str, cache_dir: str, stan_home: str, args) -> dict:
    """Environment of one worker: phase 'cold' turns every cache off; 'cache' points it at cache_dir."""
    env = clean_env(args)
    system = CONFIGS[name][0]["system"]
    if phase == "cold":
        env["PPL_CACHE"] = "0"
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    elif system == "ppl":
        env["PPL_CACHE_DIR"] = cache_dir  # ppl's own switch for JAX's persistent cache
    else:
        env["PPL_CACHE"] = "0"
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    if system == "stan":
        env["XDG_CACHE_HOME"] = stan_home  # httpstan keeps built models there
    if name == "ppl-vec":
        env["PPL_HOST_DEVICES"] = "1"
    if name == "ppl-rows":
        env["PPL_SUFFSTATS"] = "0"
    flags = env.pop("XLA_FLAGS")
    if name.startswith("numpyro-par"):
        flags = f"{flags} --xla_force_host_platform_device_count={args.parallel_devices_for(args)}"
    if name.endswith("-xla"):
        from ppl.inference.parallel import small_loop_flag
        flags = f"{flags} {small_loop_flag()}"
    if flags.strip():
        env["XLA_FLAGS"] = flags.strip()
    return env


LOADS: list = []


def spawn(spec: dict, env: dict, timeout: float, log) -> dict:
    LOADS.append(os.getloadavg()[0])
    spec = dict(spec, t_spawn=time.time())
    label = f"{spec['system']}{'/' + spec['chain_method'] if 'chain_method' in spec else ''} {spec['model']} " \
            f"{'+'.join(spec['tasks'])}"
    log(f"  run {label} ...")
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, WORKER, json.dumps(spec)], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired:
        log(f"    timed out after {timeout:.0f} s")
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            out = json.loads(line[len(MARK):])
            status = out.get("unsupported") and "unsupported" or out.get("error") and "ERROR" or "ok"
            log(f"    {status} in {time.perf_counter() - t:.1f} s"
                + (f": {out.get('unsupported') or out.get('error')}" if status != "ok" else ""))
            return out
    tail = (proc.stderr or "")[-1500:]
    log(f"    worker failed (exit {proc.returncode}): {tail[-300:]}")
    return {"error": f"worker exited {proc.returncode}: {tail}"}


# ----------------------------------------------------------------------------- one cell


def draws_metrics(result: dict, params: list) -> dict:
    """min bulk ESS and max R-hat over every scalar parameter, with ppl.diagnostics."""
    from ppl import diagnostics

    with np.load(result["draws_file"]) as z:
        values = {k[2:]: z[k] for k in z.files}
    cols = scalar_columns(values, params)
    ess = {k: float(diagnostics.ess_bulk(v)) for k, v in cols.items()}
    rhat = {k: float(diagnostics.rhat(v)) for k, v in cols.items()} if next(iter(cols.values())).shape[0] > 1 else {}
    worst = min(ess, key=ess.get)
    out = {"ess_min": ess[worst], "ess_min_param": worst}
    if rhat:
        bad = max(rhat, key=rhat.get)
        out.update(rhat_max=rhat[bad], rhat_max_param=bad)
    return out


def measure(name: str, model: str, data_spec: dict, args, seed: int, log, *, ttfd: bool, logp: bool,
            chains: int, warmup: int, draws: int, hot: bool = True) -> dict:
    """All the numbers of one (model, configuration) for one repeat.

    ``hot``: time a second, identical fit in process B (False: the first fit, less its compilation).
    """
    base = dict(CONFIGS[name][0], model=model, data=data_spec, chains=chains, warmup=warmup, draws=draws,
                draws_full=draws, seed=seed, precision=args.precision, hot=hot)
    tmp = Path(tempfile.mkdtemp(prefix="pplbench-"))
    cache_dir, stan_home = str(tmp / "jax-cache"), str(tmp / "stan-home")
    rec: dict = {"config": name, "model": model, "seed": seed}
    try:
        if ttfd:
            a = spawn(dict(base, tasks=["ttfd"], out_dir=str(tmp)), env_for(name, "cold", cache_dir, stan_home, args),
                      args.timeout, log)
            rec["A"] = a
            if stop_reason(a):
                rec.update(stop_reason(a))
                return rec
            rec["ttfd_cold_s"] = a.get("ttfd_s")
            rec["compile_s"] = a.get("ttfd_compile_total_s")
        tasks = ["fit"] + (["logp"] if logp else []) + (["prime"] if ttfd else [])
        b = spawn(dict(base, tasks=tasks, out_dir=str(tmp)),
                  env_for(name, "cache" if ttfd else "cold", cache_dir, stan_home, args), args.timeout, log)
        rec["B"] = {k: v for k, v in b.items() if k != "draws_file"}
        if stop_reason(b):
            rec.update(stop_reason(b))
            return rec
        if not ttfd:
            rec["compile_s"] = b.get("compile_total_s")
        rec["run_s"] = b["run_s"]
        rec["n_leapfrog"] = b["n_leapfrog"]
        rec["divergences"] = b["divergences"]
        rec.update(draws_metrics(b, MODELS[model]["params"]))
        rec["ess_per_s"] = rec["ess_min"] / rec["run_s"] if rec["run_s"] > 0 else None
        rec["ess_per_grad"] = rec["ess_min"] / rec["n_leapfrog"] if rec["n_leapfrog"] else None
        lp = b.get("logp") or {}
        if "logp_grad_us" in lp:
            rec["logp_us"] = lp["logp_grad_us"]
        if "logp_grad_args_us" in lp:
            rec["logp_args_us"] = lp["logp_grad_args_us"]
        if "logp_grad_loop_us" in lp:
            rec["logp_loop_us"] = lp["logp_grad_loop_us"]
        if lp.get("check"):
            rec["logp_check"] = lp["check"]
        if lp.get("unsupported"):
            rec["logp_note"] = lp["unsupported"]
        if ttfd:
            c = spawn(dict(base, tasks=["ttfd"], out_dir=str(tmp)), env_for(name, "cache", cache_dir, stan_home, args),
                      args.timeout, log)
            rec["C"] = c
            if not stop_reason(c):
                rec["ttfd_cached_s"] = c.get("ttfd_s")
                rec["cached_compile_s"] = c.get("ttfd_compile_total_s")
                rec["cached_hits"] = (c.get("ttfd_compile") or {}).get("cache_hits")
        return rec
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stop_reason(res: dict):
    if res.get("unsupported"):
        return {"unsupported": res["unsupported"]}
    if res.get("error"):
        return {"error": res["error"], "traceback": res.get("traceback")}
    return None


def aggregate(recs: list) -> dict:
    """Medians over repeats; the first unsupported / error reason when no repeat succeeded."""
    ok = [r for r in recs if not r.get("unsupported") and not r.get("error")]
    out = {"repeats": len(recs), "ok": len(ok)}
    if not ok:
        r = recs[0]
        out["unsupported" if r.get("unsupported") else "error"] = r.get("unsupported") or r.get("error")
        return out
    for m in METRICS + ["cached_compile_s"]:
        v = median([r.get(m) for r in ok])
        if v is not None:
            out[m] = v
    for k in ("logp_check", "logp_note", "ess_min_param", "rhat_max_param"):
        if ok[0].get(k):
            out[k] = ok[0][k]
    native = (ok[0].get("B") or {}).get("native") or {}
    if native.get("chain_method_used"):
        out["chain_method_used"] = native["chain_method_used"]
        out["devices"] = native.get("devices")
    return out


def compile_bytecode() -> dict:
    """Python's bytecode for ppl and bench/ written now, before any worker starts, as ``pip install``
    does for an installed package (the peers' came with theirs). An editable install's bytecode is
    written by its first import, unless PYTHONDONTWRITEBYTECODE is set (as on the machine these
    tables were made on): then every worker would compile ppl's 60 modules from source, 0.06 s of
    each first draw that no installed package pays."""
    import compileall
    here = Path(__file__).resolve().parent
    ok = all(compileall.compile_dir(str(d), quiet=1) for d in (REPO_ROOT / "ppl", here))
    return {"compiled": bool(ok), "dont_write_env": bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))}


def environment() -> dict:
    def version(mod):
        try:
            from importlib.metadata import version as v
            return v(mod)
        except Exception:  # noqa: BLE001
            return None

    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:  # noqa: BLE001
            return None

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "bytecode": compile_bytecode(),
            "processor": platform.processor() or platform.machine(),
            "versions": {m: version(m) for m in ("jax", "jaxlib", "numpyro", "blackjax", "pystan", "httpstan", "ppl")},
            "ppl_commit": git("rev-parse", "--short", "HEAD"),
            "ppl_dirty": bool(git("status", "--porcelain", "--", "ppl"))}


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--systems", default=",".join(DEFAULT_CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=1, help="medians over this many runs (new processes, seeds 0..)")
    p.add_argument("--quick", action="store_true", help="2 chains x 300 warm-up x 300 draws, 1 repeat, no scaling")
    p.add_argument("--no-ttfd", action="store_true", help="skip the time-to-first-draw processes (A and C)")
    p.add_argument("--precision", type=int, choices=(32, 64), default=64)
    p.add_argument("--parallel-devices", type=int, default=0,
                   help="host devices for NumPyro's parallel method (default: one per chain)")
    p.add_argument("--scaling", action="store_true", help="also run the scaling series")
    p.add_argument("--scaling-only", action="store_true", help="run only the scaling series")
    p.add_argument("--scaling-n", default="1000,10000,100000,1000000", help="logistic N values")
    p.add_argument("--scaling-chains", default="4,16,64,256,1024", help="eight_schools chain counts")
    p.add_argument("--scaling-warmup", type=int, default=500)
    p.add_argument("--scaling-draws", type=int, default=500)
    p.add_argument("--scaling-systems", default=",".join(SCALING_CONFIGS))
    p.add_argument("--timeout", type=float, default=3600, help="seconds per worker process")
    p.add_argument("--out", default=str(RESULTS_DIR), help="folder for latest.json and latest.md")
    p.add_argument("--readme", action="store_true", help="also put the table into bench/README.md")
    p.add_argument("--render", metavar="JSON", help="only re-write the markdown of a results file (latest.md beside it)")
    args = p.parse_args(argv)
    if args.quick:
        args.chains, args.warmup, args.draws, args.repeats = 2, 300, 300, 1
        args.scaling = False
    if args.scaling_only:
        args.scaling = True
    args.parallel_devices_for = lambda a: a.parallel_devices or a.chains
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        doc = json.loads(Path(args.render).read_text())
        md = render(doc)
        Path(args.render).with_name("latest.md").write_text(md)
        if args.readme:
            update_readme(md, scaling_only=not doc.get("summary"))
        print(md)
        return
    t_start = time.perf_counter()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    configs = [c.strip() for c in args.systems.split(",") if c.strip()]
    for m in models:
        if m not in MODELS:
            sys.exit(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    for c in configs + args.scaling_systems.split(","):
        if c not in CONFIGS:
            sys.exit(f"unknown system {c!r}; choose from {', '.join(CONFIGS)}")
    if "stan" in configs and importlib.util.find_spec("stan") is None:
        print("PyStan is not installed: its rows say so (pip install pystan to include it)", flush=True)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    command = "python bench/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    doc = {"command": command.strip(), "started": _dt.datetime.now().isoformat(timespec="seconds"),
           "environment": environment(),
           "settings": {"models": models, "configs": configs, "chains": args.chains, "warmup": args.warmup,
                        "draws": args.draws, "repeats": args.repeats, "precision": args.precision,
                        "ttfd": not args.no_ttfd, "parallel_devices": args.parallel_devices_for(args),
                        "scaling_warmup": args.scaling_warmup, "scaling_draws": args.scaling_draws},
           "runs": {}, "summary": {}, "scaling": {}}

    def save():
        doc["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
        doc["elapsed_s"] = time.perf_counter() - t_start
        loads = LOADS or [os.getloadavg()[0]]
        doc["load"] = {"min": float(min(loads)), "median": float(np.median(loads)), "max": float(max(loads)),
                       "at_end": list(os.getloadavg())}
        (out_dir / "latest.json").write_text(json.dumps(doc, indent=1, default=float))
        md = render(doc)
        (out_dir / "latest.md").write_text(md)
        return md

    if not args.scaling_only:
        for r in range(args.repeats):
            for m in models:
                for c in configs:
                    log(f"[repeat {r + 1}/{args.repeats}] {m} / {label(c, args)}")
                    rec = measure(c, m, {"set": MODELS[m]["data"]}, args, seed=r, log=log, ttfd=not args.no_ttfd,
                                  logp=c in LOGP_CONFIGS, chains=args.chains, warmup=args.warmup, draws=args.draws)
                    doc["runs"].setdefault(m, {}).setdefault(c, []).append(rec)
                    doc["summary"].setdefault(m, {})[c] = aggregate(doc["runs"][m][c])
                    save()

    if args.scaling:
        sconfigs = [c for c in args.scaling_systems.split(",") if c]
        runs = doc.setdefault("scaling_runs", {"logistic_n": {}, "chains": {}})
        for n in [int(float(x)) for x in args.scaling_n.split(",") if x]:
            for c in sconfigs:
                for r in range(args.repeats):
                    log(f"[scaling N={n}] {label(c, args)} (repeat {r + 1})")
                    rec = measure(c, "logistic", {"synthetic_logistic": n, "D": 20, "seed": 0}, args, seed=r, log=log,
                                  ttfd=False, logp=True, chains=args.chains, warmup=args.scaling_warmup,
                                  draws=args.scaling_draws, hot=False)
                    runs["logistic_n"].setdefault(str(n), {}).setdefault(c, []).append(rec)
                    doc["scaling"].setdefault("logistic_n", {}).setdefault(str(n), {})[c] = \
                        aggregate(runs["logistic_n"][str(n)][c])
                    save()
        for k in [int(x) for x in args.scaling_chains.split(",") if x]:
            for c in sconfigs:
                for r in range(args.repeats):
                    log(f"[scaling chains={k}] {label(c, args)} (repeat {r + 1})")
                    cfg_name = c
                    rec = measure(cfg_name, "eight_schools", {"set": "eight_schools"}, args, seed=r, log=log,
                                  ttfd=False, logp=False, chains=k, warmup=args.scaling_warmup,
                                  draws=args.scaling_draws, hot=False)
                    runs["chains"].setdefault(str(k), {}).setdefault(c, []).append(rec)
                    doc["scaling"].setdefault("chains", {}).setdefault(str(k), {})[c] = \
                        aggregate(runs["chains"][str(k)][c])
                    save()

    md = save()
    if args.readme:
        update_readme(md, scaling_only=args.scaling_only)
    print()
    print(md)


if __name__ == "__main__":
    main()
