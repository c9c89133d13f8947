"""Draws the binary-image example to a PNG grid: training images, the fitted templates (each
pixel's probability of being on) and new images simulated from the fit.

    python examples/plot_images.py [--data examples/image_mixture.json] [--fit image_fit.json]
                                    [--draws image_new.json] [-o images.png]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

SIDE = 8


def grid(ax, imgs, title, cols=12):
    imgs = np.asarray(imgs, float).reshape(-1, SIDE, SIDE)[:cols]
    canvas = np.ones((SIDE, cols * (SIDE + 1) - 1))
    for i, im in enumerate(imgs):
        canvas[:, i * (SIDE + 1):i * (SIDE + 1) + SIDE] = 1 - im        # ink is dark
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_axis_off()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="examples/image_mixture.json")
    p.add_argument("--fit", default="image_fit.json", help="written by ppl optimize -o")
    p.add_argument("--draws", default="image_new.json", help="written by ppl prior -o")
    p.add_argument("-o", "--output", default="images.png")
    a = p.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ppl.results import load

    x = np.asarray(json.load(open(a.data))["x"])
    fit = json.load(open(a.fit))
    theta, w = np.asarray(fit["theta"]), np.asarray(fit["w"])
    new = load(a.draws)["x"]
    new = new.reshape(-1, new.shape[-1])

    fig, axes = plt.subplots(4, 1, figsize=(8, 3.6))
    grid(axes[0], x, "training images")
    grid(axes[1], theta, "fitted templates theta[k] (weights " + ", ".join(f"{v:.2f}" for v in w) + ")")
    grid(axes[2], new[:12], "new images simulated from the fit")
    grid(axes[3], new[12:24], "")
    fig.tight_layout()
    fig.savefig(a.output, dpi=120)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
