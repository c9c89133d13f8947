"""File I/O of results: CSV and JSON (always), NetCDF (``.nc``, through ArviZ when installed).

Column names are 0-based and row-major: ``theta[0]``, ``Sigma[1,2]``; scalars keep
their bare name. Sampler statistics end in ``__`` (Stan's convention), which is how a
CSV file tells them apart from model variables when it is read back.

CSV layout::

    # ppl kind=posterior completed=true chains=4 draws=1000
    # ppl-json {"names": [...], "timings": {...}, "meta": {...}, "empty": {...}}
    chain,draw,lp__,accept_stat__,...,mu,theta[0],theta[1],"Sigma[0,0]",...
    0,0,-7.25,0.93,...

Floats are written with ``repr`` (shortest exact round-trip), integer arrays (and the
integer sampler statistics) as integers. The JSON file also keeps the observed data and
the other data (``observed``, ``constant_data``); the CSV file keeps draws only.

Every write is atomic: the file is written to a temporary file in the same folder and
then ``os.replace``-d over the target, so an interrupted write never leaves half a file.

The readers return the keyword arguments of :class:`ppl.results.Posterior` (this module
does not import it); :func:`ppl.results.load` builds the object.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import uuid

import numpy as np

__all__ = ["STAT_NAMES", "INT_STATS", "FORMATS", "column_names", "parse_column", "columns",
           "format_of", "atomic_write", "temp_path", "csv_lines", "json_doc", "read_csv", "read_json"]

STAT_NAMES = ("lp__", "accept_stat__", "stepsize__", "treedepth__",
              "n_leapfrog__", "divergent__", "energy__")
INT_STATS = ("treedepth__", "n_leapfrog__", "divergent__")
FORMATS = (".csv", ".json", ".nc")
_COLUMN_RE = re.compile(r"^(?P<base>.+?)\[(?P<idx>\d+(?:,\d+)*)\]$")


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


def columns(arrays: dict) -> list[tuple[str, np.ndarray]]:
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


def format_of(path) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"cannot tell the file format of {os.fspath(path)!r}: "
                         f"use a name ending in .csv or .json (or .nc: NetCDF, needs ArviZ)")
    return ext


# --------------------------------------------------------------------------- atomic write
def temp_path(path) -> str:
    """A fresh temporary name next to ``path`` (same folder, so os.replace is atomic)."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{base}.{uuid.uuid4().hex[:12]}.tmp")


def atomic_write(path, chunks) -> None:
    """Write the text ``chunks`` to ``path`` via a temp file + os.replace."""
    path = os.fspath(path)
    tmp = temp_path(path)
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


# --------------------------------------------------------------------------- JSON
def json_default(obj):
    """numpy values as their Python equivalents; anything else unknown as its str()."""
    return obj.tolist() if isinstance(obj, (np.ndarray, np.generic)) else str(obj)


def restore_meta(meta: dict) -> dict:
    meta = dict(meta)
    dims = meta.get("dims")
    if isinstance(dims, dict):
        meta["dims"] = {k: tuple(v) if isinstance(v, list) else v for k, v in dims.items()}
    return meta


def _schema(arrays: dict) -> dict:
    return {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}


def json_doc(post) -> dict:
    observed = getattr(post, "observed", {}) or {}
    constant = getattr(post, "constant_data", {}) or {}
    return {
        "format": "ppl-posterior", "version": 1,
        "kind": post.kind, "completed": post.completed,
        "num_chains": post.num_chains, "num_draws": post.num_draws,
        "draws": {k: v.tolist() for k, v in post.draws.items()},
        "stats": {k: v.tolist() for k, v in post.stats.items()},
        "observed": {k: v.tolist() for k, v in observed.items()},
        "constant_data": {k: v.tolist() for k, v in constant.items()},
        "schema": {"draws": _schema(post.draws), "stats": _schema(post.stats),
                   "observed": _schema(observed), "constant_data": _schema(constant)},
        "timings": post.timings, "meta": post.meta,
    }


def read_json(f, where: str) -> dict:
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

    return dict(draws=arrays("draws"), stats=arrays("stats"),
                kind=doc.get("kind", "posterior"),
                completed=bool(doc.get("completed", True)),
                timings=dict(doc.get("timings", {})),
                meta=restore_meta(doc.get("meta", {})),
                observed=arrays("observed"), constant_data=arrays("constant_data"))


# --------------------------------------------------------------------------- CSV
def ordered_stats(stats: dict) -> dict:
    order = [k for k in STAT_NAMES if k in stats] + [k for k in stats if k not in STAT_NAMES]
    return {k: stats[k] for k in order}


def csv_lines(post):
    """Yield the CSV text in chunks."""
    c, d = post.num_chains, post.num_draws
    done = "true" if post.completed else "false"
    yield f"# ppl kind={post.kind} completed={done} chains={c} draws={d}\n"
    empty = {k: [str(v.dtype), list(v.shape[2:])]
             for k, v in {**post.stats, **post.draws}.items() if v.size == 0}
    extra = {"names": list(post.draws), "timings": post.timings, "meta": post.meta,
             "empty": empty}
    yield "# ppl-json " + json.dumps(extra, default=json_default) + "\n"
    cols = columns(ordered_stats(post.stats)) + columns(post.draws)
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


def read_csv(f, where: str) -> dict:
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
    cols = list(zip(*rows)) if rows else [()] * len(header)
    try:
        parsed = [_parse_values(col) for col in cols]
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
    return dict(draws=draws, stats={k: v for k, v in arrays.items() if k.endswith("__")},
                kind=info.get("kind", "posterior"),
                completed=info.get("completed", "true").lower() == "true",
                timings=dict(extra.get("timings", {})),
                meta=restore_meta(extra.get("meta", {})))


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
