"""Draws the Gaussian-mixture example: the data, coloured by their most probable component,
next to points generated from the fit.

    python examples/plot_gmm.py [--data examples/gmm.json] [--fit gmm_fit.json]
                                [--draws gmm_new.json] [--posterior gmm_post.json] [-o gmm.png]

The colours come from the posterior's membership probabilities `z.prob` when --posterior names
a file of draws (`ppl sample ... -o FILE`), otherwise from the fit: P(z = k | y) is
proportional to w[k] * normal(y | mu[k], sigma).
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def memberships(y, w, mu, sigma) -> np.ndarray:
    """(N, K) membership probabilities under fixed parameters (what z.prob holds for one draw)."""
    logp = np.log(w) - 0.5 * (((y[:, None, :] - mu[None]) / sigma) ** 2).sum(-1)
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="examples/gmm.json")
    p.add_argument("--fit", default="gmm_fit.json", help="written by ppl optimize -o")
    p.add_argument("--draws", default="gmm_new.json", help="written by ppl prior -o")
    p.add_argument("--posterior", help="draws written by ppl sample -o (optional)")
    p.add_argument("-o", "--output", default="gmm.png")
    a = p.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ppl.results import load

    y = np.asarray(json.load(open(a.data))["y"])
    fit = json.load(open(a.fit))
    mu = np.stack([fit["mu1"], fit["mu2"]], axis=1)
    new = load(a.draws)["y"].reshape(-1, 2)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
    if a.posterior:
        prob = load(a.posterior)["z.prob"].mean(axis=(0, 1))        # (N, K): P(z_n = k | y)
        title = "data, coloured by the most probable component (posterior z.prob)"
    else:
        prob = memberships(y, np.asarray(fit["w"]), mu, np.asarray(fit["sigma"]))
        title = "data, coloured by the most probable component under the fit"
    axes[0].scatter(y[:, 0], y[:, 1], c=prob.argmax(axis=1), s=10, cmap="viridis", vmin=0, vmax=len(mu) - 1)
    axes[0].set_title(title, fontsize=10)
    axes[1].scatter(new[:, 0], new[:, 1], s=4, alpha=0.4, color="tab:orange")
    axes[1].set_title(f"{len(new)} points generated from the fit", fontsize=10)
    for ax in axes:
        ax.scatter(mu[:, 0], mu[:, 1], marker="x", s=80, color="red", label="fitted means")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(a.output, dpi=110)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
