"""XLA's YNNPACK reduction fusions on and off (ppl.inference.parallel.YNN_FUSIONS_OFF), timed in
one process: each model is bound twice, one compiled with ppl's options and one with YNNPACK's
fusions left on (XLA's default), and the two fits (4 chains x 1000 + 1000, the same seed) alternate
over rounds, so whatever slows the machine slows both.

    python bench/ynn_ab.py                          # the harness's five models and a logistic likelihood
    python bench/ynn_ab.py --models logistic --rounds 9

``logistic_likelihood`` is y_n ~ Logistic(mu, s), n = 1..5000 (generated with numpy, seed 1): a sum
of softplus terms, the case that YNNPACK's fusions made 3x slower. ``weibull_likelihood`` (5000
draws) and ``gamma_regression`` (the logistic benchmark's 5000 x 20 design, a log link) are cases
where YNNPACK's own kernels for log and powers were faster. Prints a markdown table of the
median and fastest warm-up + sampling time of each.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import MODELS, MODELS_DIR, load_data  # noqa: E402

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
        else:
            spec = MODELS[name]
            yield name, (lambda spec=spec: ppl.load(MODELS_DIR / spec["gm"])), load_data({"set": spec["data"]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(list(MODELS) + EXTRA))
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import ppl.inference.chunks as chunks
    import ppl.inference.nuts as nuts
    import ppl.inference.parallel as parallel
    import ppl.inference.quick as quick

    ynn = {"on": False}
    chosen = parallel.compiler_options

    def options(*a, **k):       # ppl's choice, or the same with YNNPACK's fusions left to XLA's default
        o = dict(chosen(*a, **k) or {})
        if ynn["on"]:
            for key in parallel.YNN_FUSIONS_OFF:
                o.pop(key, None)
        return o or None

    for module in (parallel, nuts, chunks, quick):   # (each imports it by name)
        module.compiler_options = options

    rows = []
    for name, load, data in _cases(args.models.split(",")):
        models, times = {}, {"off": [], "on": []}
        for side in times:                      # compile each side's program first
            ynn["on"] = side == "on"
            models[side] = load()
            models[side].sample(data, warmup=1000, draws=1000, seed=1)
        for r in range(args.rounds):
            for side in (("off", "on") if r % 2 == 0 else ("on", "off")):
                ynn["on"] = side == "on"
                t = models[side].sample(data, warmup=1000, draws=1000, seed=1).timings
                times[side].append(t["warmup_s"] + t["sampling_s"])
        med = {s: float(np.median(v)) for s, v in times.items()}
        rows.append(f"| {name} | {med['off']:.3f} ({min(times['off']):.3f}) | {med['on']:.3f} ({min(times['on']):.3f}) "
                    f"| {med['off'] / med['on']:.2f} |")
        print(rows[-1], flush=True)
    print("\n| model | warm-up + sampling s, YNNPACK fusions off (ppl): median (fastest) | on (XLA's default) | off ÷ on |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
