"""A process-wide setting surveyed on every posteriordb model of the conformance suite: compile
time and warm-up + sampling time of the same fit (same seed) under each value, one fresh process
per value (XLA reads its flags once, when JAX starts its backend), no compile cache.

    python bench/loop_survey.py --thresholds 1024,32768 --out bench/results/loop_survey.md
    python bench/loop_survey.py --suffstats --out bench/results/suffstats_survey.md
    python bench/loop_survey.py --emitters --out bench/results/emitters_survey.md
    python bench/loop_survey.py --quick --out bench/results/quick_survey.md
    python bench/loop_survey.py --options '{"xla_backend_optimization_level": 1}'
    python bench/loop_survey.py --per-device --out bench/results/per_device_survey.md

``--thresholds``: XLA's CPU small-while-loop threshold (ppl.inference.parallel.SMALL_LOOP_BYTES);
1024 bytes is XLA's own default, 32768 what ppl sets at import. ``--suffstats``: Gaussian
likelihoods row by row (PPL_SUFFSTATS=0) against through sufficient statistics (ppl.suffstats,
the default), at ppl's threshold. ``--emitters``: XLA's CPU fusion emitters on
(PPL_FUSION_EMITTERS=1, baseline) against off (=0) for every model, with the numbers of data one
log-density evaluation reads (ppl.inference.parallel.density_data_size, which ppl's default
choice goes by). ``--quick``: NUTS's quick first program never used (PPL_QUICK_START=0, baseline)
against ppl's choice (ppl.inference.quick). ``--per-device``: the chains' devices running one SPMD program
(PPL_PER_DEVICE=0, baseline) against a replica each of one device's program (ppl.inference.per_device,
the default). ``--options``: ppl's compile options against them with a JSON object of
XLA options added (``PPL_XLA_OPTIONS``, which every program ppl compiles takes). ``--models a,b``: only those models.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import POSTERIORDB_MODELS, posteriordb_models  # noqa: E402

WORKER = r"""
import json, sys, warnings
import numpy as np
import jax
import ppl
import ppl.inference.parallel as parallel
warnings.simplefilter("ignore")
models_dir, shared, out = sys.argv[1:4]
res = {}
for name in sys.argv[4:]:
    model = ppl.load(f"{models_dir}/{name}.gm")
    data = ppl.load_data(f"{shared}/{name}/data.json")
    post = model.sample(data, chains=4, warmup=1000, draws=1000, seed=1)
    t = post.timings
    lw = model.bind(data)
    profile = parallel.density_profile(jax.jit(lw.log_density), lw.dim, np.float64, lw.arrays())
    res[name] = {"compile_s": float(t["compile_s"]), "run_s": float(t["warmup_s"] + t["sampling_s"]),
                 "grads": int(np.asarray(post.stats["n_leapfrog__"]).sum()), "data_size": profile.data_size,
                 "ops": profile.ops}
    print(name, res[name], flush=True)
    json.dump(res, open(out, "w"))
