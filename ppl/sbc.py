"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari & Gelman 2018).

For each simulation: draw the parameters and the data from the prior (ancestral simulation
with the fixed data), fit the model to the simulated data with NUTS, and compute the rank of
each true scalar parameter among the (thinned) posterior draws. If the sampler and the model's
density agree with its simulator, every rank is uniform on 0..L (L draws per fit). A chi-square
test over B bins and a Kolmogorov-Smirnov-type distance of the ranks' ECDF from the uniform
CDF measure departures; rank histograms show their shape (a smile: posteriors too narrow; a
frown: too wide; a slope: biased).

Which nodes become data: ``observed`` names them; otherwise the stochastic nodes the data
names (their values there are replaced by simulations); otherwise every stochastic node with no
descendants. The other data (covariates, sizes) stay fixed. Every fit has the same shapes, so
the compiled sampler is reused: after the first fit, each costs milliseconds for small models.

    res = ppl.sbc.run_sbc(model, {"x": x}, sims=200, draws=100, warmup=200, thin=2)
    print(res)            # per-parameter chi-square p-values and KS distances
    res.plot("ranks.png")
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from .errors import ModelError
from .graph import DATA, STOCHASTIC

__all__ = ["run_sbc", "SBCResult", "rank_statistics", "chi2_sf", "ks_sf"]


