"""The LALR parser of gm.lark, built once and stored beside it (gm.tables).

Building the parser from the grammar costs ~0.12 s in every fresh process (``ppl check``, a
script's first ``ppl.load``); loading the stored tables costs ~0.01 s. gm.tables is JSON (data
only: nothing in it is executed) holding Lark's own serialisation of the parser — its tuples and
integer-keyed dicts written as one-key objects marked "\u0000t" / "\u0000d" — with the SHA-256
of the grammar text it was built from and the Lark version. A grammar edited without
regenerating the tables, another Lark version, or a file that does not load all mean the parser
is built from the grammar as before.

Regenerate after editing gm.lark:  python -m ppl.grammar
"""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Callable, Optional

import lark
from lark import Lark

GRAMMAR = "gm.lark"
TABLES = "gm.tables"
OPTIONS = dict(parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True)


def grammar_text() -> str:
    return resources.files(__package__).joinpath(GRAMMAR).read_text()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build(postlex) -> Lark:
    """The parser built from the grammar text."""
    return Lark(grammar_text(), postlex=postlex, **OPTIONS)


_TUPLE, _DICT = "\u0000t", "\u0000d"


def _encode(x):
    if isinstance(x, tuple):
        return {_TUPLE: [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    if isinstance(x, dict):
        if all(isinstance(k, str) for k in x):
            return {k: _encode(v) for k, v in x.items()}
        return {_DICT: [[_encode(k), _encode(v)] for k, v in x.items()]}
    if x is None or isinstance(x, (str, bool, int, float)):
        return x
    raise TypeError(f"cannot store {type(x).__name__} in the parser tables")


def _decode(obj: dict):
    if len(obj) == 1 and _TUPLE in obj:
        return tuple(obj[_TUPLE])
    if len(obj) == 1 and _DICT in obj:
        return {k: v for k, v in obj[_DICT]}
    return obj


def serialise(parser: Lark) -> str:
    """The stored form of ``parser`` (JSON)."""
    data, memo = parser.memo_serialize([lark.lexer.TerminalDef, lark.grammar.Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k != "postlex"}  # an object: given at load
    doc = {"grammar_sha256": _digest(grammar_text()), "lark": lark.__version__, "data": data, "memo": memo}
    return json.dumps(_encode(doc), separators=(",", ":"))


def stored(text: Optional[str] = None) -> Optional[dict]:
    """The stored tables if they match this grammar and this Lark version, else None."""
    try:
        text = resources.files(__package__).joinpath(TABLES).read_text() if text is None else text
        doc = json.loads(text, object_hook=_decode)
    except (OSError, ValueError, TypeError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("grammar_sha256") != _digest(grammar_text()) \
            or doc.get("lark") != lark.__version__:
        return None
    return doc


def load(postlex, text: Optional[str] = None, fallback: Callable = build) -> Lark:
    """The parser from the stored tables when they are current, else built from the grammar."""
    doc = stored(text)
    if doc is not None:
        try:
            return Lark._load_from_dict(doc["data"], doc["memo"], postlex=postlex)
        except Exception:  # noqa: BLE001 - a table Lark cannot read: build the parser instead
            pass
    return fallback(postlex)


def write() -> str:
    """Rebuild the parser from the grammar and store its tables; returns the file written."""
    from ppl.parser import _Separators

    with resources.as_file(resources.files(__package__).joinpath(TABLES)) as path:
        path.write_text(serialise(build(_Separators())) + "\n", encoding="utf-8")
        return str(path)