"""


def survey(threshold: int, models: list, shared: Path, options: str = "{}", **env_extra: str) -> dict:
    from ppl.inference.parallel import small_loop_flag

    env = dict(os.environ, XLA_FLAGS=small_loop_flag(threshold), PPL_CACHE="0", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT), PPL_XLA_OPTIONS=options, **env_extra)   # options: added to ppl's own choice
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "res.json"
        subprocess.run([sys.executable, "-c", WORKER, str(POSTERIORDB_MODELS), str(shared), str(out), *models],
                       env=env, check=True)
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--thresholds", default="1024,32768", help="bytes, comma-separated; the first is the baseline")
    ap.add_argument("--suffstats", action="store_true",
                    help="compare PPL_SUFFSTATS=0 (baseline) with the default instead of thresholds")
    ap.add_argument("--emitters", action="store_true",
                    help="compare XLA's fusion emitters on (baseline) and off instead of thresholds")
    ap.add_argument("--quick", action="store_true",
                    help="compare PPL_QUICK_START=0 (baseline) with ppl's choice of a quick first program")
    ap.add_argument("--per-device", action="store_true",
                    help="compare one SPMD program across the devices (PPL_PER_DEVICE=0, baseline) with replicas")
    ap.add_argument("--options", default=None,
                    help="a JSON object of XLA compile options (PPL_XLA_OPTIONS): ppl's choice (baseline) "
                         "against it with these added, instead of thresholds")
    ap.add_argument("--models", default=None, help="comma-separated subset of the models")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    shared, models = posteriordb_models()
    if args.models:
        models = [m for m in models if m in args.models.split(",")]
    from ppl.inference.parallel import SMALL_LOOP_BYTES
    if args.options:
        ths = ["default", "options"]
        runs = {t: survey(SMALL_LOOP_BYTES, models, shared, args.options if t == "options" else "{}") for t in ths}
    elif args.suffstats:
        ths = ["rows", "suffstats"]
        runs = {t: survey(SMALL_LOOP_BYTES, models, shared, PPL_SUFFSTATS="1" if t == "suffstats" else "0")
                for t in ths}
    elif args.quick:
        ths = ["never-quick", "quick"]
        runs = {t: survey(SMALL_LOOP_BYTES, models, shared, **({"PPL_QUICK_START": "0"} if t == "never-quick" else {}))
                for t in ths}
    elif args.per_device:
        ths = ["spmd", "per-device"]
        runs = {t: survey(SMALL_LOOP_BYTES, models, shared, PPL_PER_DEVICE="1" if t == "per-device" else "0")
                for t in ths}
    elif args.emitters:
        ths = ["emitters", "no-emitters"]
        runs = {t: survey(SMALL_LOOP_BYTES, models, shared, PPL_FUSION_EMITTERS="1" if t == "emitters" else "0")
                for t in ths}
    else:
        ths = [int(t) for t in args.thresholds.split(",")]
        runs = {t: survey(t, models, shared) for t in ths}
    base = runs[ths[0]]
    head = "| model | " + " | ".join(f"compile s @{t}" for t in ths) + " | " + \
        " | ".join(f"warm-up+sampling s @{t}" for t in ths) + " | " + \
        " | ".join(f"run ÷ @{ths[0]}, @{t}" for t in ths[1:]) + " |"
    head += " data read per evaluation | density operations | leapfrog steps (sampling, baseline) |"
    lines = [head, "|---|" + "---:|" * (3 * len(ths) + 2)]
    for m in models:
        cells = [f"{runs[t][m]['compile_s']:.2f}" for t in ths] + [f"{runs[t][m]['run_s']:.3f}" for t in ths] + \
            [f"{runs[t][m]['run_s'] / base[m]['run_s']:.2f}" for t in ths[1:]] + [str(base[m]["data_size"])] + \
            [str(base[m].get("ops", "")), str(base[m]["grads"])]
        same = all(runs[t][m]["grads"] == base[m]["grads"] for t in ths)
        lines.append(f"| {m}{'' if same else ' (gradient counts differ)'} | " + " | ".join(cells) + " |")
    summary = []
    for t in ths[1:]:
        run = np.array([runs[t][m]["run_s"] / base[m]["run_s"] for m in models])
        comp = np.array([runs[t][m]["compile_s"] / base[m]["compile_s"] for m in models])
        summary.append(f"- {t} ÷ {ths[0]} over {len(models)} models: warm-up + sampling time geometric "
                       f"mean {np.exp(np.mean(np.log(run))):.2f} (min {run.min():.2f}, max {run.max():.2f}; "
                       f"faster by more than 20 % on {int((run < 0.8).sum())}, slower by more than 10 % on "
                       f"{int((run > 1.1).sum())}); compile time geometric mean {np.exp(np.mean(np.log(comp))):.2f} "
                       f"(max {comp.max():.2f})")
        both = np.array([runs[t][m]["compile_s"] + runs[t][m]["run_s"] - base[m]["compile_s"] - base[m]["run_s"]
                         for m in models])
        summary.append(f"- {t} − {ths[0]}, compile + warm-up + sampling: median {np.median(both):+.2f} s "
                       f"(min {both.min():+.2f}, max {both.max():+.2f}; sooner by more than 0.2 s on "
                       f"{int((both < -0.2).sum())}, later by more than 0.2 s on {int((both > 0.2).sum())})")
    text = "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n"
    print(text)
    if args.out:
        what, flags = ((f"XLA options {args.options}", f"--options '{args.options}'") if args.options else
                       ("Sufficient statistics", "--suffstats") if args.suffstats else
                       ("XLA fusion emitters", "--emitters") if args.emitters else
                       ("NUTS's quick first program", "--quick") if args.quick else
                       ("Replicas against one SPMD program", "--per-device") if args.per_device else
                       ("XLA small-while-loop threshold", f"--thresholds {args.thresholds}"))
        Path(args.out).write_text(f"# {what} survey\n\nReproduce: `python bench/loop_survey.py {flags}`\n\n" + text)


if __name__ == "__main__":
    main()
