"""Trace and density plots of saved draws (`ppl plot`), drawn with matplotlib's Agg canvas.

One row per scalar (``theta[0]``, ``theta[1]``, ... for arrays): on the left the density of
each chain (a Gaussian kernel estimate; bars for whole-number values), on the right each
chain's trace, with divergent transitions marked as red ticks under the trace. pyplot is
not used, so plotting never changes the backend of an interactive session.
"""
from __future__ import annotations

import contextlib
import math
import os

import numpy as np

__all__ = ["plot_posterior", "MAX_ROWS"]

MAX_ROWS = 30


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib, which is not installed: "
                          "pip install 'ppl[arviz]' (or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg


def _kde(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density estimate, Silverman's bandwidth; at most 2000 points."""
    if x.size > 2000:
        x = x[np.linspace(0, x.size - 1, 2000).astype(int)]
    sd = float(np.std(x))
    iqr = float(np.subtract(*np.percentile(x, [75, 25])))
    spread = min(sd, iqr / 1.34) if iqr > 0 else sd
    h = 0.9 * spread * x.size ** -0.2 if spread > 0 else 1.0
    z = (grid[:, None] - x[None, :]) / h
    return np.exp(-0.5 * z * z).sum(axis=1) / (x.size * h * math.sqrt(2 * math.pi))


def plot_posterior(post, path, names=None, max_rows: int = MAX_ROWS) -> list[str]:
    """Write a PNG of trace and density plots; returns the names of the scalars drawn
    (the first ``max_rows`` of those selected by ``names``, default every variable)."""
    Figure, FigureCanvasAgg = _matplotlib()
    cols = post._select_columns(names)
    if not cols:
        raise ValueError("nothing to plot: the result has no variables")
    if post.num_draws == 0:
        raise ValueError("nothing to plot: the result has no draws")
    cols = cols[:max_rows]
    div = post.stats.get("divergent__")
    chains = post.num_chains
    fig = Figure(figsize=(11, 1.9 * len(cols) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(cols), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 2.2]})
    colours = [f"C{c % 10}" for c in range(chains)]
    for (name, arr), (ax_d, ax_t) in zip(cols, axes):
        arr = np.asarray(arr, dtype=float)
        finite = arr[np.isfinite(arr)]
        discrete = np.asarray(arr).size > 0 and np.all(finite == np.round(finite)) \
            and np.unique(finite).size <= 50
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        grid = np.linspace(lo - pad, hi + pad, 200)
        for c in range(chains):
            x = arr[c][np.isfinite(arr[c])]
            if x.size == 0:
                continue
            if discrete:
                values, counts = np.unique(x, return_counts=True)
                ax_d.vlines(values + (c - (chains - 1) / 2) * 0.8 / max(chains, 1) / 2,
                            0, counts / x.size, colors=colours[c], linewidth=2)
            elif np.ptp(x) > 0:
                ax_d.plot(grid, _kde(x, grid), color=colours[c], linewidth=1)
            else:
                ax_d.axvline(float(x[0]), color=colours[c], linewidth=1)
            ax_t.plot(np.arange(arr.shape[1]), arr[c], color=colours[c], linewidth=0.5, alpha=0.8)
        if div is not None:
            _, d = np.nonzero(np.asarray(div) > 0)
            if d.size:
                ax_t.plot(d, np.full(d.size, lo - pad), "|", color="red", markersize=8)
        ax_d.set_title(name, loc="left", fontsize=10)
        ax_d.set_yticks([])
        ax_t.set_xlim(0, max(arr.shape[1] - 1, 1))
        ax_t.tick_params(labelsize=8)
        ax_d.tick_params(labelsize=8)
    axes[-1][1].set_xlabel("draw")
    title = f"{post.kind}: {chains} chain{'s' if chains != 1 else ''} x {post.num_draws} draws"
    if not post.completed:
        title += " (incomplete)"
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
    return [name for name, _ in cols]


def _save(fig, path) -> None:
    from .results_io import temp_path
    path = os.fspath(path)
    tmp = temp_path(path)
    try:
        fig.savefig(tmp, format="png", dpi=90)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
