"""Reading data files: JSON (Stan's layout: name -> number or nested lists) and .npz (never pickle)."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .errors import DataError, Span


MAX_JSON_DEPTH = 65
"""The object holding the data, then at most numpy's 64 dimensions of nested lists."""


def _depth_exceeds(obj, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels deep (a walk without recursion)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def load_data(path: str) -> dict:
    """Read a data file into a dict of numbers / numpy arrays; DataError on bad input."""
    if not os.path.exists(path):
        raise DataError(f"data file not found: {path}", file=path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        return _load_npz(path)
    if ext not in (".json", ""):
        raise DataError(f"cannot read data from `{ext}` files", file=path, hint="use .json or .npz"
                        + (" (ppl never loads pickles: they can run code)" if ext in (".pkl", ".pickle") else ""))
    if os.path.isdir(path):
        raise DataError("the data path is a folder, not a file", file=path)
    try:
        with open(path, encoding="utf-8-sig") as fh:      # -sig: a byte-order mark is allowed
            text = fh.read()
    except UnicodeDecodeError as err:
        raw = err.object
        line = raw.count(b"\n", 0, err.start) + 1
        col = len(raw[raw.rfind(b"\n", 0, err.start) + 1:err.start].decode("utf-8", "replace")) + 1
        raise DataError(f"the data file is not UTF-8 text: byte 0x{raw[err.start]:02x} cannot be read", Span(line, col),
                        file=path, source=raw.decode("utf-8", "replace"),
                        hint="save the file as UTF-8") from None
    except OSError as err:
        raise DataError(f"cannot read the data file: {err.strerror}", file=path) from None
    try:
        # NaN / Infinity parse, and are reported by the model's checks
        obj = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as dup:
        raise DataError(f"`{dup.key}` appears twice in the data", _locate(text, dup.key, last=True), file=path,
                        source=text, hint="JSON readers keep one of the two silently; remove the other") from None
    except RecursionError:
        raise DataError("the JSON is nested too deeply", Span(1, 1), file=path, source=text) from None
    except json.JSONDecodeError as err:
        before = text[:err.pos].rstrip()
        hint = "JSON allows no comma after the last item" if before.endswith(",") and \
            text[err.pos:err.pos + 1] in ("]", "}") else None
        raise DataError(f"invalid JSON: {err.msg}", Span(err.lineno, err.colno), file=path, source=text,
                        hint=hint) from None
    if _depth_exceeds(obj, MAX_JSON_DEPTH):     # Python 3.13's parser no longer raises RecursionError
        raise DataError("the JSON is nested too deeply", Span(1, 1), file=path, source=text)
    if not isinstance(obj, dict):
        raise DataError("the data must be a JSON object mapping names to values", Span(1, 1), file=path,
                        source=text)
    out = {}
    for key, value in obj.items():
        if isinstance(value, str):
            raise DataError(f"data `{key}` is a string; values must be numbers or nested lists of numbers",
                            _locate(text, key), file=path, source=text)
        if value is None:
            raise DataError(f"data `{key}` is null (a missing value)", _locate(text, key), file=path, source=text,
                            hint="remove or impute missing values before fitting")
        if isinstance(value, dict):
            continue   # nested objects (metadata) are not model data
        out[key] = value
    return out


class _DuplicateKey(Exception):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _locate(text: str, key: str, last: bool = False):
    needle = f'"{key}"'
    pos = text.rfind(needle) if last else text.find(needle)
    if pos < 0:
        return None
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return Span(line, col, line, col + len(needle))


def _load_npz(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as err:
        if "pickle" in str(err).lower() or "object arrays" in str(err).lower():
            raise DataError(f"{os.path.basename(path)} holds pickled Python objects, which ppl never loads "
                            "(unpickling can run code)", file=path,
                            hint="save plain numeric arrays, e.g. np.savez(path, y=np.asarray(y, dtype=float))"
                            ) from None
        raise DataError(f"cannot read {os.path.basename(path)}: {err}", file=path) from None
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"cannot read {os.path.basename(path)}: not a valid .npz file ({err})", file=path) from None