@dataclass
class SBCResult:
    """Ranks of each scalar parameter over the simulations, and their uniformity statistics."""

    ranks: dict                     # scalar name ('mu', 'theta[3]') -> (sims,) ints in 0..num_draws
    num_draws: int                  # L: posterior draws per fit after thinning
    bins: int
    observed: list                  # the nodes simulated as data
    params: list                    # the nodes ranked
    stats: dict = field(default_factory=dict)     # scalar -> {'chi2', 'df', 'p', 'ks', 'ks_p'}
    divergences: np.ndarray = field(default_factory=lambda: np.zeros(0, int))   # per simulation
    failed: int = 0                 # simulations whose fit raised a ModelError (left out)
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def sims(self) -> int:
        return len(next(iter(self.ranks.values()))) if self.ranks else 0

    @property
    def min_p(self) -> float:
        return min((s["p"] for s in self.stats.values()), default=float("nan"))

    def uniform(self, alpha: float = 0.01) -> bool:
        """No scalar's chi-square p-value is below ``alpha`` / (number of scalars) (Bonferroni)."""
        return all(s["p"] > alpha / max(len(self.stats), 1) for s in self.stats.values())

    def table(self) -> str:
        st = self.settings
        width = max([9] + [len(n) for n in self.stats])
        lines = [f"SBC: {self.sims} simulations, {self.num_draws} posterior draws each "
                 f"(NUTS, {st.get('chains', 1)} chain(s), warm-up {st.get('warmup', '?')}, thin {st.get('thin', 1)}); "
                 f"ranks in {self.bins} bins; observed: {', '.join(self.observed)}",
                 f"  {'parameter':<{width}}  {'chi2':>8}  {'df':>3}  {'p':>7}  {'KS D':>6}  {'KS p':>7}"]
        for name, s in self.stats.items():
            lines.append(f"  {name:<{width}}  {s['chi2']:8.2f}  {s['df']:3d}  {_fmt_p(s['p'])}  {s['ks']:6.3f}  "
                         f"{_fmt_p(s['ks_p'])}")
        k = len(self.stats)
        lines.append(f"smallest p = {_fmt_p(self.min_p).strip()}; with {k} scalar(s) the Bonferroni level for "
                     f"a family-wise 0.01 is {0.01 / max(k, 1):.2g}: "
                     + ("consistent with uniform ranks" if self.uniform() else "ranks are NOT uniform"))
        div = int(np.sum(self.divergences))
        if div or self.failed:
            lines.append(f"{div} divergent transitions in {int(np.sum(self.divergences > 0))} fits"
                         + (f"; {self.failed} fits failed and were left out" if self.failed else ""))
        t = self.timings
        if t:
            lines.append(f"time: prior {t.get('prior_s', 0):.2f} s, first fit (with compilation) "
                         f"{t.get('first_fit_s', 0):.2f} s, other fits {t.get('fits_s', 0):.2f} s "
                         f"({1000 * t.get('per_fit_s', 0):.0f} ms each), total {t.get('total_s', 0):.2f} s")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str, max_panels: int = 24) -> list:
        """Rank histograms (with the 99% band of a uniform histogram) to a PNG; returns the names drawn.
        Raises ImportError when matplotlib is missing."""
        from .plot import _matplotlib
        Figure, FigureCanvasAgg = _matplotlib()
        names = list(self.ranks)[:max_panels]
        cols = min(4, max(len(names), 1))
        rows = max(1, math.ceil(len(names) / cols))
        fig = Figure(figsize=(max(3.2 * cols, 6.0), 2.4 * rows + 0.5))
        FigureCanvasAgg(fig)
        probs = _bin_probabilities(self.num_draws, self.bins)
        n = self.sims
        for k, name in enumerate(names):
            ax = fig.add_subplot(rows, cols, k + 1)
            counts = np.bincount(_bin_of(self.ranks[name], self.num_draws, self.bins), minlength=self.bins)
            mean = n * probs
            half = 2.576 * np.sqrt(n * probs * (1 - probs))
            x = np.arange(self.bins)
            ax.fill_between(np.r_[x - 0.5, x[-1] + 0.5], np.r_[mean - half, mean[-1] - half[-1]],
                            np.r_[mean + half, mean[-1] + half[-1]], step="post", color="0.85", lw=0)
            ax.bar(x, counts, width=1.0, color="#4c72b0", edgecolor="white", lw=0.5)
            ax.step(np.r_[x - 0.5, x[-1] + 0.5], np.r_[mean, mean[-1]], where="post", color="0.4", lw=0.8)
            s = self.stats.get(name, {})
            ax.set_title(f"{name}  (p = {_fmt_p(s.get('p', float('nan'))).strip()})", fontsize=9)
            ax.set_xticks([])
            ax.tick_params(labelsize=7)
        fig.suptitle(f"SBC rank histograms: {n} simulations, {self.num_draws} draws, {self.bins} bins", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return names


def run_sbc(model, data: Optional[dict] = None, *, sims: int = 200, draws: int = 100, warmup: int = 200,
            thin: int = 1, chains: int = 1, observed: Optional[Sequence[str]] = None,
            params: Optional[Sequence[str]] = None, bins: Optional[int] = None, seed: int = 0,
            max_depth: int = 10, target_accept: Optional[float] = None,
            progress: Optional[Callable[[int, int], None]] = None) -> SBCResult:
    """Simulation-based calibration of NUTS on ``model`` (a compiled ``ppl.Model``).

    ``data``: fixed inputs (covariates, sizes); stochastic nodes it names are simulated and
    observed. ``observed``: the nodes to simulate as data (default: see the module docstring).
    ``params``: the nodes to rank (default: every latent node of the fit). ``draws`` are kept per
    fit after thinning by ``thin`` (so ``draws * thin`` are drawn). ``bins`` defaults to
    ``min(20, sims // 10)`` (at least 2). ``progress(i, sims)`` is called after each fit.
    """
    for name, value in (("sims", sims), ("draws", draws), ("thin", thin), ("chains", chains)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if sims < 2:
        raise ValueError("sims must be at least 2")
    t_start = time.perf_counter()
    g = model.graph
    data = dict(data or {})
    obs = _observed_nodes(g, data, observed)
    fixed = {k: v for k, v in data.items() if k not in obs}
    prior = model.prior(fixed, draws=sims, seed=seed)
    for name in obs:
        if name not in prior.draws:
            raise ModelError(f"`{name}` is not simulated by the prior, so it cannot be observed in SBC",
                             g.nodes[name].span, file=g.file, source=g.source)
    t_prior = time.perf_counter()
    seeds = np.random.SeedSequence(seed).generate_state(sims)
    rng = np.random.default_rng(seed)
    num = draws * chains
    ranks: dict = {}
    divergences = np.zeros(sims, dtype=int)
    ok = np.zeros(sims, dtype=bool)
    failed, first_fit_s, chosen = 0, 0.0, None
    for i in range(sims):
        t0 = time.perf_counter()
        sim_data = {**fixed, **{name: prior.draws[name][0, i] for name in obs}}
        try:
            with warnings.catch_warnings():
                if i > 0:
                    warnings.simplefilter("ignore")
                post = model.sample(sim_data, chains=chains, warmup=warmup, draws=draws * thin,
                                    seed=int(seeds[i]), max_depth=max_depth, target_accept=target_accept)
        except ModelError:
            if i == 0 and sims == 1:
                raise
            failed += 1
            if progress is not None:
                progress(i + 1, sims)
            continue
        if chosen is None:
            chosen = _chosen_params(post, params, obs)
            for name in chosen:
                for label, _idx in _scalars(name, post.draws[name].shape[2:]):
                    ranks[label] = np.full(sims, -1, dtype=int)
        for name in chosen:
            fit = post.draws[name][:, ::thin]                       # (chains, draws, *shape)
            truth = np.asarray(prior.draws[name][0, i])
            for label, idx in _scalars(name, fit.shape[2:]):
                x = fit[(slice(None), slice(None)) + idx].ravel()
                t = truth[idx] if truth.ndim else truth
                below, ties = int(np.sum(x < t)), int(np.sum(x == t))
                ranks[label][i] = below + (int(rng.integers(0, ties + 1)) if ties else 0)
        divergences[i] = int(np.sum(post.stats.get("divergent__", 0)))
        ok[i] = True
        if first_fit_s == 0.0:
            first_fit_s = time.perf_counter() - t0
        if progress is not None:
            progress(i + 1, sims)
    if not ok.any():
        raise ModelError("every SBC fit failed (see `ppl sample` on one simulated data set for the reason)",
                         file=g.file, source=g.source)
    ranks = {k: v[ok] for k, v in ranks.items()}
    n_ok = int(ok.sum())
    bins = int(bins) if bins else max(2, min(20, n_ok // 10))
    bins = min(bins, num + 1)
    stats = {k: rank_statistics(v, num, bins) for k, v in ranks.items()}
    t_end = time.perf_counter()
    fits_s = t_end - t_prior - first_fit_s
    timings = {"prior_s": t_prior - t_start, "first_fit_s": first_fit_s, "fits_s": fits_s,
               "per_fit_s": fits_s / max(n_ok - 1, 1), "total_s": t_end - t_start}
    return SBCResult(ranks, num, bins, list(obs), list(chosen or []), stats, divergences[ok], failed, timings,
                     {"chains": chains, "warmup": warmup, "thin": thin, "draws": draws, "seed": seed})


# ---------------------------------------------------------------------------- choices


def _observed_nodes(g, data: dict, observed) -> list:
    if observed:
        names = list(dict.fromkeys(observed))
        for name in names:
            node = g.nodes.get(name)
            if node is None:
                from .errors import did_you_mean
                raise ModelError(f"`{name}` (to observe) is not a node of the model", hint=did_you_mean(
                    name, list(g.nodes)), file=g.file, source=g.source)
            if node.kind != STOCHASTIC:
                hint = (f"SBC simulates observed nodes: write `{name} ~ ...` without `data {name}: ...`"
                        if node.kind == DATA else None)
                raise ModelError(f"`{name}` is {'declared data' if node.kind == DATA else 'not stochastic'}, "
                                 "so SBC cannot simulate it", node.span, hint=hint, file=g.file, source=g.source)
        return names
    named = [n for n in g.order if n in data and g.nodes[n].kind == STOCHASTIC]
    if named:
        return named
    children = g.children()
    in_factors = {p for f in g.factors for p in f.parents}
    leaves = [n for n in g.order if g.nodes[n].kind == STOCHASTIC and not children[n] and n not in in_factors]
    if not leaves:
        raise ModelError("no stochastic node without descendants to simulate as data", hint="name the observed "
                         "nodes (`--observed y`); a node declared `data` cannot be simulated",
                         file=g.file, source=g.source)
    return leaves


def _chosen_params(post, params, observed) -> list:
    roles = post.meta.get("roles", {})
    if params:
        missing = [p for p in params if p not in post.draws]
        if missing:
            raise ValueError(f"cannot rank {', '.join(missing)}: not among the fit's outputs "
                             f"({', '.join(post.draws)})")
        return list(params)
    chosen = [n for n, r in roles.items() if r == "latent" and n in post.draws and n not in observed]
    if not chosen:
        raise ValueError("the model has no latent node to rank")
    return chosen


def _scalars(name: str, shape: tuple):
    if not shape:
        yield name, ()
        return
    for idx in np.ndindex(*shape):
        yield f"{name}[{','.join(map(str, idx))}]", idx


# ---------------------------------------------------------------------------- statistics


def _bin_of(ranks: np.ndarray, num_draws: int, bins: int) -> np.ndarray:
    return (np.asarray(ranks) * bins) // (num_draws + 1)


def _bin_probabilities(num_draws: int, bins: int) -> np.ndarray:
    """Probability of each bin when the rank is uniform on 0..num_draws (bins may be unequal)."""
    return np.bincount(_bin_of(np.arange(num_draws + 1), num_draws, bins), minlength=bins) / (num_draws + 1)


def rank_statistics(ranks: np.ndarray, num_draws: int, bins: int) -> dict:
    """Chi-square test of the binned ranks against uniform, and the KS distance of their ECDF from
    the discrete uniform CDF on 0..num_draws (with its asymptotic p-value)."""
    ranks = np.asarray(ranks, dtype=int)
    n = ranks.size
    probs = _bin_probabilities(num_draws, bins)
    counts = np.bincount(_bin_of(ranks, num_draws, bins), minlength=bins)
    expected = n * probs
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    df = bins - 1
    ecdf = np.cumsum(np.bincount(ranks, minlength=num_draws + 1)) / n
    cdf = np.arange(1, num_draws + 2) / (num_draws + 1)
    d = float(np.max(np.abs(ecdf - cdf)))
    return {"chi2": chi2, "df": df, "p": chi2_sf(chi2, df), "ks": d, "ks_p": ks_sf(d * math.sqrt(n))}


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square(df): the regularised upper incomplete gamma Q(df/2, x/2)."""
    if x <= 0:
        return 1.0
    a, z = df / 2.0, x / 2.0
    if z < a + 1:                                   # series for P, then Q = 1 - P
        term = total = 1.0 / a
        k = a
        for _ in range(10000):
            k += 1
            term *= z / k
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-z + a * math.log(z) - math.lgamma(a)))
    # continued fraction for Q (Lentz)
    tiny = 1e-300
    b = z + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(-z + a * math.log(z) - math.lgamma(a)) * h)


def ks_sf(x: float) -> float:
    """The Kolmogorov distribution's survival function P(sqrt(n) D > x) (asymptotic; for ranks,
    which are discrete, it is conservative)."""
    if x <= 0:
        return 1.0
    total = sum((-1) ** (j - 1) * math.exp(-2 * j * j * x * x) for j in range(1, 101))
    return float(min(1.0, max(0.0, 2 * total)))


def _fmt_p(p: float) -> str:
    if p != p:
        return "    nan"
    return f"{p:7.4f}" if p >= 1e-4 else f"{p:7.1e}"
