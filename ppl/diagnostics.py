"""MCMC convergence diagnostics on numpy arrays of shape (chains, draws).

Follows Vehtari, Gelman, Simpson, Carpenter & Buerkner (2021), "Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC",
computed the way ArviZ (``arviz.rhat(method="rank")``, ``arviz.ess(method="bulk")`` ...)
and the R package ``posterior`` do:

* chains are split in half (the middle draw of an odd-length chain is dropped);
* bulk quantities use rank-normalised draws (average ranks, Blom offset 3/8, probit);
* tail R-hat folds the draws about the median first; tail ESS is the smaller ESS of
  the indicators ``x <= q05`` and ``x <= q95``;
* the ESS uses FFT autocovariances combined across chains and Geyer's initial
  positive + monotone sequence, as in Stan.

Degenerate input never raises: fewer than 4 draws, any non-finite value, or an input
that is constant gives ``nan``. A single chain is fine (split R-hat compares its two
halves). Chains that are each constant at different values give ``r_hat = inf``.

Only numpy is imported at module level; ``scipy.special`` is imported lazily.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DEFAULT_PROBS",
    "MIN_DRAWS",
    "autocovariance",
    "autocorrelation",
    "split_chains",
    "z_scale",
    "fold",
    "rhat",
    "ess_bulk",
    "ess_tail",
    "ess_mean",
    "ess_quantile",
    "mcse_mean",
    "mcse_quantile",
    "quantile_key",
    "summarize",
    "EBFMI_MIN",
    "ebfmi",
    "treedepth_saturation",
]

MIN_DRAWS = 4
EBFMI_MIN = 0.3   # Betancourt (2016): below this the energy is explored poorly
DEFAULT_PROBS = (0.05, 0.5, 0.95)
_CONSTANT_TOL = np.finfo(float).resolution  # same tolerance as ArviZ


# --------------------------------------------------------------------------- helpers
def _as_2d(x) -> np.ndarray:
    """(chains, draws) float array; a 1-d input is one chain."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"expected an array of shape (chains, draws), got shape {a.shape}")
    return a.astype(float, copy=False)


def _usable(a: np.ndarray) -> bool:
    """Enough draws, all finite, not constant."""
    if a.shape[0] < 1 or a.shape[1] < MIN_DRAWS or not np.all(np.isfinite(a)):
        return False
    return not _is_constant(a)


def _is_constant(a: np.ndarray) -> bool:
    return a.size == 0 or float(np.max(a) - np.min(a)) < _CONSTANT_TOL


