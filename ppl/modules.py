"""`fn` definitions and `import`: a model's functions, gathered from the file and from the
modules it imports. `import NAME` resolves only to `stdlib/NAME.gm` (shipped with ppl) or
`NAME.gm` beside the model; paths cannot leave those folders (no `../`, no symlinks out)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from typing import Optional

from . import ast as A
from .errors import ModelError, did_you_mean

RESERVED_FUNCTION_NAMES = ("range", "target", "mixture", "hmm", "truncated")


@dataclass(frozen=True)
class UserFunction:
    """A `fn` definition and the file it came from (for error locations)."""

    definition: A.FnDef
    file: Optional[str]
    source: str

    @property
    def name(self):
        return self.definition.name

    @property
    def span(self):
        return self.definition.span


def stdlib_dir() -> str:
    return str(resources.files("ppl.stdlib"))


def available_modules(model_file: Optional[str]) -> list:
    names = set()
    for folder in _folders(model_file):
        try:
            names |= {f[:-3] for f in os.listdir(folder) if f.endswith(".gm")}
        except OSError:
            pass
    return sorted(names)


def _folders(model_file: Optional[str]) -> list:
    folders = [stdlib_dir()]
    if model_file:
        folders.append(os.path.dirname(os.path.abspath(model_file)))
    return folders


def resolve_import(name: str, model_file: Optional[str], span) -> str:
    """The path of module `name`, refusing anything outside the allowed folders."""
    if not name.isidentifier():
        raise ModelError(f"`{name}` is not a module name", span)
    model_dir = os.path.dirname(os.path.abspath(model_file)) if model_file else None
    candidates = [(stdlib_dir(), True)] + ([(model_dir, False)] if model_dir else [])
    for folder, _is_std in candidates:
        path = os.path.join(folder, name + ".gm")
        if not os.path.isfile(path):
            continue
        real, root = os.path.realpath(path), os.path.realpath(folder)
        if os.path.commonpath([real, root]) != root:
            raise ModelError(f"module `{name}` resolves outside its folder ({path} is a link)", span,
                             hint="imports may only read stdlib/ and the model's own folder")
        return path
    hint = did_you_mean(name, available_modules(model_file))
    raise ModelError(f"no module named `{name}`", span,
                     hint=hint or "modules are `stdlib/NAME.gm` or `NAME.gm` beside the model")


def collect_functions(program: A.Program, parse_file) -> dict:
    """All functions visible to a program: its own `fn`s and those of its imports (recursively)."""
    from .functions import FUNCTIONS
    from .distributions import DISTRIBUTIONS
    found: dict = {}
    origin: dict = {}
    visiting: list = []

    def add_from(prog: A.Program, where: str):
        for stmt in prog.statements:
            if isinstance(stmt, A.Import):
                path = resolve_import(stmt.module, prog.file or program.file, stmt.span)
                key = os.path.realpath(path)
                if key in visiting:
                    raise ModelError(f"module `{stmt.module}` imports itself (through "
                                     + " -> ".join(os.path.basename(v) for v in visiting) + ")", stmt.span)
                if key in origin.values():
                    continue
                visiting.append(key)
                origin[stmt.module] = key
                try:
                    with open(path, encoding="utf-8") as fh:
                        text = fh.read()
                    sub = parse_file(text, path)
                    for s in sub.statements:
                        if not isinstance(s, (A.FnDef, A.Import)):
                            raise ModelError("a module may only define functions (`fn`) and import others",
                                             s.span).located(path, text)
                    add_from(sub, path)
                except ModelError as err:
                    raise err.located(path, text)
                finally:
                    visiting.pop()
            elif isinstance(stmt, A.FnDef):
                if stmt.name in FUNCTIONS or stmt.name in DISTRIBUTIONS or stmt.name in RESERVED_FUNCTION_NAMES:
                    raise ModelError(f"`{stmt.name}` is a built-in name; choose another name for this function",
                                     stmt.span).located(prog.file, prog.source)
                if stmt.name in found:
                    prev = found[stmt.name]
                    raise ModelError(f"function `{stmt.name}` is defined twice (first at line {prev.span.line})",
                                     stmt.span).located(prog.file, prog.source)
                found[stmt.name] = UserFunction(stmt, prog.file, prog.source)
                _check_body(stmt, prog)

    try:
        add_from(program, program.file or "<model>")
        _check_recursion(found)
    except ModelError as err:
        raise err.located(program.file, program.source) from None
    return found


def _check_body(fn: A.FnDef, prog: A.Program) -> None:
    """A function sees only its arguments, its own local definitions, and functions."""
    known = set(fn.params)
    if len(known) != len(fn.params):
        raise ModelError(f"function `{fn.name}` has two arguments with the same name", fn.span).located(
            prog.file, prog.source)
    for stmt in fn.body:
        if not isinstance(stmt, A.Assign) or not isinstance(stmt.target, A.Name):
            raise ModelError("a function body holds definitions `name = expr` and ends with `return expr`",
                             stmt.span).located(prog.file, prog.source)
        _check_names(stmt.value, known, fn, prog)
        known.add(stmt.target.id)
    _check_names(fn.result, known, fn, prog)


def _check_names(expr, known, fn, prog):
    for ref in A.free_names(expr):
        if ref.id not in known:
            raise ModelError(f"`{ref.id}` is not defined in function `{fn.name}`", ref.span,
                             hint="a function sees only its arguments and its own definitions; pass it as an argument"
                             ).located(prog.file, prog.source)


def _calls(expr) -> set:
    return {e.func for e in A.walk(expr) if isinstance(e, A.Call)}


def _check_recursion(fns: dict) -> None:
    graph = {}
    for name, uf in fns.items():
        fn = uf.definition
        called = set()
        for stmt in fn.body:
            called |= _calls(stmt.value)
        called |= _calls(fn.result)
        graph[name] = sorted(c for c in called if c in fns)
    state = {}
    for root in fns:
        stack = [(root, iter(graph[root]))]
        path = [root]
        state[root] = 1
        while stack:
            name, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[name] = 2
                stack.pop()
                path.pop()
                continue
            if state.get(nxt) == 1:
                cyc = path[path.index(nxt):] + [nxt]
                raise ModelError("functions cannot be recursive: " + " -> ".join(cyc), fns[nxt].span,
                                 hint="GM functions are inlined; write the computation without recursion")
            if state.get(nxt) is None:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(graph[nxt])))
