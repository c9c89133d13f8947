"""ppl's XLA compile options against the same with some left out (``--without``) or added
(``--with``), timed in one process: each model is bound twice, one compiled each way, and the two
fits (4 chains x 1000 + 1000, the same seed) alternate over rounds, so whatever slows the machine
slows both.

    python bench/options_ab.py --without xla_cpu_experimental_ynn_fusion_type   # results/ynn_ab.md
    python bench/options_ab.py --without xla_disable_hlo_passes                 # results/plain_sums_ab.md
    python bench/options_ab.py --with '{"xla_cpu_use_fusion_emitters": true}' --models logistic --rounds 9
    python bench/options_ab.py --without xla_disable_hlo_passes --models hmm_example-hmm_example,arK-arK

Models: the harness's five (bench/models), posteriordb models of the conformance suite by name
(tests/posteriordb/models, data from ../shared/posteriordb), and three likelihoods:
``logistic_likelihood`` is y_n ~ Logistic(mu, s), n = 1..5000 (generated with numpy, seed 1): a sum
of softplus terms, the case that YNNPACK's fusions made 3x slower. ``weibull_likelihood`` (5000
draws) and ``gamma_regression`` (the logistic benchmark's 5000 x 20 design, a log link) are cases
where YNNPACK's own kernels for log and powers were faster. Prints a markdown table of the
median and fastest warm-up + sampling time of each side.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import MODELS, MODELS_DIR, POSTERIORDB_MODELS, load_data, posteriordb_models  # noqa: E402

LOGISTIC_LIKELIHOOD = """mu ~ normal(0, 5)
s ~ half_normal(5)
y ~ logistic(mu, s)
"""
WEIBULL_LIKELIHOOD = """k ~ gamma(2, 0.5)
lam ~ half_normal(5)
y ~ weibull(k, lam)
"""
GAMMA_REGRESSION = """data X: real[N, D]
alpha ~ normal(0, 1)
beta: real[D] ~ normal(0, 0.2)
phi ~ gamma(2, 0.5)
y ~ gamma(phi, phi / exp(alpha + X @ beta))
"""
EXTRA = ["logistic_likelihood", "weibull_likelihood", "gamma_regression"]


def _cases(names):
    import ppl
    for name in names:
        rng = np.random.default_rng(1)
        if name == "logistic_likelihood":
            yield name, (lambda: ppl.compile(LOGISTIC_LIKELIHOOD)), {"y": rng.logistic(1.0, 2.0, 5000)}
        elif name == "weibull_likelihood":
            yield name, (lambda: ppl.compile(WEIBULL_LIKELIHOOD)), {"y": 2.0 * rng.weibull(1.5, 5000)}
        elif name == "gamma_regression":    # the logistic benchmark's 5000 x 20 design
            X = load_data({"set": "logistic"})["X"]
            eta = 0.5 + X @ rng.normal(0.0, 0.2, X.shape[1])
            yield name, (lambda: ppl.compile(GAMMA_REGRESSION)), {"X": X, "y": rng.gamma(3.0, np.exp(eta) / 3.0)}
        elif name in MODELS:
            spec = MODELS[name]
            yield name, (lambda spec=spec: ppl.load(MODELS_DIR / spec["gm"])), load_data({"set": spec["data"]})
        else:                               # a posteriordb model of the conformance suite
            shared, known = posteriordb_models()
            if name not in known:
                raise SystemExit(f"unknown model {name!r}: one of {', '.join(list(MODELS) + EXTRA + known)}")
            yield name, (lambda name=name: ppl.load(POSTERIORDB_MODELS / f"{name}.gm")), \
                ppl.load_data(str(shared / name / "data.json"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(list(MODELS) + EXTRA))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--without", default="", help="comma-separated option names left out of ppl's choice")
    ap.add_argument("--with", dest="added", default="{}", help="a JSON object of options added to ppl's choice")
    args = ap.parse_args()
    without, added = [k for k in args.without.split(",") if k], json.loads(args.added)
    if not without and not added:
        raise SystemExit("nothing to compare: give --without or --with")

    import warnings

    import ppl
    import ppl.inference.chunks as chunks
    import ppl.inference.low_rank as low_rank
    import ppl.inference.nuts as nuts
    import ppl.inference.quick as quick
    import ppl.inference.xla_options as xla_options

    warnings.simplefilter("ignore", ppl.ModelWarning)     # posteriordb's data hold unused entries
    other = {"on": False}
    chosen = xla_options.compiler_options

    def options(*a, **k):       # ppl's choice, or the other side's
        o = dict(chosen(*a, **k) or {})
        if other["on"]:
            o = {key: v for key, v in o.items() if key not in without}
            o.update(added)
        return o or None

    # (each imports it by name; PPL_XLA_OPTIONS can add an option but not take ppl's away)
    for module in (nuts, chunks, quick, low_rank):
        module.compiler_options = options

    label = " ".join(([f"without {', '.join(without)}"] if without else []) + ([f"with {json.dumps(added)}"] if added else []))
    rows = []
    for name, load, data in _cases(args.models.split(",")):
        models, times = {}, {"ppl": [], "other": []}
        for side in times:                      # compile each side's program first
            other["on"] = side == "other"
            models[side] = load()
            models[side].sample(data, warmup=1000, draws=1000, seed=1)
        for r in range(args.rounds):
            for side in (("ppl", "other") if r % 2 == 0 else ("other", "ppl")):
                other["on"] = side == "other"
                t = models[side].sample(data, warmup=1000, draws=1000, seed=1).timings
                times[side].append(t["warmup_s"] + t["sampling_s"])
        med = {s: float(np.median(v)) for s, v in times.items()}
        rows.append(f"| {name} | {med['ppl']:.3f} ({min(times['ppl']):.3f}) | {med['other']:.3f} "
                    f"({min(times['other']):.3f}) | {med['ppl'] / med['other']:.2f} |")
        print(rows[-1], flush=True)
    print(f"\n| model | warm-up + sampling s, ppl's options: median (fastest) | {label} | ppl ÷ other |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
