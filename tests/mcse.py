"""Monte Carlo standard-error tolerances for statistical tests.

A check passes when |estimate - reference| < Z * sqrt(se_ours^2 + se_ref^2) + floor, with the
standard errors derived from the effective sample size of our draws (and of the reference)."""
import numpy as np

from ppl.diagnostics import ess_bulk

Z = 4.0


def _ess(x):
    """x: (chains, draws)."""
    e = ess_bulk(x)
    return float(e) if np.isfinite(e) else float(x.size)


def mean_se(x):
    return float(np.std(x, ddof=1) / np.sqrt(_ess(x)))


def sd_se(x):
    """Standard error of the sample sd: sqrt(var(s^2)) / (2 s), var(s^2) ~ (m4 - s^4) / ess, where
    ess is that of the squared deviations (the draws whose mean s^2 is), or of x if lower — as
    ArviZ's mcse of the sd. The ESS of x alone overstates it when NUTS draws are anticorrelated
    in x but not in x^2 (diamonds: per-chain sds spread twice as widely as that se allowed)."""
    c = x - x.mean()
    s2 = float(np.mean(c ** 2))
    m4 = float(np.mean(c ** 4))
    ess = min(_ess(x), _ess(c ** 2))
    return float(np.sqrt(max(m4 - s2 ** 2, 0.0) / ess) / (2 * np.sqrt(s2)))


def assert_mean(x, ref, ref_se=0.0, name="", floor=1e-3):
    x = np.asarray(x, dtype=float)
    se = np.hypot(mean_se(x), ref_se)
    err = abs(x.mean() - ref)
    assert err < Z * se + floor, f"{name}: mean {x.mean():.4g} vs {ref:.4g} (|diff| {err:.3g} > {Z}*{se:.3g})"


def assert_sd(x, ref, ref_se=0.0, name="", floor=1e-3):
    x = np.asarray(x, dtype=float)
    se = np.hypot(sd_se(x), ref_se)
    sd = x.std(ddof=1)
    err = abs(sd - ref)
    assert err < Z * se + floor, f"{name}: sd {sd:.4g} vs {ref:.4g} (|diff| {err:.3g} > {Z}*{se:.3g})"
