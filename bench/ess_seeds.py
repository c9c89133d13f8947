"""ESS per gradient over many seeds: is a difference between ppl and NumPyro real, or chance?

The harness takes medians of a few repeats; the minimum bulk ESS of one run varies by 10-20 %
between seeds, so its ESS/grad ratios can show a difference that is not there. This script runs
one system on one model for ``--seeds`` seeds (4 chains x 1000 warm-up x 1000 draws, in one
process) and prints the mean ESS/grad with its standard error.

    python bench/ess_seeds.py eight_schools ppl --seeds 20
    python bench/ess_seeds.py eight_schools numpyro --seeds 20   # NumPyro, chain_method="parallel"
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")  # NumPyro's parallel chains
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("system", choices=("ppl", "numpyro"))
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import jax
    import ppl
    from common import MODELS, MODELS_DIR, load_data, min_bulk_ess

    params = MODELS[args.model]["params"]
    data = load_data({"set": MODELS[args.model]["data"]})
    rows = []
    if args.system == "ppl":
        m = ppl.load(str(MODELS_DIR / MODELS[args.model]["gm"]))
        for seed in range(args.seeds):
            post = m.sample(data, chains=4, warmup=1000, draws=1000, seed=seed)
            rows.append((min_bulk_ess({p: post[p] for p in params}, params), np.asarray(post.stats["n_leapfrog__"]).sum()))
    else:
        from numpyro.infer import MCMC, NUTS
        from peers import numpyro_model

        fn, fargs = numpyro_model(args.model, data)
        mc = MCMC(NUTS(fn, target_accept_prob=0.8), num_warmup=1000, num_samples=1000, num_chains=4,
                  chain_method="parallel", progress_bar=False)
        for seed in range(args.seeds):
            mc.run(jax.random.PRNGKey(seed), *fargs, extra_fields=("num_steps",))
            steps = np.asarray(mc.get_extra_fields(group_by_chain=True)["num_steps"]).sum()
            rows.append((min_bulk_ess(mc.get_samples(group_by_chain=True), params), steps))
    r = np.asarray(rows, float)
    e = r[:, 0] / r[:, 1]
    print(f"{args.model} {args.system}: {args.seeds} seeds, ESS/grad mean {e.mean():.4f} "
          f"(se {e.std(ddof=1) / np.sqrt(len(e)):.4f}), min bulk ESS mean {r[:, 0].mean():.0f}, "
          f"gradients (sampling) mean {r[:, 1].mean():.0f}")


if __name__ == "__main__":
    main()
