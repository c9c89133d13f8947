#!/usr/bin/env python
"""float32 against float64 on an accelerator, ppl and NumPyro (vectorised chains) in one run.

    python bench/gpu.py                       # every case, both precisions, ppl and NumPyro
    python bench/gpu.py --quick               # small sizes: a smoke test (also runs on CPU)
    python bench/gpu.py --out DIR --budget 420

JAX's x64 switch is process-wide, so each (system, precision) runs in its own process and fits
every case in turn (`PPL_PRECISION=64|32` for ppl, `jax_enable_x64` for NumPyro); the first fit of
each case is the one reported: compile time from `jax.monitoring`; warm-up + sampling is ppl's own
clock (`post.timings`: ppl compiles while it searches for starting points, so wall time less
compilation undercounts) and, for NumPyro, the fit's wall time less its compilation (bench/worker.py). The parent computes min bulk ESS and max R-hat
with ppl.diagnostics over the sampled parameters and writes `gpu.md` (tables) and `gpu.json`.
Each child also appends one JSON line per case to `<system>_<precision>.jsonl` as soon as it is
measured, so a run cut short keeps what it measured. `--budget` seconds are shared out: the k-th of n
processes starts no case after k/n of them have passed (cases skipped are reported as such).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MODELS, RESULTS_DIR, load_data, scalar_columns  # noqa: E402

# name, data, chains, warm-up, draws, time logp+grad inside a compiled loop
CASES = [
    ("eight_schools", "eight_schools", {"set": "eight_schools"}, 4, 1000, 1000, False),
    ("logistic N=5000", "logistic", {"set": "logistic"}, 4, 1000, 1000, True),
    ("logistic N=10^6", "logistic", {"synthetic_logistic": 1_000_000}, 4, 500, 500, True),
    ("eight_schools, 1024 chains", "eight_schools", {"set": "eight_schools"}, 1024, 500, 500, False),
    ("hier_linear", "hier_linear", {"set": "hier_linear"}, 4, 1000, 1000, False),
]
QUICK = [
    ("eight_schools", "eight_schools", {"set": "eight_schools"}, 2, 200, 200, False),
    ("logistic N=10^4", "logistic", {"synthetic_logistic": 10_000}, 2, 200, 200, True),
]


def child(spec: dict) -> None:
    """Fit every case of ``spec`` in this process; one JSON line per case to spec['jsonl']."""
    os.environ["PPL_PRECISION"] = str(spec["precision"])
    import numpy as np

    import worker
    jax = worker.setup_jax({"system": spec["system"], "precision": spec["precision"]})
    cls = {"ppl": worker.PplSystem, "numpyro": worker.NumpyroSystem}[spec["system"]]
    device = jax.devices()[0]
    for name, model, data_spec, chains, warmup, draws, logp in spec["cases"]:
        row = {"case": name, "system": spec["system"], "precision": spec["precision"], "chains": chains,
               "warmup": warmup, "draws": draws, "device": f"{device.platform}: {device.device_kind}",
               "jax": jax.__version__}
        if time.time() > spec["deadline"]:
            row["skipped"] = "past the time budget"
        else:
            try:
                data = load_data(data_spec)
                ws = {"system": spec["system"], "model": model, "chains": chains, "warmup": warmup,
                      "draws": draws, "draws_full": draws, "chain_method": "vectorized"}
                system = cls(ws, data)
                out = worker.timed_fit(system, draws, 0)
                if spec["system"] == "ppl":   # its own clock: it compiles while it searches for starting points
                    out["run_s"] = out["native"]["warmup_s"] + out["native"]["sampling_s"]
                path = Path(spec["draws_dir"]) / f"{spec['system']}_{spec['precision']}_{len(name)}_{abs(hash(name))}.npz"
                np.savez(path, **{f"v_{k}": np.asarray(v, np.float64) for k, v in out["values"].items()})
                row.update({"draws_file": str(path), "compile_s": out["compile"]["compile_s"],
                            "wall_s": out["wall_s"], "run_s": out["run_s"],
                            "n_leapfrog": int(np.sum(out["n_leapfrog"])),
                            "divergences": int(np.sum(out["divergent"])),
                            "dtype": str(np.asarray(next(iter(out["values"].values()))).dtype)})
                if logp:
                    try:
                        row["logp_loop_us"] = logp_in_a_loop(system)
                    except Exception as err:  # noqa: BLE001 - the fit's figures stand without it
                        row["logp_error"] = f"{type(err).__name__}: {err}"[:1000]
            except Exception as err:  # noqa: BLE001 - recorded, the next case still runs
                row["error"] = f"{type(err).__name__}: {err}"[:2000]
        with open(spec["jsonl"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=float) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k != "draws_file"}, default=float), flush=True)


def logp_in_a_loop(system) -> float:
    """µs per logp+grad evaluation inside one compiled loop of 1,000, data as arguments (fastest of 3)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import worker
    f = system.logdensity()
    dim = getattr(f, "dim", None)
    u = jnp.asarray(np.random.default_rng(123).normal(0.0, 0.5, dim), dtype=jnp.zeros(()).dtype)
    g, consts = worker.with_data_as_arguments(f, u)
    loop = worker.in_a_loop(g)
    jax.block_until_ready(loop(u, consts))
    return float(min(worker._pipelined_seconds(lambda: loop(u, consts), 3, 3))) / worker.LOOP_EVALUATIONS * 1e6


