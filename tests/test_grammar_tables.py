"""The stored LALR tables (ppl/grammar/gm.tables) are the grammar's, parse exactly as the parser
built from the grammar, and anything stale or unreadable falls back to building it."""
import hashlib
import json
import pathlib

import lark
import pytest

from ppl.grammar import tables
from ppl.parser import _Separators

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted(ROOT.glob("tests/posteriordb/models/*.gm")) + sorted(ROOT.glob("examples/**/*.gm")) + \
    sorted(ROOT.glob("ppl/stdlib/*.gm")) + sorted(ROOT.glob("bench/models/*.gm"))


def test_the_stored_tables_are_current():
    raw = json.loads((ROOT / "ppl" / "grammar" / tables.TABLES).read_text())
    assert raw["grammar_sha256"] == hashlib.sha256(tables.grammar_text().encode()).hexdigest(), \
        "gm.lark changed since gm.tables was written: run `python -m ppl.grammar`"
    if raw["lark"] != lark.__version__:
        pytest.skip(f"gm.tables was written with Lark {raw['lark']}, this is {lark.__version__}: "
                    "the parser is built from the grammar instead (slower start, same parser)")
    assert tables.stored() is not None


def test_stored_tables_parse_like_the_grammar():
    built = tables.build(_Separators())
    loaded = tables.load(_Separators(), fallback=lambda _: pytest.fail("the stored tables did not load"))
    assert len(SOURCES) > 40
    for path in SOURCES:
        text = path.read_text()
        a, b = built.parse(text), loaded.parse(text)
        assert a == b, path
        assert (a.meta.line, a.meta.end_line, a.meta.end_column) == (b.meta.line, b.meta.end_line, b.meta.end_column)
    with pytest.raises(lark.exceptions.UnexpectedInput) as e1:
        built.parse("mu ~ normal(0, 1\n")
    with pytest.raises(lark.exceptions.UnexpectedInput) as e2:
        loaded.parse("mu ~ normal(0, 1\n")
    assert (e1.value.line, e1.value.column) == (e2.value.line, e2.value.column)


@pytest.mark.parametrize("text", ["", "not json {", '{"grammar_sha256": "stale", "lark": "0"}', "[1, 2, 3]",
                                  '{"\\u0000d": 5}'])
def test_stale_or_broken_tables_fall_back_to_the_grammar(text):
    sentinel = object()
    assert tables.load(_Separators(), text=text, fallback=lambda _: sentinel) is sentinel
