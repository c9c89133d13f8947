"""Stan's mass-matrix estimate against another (the gradient-informed diagonal, "fisher", or
nutpie's low-rank metric, "lowrank"), on every posteriordb model of the conformance suite
(tests/posteriordb/models): min bulk ESS per gradient (sampling phase) and per second (warm-up +
sampling), one seed per model, and the geometric mean of the ratios.

    python bench/metric_survey.py --out bench/results/metric_survey.md
    python bench/metric_survey.py --other lowrank --out bench/results/metric_survey_lowrank.md
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--other", default="fisher", choices=("fisher", "lowrank", "dense"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import ppl

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import POSTERIORDB_MODELS, min_bulk_ess, posteriordb_models

    shared, models = posteriordb_models()
    rows = []
    for name in models:
        model = ppl.load(str(POSTERIORDB_MODELS / f"{name}.gm"))
        data = ppl.load_data(str(shared / name / "data.json"))
        row = [name]
        for mass in ("diag", args.other):
            post = model.sample(data, chains=4, warmup=1000, draws=1000, seed=args.seed, mass_matrix=mass)
            t = post.timings
            grads = float(np.asarray(post.stats["n_leapfrog__"]).sum())
            latent = [k for k, role in post.meta["roles"].items() if role == "latent"]
            ess = min_bulk_ess({k: post[k] for k in latent}, latent)
            row += [ess / grads, ess / (t["warmup_s"] + t["sampling_s"])]
        rows.append(row)
        print(f"{name:55s} diag {row[1]:.4f} {row[2]:8.0f}/s   {args.other} {row[3]:.4f} {row[4]:8.0f}/s", flush=True)
    r_grad = np.array([r[3] / r[1] for r in rows])
    r_sec = np.array([r[4] / r[2] for r in rows])
    o = args.other
    lines = [f"| model | ESS/grad diag | ESS/grad {o} | ratio | ESS/s diag | ESS/s {o} | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r, g, s in zip(rows, r_grad, r_sec):
        lines.append(f"| {r[0]} | {r[1]:.4f} | {r[3]:.4f} | {g:.2f} | {r[2]:.0f} | {r[4]:.0f} | {s:.2f} |")
    summary = (f"\n{len(rows)} models, seed {args.seed}: geometric mean of {o} ÷ diag: ESS/grad "
               f"{np.exp(np.mean(np.log(r_grad))):.3f}, ESS/s {np.exp(np.mean(np.log(r_sec))):.3f}; {o} better "
               f"(ESS/grad) on {int((r_grad > 1).sum())}, worse on {int((r_grad < 1).sum())}; ratio below 0.8 on "
               f"{int((r_grad < 0.8).sum())}, above 1.25 on {int((r_grad > 1.25).sum())}\n")
    text = "\n".join(lines) + "\n" + summary
    print(text)
    if args.out:
        Path(args.out).write_text("# Mass-matrix survey (bench/metric_survey.py)\n\n" + text)


if __name__ == "__main__":
    main()
