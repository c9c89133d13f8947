"""ppl's compiled log density + gradient against the hand-written one, timed in one process.

    python bench/logp_ab.py                       # the five models
    python bench/logp_ab.py --models eight_schools,mixture_hard --rounds 31 --out results/logp_ab.md

The harness (run.py) times each system's logp+grad in its own fresh process, and between
processes the same program's time moves by 10-40 % on this machine (the same function was
measured 10.4 and 14.5 µs in two repeats of one run). Here ppl's, the hand-written and (where it
builds) NumPyro's functions live in one process and are timed in alternating batches (the order
flips every round), so whatever slows the machine or the process slows all of them: the figures
are the ratio of the fastest batches and the median over rounds of each round's ratio, with the
spread of those ratios beside it. The three ways the harness measures are timed: the data closed
over (XLA folds them into the program as constants), the data as arguments, and 1,000
evaluations inside one compiled loop (as a sampler's transition runs the log density).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from common import MODELS, load_data  # noqa: E402
from worker import (LOOP_EVALUATIONS, SYSTEMS, _pipelined_seconds, in_a_loop,  # noqa: E402
                    with_data_as_arguments)


def _compiled_calls(f, dim):
    """The jitted value_and_grad of f three ways: closed over its data, with the data as
    arguments, and inside one compiled loop of LOOP_EVALUATIONS evaluations (data as arguments,
    each step moving the point a little along the gradient, so nothing can be hoisted), as a
    sampler's transition runs it. Each way: (call, evaluations per call)."""
    import jax
    import jax.numpy as jnp

    u = jnp.asarray(np.random.default_rng(123).normal(0.0, 0.5, dim), dtype=jnp.zeros(()).dtype)
    closed = jax.jit(jax.value_and_grad(f))
    g, consts = with_data_as_arguments(f, u)
    as_args = jax.jit(jax.value_and_grad(g))
    loop = in_a_loop(g)
    calls = {"closed over": (lambda: closed(u), 1), "data as args": (lambda: as_args(u, consts), 1),
             "in a compiled loop": (lambda: loop(u, consts), LOOP_EVALUATIONS)}
    for call, evaluations in calls.values():
        for _ in range(max(1, 50 // evaluations)):
            jax.block_until_ready(call())
    return calls


def _calls_per_batch(call, min_s=0.1):
    n = 1
    while _pipelined_seconds(call, n, 1)[0] * n < min_s and n < 1 << 18:
        n *= 2
    return n


def measure(model, rounds):
    import jax

    spec = {"model": model, "system": "ppl", "warmup": 1000, "draws_full": 1000}
    data = load_data({"set": MODELS[model]["data"]})
    densities = {"ppl": SYSTEMS["ppl"](spec, data).logdensity()}
    hand = SYSTEMS["blackjax"]({**spec, "system": "blackjax"}, data)
    densities["hand"] = hand.hm.logdensity
    dims = {"ppl": densities["ppl"].dim, "hand": hand.hm.dim}
    try:
        nf = SYSTEMS["numpyro"]({**spec, "system": "numpyro"}, data).logdensity()
        densities["numpyro"], dims["numpyro"] = nf, nf.dim
    except Exception as err:  # noqa: BLE001  (NumPyro is an optional peer)
        print(f"  {model}: NumPyro skipped ({type(err).__name__}: {err})", file=sys.stderr)
    out = {"model": model, "rounds": rounds, "devices": jax.local_device_count(), "ways": {}}
    calls = {name: _compiled_calls(f, dims[name]) for name, f in densities.items()}
    for way in ("in a compiled loop", "data as args", "closed over"):
        n = max(_calls_per_batch(calls[name][way][0]) for name in calls)
        per_call = {name: [] for name in calls}
        order = list(calls)
        for r in range(rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                call, evaluations = calls[name][way]
                per_call[name].append(_pipelined_seconds(call, n, 1)[0] / evaluations)
        us = {name: np.asarray(v) * 1e6 for name, v in per_call.items()}
        row = {"calls_per_batch": n, "median_us": {k: float(np.median(v)) for k, v in us.items()},
               "min_us": {k: float(np.min(v)) for k, v in us.items()}}
        for peer in [k for k in us if k != "ppl"]:
            ratio = us["ppl"] / us[peer]
            row[f"ppl/{peer}"] = {"median": float(np.median(ratio)), "q10": float(np.quantile(ratio, 0.1)),
                                  "q90": float(np.quantile(ratio, 0.9)),
                                  "of_minima": float(np.min(us["ppl"]) / np.min(us[peer]))}
        out["ways"][way] = row
    return out


def render(results):
    lines = ["| model | data | ppl µs (fastest batch) | hand-written µs | ppl ÷ hand: fastest batches "
             "| ppl ÷ hand: median round (10-90 %) | NumPyro µs | ppl ÷ NumPyro: fastest, median round |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        for way, row in res["ways"].items():
            m = row["min_us"]
            h = row["ppl/hand"]
            npy = row.get("ppl/numpyro")
            lines.append(
                f"| {res['model']} | {way} | {m['ppl']:.3g} | {m['hand']:.3g} | {h['of_minima']:.2f} | "
                f"{h['median']:.2f} ({h['q10']:.2f}-{h['q90']:.2f}) | "
                + (f"{m['numpyro']:.3g} | {npy['of_minima']:.2f}, {npy['median']:.2f} |" if npy else "— | — |"))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--out", help="write the markdown table here (and the JSON beside it)")
    args = ap.parse_args(argv)
    import jax

    import ppl  # noqa: F401  (sets float64 and the host devices as a fit would)

    results = []
    for model in args.models.split(","):
        t = time.perf_counter()
        results.append(measure(model, args.rounds))
        print(f"  {model}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    head = (f"logp+grad in one process, alternating batches, {args.rounds} rounds "
            f"(jax {jax.__version__}, {jax.local_device_count()} host devices, float64)\n\n")
    table = head + render(results)
    print(table)
    if args.out:
        path = Path(args.out)
        path.write_text(table + "\n")
        path.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