def _next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (a good FFT size)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _average_ranks(flat: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get their average rank (scipy's rankdata(method='average'))."""
    sorter = np.argsort(flat)  # tie order is irrelevant: ties get their average
    inv = np.empty(sorter.size, dtype=np.intp)
    inv[sorter] = np.arange(sorter.size, dtype=np.intp)
    s = flat[sorter]
    obs = np.concatenate(([True], s[1:] != s[:-1]))
    dense = np.cumsum(obs)[inv]
    count = np.concatenate((np.nonzero(obs)[0], [obs.size]))
    return 0.5 * (count[dense] + count[dense - 1] + 1)


# --------------------------------------------------------------------------- transforms
def split_chains(x) -> np.ndarray:
    """(chains, draws) -> (2*chains, draws//2): first halves, then second halves."""
    a = _as_2d(x)
    half = a.shape[1] // 2
    return np.concatenate((a[:, :half], a[:, a.shape[1] - half:]), axis=0)


def z_scale(x) -> np.ndarray:
    """Rank-normalise: probit of (rank - 3/8) / (S + 1/4), ranks over all draws."""
    from scipy.special import ndtri

    a = np.asarray(x, dtype=float)
    ranks = _average_ranks(a.ravel())
    c = 3.0 / 8.0
    return ndtri((ranks - c) / (ranks.size - 2 * c + 1)).reshape(a.shape)


def fold(x) -> np.ndarray:
    """|x - median(x)|: turns a difference in scale into a difference in location."""
    a = np.asarray(x, dtype=float)
    return np.abs(a - np.median(a))


def autocovariance(x, axis: int = -1) -> np.ndarray:
    """Biased (divide-by-n) autocovariance at every lag, via zero-padded FFT."""
    a = np.asarray(x, dtype=float)
    n = a.shape[axis]
    m = _next_fast_len(2 * n)
    centred = a - a.mean(axis=axis, keepdims=True)
    f = np.fft.rfft(centred, n=m, axis=axis)
    acov = np.fft.irfft(f * np.conjugate(f), n=m, axis=axis)
    return np.take(acov, np.arange(n), axis=axis) / n


def autocorrelation(x, axis: int = -1) -> np.ndarray:
    """Autocovariance normalised by lag 0 (nan for a constant series)."""
    acov = autocovariance(x, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return acov / np.take(acov, [0], axis=axis)


# --------------------------------------------------------------------------- R-hat
def _rhat_basic(a: np.ndarray) -> float:
    """Classic potential scale reduction of (chains, draws) array (chains >= 2)."""
    n = a.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = n * np.var(a.mean(axis=1), ddof=1)
        within = np.mean(np.var(a, axis=1, ddof=1))
        return float(np.sqrt((between / within + n - 1) / n))


def rhat(x) -> float:
    """Rank-normalised split-R-hat: max of the bulk and the folded (tail) versions."""
    a = _as_2d(x)
    if not _usable(a):
        return math.nan
    s = split_chains(a)
    bulk = _rhat_basic(z_scale(s))
    tail = _rhat_basic(z_scale(fold(s)))
    return float(np.fmax(bulk, tail))


# --------------------------------------------------------------------------- ESS
def _geyer_tau(rho: np.ndarray) -> float:
    """Integrated autocorrelation time from combined autocorrelations ``rho``.

    Geyer's initial positive sequence, then the initial monotone sequence, with
    Stan's improved (antithetic-aware) truncation. Mirrors Stan / ArviZ exactly.
    """
    n = rho.size
    r = np.zeros(n)
    r[0] = even = 1.0
    r[1] = odd = float(rho[1])
    t = 1
    while t < n - 3 and even + odd > 0.0:
        even, odd = float(rho[t + 1]), float(rho[t + 2])
        if even + odd >= 0.0:
            r[t + 1], r[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0.0:
        r[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if r[t + 1] + r[t + 2] > r[t - 1] + r[t]:
            r[t + 1] = r[t + 2] = (r[t - 1] + r[t]) / 2.0
        t += 2
    if np.isnan(r).any():
        return math.nan
    return -1.0 + 2.0 * float(np.sum(r[: max_t + 1])) + float(np.sum(r[max_t + 1: max_t + 2]))


def _ess_basic(a: np.ndarray) -> float:
    """ESS of an already split/transformed (chains, draws) array (nan if degenerate)."""
    m, n = a.shape
    if n < 2 or not np.all(np.isfinite(a)) or _is_constant(a):
        return math.nan
    acov = autocovariance(a, axis=1)
    mean_var = float(np.mean(acov[:, 0])) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus += float(np.var(a.mean(axis=1), ddof=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus
    tau = _geyer_tau(rho)
    total = m * n
    if math.isnan(tau):
        return math.nan
    return total / max(tau, 1.0 / math.log10(total))


def ess_bulk(x) -> float:
    """Bulk ESS: ESS of the rank-normalised split chains."""
    a = _as_2d(x)
    if not _usable(a):
        return math.nan
    return _ess_basic(z_scale(split_chains(a)))


def ess_mean(x) -> float:
    """Plain split-chain ESS (for the MCSE of the mean)."""
    a = _as_2d(x)
    if not _usable(a):
        return math.nan
    return _ess_basic(split_chains(a))


def ess_quantile(x, prob: float) -> float:
    """ESS of the indicator ``x <= quantile(x, prob)`` (split chains)."""
    a = _as_2d(x)
    if not _usable(a):
        return math.nan
    if prob == 1.0:  # as `posterior`: avoid an all-true indicator
        prob = (a.size - 0.5) / a.size
    q = np.quantile(a, prob)
    return _ess_basic(split_chains((a <= q).astype(float)))


def ess_tail(x, probs: tuple[float, float] = (0.05, 0.95)) -> float:
    """Tail ESS: the smaller of the 5% and 95% quantile ESS (nan if either is nan)."""
    lo, hi = ess_quantile(x, probs[0]), ess_quantile(x, probs[1])
    if math.isnan(lo) or math.isnan(hi):
        return math.nan
    return min(lo, hi)


# --------------------------------------------------------------------------- MCSE
def mcse_mean(x) -> float:
    """Monte Carlo standard error of the mean: sd / sqrt(ess_mean)."""
    a = _as_2d(x)
    if not _usable(a):
        return math.nan
    return float(np.std(a, ddof=1)) / math.sqrt(ess_mean(a))


def mcse_quantile(x, prob: float) -> float:
    """Monte Carlo standard error of the ``prob`` quantile (ArviZ / posterior method)."""
    from scipy.special import betaincinv

    a = _as_2d(x)
    if not _usable(a):
        return math.nan
    ess = ess_quantile(a, prob)
    if math.isnan(ess):
        return math.nan
    p = np.array([0.1586553, 0.8413447])
    with np.errstate(invalid="ignore"):
        ppf = betaincinv(ess * prob + 1, ess * (1 - prob) + 1, p)
    s = np.sort(a.ravel())
    pos = ppf * s.size - 1
    th1 = s[int(np.floor(np.nanmax((pos[0], 0))))]
    th2 = s[int(np.ceil(np.nanmin((pos[1], s.size - 1))))]
    return float(th2 - th1) / 2.0


# --------------------------------------------------------------------------- summary
def quantile_key(prob: float) -> str:
    """Summary key for a quantile: 0.05 -> 'q5', 0.5 -> 'q50', 0.025 -> 'q2.5'."""
    return "q" + format(round(100.0 * prob, 6), "g")


def summarize(x, probs=DEFAULT_PROBS) -> dict:
    """Posterior summary of one scalar's (chains, draws) draws.

    Keys: mean, sd, one ``quantile_key(p)`` per prob (q5, q50, q95 by default),
    mcse_mean, ess_bulk, ess_tail, r_hat. Values are Python floats (nan when undefined).
    """
    a = _as_2d(x)
    flat = a.ravel()
    out: dict[str, float] = {}
    with np.errstate(all="ignore"):
        out["mean"] = float(np.mean(flat)) if flat.size else math.nan
        out["sd"] = float(np.std(flat, ddof=1)) if flat.size > 1 else math.nan
        if flat.size and not np.isnan(flat).any():
            qs = np.quantile(flat, list(probs))
        else:
            qs = [math.nan] * len(probs)
    for p, q in zip(probs, qs):
        out[quantile_key(p)] = float(q)
    if not _usable(a):
        out.update(mcse_mean=math.nan, ess_bulk=math.nan, ess_tail=math.nan, r_hat=math.nan)
        return out
    # same as mcse_mean / ess_bulk / ess_tail / rhat, sharing the split and z-scaled draws
    split = split_chains(a)
    z = z_scale(split)
    out["mcse_mean"] = out["sd"] / math.sqrt(_ess_basic(split))
    out["ess_bulk"] = _ess_basic(z)
    out["ess_tail"] = ess_tail(a)
    out["r_hat"] = float(np.fmax(_rhat_basic(z), _rhat_basic(z_scale(fold(split)))))
    return out


# --------------------------------------------------------------------------- sampler checks
def ebfmi(energy) -> np.ndarray:
    """Energy Bayesian fraction of missing information, one value per chain.

    ``mean(diff(E)^2) / var(E)`` (sample variance, ddof=1) over each chain's Hamiltonian
    energies ``energy__`` (Betancourt 2016; the same estimate as ``arviz.bfmi``). Values below
    :data:`EBFMI_MIN` (0.3) mean the momentum resampling moves through the energy
    distribution slowly: the sampler may not reach the tails (often a funnel or heavy
    tails; reparameterise). ``nan`` for a chain with fewer than 2 draws, non-finite
    energies or constant energy.
    """
    e = _as_2d(energy)
    out = np.full(e.shape[0], math.nan)
    if e.shape[1] < 2:
        return out
    with np.errstate(all="ignore"):
        num = np.mean(np.square(np.diff(e, axis=1)), axis=1)
        den = np.var(e, axis=1, ddof=1)
        ok = np.all(np.isfinite(e), axis=1) & (den > 0)
        out[ok] = num[ok] / den[ok]
    return out


def treedepth_saturation(treedepth, max_depth: int) -> np.ndarray:
    """Fraction of each chain's draws whose NUTS tree reached ``max_depth`` (trajectory cut short)."""
    t = np.asarray(treedepth)
    if t.ndim == 1:
        t = t[None, :]
    if t.shape[1] == 0:
        return np.zeros(t.shape[0])
    return np.mean(t >= max_depth, axis=1)
