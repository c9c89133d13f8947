"""Evaluate a GM expression with jax.numpy in an environment of values.

One interpreter serves every stage: the concrete pass over data (transformed data, index
checks), the abstract pass that infers shapes (under jax.eval_shape), and the traced log
density and samplers. Errors are raised as ModelError at the sub-expression that caused them.
"""
from __future__ import annotations

import contextlib
import math
import operator
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import ast as A
from .distributions import DISTRIBUTIONS
from .errors import ModelError, did_you_mean
from .functions import FUNCTIONS, as_numpy, is_numpy

_DENSITY_SUFFIXES = ("_lpdf", "_lpmf", "_lcdf", "_lccdf")
MAX_SIZE = 100_000_000      # elements in an array a model builds (zeros, ones, rep, identity, ...)
_AXIS_FUNCTIONS = ("sum", "mean", "sd", "variance", "prod", "min", "max", "log_sum_exp")  # static arg = axis


def is_concrete(v) -> bool:
    return not isinstance(v, jax.core.Tracer)


def staged_shape(fn, *args):
    """The shape and dtype of ``fn(*args)``, traced and never run: inside the shape pass (which
    evaluates what the data alone determine at once, ``jax.ensure_compile_time_eval``) every
    operation on constants would otherwise run now, each an XLA compilation in a fresh process."""
    def staged(*a):
        with _no_eager_constants():
            return fn(*a)
    return jax.eval_shape(staged, *args)


def _staged_if_traced(*values):
    """An operation on a traced value is staged whole: the constants it makes inside (masks,
    converted operands) are not computed at once, which in the shape pass would be an XLA
    compilation each."""
    if all(is_concrete(v) for v in values):
        return contextlib.nullcontext()
    return _no_eager_constants()


def _no_eager_constants():
    from jax._src import config
    state = getattr(config, "eager_constant_folding", None)   # what ensure_compile_time_eval sets
    return state(False) if state is not None else contextlib.nullcontext()


def shape_of(v) -> tuple:
    return tuple(np.shape(v))


def _is_int_dtype(v) -> bool:
    return jnp.issubdtype(jnp.result_type(v), jnp.integer) or jnp.issubdtype(jnp.result_type(v), jnp.bool_)


