"""The result every inference backend returns: :class:`Posterior`, its :class:`Summary`
table, and CSV / JSON file I/O (:meth:`Posterior.save`, :func:`load`).

Column names are 0-based and row-major: ``theta[0]``, ``Sigma[1,2]``; scalars keep
their bare name. Sampler statistics end in ``__`` (Stan's convention), which is how a
CSV file tells them apart from model variables when it is read back.

CSV layout::

    # ppl kind=posterior completed=true chains=4 draws=1000
    # ppl-json {"names": [...], "timings": {...}, "meta": {...}, "empty": {...}}
    chain,draw,lp__,accept_stat__,...,mu,theta[0],theta[1],"Sigma[0,0]",...
    0,0,-7.25,0.93,...

Floats are written with ``repr`` (shortest exact round-trip), integer arrays (and the
integer sampler statistics) as integers. Every write is atomic: the file is written
to a temporary file in the same folder and then ``os.replace``-d over the target.
"""
from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import math
import os
import re
import uuid
from dataclasses import dataclass, field

import numpy as np

from . import diagnostics
from .diagnostics import DEFAULT_PROBS, quantile_key

__all__ = ["STAT_NAMES", "INT_STATS", "RHAT_MAX", "ESS_MIN", "Posterior", "Summary", "load",
           "column_names", "parse_column"]

STAT_NAMES = ("lp__", "accept_stat__", "stepsize__", "treedepth__",
              "n_leapfrog__", "divergent__", "energy__")
INT_STATS = ("treedepth__", "n_leapfrog__", "divergent__")
RHAT_MAX = 1.01   # Vehtari et al. (2021)
ESS_MIN = 400     # total bulk / tail ESS below which estimates are unreliable
_FORMATS = (".csv", ".json")
_COLUMN_RE = re.compile(r"^(?P<base>.+?)\[(?P<idx>\d+(?:,\d+)*)\]$")


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


# --------------------------------------------------------------------------- columns
def column_names(name: str, shape: tuple) -> list[str]:
    """Flat column names of one variable: 'mu'; 'theta[0]'...; 'Sigma[0,0]', 'Sigma[0,1]'..."""
    if tuple(shape) == ():
        return [name]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def parse_column(col: str) -> tuple[str, tuple[int, ...]]:
    """Inverse of :func:`column_names`: 'Sigma[1,2]' -> ('Sigma', (1, 2)); 'mu' -> ('mu', ())."""
    m = _COLUMN_RE.match(col)
    if m is None:
        return col, ()
    return m.group("base"), tuple(int(i) for i in m.group("idx").split(","))


def _columns(arrays: dict) -> list[tuple[str, np.ndarray]]:
    """(column name, (chains, draws) array) for every scalar of every array."""
    out = []
    for name, arr in arrays.items():
        shape = arr.shape[2:]
        flat = arr.reshape(arr.shape[:2] + (math.prod(shape),))
        for j, col in enumerate(column_names(name, shape)):
            out.append((col, flat[:, :, j]))
    return out


def _is_int_column(name: str, values: np.ndarray) -> bool:
    if values.dtype.kind in "iub":
        return True
    if parse_column(name)[0] in INT_STATS and values.dtype.kind == "f":
        return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
    return False


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

    def __post_init__(self):
        self.draws = {str(k): np.asarray(v) for k, v in self.draws.items()}
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
                       kind=self.kind, probs=tuple(probs))

    # -- files
    def to_csv(self, path) -> None:
        _atomic_write(path, _csv_lines(self))

    def to_json(self, path) -> None:
        _atomic_write(path, [json.dumps(_json_doc(self), default=_json_default), "\n"])

    def save(self, path) -> None:
        """Write ``path`` as CSV or JSON, chosen by its extension."""
        {".csv": self.to_csv, ".json": self.to_json}[_format_of(path)](path)


def load(path) -> Posterior:
    """Read a file written by :meth:`Posterior.to_csv` / :meth:`Posterior.to_json`."""
    fmt = _format_of(path)
    with open(path, encoding="utf-8", newline="") as f:
        return _read_csv(f, str(path)) if fmt == ".csv" else _read_json(f, str(path))


def _format_of(path) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in _FORMATS:
        raise ValueError(f"cannot tell the file format of {os.fspath(path)!r}: "
                         f"use a name ending in .csv or .json")
    return ext


