"""The result every inference backend returns: :class:`Posterior` and its :class:`Summary`
table with plain-language warnings. Files: :meth:`Posterior.save` / :func:`load` read and
write CSV, JSON (``ppl.results_io``) and NetCDF (``.nc``, ``ppl.arviz_export``, needs ArviZ);
:meth:`Posterior.to_arviz` gives an ``arviz.InferenceData``.

Column names are 0-based and row-major: ``theta[0]``, ``Sigma[1,2]``; scalars keep
their bare name. Sampler statistics end in ``__`` (Stan's names).
"""
from __future__ import annotations

import difflib
import json
import math
import os  # noqa: F401 - tests patch results.os.replace
from dataclasses import dataclass, field

import numpy as np

from . import diagnostics
from .diagnostics import DEFAULT_PROBS, EBFMI_MIN, quantile_key
from .results_io import (INT_STATS, STAT_NAMES, atomic_write as _atomic_write, column_names,
                         columns as _columns, csv_lines as _csv_lines, format_of as _format_of,
                         json_default as _json_default, json_doc as _json_doc, parse_column,
                         read_csv as _read_csv, read_json as _read_json)

__all__ = ["STAT_NAMES", "INT_STATS", "RHAT_MAX", "ESS_MIN", "EBFMI_MIN", "Posterior", "Summary",
           "load", "combine", "column_names", "parse_column"]

RHAT_MAX = 1.01   # Vehtari et al. (2021)
ESS_MIN = 400     # total bulk / tail ESS below which estimates are unreliable
LONG_TRAJECTORY = 63   # mean leapfrog steps per draw (trees of depth 6) that suggest a richer metric