def static_int(v, what: str, span) -> int:
    """A value that must be known before sampling (a size, a slice bound, an axis)."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if is_concrete(v) and np.ndim(v) == 0 and _is_int_dtype(v):
        return int(v)
    if not is_concrete(v):
        raise ModelError(f"{what} must be known from the data, not from a parameter", span,
                         hint="use an `int` data value or a dimension name")
    raise ModelError(f"{what} must be an integer, got {np.asarray(v).dtype} of shape {shape_of(v)}", span)


def _power(a, b):
    if _is_int_dtype(a) and not (isinstance(b, int) and b >= 0):
        a = jnp.asarray(a, dtype=float)
    return jnp.power(a, b)


def _as_int(f):
    return lambda a, b: f(a, b).astype(int)


_BINARY = {
    "+": jnp.add, "-": jnp.subtract, "*": jnp.multiply, "/": jnp.true_divide, "%": jnp.remainder,
    "^": _power, "@": jnp.matmul,
    "==": _as_int(jnp.equal), "!=": _as_int(jnp.not_equal), "<": _as_int(jnp.less),
    ">": _as_int(jnp.greater), "<=": _as_int(jnp.less_equal), ">=": _as_int(jnp.greater_equal),
    "&&": _as_int(jnp.logical_and), "||": _as_int(jnp.logical_or),
}
_PY_BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul}

# What the data alone determine (transformed data, in the shape pass and at binding) is computed
# with numpy when every operand is a numpy value: in a fresh process each eager jax.numpy
# operation is an XLA compilation (10-40 ms apiece; a model's `log(earn) / log(10)` was 12 of them).
def _np_int(f):
    return lambda a, b: f(a, b).astype(int)


def _np_spread(f):
    def spread(x, axis=None):     # the n - 1 divisor; one observation gives 0 (functions._spread)
        n = np.size(x) if axis is None else np.shape(x)[axis]
        return f(x, axis=axis) * 0 if n == 1 else f(x, axis=axis, ddof=1)
    return spread


_NUMPY_BINARY = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
    "==": _np_int(np.equal), "!=": _np_int(np.not_equal), "<": _np_int(np.less), ">": _np_int(np.greater),
    "<=": _np_int(np.less_equal), ">=": _np_int(np.greater_equal)}
_NUMPY_FUNCTIONS = {
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt, "square": np.square,
    "abs": np.abs, "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh, "floor": np.floor,
    "ceil": np.ceil, "fmin": np.fmin, "fmax": np.fmax, "sum": np.sum, "mean": np.mean,
    "sd": _np_spread(np.std), "variance": _np_spread(np.var)}
_NUMPY_FLOAT_FUNCTIONS = frozenset(_NUMPY_FUNCTIONS) - {"abs", "square", "sum"}   # integer data become floats


def _all_numpy(values) -> bool:
    return all(map(is_numpy, values))


def _numpy(fn, *args, floats: bool = False):
    """``fn(*args)`` in numpy, in the dtype jax.numpy would give (float32 data stay float32)."""
    if floats:      # integer arrays (not a static axis) as floats
        args = tuple(a.astype(float) if isinstance(a, (np.ndarray, np.generic)) and _is_int_dtype(a) else a
                     for a in args)
    with np.errstate(all="ignore"):         # as jax.numpy: nan and inf, no warnings
        return as_numpy(fn(*args))


def _take_one(base, key: list, axis: int, checked: bool):
    """``base[key]`` where ``key[axis]`` is the one index array and the other keys are ints and
    slices, through ``jnp.take``, which stages the gather with a numpy base or known indices as
    constants: ``base[key]`` would first convert the base, or wrap the known indices' negative
    values, with eager operations, each an XLA compilation in the shape pass (0.02 s apiece in a
    fresh process). ``checked``: the indices are known and in range (``clip`` then changes
    nothing); otherwise ``take``'s default is ``base[key]``'s (negative indices count from the
    end, out of range gives NaN)."""
    basic = tuple(slice(None) if i == axis else k for i, k in enumerate(key))
    kept = axis - sum(isinstance(k, int) for k in key[:axis])
    sub = base[basic] if isinstance(base, np.ndarray) else jnp.asarray(base)[basic]
    return jnp.take(sub, key[axis], axis=kept, mode="clip" if checked else None)


class Evaluator:
    """Evaluates expressions; ``env`` maps names to values (arrays, Python ints).

    ``functions`` holds the model's `fn` definitions (modules.UserFunction); ``probe`` maps
    loop variables to a concrete value, used to find the fixed length of a slice whose bounds
    move with the loop index (`y[t:t + K]`)."""

    def __init__(self, env: dict, functions: Optional[dict] = None, probe: Optional[dict] = None):
        self.env = env
        self.functions = functions or {}
        self.probe = probe or {}

    def __call__(self, e) -> Any:
        method = getattr(self, "_" + type(e).__name__)
        return method(e)

    # ---- leaves
    def _Num(self, e: A.Num):
        return e.value

    def _Name(self, e: A.Name):
        try:
            return self.env[e.id]
        except KeyError:
            raise ModelError(f"`{e.id}` has no value here", e.span) from None

    # ---- operators
    def _Unary(self, e: A.Unary):
        x = self(e.operand)
        if e.op == "-":
            return -x if isinstance(x, int) else _numpy(np.negative, x) if _all_numpy([x]) else jnp.negative(x)
        if e.op == "+":
            return x
        return jnp.logical_not(x).astype(int)

    def _Binary(self, e: A.Binary):
        a, b = self(e.left), self(e.right)
        if isinstance(a, int) and isinstance(b, int) and e.op in _PY_BINARY:
            return _PY_BINARY[e.op](a, b)            # static integer arithmetic stays static
        if e.op == "@" and (np.ndim(a) == 0 or np.ndim(b) == 0):
            raise ModelError("`@` is a matrix product; use `*` for a scalar", e.span)
        try:
            if e.op in _NUMPY_BINARY and _all_numpy([a, b]):
                return _numpy(_NUMPY_BINARY[e.op], a, b, floats=e.op == "/")
            with _staged_if_traced(a, b):
                return _BINARY[e.op](a, b)
        except (TypeError, ValueError) as err:
            raise ModelError(f"cannot apply `{e.op}` to shapes {shape_of(a)} and {shape_of(b)}", e.span,
                             hint=_shape_hint(e.op, err)) from None

    def _Transpose(self, e: A.Transpose):
        x = self(e.operand)
        if np.ndim(x) < 2:
            return x
        return np.swapaxes(x, -1, -2) if _all_numpy([x]) else jnp.swapaxes(x, -1, -2)

    def _IfElse(self, e: A.IfElse):
        c, a, b = self(e.cond), self(e.then), self(e.other)
        if is_concrete(c) and np.ndim(c) == 0:
            return a if bool(c) else b
        try:
            return jnp.where(jnp.asarray(c) != 0, a, b)
        except (TypeError, ValueError):
            raise ModelError(f"if-then-else branches and condition do not broadcast: {shape_of(c)}, "
                             f"{shape_of(a)}, {shape_of(b)}", e.span) from None

    def _ArrayLit(self, e: A.ArrayLit):
        items = [self(i) for i in e.items]
        if not items:
            raise ModelError("an empty array literal has no shape; use `zeros(0)`", e.span)
        try:
            if _all_numpy(items):
                return _numpy(lambda *xs: np.stack(np.broadcast_arrays(*xs)), *items)
            return jnp.stack(jnp.broadcast_arrays(*[jnp.asarray(i) for i in items]))
        except (TypeError, ValueError):
            raise ModelError("the items of an array literal must have the same shape, got "
                             + ", ".join(str(shape_of(i)) for i in items), e.span) from None

    # ---- indexing
    def _Index(self, e: A.Index):
        base = self(e.base)
        ndim = np.ndim(base)
        if len(e.indices) > ndim:
            raise ModelError(f"{len(e.indices)} indices given but the value has {ndim} "
                             f"dimension{'s' if ndim != 1 else ''} (shape {shape_of(base)})", e.span)
        key, checked = [], True
        for axis, idx in enumerate(e.indices):
            size = np.shape(base)[axis]
            if isinstance(idx, A.Slice):
                lo_v = 0 if idx.lower is None else self(idx.lower)
                hi_v = size if idx.upper is None else self(idx.upper)
                if not (is_concrete(lo_v) and is_concrete(hi_v)):
                    return self._moving_slice(e, base, axis, idx, lo_v, size)
                lo = static_int(lo_v, "a slice bound", idx.span)
                hi = static_int(hi_v, "a slice bound", idx.span)
                if not (0 <= lo <= hi <= size):
                    raise ModelError(f"slice {lo}:{hi} is out of range for an axis of length {size}", idx.span)
                key.append(slice(lo, hi))
                continue
            v = self(idx)
            if not _is_int_dtype(v) and not isinstance(v, int):
                raise ModelError("an index must be an integer (indices are 0-based)", _span(idx),
                                 hint="declare index data as `int`, e.g. `data g: int[N]`")
            if is_concrete(v):
                arr = np.asarray(v)
                check_index_range(arr, size, _span(idx))
                key.append(int(arr) if arr.ndim == 0 else arr)
            else:
                key.append(v)
                checked = False
        arrays = [i for i, k in enumerate(key) if not isinstance(k, (int, slice))]
        if checked and is_concrete(base):       # data only: numpy indexes it, nothing to compile
            return np.asarray(base)[tuple(key)]
        if len(arrays) == 1 and (checked or isinstance(base, np.ndarray)):
            return _take_one(base, key, arrays[0], checked)
        with _staged_if_traced(base, *key):
            return jnp.asarray(base)[tuple(key)]

    def _moving_slice(self, e, base, axis, idx, lo, size):
        """`x[t:t + K]` inside a loop: a slice of fixed length at a moving start."""
        if len(e.indices) != axis + 1 or any(not isinstance(i, A.Slice) or i.lower or i.upper
                                             for i in e.indices[:axis]):
            raise ModelError("a slice that moves with a loop index must be the only (or last) index", idx.span)
        if not self.probe or idx.lower is None or idx.upper is None:
            raise ModelError("slice bounds must be known from the data, not from a parameter", idx.span)
        fixed = Evaluator({**self.env, **self.probe}, self.functions)
        length = static_int(fixed(idx.upper), "a slice bound", idx.span) - static_int(fixed(idx.lower),
                                                                                      "a slice bound", idx.span)
        if not 0 <= length <= size:
            raise ModelError(f"a slice of length {length} does not fit an axis of length {size}", idx.span)
        return jax.lax.dynamic_slice_in_dim(jnp.asarray(base), jnp.asarray(lo), length, axis)

    # ---- calls
    def _call_user(self, e: A.Call, uf):
        fn = uf.definition
        if len(e.args) != len(fn.params):
            raise ModelError(f"`{fn.name}` takes {len(fn.params)} argument{'s' if len(fn.params) != 1 else ''} "
                             f"({', '.join(fn.params)}), got {len(e.args)}", e.span)
        local = dict(zip(fn.params, (self(a) for a in e.args)))
        inner = Evaluator(local, self.functions)
        try:
            for stmt in fn.body:
                local[stmt.target.id] = inner(stmt.value)
            return inner(fn.result)
        except ModelError as err:
            raise err.located(uf.file, uf.source) if err.file is None and uf.file else err

    def _Call(self, e: A.Call):
        name = e.func
        if name in self.functions:
            return self._call_user(e, self.functions[name])
        for suffix in _DENSITY_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in DISTRIBUTIONS:
                return self._density_call(e, name[: -len(suffix)], suffix)
        if e.given is not None:
            raise ModelError("`|` is only used in density calls like `normal_lpdf(x | mu, sigma)`", e.span)
        fn = builtin(e)
        n = len(e.args)
        args = [self(a) for a in e.args]
        for i in fn.static_args:
            if i < n:
                args[i] = static_int(args[i], f"argument {i + 1} of `{name}`", _span(e.args[i]))
        sizes = [args[i] for i in fn.static_args if i < n and name not in _AXIS_FUNCTIONS]
        if sizes and (min(sizes) < 0 or math.prod(sizes) > MAX_SIZE):
            raise ModelError(f"`{name}` would build an array of {' x '.join(map(str, sizes))} elements; sizes "
                             f"must be >= 0 and at most {MAX_SIZE:,} elements in all", e.span)
        try:
            if name in _NUMPY_FUNCTIONS and _all_numpy(args):
                return _numpy(_NUMPY_FUNCTIONS[name], *args, floats=name in _NUMPY_FLOAT_FUNCTIONS)
            with _staged_if_traced(*args):
                return fn.fn(*args)
        except ModelError:
            raise
        except (TypeError, ValueError, IndexError) as err:
            raise ModelError(f"`{name}` cannot take arguments of shapes "
                             + ", ".join(str(shape_of(a)) for a in args) + f": {_clean(err)}", e.span) from None

    def _density_call(self, e: A.Call, dname: str, suffix: str):
        dist = DISTRIBUTIONS[dname]
        if e.given is None:
            raise ModelError(f"`{e.func}` takes its value before a bar: `{e.func}(x | ...)`", e.span)
        want = "_lpmf" if dist.discrete else "_lpdf"
        if suffix in ("_lpdf", "_lpmf") and suffix != want:
            raise ModelError(f"`{dname}` is {'discrete' if dist.discrete else 'continuous'}; use `{dname}{want}`",
                             e.span)
        check_arity(dist, e.args, e.span, dname)
        x = self(e.given)
        args = [self(a) for a in e.args]
        fn = {"_lpdf": dist.logpdf, "_lpmf": dist.logpdf, "_lcdf": dist.lcdf, "_lccdf": dist.lccdf}[suffix]
        if fn is None:
            raise ModelError(f"`{dname}` has no {suffix[1:]}", e.span)
        try:
            return jnp.sum(fn(x, *args))
        except (TypeError, ValueError) as err:
            raise ModelError(f"`{e.func}` cannot take shapes {shape_of(x)} | "
                             + ", ".join(str(shape_of(a)) for a in args) + f": {_clean(err)}", e.span) from None


def builtin(e: A.Call):
    """The built-in function a call names, with its argument count checked."""
    name = e.func
    fn = FUNCTIONS.get(name)
    if fn is None:
        if name in DISTRIBUTIONS:
            raise ModelError(f"`{name}` is a distribution, not a function", e.span,
                             hint=f"use `x ~ {name}(...)` or `{name}_lpdf(x | ...)`")
        raise ModelError(f"unknown function `{name}`", e.span,
                         hint=did_you_mean(name, list(FUNCTIONS) + [d + "_lpdf" for d in DISTRIBUTIONS]))
    n = len(e.args)
    if not fn.min_args <= n <= fn.max_args:
        want = str(fn.min_args) if fn.min_args == fn.max_args else f"{fn.min_args} to {fn.max_args}"
        raise ModelError(f"`{name}` takes {want} argument{'s' if fn.max_args != 1 else ''}, got {n}", e.span,
                         hint=f"usage: {fn.doc}" if fn.doc else None)
    return fn


def check_arity(dist, args, span, name=None) -> None:
    name = name or dist.name
    if len(args) != len(dist.params):
        raise ModelError(f"`{name}` takes {len(dist.params)} argument{'s' if len(dist.params) != 1 else ''} "
                         f"({', '.join(dist.params)}), got {len(args)}", span,
                         hint=f"usage: {name}({', '.join(dist.params)})")


def _span(e):
    return getattr(e, "span", None)


def check_index_range(arr: np.ndarray, size: int, span) -> None:
    """Raise a ModelError at ``span`` unless every (0-based) index in ``arr`` fits an axis of ``size``."""
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = int(arr.max()) if arr.max() >= size else int(arr.min())
        hint = "indices are 0-based"
        if arr.min() >= 1 and arr.max() == size:
            hint = "indices are 0-based and these look 1-based: subtract 1, e.g. `x[g - 1]`"
        raise ModelError(f"index {bad} is out of range for an axis of length {size}", span, hint=hint)


def _clean(err: Exception) -> str:
    text = str(err).split("\n")[0]
    return text[:200]


def _shape_hint(op, err) -> str:
    if op == "@":
        return "for `A @ B` the last axis of A must match the first axis of B"
    return "shapes combine element-wise like NumPy: equal lengths, or length 1 / scalars"
