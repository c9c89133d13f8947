"""Model text and data files are data, never code: nothing in ppl/ evaluates, executes,
unpickles or hands them to a shell; hostile models and data give ModelErrors and touch no
files; `import` reads only stdlib/ and the model's own folder; data loaders refuse pickles."""
from __future__ import annotations

import ast
import os
import pickle
import subprocess

import numpy as np
import pytest

import ppl
from ppl.cli import main
from ppl.errors import DataError, ModelError

ROOT = os.path.dirname(os.path.dirname(__file__))
PPL = os.path.join(ROOT, "ppl")

# The only process ppl starts: Graphviz's `dot`, with a list argv and no shell.
SUBPROCESS_ALLOWED = {("graphviz.py", "run")}
FORBIDDEN_CALLS = {"eval", "exec", "__import__", "execfile", "input"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
FORBIDDEN_ATTRS = {("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execve"), ("os", "execl"),
                   ("os", "execlp"), ("os", "execvp"), ("os", "spawnl"), ("os", "spawnv"), ("os", "startfile"),
                   ("pickle", "load"), ("pickle", "loads"), ("yaml", "load"), ("pd", "read_pickle"),
                   ("pandas", "read_pickle"), ("importlib", "import_module"), ("runpy", "run_path"),
                   ("runpy", "run_module"), ("builtins", "eval"), ("builtins", "exec")}


def _sources():
    for folder, _dirs, files in os.walk(PPL):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                with open(path, encoding="utf-8") as fh:
                    yield os.path.relpath(path, PPL), fh.read()


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    return "?"


def _problems(rel: str, text: str) -> list:
    out = []
    tree = ast.parse(text, filename=rel)
    base = os.path.basename(rel)
    for node in ast.walk(tree):
        where = f"ppl/{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                                                   else [])
            for n in names:
                if n.split(".")[0] in FORBIDDEN_MODULES:
                    out.append(f"{where}: imports {n}")
                if n.split(".")[0] == "subprocess" and base != "graphviz.py":
                    out.append(f"{where}: imports subprocess")
        if not isinstance(node, ast.Call):
            continue
        func = _dotted(node.func)
        if isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            out.append(f"{where}: calls {node.func.id}()")
        parts = func.split(".")
        if len(parts) >= 2 and (parts[-2], parts[-1]) in FORBIDDEN_ATTRS:
            out.append(f"{where}: calls {func}()")
        if parts[0] == "subprocess" and (base, parts[-1]) not in SUBPROCESS_ALLOWED:
            out.append(f"{where}: calls {func}()")
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                out.append(f"{where}: passes shell={ast.unparse(kw.value)}")
            if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                out.append(f"{where}: passes allow_pickle={ast.unparse(kw.value)}")
        if parts[-1] == "load" and parts[0] in ("np", "numpy"):
            if not any(kw.arg == "allow_pickle" for kw in node.keywords):
                out.append(f"{where}: np.load without allow_pickle=False")
        if parts[0] == "subprocess" and node.args and not isinstance(node.args[0], (ast.List, ast.Tuple)):
            out.append(f"{where}: subprocess argv is not a list")
    return out


def test_source_never_evaluates_executes_or_unpickles():
    problems = []
    for rel, text in _sources():
        problems += _problems(rel, text)
    assert not problems, "\n".join(problems)


def test_the_scanner_finds_what_it_looks_for():
    bad = ("import pickle\nimport subprocess\nx = eval('1')\nexec('y = 2')\nos.system('ls')\n"
           "subprocess.run('ls', shell=True)\nnp.load('f.npz')\nm = __import__('os')\n")
    found = "\n".join(_problems("x.py", bad))
    for what in ("imports pickle", "imports subprocess", "calls eval()", "calls exec()", "calls os.system()",
                 "shell=True", "np.load without allow_pickle", "calls __import__()", "argv is not a list"):
        assert what in found, what
    assert _problems("graphviz.py", "import subprocess\nsubprocess.run(['dot', '-Tsvg'], input='x')\n") == []


# ---------------------------------------------------------------------------- hostile models

HOSTILE = [
    "x = __import__('os').system('touch pwned')",
    "x = __import__(os)",
    "x = `touch pwned`",
    "x = $(touch pwned)",
    "mu ~ normal(0, 1); x = eval(mu)",
    "mu ~ normal(0, 1); x = exec(mu)",
    "mu ~ normal(0, 1); x = open(mu)",
    "mu ~ normal(0, 1); x = system(mu)",
    'x = "; touch pwned"',
    "x = '; touch pwned'",
    "import os",
    "import os.path",
    "import subprocess",
    "import ../../etc/passwd",
    "import /etc/passwd",
    "import pwned",
    "import __init__",
    "x = mu.__class__",
    "x = {touch pwned}",
    "x = 1 # $(touch pwned)\ny ~ normal(x, 1)\nz = `",
    "x = \x00",
    "x = \\\ntouch pwned",
    "x = {0}.format(1)",
    "mu ~ normal(0, 1) %s %s %s %n",
]


class Sandbox:
    """An empty working folder; ``freeze()`` after writing a test's inputs, and the folder must
    not change after that (checked at teardown)."""

    def __init__(self, path):
        self.path = path
        self.before = _snapshot(path)

    def __truediv__(self, name):
        return self.path / name

    def freeze(self):
        self.before = _snapshot(self.path)


@pytest.fixture
def no_side_effects(tmp_path, monkeypatch):
    """Run in an empty folder; fail on any attempt to start a process or unpickle."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "canary.txt").write_text("untouched")

    def refuse(*args, **kwargs):
        raise AssertionError(f"ppl tried to run or unpickle something: {args!r}")

    monkeypatch.setattr(os, "system", refuse)
    monkeypatch.setattr(os, "popen", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    box = Sandbox(tmp_path)
    yield box
    assert _snapshot(tmp_path) == box.before, "the folder changed"
    assert not os.path.exists(tmp_path / "pwned")


def _snapshot(folder):
    out = {}
    for root, _dirs, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_model_text_is_a_model_error(text, no_side_effects):
    with pytest.raises(ModelError) as info:
        model = ppl.compile(text)
        model.bind({}, warn=False)
    assert ": error: " in info.value.format()


def test_python_names_in_a_model_are_just_names(no_side_effects):
    model = ppl.compile("fn __import__(x) = x + 1\ndata __builtins__: real\neval = __import__(__builtins__)\n")
    lw = model.bind({"__builtins__": 2.0}, warn=False)
    assert float(lw.binding.arrays["eval"]) == 3.0


@pytest.mark.parametrize("text", HOSTILE[:8] + ["import ../../etc/passwd", "import pwned"])
def test_hostile_model_file_through_the_cli(text, no_side_effects, capsys):
    (no_side_effects / "m.gm").write_text(text + "\n")
    no_side_effects.freeze()
    assert main(["check", "m.gm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("m.gm:") and "Traceback" not in err


# ---------------------------------------------------------------------------- imports stay inside

def test_import_cannot_leave_the_model_folder_cli(tmp_path, capsys, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.gm").write_text("fn f(a) = a\n")
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(outside / "evil.gm", models / "evil.gm")               # a link out of the folder
    (models / "m.gm").write_text("import evil\nmu ~ normal(f(0), 1)\n")
    monkeypatch.chdir(models)
    assert main(["check", "m.gm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("m.gm:1:1: error: module `evil` resolves outside its folder"), err
    assert "hint: imports may only read stdlib/ and the model's own folder" in err
    # the module is not found by walking up: `../outside/evil` is not even a name
    (models / "m2.gm").write_text("import outside\nmu ~ normal(0, 1)\n")
    assert main(["check", "m2.gm"]) == 2
    assert "no module named `outside`" in capsys.readouterr().err
    # a linked folder of models is fine: the module is inside the folder it resolves to
    linked = tmp_path / "linked"
    os.symlink(outside, linked)
    (outside / "m3.gm").write_text("import evil\nmu ~ normal(f(0), 1)\n")
    assert main(["check", str(linked / "m3.gm")]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("text", ["import /etc/passwd", "import ../outside/evil", "import ~/.ssh/id_rsa",
                                  "import C:\\x", "import evil.gm", 'import "evil"'])
def test_import_takes_only_a_name(text):
    with pytest.raises(ModelError, match="unexpected"):
        ppl.compile(text)


# ---------------------------------------------------------------------------- data loaders

def test_npz_with_pickled_members_is_refused(no_side_effects, capsys):
    path = no_side_effects / "d.npz"
    np.savez(path, y=np.array([{"a": 1}, None], dtype=object))
    (no_side_effects / "m.gm").write_text("mu ~ normal(0, 1)\ny ~ normal(mu, 1)\n")
    no_side_effects.freeze()
    with pytest.raises(DataError, match="holds pickled Python objects, which ppl never loads"):
        ppl.load_data(str(path))
    assert main(["check", "m.gm", "--data", "d.npz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("d.npz: error: d.npz holds pickled Python objects"), err
    assert "hint: save plain numeric arrays" in err


def test_pickle_renamed_npz_is_refused(no_side_effects):
    path = no_side_effects / "d.npz"
    path.write_bytes(pickle.dumps({"y": [1.0]}))       # written by the test, never read back as pickle
    no_side_effects.freeze()
    with pytest.raises(DataError, match="pickled Python objects"):
        ppl.load_data(str(path))


@pytest.mark.parametrize("ext", [".pkl", ".pickle", ".npy", ".csv", ".py", ".yaml"])
def test_unknown_data_extensions_are_refused(ext, no_side_effects, capsys):
    path = no_side_effects / f"d{ext}"
    path.write_bytes(b"\x80\x04K\x01.")
    (no_side_effects / "m.gm").write_text("mu ~ normal(0, 1)\n")
    no_side_effects.freeze()
    with pytest.raises(DataError, match=f"cannot read data from `\\{ext}` files"):
        ppl.load_data(str(path))
    assert main(["check", "m.gm", "--data", path.name]) == 2
    assert capsys.readouterr().err.startswith(f"d{ext}: error: cannot read data from")


def test_plain_npz_loads(tmp_path):
    np.savez(tmp_path / "d.npz", y=np.array([1.0, 2.0]), n=np.int64(3))
    data = ppl.load_data(str(tmp_path / "d.npz"))
    assert data["y"].tolist() == [1.0, 2.0] and int(data["n"]) == 3


@pytest.mark.parametrize("content, message", [
    ('{"y": ' + "[" * 50000 + "]" * 50000 + "}", "nested too deeply"),
    ('{"y": 1.0, "y": 2.0}', "`y` appears twice in the data"),
    (b'{"y": 1.0, "\xe9": 2}', "not UTF-8 text"),
    ('{"y": "$(touch pwned)"}', "is a string"),
    ('{"y": [1, 2,]}', "invalid JSON"),
    ("[1, 2]", "must be a JSON object"),
])
def test_hostile_json_is_a_data_error(content, message, no_side_effects):
    path = no_side_effects / "d.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    no_side_effects.freeze()
    with pytest.raises(DataError, match=message):
        ppl.load_data(str(path))


def test_json_with_byte_order_mark_loads(tmp_path):
    (tmp_path / "d.json").write_text('{"y": 1.5}', encoding="utf-8-sig")
    assert ppl.load_data(str(tmp_path / "d.json")) == {"y": 1.5}


# ---------------------------------------------------------------------------- denial of service

@pytest.mark.parametrize("text, message", [
    ("fn f0(x) = x + 1\n" + "".join(f"fn f{i}(x) = f{i - 1}(f{i - 1}(x))\n" for i in range(1, 30))
     + "mu ~ normal(f29(0), 1)\n", "operations when its functions are inlined"),
    ("fn f0(x) = x + 1\n" + "".join(f"fn f{i}(x) = f{i - 1}(x) + 1\n" for i in range(1, 500))
     + "mu ~ normal(f499(0), 1)\n", "levels deep when its functions are inlined"),
    ("x = " + "-(" * 20000 + "1" + ")" * 20000 + "\n", "nested too deeply"),
    ("x = " + "[" * 40 + "1" + "]" * 40 + "\n", "array literal nested more than"),
    ("x = 1" + " + 1" * 5000 + "\n", "nested too deeply"),
    ("mu ~ normal(0, 1e999)\n", "too large"),
    ("k = 123456789012345678901234567890\n", "too large"),
])
def test_resource_exhaustion_is_refused_quickly(text, message):
    import time
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match=message):
        ppl.compile(text).bind({}, warn=False)
    assert time.perf_counter() - t0 < 20