# --------------------------------------------------------------------------- atomic write
def _atomic_write(path, chunks) -> None:
    """Write the text ``chunks`` to ``path`` via a temp file + os.replace."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- JSON helpers
def _json_default(obj):
    """numpy values as their Python equivalents; anything else unknown as its str()."""
    return obj.tolist() if isinstance(obj, (np.ndarray, np.generic)) else str(obj)


def _restore_meta(meta: dict) -> dict:
    meta = dict(meta)
    dims = meta.get("dims")
    if isinstance(dims, dict):
        meta["dims"] = {k: tuple(v) if isinstance(v, list) else v for k, v in dims.items()}
    return meta


def _json_doc(post: Posterior) -> dict:
    def _schema(arrays: dict) -> dict:
        return {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}

    return {
        "format": "ppl-posterior", "version": 1,
        "kind": post.kind, "completed": post.completed,
        "num_chains": post.num_chains, "num_draws": post.num_draws,
        "draws": {k: v.tolist() for k, v in post.draws.items()},
        "stats": {k: v.tolist() for k, v in post.stats.items()},
        "schema": {"draws": _schema(post.draws), "stats": _schema(post.stats)},
        "timings": post.timings, "meta": post.meta,
    }


def _read_json(f, where: str) -> Posterior:
    try:
        doc = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not a valid ppl JSON file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("draws"), dict):
        raise ValueError(f"{where}: not a ppl JSON file (no 'draws' object)")
    schema = doc.get("schema", {})

    def arrays(group: str) -> dict:
        out = {}
        for name, value in doc.get(group, {}).items():
            dtype, shape = schema.get(group, {}).get(name, (None, None))
            arr = np.asarray(value, dtype=dtype)
            out[name] = arr.reshape(shape) if shape is not None else arr
        return out

    return Posterior(draws=arrays("draws"), stats=arrays("stats"),
                     kind=doc.get("kind", "posterior"),
                     completed=bool(doc.get("completed", True)),
                     timings=dict(doc.get("timings", {})),
                     meta=_restore_meta(doc.get("meta", {})))


# --------------------------------------------------------------------------- CSV helpers
def _ordered_stats(stats: dict) -> dict:
    order = [k for k in STAT_NAMES if k in stats] + [k for k in stats if k not in STAT_NAMES]
    return {k: stats[k] for k in order}


def _csv_lines(post: Posterior):
    """Yield the CSV text in chunks."""
    c, d = post.num_chains, post.num_draws
    done = "true" if post.completed else "false"
    yield f"# ppl kind={post.kind} completed={done} chains={c} draws={d}\n"
    empty = {k: [str(v.dtype), list(v.shape[2:])]
             for k, v in {**post.stats, **post.draws}.items() if v.size == 0}
    extra = {"names": list(post.draws), "timings": post.timings, "meta": post.meta,
             "empty": empty}
    yield "# ppl-json " + json.dumps(extra, default=_json_default) + "\n"
    cols = _columns(_ordered_stats(post.stats)) + _columns(post.draws)
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(["chain", "draw"] + [n for n, _ in cols])
    yield header.getvalue()
    values = [np.repeat(np.arange(c), d).tolist(), np.tile(np.arange(d), c).tolist()]
    for name, arr in cols:
        flat = arr.reshape(-1)
        values.append(flat.astype(np.int64).tolist() if _is_int_column(name, flat)
                      else flat.astype(float).tolist())
    batch = []
    for row in zip(*values):
        batch.append(",".join(map(repr, row)))
        if len(batch) >= 1000:
            yield "\n".join(batch) + "\n"
            batch = []
    if batch:
        yield "\n".join(batch) + "\n"


def _parse_header_comment(line: str) -> dict:
    info = {}
    for token in line[len("# ppl "):].split():
        key, _, value = token.partition("=")
        info[key] = value
    return info


def _parse_values(tokens) -> np.ndarray:
    try:
        return np.fromiter(map(int, tokens), dtype=np.int64, count=len(tokens))
    except ValueError:
        return np.fromiter(map(float, tokens), dtype=float, count=len(tokens))


def _read_csv(f, where: str) -> Posterior:
    info, extra, header, rows = {}, {}, None, []
    for lineno, line in enumerate(f, start=1):
        line = line.rstrip("\r\n")
        if header is None:
            if line.startswith("# ppl-json "):
                extra = json.loads(line[len("# ppl-json "):])
            elif line.startswith("# ppl "):
                info = _parse_header_comment(line)
            elif line and not line.startswith("#"):
                header = next(csv.reader([line]))
            continue
        if not line:
            continue
        fields = line.split(",")
        if len(fields) != len(header):
            raise ValueError(f"{where}, line {lineno}: expected {len(header)} fields, "
                             f"found {len(fields)} (truncated or corrupt file?)")
        rows.append(fields)
    if header is None or header[:2] != ["chain", "draw"]:
        raise ValueError(f"{where}: not a ppl CSV file (the header must start with chain,draw)")
    columns = list(zip(*rows)) if rows else [()] * len(header)
    try:
        parsed = [_parse_values(col) for col in columns]
    except ValueError as e:
        raise ValueError(f"{where}: unreadable value ({e})") from None
    chain, draw = parsed[0], parsed[1]
    nc = int(info["chains"]) if "chains" in info else (int(chain.max()) + 1 if rows else 0)
    nd = int(info["draws"]) if "draws" in info else (int(draw.max()) + 1 if rows else 0)
    _check_rows(chain, draw, nc, nd, where)
    arrays = _rebuild(header[2:], parsed[2:], chain, draw, (nc, nd), where)
    for name, (dtype, shape) in extra.get("empty", {}).items():
        arrays[name] = np.empty((nc, nd, *shape), dtype=dtype)
    draws = {k: v for k, v in arrays.items() if not k.endswith("__")}
    order = [k for k in extra.get("names", []) if k in draws]
    draws = {k: draws[k] for k in order + [k for k in draws if k not in order]}
    return Posterior(draws=draws, stats={k: v for k, v in arrays.items() if k.endswith("__")},
                     kind=info.get("kind", "posterior"),
                     completed=info.get("completed", "true").lower() == "true",
                     timings=dict(extra.get("timings", {})),
                     meta=_restore_meta(extra.get("meta", {})))


def _check_rows(chain, draw, nc: int, nd: int, where: str) -> None:
    if chain.size != nc * nd:
        raise ValueError(f"{where}: expected {nc} chains x {nd} draws = {nc * nd} rows, "
                         f"found {chain.size} (truncated or corrupt file?)")
    if chain.size == 0:
        return
    if chain.min() < 0 or draw.min() < 0 or chain.max() >= nc or draw.max() >= nd:
        raise ValueError(f"{where}: chain/draw index out of range")
    if np.unique(chain * nd + draw).size != chain.size:
        raise ValueError(f"{where}: repeated (chain, draw) rows")


def _rebuild(names, values, chain, draw, lead, where: str) -> dict:
    """Group flat columns by variable and put them back into (chains, draws, *shape)."""
    groups: dict[str, list] = {}
    for name, vals in zip(names, values):
        base, idx = parse_column(name)
        groups.setdefault(base, []).append((idx, vals))
    out = {}
    for base, items in groups.items():
        ndims = {len(idx) for idx, _ in items}
        if len(ndims) != 1:
            raise ValueError(f"{where}: columns of {base!r} mix different numbers of indices")
        shape = tuple(max(idx[k] for idx, _ in items) + 1 for k in range(ndims.pop()))
        if len({idx for idx, _ in items}) != len(items) or len(items) != math.prod(shape):
            raise ValueError(f"{where}: columns of {base!r} do not form a full array "
                             f"of shape {shape}")
        dtype = np.int64 if all(v.dtype.kind == "i" for _, v in items) else float
        arr = np.empty(lead + shape, dtype=dtype)
        for idx, vals in items:
            arr[(chain, draw) + idx] = vals
        out[base] = arr
    return out


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
        return f"{self.kind}: {self.num_chains} chains x {self.num_draws} draws"

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
        for key, what in (("ess_bulk", "means and medians"), ("ess_tail", "the 5% and 95% quantiles")):
            names, vals = bad(key, lambda v: v < ESS_MIN)
            if names:
                out.append(f"{key} < {ESS_MIN} for {_names_list(names)} (lowest {min(vals):.0f}): "
                           f"estimates of {what} are unreliable; run more draws or reparameterise")
        if self.divergences > 0:
            s = "" if self.divergences == 1 else "s"
            out.append(f"{self.divergences} divergence{s}: reparameterise (non-centred) "
                       "or raise target_accept")
        if not self.completed:
            out.append(f"sampling was interrupted after {self.num_draws} draws per chain; "
                       "these results use only the draws made so far")
        return out
