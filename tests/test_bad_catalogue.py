"""The golden catalogue of bad inputs (like stanc3's bad-program tests): tests/bad/NAME.gm, an
optional data file NAME.json (or NAME.<ext>), and NAME.expected holding the exact stderr of
`ppl check NAME.gm [--data NAME.json]`, run with tests/bad as the working directory so paths
print relative. A first line `# command: sample --chains 1 ...` runs that command instead
(the model and data paths are inserted after the command's name).

Every case must exit with status 2 and print `file:line:col: error: message`, the source line
with a caret, a hint where one exists, and never a traceback.

To regenerate the .expected files after changing a message, run

    PPL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_bad_catalogue.py

and read the diff (`git diff tests/bad`) before committing: every changed message should be
at least as clear as the one it replaces.
"""
import os
import re

import pytest

from ppl.cli import main
from ppl.errors import ModelError
from ppl.parse_errors import check_examples
from ppl.parser import _lark, parse

BAD = os.path.join(os.path.dirname(__file__), "bad")
UPDATE = os.environ.get("PPL_UPDATE_GOLDEN") == "1"
CASES = sorted(f[:-3] for f in os.listdir(BAD) if f.endswith(".gm"))
HEAD = re.compile(r"^(?P<file>[\w.]+):(?P<line>\d+):(?P<col>\d+): error: \S")
# Errors about a whole file have no line; the others here are known gaps (reported).
UNLOCATED = {
    "data_file_extension": "the file as a whole is refused",
    "data_unused_key_strict": "gap: the key could be located in the data file",
}


def _argv(name):
    with open(os.path.join(BAD, name + ".gm"), encoding="utf-8") as fh:
        first = fh.readline()
    command, extra = "check", []
    if first.startswith("# command:"):
        command, *extra = first[len("# command:"):].split()
    data = sorted(f for f in os.listdir(BAD)
                  if f.startswith(name + ".") and f[len(name) + 1:] not in ("gm", "expected"))
    argv = [command, name + ".gm"]
    if data:
        argv += ["--data", data[0]]
    return argv + extra


def test_catalogue_is_large():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, monkeypatch, capsys):
    monkeypatch.chdir(BAD)
    code = main(_argv(name))
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, f"exit status {code}\n{err}"
    assert "Traceback" not in err
    lines = err.splitlines()
    head = next(line for line in lines if not line.startswith("warning: "))
    if name in UNLOCATED:
        assert re.match(rf"^{name}\.\w+: error: \S", head), head
    else:
        m = HEAD.match(head)
        assert m, f"no file:line:col in the first line: {head!r}"
        assert m["file"].startswith(name + "."), head
        carets = [line for line in lines if line.strip().startswith("^")]
        assert len(carets) == 1, err
    expected_path = os.path.join(BAD, name + ".expected")
    if UPDATE:
        with open(expected_path, "w", encoding="utf-8") as fh:
            fh.write(err)
        return
    assert os.path.exists(expected_path), f"no {name}.expected: run with PPL_UPDATE_GOLDEN=1 to create it"
    with open(expected_path, encoding="utf-8") as fh:
        assert err == fh.read()


def test_every_expected_file_has_a_model():
    stale = [f for f in os.listdir(BAD) if f.endswith(".expected") and f[:-9] not in CASES]
    assert not stale


def test_syntax_error_examples_fail_with_their_own_message():
    """Each example in ppl/grammar/syntax_errors.py is a syntax error explained by its entry."""
    from ppl.grammar.syntax_errors import SYNTAX_ERRORS
    assert check_examples(_lark().parse) == []
    for (message, _hint), examples in SYNTAX_ERRORS.items():
        fixed = message.split("{")[0]       # the text before any placeholder
        for example in examples:
            with pytest.raises(ModelError) as info:
                parse(example)
            assert fixed in info.value.message, (example, info.value.message, message)