def summarise(rows: list) -> list:
    """Min bulk ESS, max R-hat and ESS/s of each measured row (from its draws file)."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")   # the parent only needs numpy's diagnostics
    import numpy as np

    from ppl.diagnostics import ess_bulk, rhat
    for row in rows:
        path = row.pop("draws_file", None)
        if not path or not os.path.exists(path):
            continue
        with np.load(path) as z:
            values = {k[2:]: z[k] for k in z.files}
        model = next(m for n, m, *_ in CASES + QUICK if n == row["case"])
        cols = [c for c in scalar_columns(values, MODELS[model]["params"]).values() if np.ptp(c) > 0]
        row["ess_min"] = min(float(ess_bulk(c)) for c in cols)
        row["rhat_max"] = max(float(rhat(c)) for c in cols)
        row["ess_per_s"] = row["ess_min"] / row["run_s"] if row["run_s"] > 0 else None
        row["means"] = {k: np.asarray(v).mean(axis=(0, 1)).round(4).tolist() for k, v in values.items()}
    return rows


def fmt(v, digits=3):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"
    return str(v)


def render(rows: list, header: list) -> str:
    lines = header + ["", "| case | system | precision | compile s | warm-up+sampling s | min bulk ESS | ESS/s | "
                          "max R-hat | div | logp+grad µs in a loop |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['case']} | {r['system']} | {r['precision']} | {r.get('error') or r.get('skipped')} "
                         "| | | | | | |")
            continue
        lines.append(f"| {r['case']} | {r['system']} | float{r['precision']} | {fmt(r['compile_s'])} | "
                     f"{fmt(r['run_s'])} | {fmt(r.get('ess_min'))} | {fmt(r.get('ess_per_s'))} | "
                     f"{fmt(r.get('rhat_max'), 4)} | {r['divergences']} | {fmt(r.get('logp_loop_us'))} |")
    # float32 / float64 per case and system
    lines += ["", "float32 ÷ float64 (times: below 1 is faster in float32; ESS/s: above 1 is better):", "",
              "| case | system | compile | warm-up+sampling | ESS/s | logp+grad in a loop |", "|---|---|---:|---:|---:|---:|"]
    ok = {(r["case"], r["system"], r["precision"]): r for r in rows if "run_s" in r}
    for (case, system, prec), r64 in ok.items():
        r32 = ok.get((case, system, 32))
        if prec != 64 or r32 is None:
            continue

        def ratio(key):
            a, b = r32.get(key), r64.get(key)
            return f"{a / b:.2f}" if a and b else "—"
        lines.append(f"| {case} | {system} | {ratio('compile_s')} | {ratio('run_s')} | {ratio('ess_per_s')} | "
                     f"{ratio('logp_loop_us')} |")
    lines += ["", "ppl ÷ NumPyro vectorised, same precision (times: below 1 is faster; ESS/s: above 1 is better):", "",
              "| case | precision | compile | warm-up+sampling | ESS/s |", "|---|---|---:|---:|---:|"]
    for (case, system, prec), rp in ok.items():
        rn = ok.get((case, "numpyro", prec))
        if system != "ppl" or rn is None:
            continue

        def ratio(key):
            a, b = rp.get(key), rn.get(key)
            return f"{a / b:.2f}" if a and b else "—"
        lines.append(f"| {case} | float{prec} | {ratio('compile_s')} | {ratio('run_s')} | {ratio('ess_per_s')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--systems", default="ppl,numpyro")
    ap.add_argument("--precisions", default="64,32")
    ap.add_argument("--out", default=str(RESULTS_DIR / "gpu"))
    ap.add_argument("--budget", type=float, default=3600.0, help="seconds after which no case is started")
    args = ap.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    draws_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"ppl-gpu-bench-{os.getpid()}"
    draws_dir.mkdir(parents=True, exist_ok=True)
    cases = QUICK if args.quick else CASES
    rows = []
    runs = [(system, int(p)) for system in args.systems.split(",") for p in args.precisions.split(",")]
    for k, (system, prec) in enumerate(runs):
        jsonl = out / f"{system}_{prec}.jsonl"
        jsonl.unlink(missing_ok=True)
        spec = {"system": system, "precision": prec, "cases": cases, "jsonl": str(jsonl),
                "draws_dir": str(draws_dir),
                # the budget in equal shares, each process's share ending in turn (time unused passes on)
                "deadline": t0 + args.budget * (k + 1) / len(runs)}
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], text=True,
                              capture_output=True, env=dict(os.environ, PPL_CACHE="0",
                                                            JAX_ENABLE_COMPILATION_CACHE="false"))
        sys.stdout.write(proc.stdout)
        if proc.returncode:
            sys.stdout.write(proc.stderr[-3000:])
        got = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
        done = {r["case"] for r in got}
        got += [{"case": c[0], "system": system, "precision": prec,
                 "error": f"the process ended (status {proc.returncode}) before this case"}
                for c in cases if c[0] not in done]
        rows += got
    rows = summarise(rows)
    device = next((r["device"] for r in rows if "device" in r), "?")
    jaxv = next((r["jax"] for r in rows if "jax" in r), "?")
    header = [f"Reproduce: `python bench/gpu.py{' --quick' if args.quick else ''}`", "",
              f"- device: {device}; jax {jaxv}; Python {platform.python_version()}; "
              f"total {time.time() - t0:.0f} s",
              "- NUTS, diagonal mass matrix, target acceptance 0.8, max tree depth 10; chains vectorised on one "
              "device (ppl's default on an accelerator; NumPyro `vectorized`); caches off; one fit per case"]
    (out / "gpu.md").write_text(render(rows, header), encoding="utf-8")
    (out / "gpu.json").write_text(json.dumps(rows, indent=1, default=float), encoding="utf-8")
    print((out / "gpu.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