class _NameKeyError(KeyError):
    """KeyError whose message prints as plain text (not repr-quoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _missing(name, available, what: str = "variable") -> _NameKeyError:
    avail = list(available)
    close = difflib.get_close_matches(str(name), avail, n=3, cutoff=0.6)
    msg = f"no {what} named {name!r}"
    if close:
        msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    msg += " Available: " + (", ".join(avail) if avail else "(none)")
    return _NameKeyError(msg)


# --------------------------------------------------------------------------- Posterior
@dataclass(eq=False, repr=False)
class Posterior:
    """Draws (name -> (chains, draws, *shape), model order) plus sampler statistics."""

    draws: dict[str, np.ndarray]
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "posterior"          # 'posterior', 'prior', 'vi', 'optimize'
    completed: bool = True           # False when interrupted: holds the draws so far
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    observed: dict[str, np.ndarray] = field(default_factory=dict)       # observed values
    constant_data: dict[str, np.ndarray] = field(default_factory=dict)  # the other data

    def __post_init__(self):
        self.draws = {str(k): np.asarray(v) for k, v in self.draws.items()}
        self.observed = {str(k): np.asarray(v) for k, v in (self.observed or {}).items()}
        self.constant_data = {str(k): np.asarray(v) for k, v in (self.constant_data or {}).items()}
        self.stats = {str(k): np.asarray(v) for k, v in self.stats.items()}
        if not isinstance(self.kind, str) or not self.kind.isidentifier():
            raise ValueError(f"kind must be a word such as 'posterior', got {self.kind!r}")
        lead = None
        for name, arr in list(self.draws.items()) + list(self.stats.items()):
            if arr.ndim < 2:
                raise ValueError(f"{name!r} has shape {arr.shape}; expected (chains, draws, ...)")
            if lead is None:
                lead = arr.shape[:2]
            elif arr.shape[:2] != lead:
                raise ValueError(f"{name!r} has (chains, draws) = {arr.shape[:2]}, "
                                 f"but other arrays have {lead}")

    # -- mapping-like access
    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.draws:
            return self.draws[name]
        if name in self.stats:
            return self.stats[name]
        raise _missing(name, list(self.draws) + list(self.stats))

    def __contains__(self, name) -> bool:
        return name in self.draws or name in self.stats

    def __iter__(self):
        return iter(self.draws)

    def keys(self) -> list[str]:
        return list(self.draws)

    def _lead(self) -> tuple[int, int]:
        arrays = list(self.draws.values()) + list(self.stats.values())
        return tuple(int(n) for n in arrays[0].shape[:2]) if arrays else (0, 0)

    @property
    def num_chains(self) -> int:
        return self._lead()[0]

    @property
    def num_draws(self) -> int:
        return self._lead()[1]

    @property
    def divergences(self) -> int:
        return int(self.divergences_per_chain.sum())

    @property
    def divergences_per_chain(self) -> np.ndarray:
        d = self.stats.get("divergent__")
        if d is None:
            return np.zeros(self.num_chains, dtype=np.int64)
        return np.count_nonzero(np.asarray(d) > 0, axis=1).astype(np.int64)

    def __repr__(self) -> str:
        parts = [f"{k}{list(v.shape[2:]) if v.ndim > 2 else ''}" for k, v in self.draws.items()]
        return (f"Posterior(kind={self.kind!r}, chains={self.num_chains}, "
                f"draws={self.num_draws}, completed={self.completed}, "
                f"variables=[{', '.join(parts)}])")

    # -- tables
    def _select_columns(self, names) -> list[tuple[str, np.ndarray]]:
        if names is None:
            return _columns(self.draws)
        if isinstance(names, str):
            names = [names]
        out = []
        for name in names:
            if name in self:
                out.extend(_columns({name: self[name]}))
                continue
            base, idx = parse_column(name)
            arr = self.draws.get(base, self.stats.get(base))
            if idx and arr is not None and len(idx) == arr.ndim - 2 \
                    and all(i < n for i, n in zip(idx, arr.shape[2:])):
                out.append((name, arr[(slice(None), slice(None)) + idx]))
                continue
            raise _missing(name, list(self.draws) + list(self.stats))
        return out

    def flat_columns(self) -> tuple[list[str], np.ndarray]:
        """Column names and a (chains*draws, ncol) array, chain-major rows."""
        cols = _columns(self.draws)
        n = self.num_chains * self.num_draws
        if not cols:
            return [], np.empty((n, 0))
        return [c for c, _ in cols], np.stack([a.reshape(-1) for _, a in cols], axis=1)

    def summary(self, names=None, probs=DEFAULT_PROBS) -> "Summary":
        """Summary table for all draws, or for ``names`` (variables, stats or 'theta[3]')."""
        rows = [{"name": col, **diagnostics.summarize(arr, probs)}
                for col, arr in self._select_columns(names)]
        return Summary(rows=rows, divergences=self.divergences,
                       num_chains=self.num_chains, num_draws=self.num_draws,
                       completed=self.completed,
                       tracks_divergences="divergent__" in self.stats,
                       kind=self.kind, probs=tuple(probs), **self._sampler_checks())

    def _sampler_checks(self) -> dict:
        """Per-chain divergences, E-BFMI and tree-depth saturation (when recorded)."""
        out = {"divergences_per_chain": tuple(int(n) for n in self.divergences_per_chain)}
        if "energy__" in self.stats and self.num_draws >= 2:
            out["ebfmi"] = tuple(float(v) for v in diagnostics.ebfmi(self.stats["energy__"]))
        if "lp__" in self.stats and self.num_chains >= 2 and self.num_draws >= 2:
            lp = np.asarray(self.stats["lp__"], np.float64)
            out["chain_lp"] = tuple((float(m), float(s)) for m, s in zip(lp.mean(axis=1), lp.std(axis=1)))
        out["moved_chains"] = tuple(self.meta.get("moved_chains") or ())
        depth = self.meta.get("max_depth")
        nuts = self.meta.get("algorithm", "nuts") == "nuts"
        if nuts and "treedepth__" in self.stats and depth is not None and self.num_draws > 0:
            out["max_depth"] = int(depth)
            out["max_depth_hits"] = int(np.count_nonzero(self.stats["treedepth__"] >= int(depth)))
        if nuts and "n_leapfrog__" in self.stats and self.num_draws > 0:
            out["mean_leapfrog"] = float(np.mean(self.stats["n_leapfrog__"]))
            out["metric"] = self.meta.get("mass_matrix")
        return out

    # -- ArviZ
    def to_arviz(self, prior: "Posterior | None" = None):
        """An ``arviz.InferenceData``: posterior, posterior_predictive (generated nodes),
        sample_stats (ArviZ names), observed_data, constant_data and, given ``prior`` (a
        result of ``model.prior``), the prior and prior_predictive groups. Needs ArviZ."""
        from .arviz_export import to_inference_data
        return to_inference_data(self, prior=prior)

    # -- files
    def to_csv(self, path) -> None:
        _atomic_write(path, _csv_lines(self))

    def to_json(self, path) -> None:
        _atomic_write(path, [json.dumps(_json_doc(self), default=_json_default), "\n"])

    def to_netcdf(self, path, prior: "Posterior | None" = None) -> None:
        """Write the ArviZ InferenceData as NetCDF (needs ArviZ); :func:`load` reads it back."""
        from .arviz_export import write_netcdf
        write_netcdf(self, path, prior=prior)

    def save(self, path) -> None:
        """Write ``path`` as CSV, JSON or NetCDF (``.nc``), chosen by its extension."""
        {".csv": self.to_csv, ".json": self.to_json, ".nc": self.to_netcdf}[_format_of(path)](path)


def load(path) -> Posterior:
    """Read a file written by :meth:`Posterior.save` (CSV, JSON, or NetCDF via ArviZ)."""
    fmt = _format_of(path)
    if fmt == ".nc":
        from .arviz_export import read_netcdf
        return Posterior(**read_netcdf(path))
    with open(path, encoding="utf-8", newline="") as f:
        reader = _read_csv if fmt == ".csv" else _read_json
        return Posterior(**reader(f, str(path)))


def combine(posteriors, names=None) -> Posterior:
    """One Posterior holding the chains of several runs of the same model, in order (runs on
    several hosts, or runs made one after another): draws and statistics stacked along the chain
    axis. Every run must have the same variables, shapes and number of draws; statistics that
    only some runs recorded are dropped. The runs should use different seeds (processes of one
    ``jax.distributed`` run differ already). ``names`` label the runs in error messages (the
    command line passes the file names)."""
    runs = list(posteriors)
    if not runs:
        raise ValueError("combine needs at least one run")
    names = list(names) if names is not None else [f"run {i + 1}" for i in range(len(runs))]
    first = runs[0]
    for name, post in zip(names[1:], runs[1:]):
        if post.kind != first.kind:
            raise ValueError(f"{name} holds {post.kind} draws but {names[0]} holds {first.kind} draws; "
                             "combine runs of one kind")
        if list(post.draws) != list(first.draws):
            raise ValueError(f"{name} has variables {', '.join(post.draws) or '(none)'} but {names[0]} has "
                             f"{', '.join(first.draws) or '(none)'}; combine runs of the same model")
        for v, arr in post.draws.items():
            if arr.shape[2:] != first.draws[v].shape[2:]:
                raise ValueError(f"{v!r} has shape {list(arr.shape[2:])} in {name} but "
                                 f"{list(first.draws[v].shape[2:])} in {names[0]}; were the data the same?")
        if post.num_draws != first.num_draws:
            raise ValueError(f"{name} has {post.num_draws} draws per chain but {names[0]} has "
                             f"{first.num_draws}; run every process with the same number of draws")
    _warn_repeated_chains(runs, names)
    stats = [k for k in first.stats if all(k in p.stats for p in runs)]
    meta = dict(first.meta)
    meta["combined_runs"] = len(runs)
    return Posterior(
        draws={k: np.concatenate([p.draws[k] for p in runs]) for k in first.draws},
        stats={k: np.concatenate([p.stats[k] for p in runs]) for k in stats},
        kind=first.kind, completed=all(p.completed for p in runs), meta=meta,
        observed=first.observed, constant_data=first.constant_data)


def _warn_repeated_chains(runs, names) -> None:
    """A chain that appears twice (a run combined with itself, or two hosts with the same seed
    outside a ``jax.distributed`` run) would pass for independent draws: warn."""
    import warnings

    from .model import ModelWarning
    seen = {}
    for name, post in zip(names, runs):
        flat = np.concatenate([a.reshape(a.shape[0], -1) for a in post.draws.values()], axis=1) \
            if post.draws else np.zeros((post.num_chains, 0))
        for c, row in enumerate(flat):
            key = row.tobytes()
            if key in seen and row.size:
                warnings.warn(f"chain {c + 1} of {name} repeats chain {seen[key][1] + 1} of {seen[key][0]}: "
                              "combine runs made with different seeds", ModelWarning, stacklevel=3)
                return
            seen[key] = (name, c)


# --------------------------------------------------------------------------- Summary
def _fmt(v: float, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if spec.endswith("f") and abs(v) >= 1e6:
        spec = ".3g"   # keep absurd values (e.g. r_hat of stuck chains) narrow
    return format(v, spec)


def _names_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass(eq=False)
class Summary:
    """Per-scalar posterior summary; ``str()`` gives a fixed-width table."""

    rows: list[dict]
    divergences: int = 0
    num_chains: int = 0
    num_draws: int = 0
    completed: bool = True
    tracks_divergences: bool = False   # sampler recorded divergent__ (print the count)
    kind: str = "posterior"
    probs: tuple = DEFAULT_PROBS
    divergences_per_chain: tuple = ()  # post-warm-up divergences of each chain
    ebfmi: tuple = ()                  # E-BFMI of each chain (from energy__)
    max_depth: int | None = None       # NUTS tree-depth limit of the run, when known
    max_depth_hits: int = 0            # draws whose tree reached max_depth
    chain_lp: tuple = ()               # (mean, sd) of lp__ in each chain
    moved_chains: tuple = ()           # chains moved out of a negligible mode in warm-up (inference/stuck.py)
    mean_leapfrog: float | None = None  # NUTS: leapfrog steps per draw, on average
    metric: str | None = None          # NUTS: the mass matrix adapted ("diag", "fisher", "lowrank", "dense")

    def __getitem__(self, name: str) -> dict:
        for row in self.rows:
            if row["name"] == name:
                return row
        raise _missing(name, [r["name"] for r in self.rows], what="row")

    def _columns(self) -> list[tuple[str, str, str]]:
        """(header, row key, format spec)."""
        qs = [(f"{format(round(100 * p, 6), 'g')}%", quantile_key(p), ".4g") for p in self.probs]
        return ([("mean", "mean", ".4g"), ("sd", "sd", ".4g")] + qs
                + [("ess_bulk", "ess_bulk", ".0f"), ("ess_tail", "ess_tail", ".0f"),
                   ("r_hat", "r_hat", ".3f")])

    def _cells(self) -> list[list[str]]:
        cols = self._columns()
        return [[row["name"]] + [_fmt(row.get(key, math.nan), spec) for _, key, spec in cols]
                for row in self.rows]

    def _title(self) -> str:
        s = "" if self.num_chains == 1 else "s"
        return f"{self.kind}: {self.num_chains} chain{s} x {self.num_draws} draws"

    def _footer(self) -> list[str]:
        lines = []
        if self.tracks_divergences:
            s = "" if self.divergences == 1 else "s"
            lines.append(f"{self.divergences} divergent transition{s}")
        if not self.completed:
            lines.append(f"(incomplete: interrupted after {self.num_draws} draws)")
        return lines

    def __str__(self) -> str:
        headers = ["name"] + [h for h, _, _ in self._columns()]
        cells = self._cells()
        widths = [max([len(h)] + [len(r[j]) for r in cells]) for j, h in enumerate(headers)]

        def line(items):
            first = items[0].ljust(widths[0])
            rest = [s.rjust(w) for s, w in zip(items[1:], widths[1:])]
            return "  ".join([first] + rest).rstrip()

        out = [self._title(), line(headers)] + [line(r) for r in cells] + self._footer()
        return "\n".join(out)

    def to_rich(self):
        """The same table as a ``rich.table.Table``."""
        from rich.table import Table

        footer = self._footer()
        table = Table(title=self._title(), caption="\n".join(footer) if footer else None)
        table.add_column("name", justify="left")
        for header, _, _ in self._columns():
            table.add_column(header, justify="right")
        for cells in self._cells():
            table.add_row(*cells)
        return table

    def warnings(self) -> list[str]:
        """Plain-language problems worth acting on (empty when everything looks fine)."""
        out = []

        def bad(key, test):
            hits = [(r["name"], r[key]) for r in self.rows
                    if isinstance(r.get(key), float) and not math.isnan(r[key]) and test(r[key])]
            return [n for n, _ in hits], [v for _, v in hits]

        names, vals = bad("r_hat", lambda v: v > RHAT_MAX)
        if names:
            out.append(f"r_hat > {RHAT_MAX} for {_names_list(names)} (worst {max(vals):.3f}): "
                       "chains have not mixed; run longer or reparameterise")
            modes = self._modes()
            if modes:
                out.append(modes)
        if self.moved_chains:
            groups: dict = {}
            for m in self.moved_chains:
                groups.setdefault((m["to"], m["iteration"]), []).append(m)
            for (to, it), ms in groups.items():
                which = ", ".join(str(m["chain"]) for m in ms)
                gap = min(m["log_mass_gap"] for m in ms)
                s = "s" if len(ms) > 1 else ""
                out.append(f"chain{s} {which} sat in a mode holding about e^-{gap:.0f} of the posterior mass of "
                           f"chain {to}'s mode at warm-up iteration {it}, and continued from chain {to}'s "
                           "state: the posterior has a local mode that can trap chains (a multimodal "
                           "posterior); --keep-stuck-chains (restart_stuck=False) keeps chains where they are")
        for key, what in (("ess_bulk", "means and medians"), ("ess_tail", "the 5% and 95% quantiles")):
            names, vals = bad(key, lambda v: v < ESS_MIN)
            if names:
                out.append(f"{key} < {ESS_MIN} for {_names_list(names)} (lowest {min(vals):.0f}): "
                           f"estimates of {what} are unreliable; run more draws or reparameterise")
        out.extend(self._sampler_warnings())
        if not self.completed:
            out.append(f"sampling was interrupted after {self.num_draws} draws per chain; "
                       "these results use only the draws made so far")
        return out

    def _modes(self) -> str:
        """When chains disagree because they sit at different log densities: which, and by how much."""
        if len(self.chain_lp) < 2:
            return ""
        means = np.array([m for m, _ in self.chain_lp])
        sds = np.array([s for _, s in self.chain_lp])
        spread = float(means.max() - means.min())
        if not np.all(np.isfinite(means)) or spread <= 3.0 * max(float(np.median(sds)), 1e-12):
            return ""
        per = ", ".join(f"chain {c}: {m:.1f}" for c, m in enumerate(means))
        return (f"the chains explore different regions (mean lp__ by chain: {per}): the posterior is "
                "multimodal, or some chains are stuck in a local mode; the summary mixes the modes. "
                "Run more chains, use informative priors or constraints that break the symmetry, "
                "or compare the modes with `ppl optimize --restarts 16`")

    def _sampler_warnings(self) -> list[str]:
        out = []
        if self.divergences > 0:
            s = "" if self.divergences == 1 else "s"
            per = ", ".join(f"chain {c}: {n}" for c, n in enumerate(self.divergences_per_chain) if n)
            out.append(f"{self.divergences} divergent transition{s} after warm-up"
                       + (f" ({per})" if per else "")
                       + ": the sampler could not follow the posterior's curvature there, so the "
                       "estimates may be biased; reparameterise (non-centred) or raise target_accept "
                       "(--target-accept 0.95)")
        if self.max_depth is not None and self.max_depth_hits > 0:
            total = self.num_chains * self.num_draws
            out.append(f"{self.max_depth_hits} of {total} draws ({self.max_depth_hits / total:.1%}) "
                       f"hit the maximum tree depth {self.max_depth}: NUTS cut those trajectories "
                       "short, which slows mixing; raise --max-depth, or reparameterise (strongly "
                       "correlated or badly scaled parameters)")
        if self.metric in ("diag", "fisher") and (self.mean_leapfrog or 0) >= LONG_TRAJECTORY:
            out.append(f"draws took {self.mean_leapfrog:.0f} leapfrog steps on average: the diagonal "
                       "metric leaves strongly correlated directions, which make trajectories long; "
                       "--mass-matrix lowrank (mass_matrix=\"lowrank\", nutpie's low-rank metric) learns "
                       "up to 10 of them and over the posteriordb models took a tenth of the gradients "
                       "per effective draw (README, Speed)")
        low = [(c, v) for c, v in enumerate(self.ebfmi) if not math.isnan(v) and v < EBFMI_MIN]
        if low:
            which = ", ".join(f"chain {c}: {v:.2f}" for c, v in low)
            out.append(f"E-BFMI < {EBFMI_MIN} ({which}): the sampler explores the energy "
                       "distribution poorly and may miss the tails (typical of funnels and heavy "
                       "tails); reparameterise (e.g. non-centred), or use lighter-tailed priors")
        return out
