"""Reading data files: JSON (Stan's layout: name -> number or nested lists) and .npz (never pickle)."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .errors import DataError, Span


def load_data(path: str) -> dict:
    """Read a data file into a dict of numbers / numpy arrays; DataError on bad input."""
    if not os.path.exists(path):
        raise DataError(f"data file not found: {path}", file=path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        return _load_npz(path)
    if ext not in (".json", ""):
        raise DataError(f"cannot read data from `{ext}` files", file=path, hint="use .json or .npz")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        obj = json.loads(text)      # NaN / Infinity parse, and are reported by the model's checks
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON: {err.msg}", Span(err.lineno, err.colno), file=path, source=text) from None
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


def _locate(text: str, key: str):
    needle = f'"{key}"'
    pos = text.find(needle)
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
        raise DataError(f"cannot read {os.path.basename(path)}: {err}", file=path,
                        hint="object arrays (pickled members) are refused; save plain numeric arrays") from None
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"cannot read {os.path.basename(path)}: not a valid .npz file ({err})", file=path) from None
