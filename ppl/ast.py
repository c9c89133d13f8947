"""The abstract syntax of GM: plain dataclasses, each carrying its source span."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from .errors import Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Num:
    value: Union[int, float]
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class Unary:
    op: str           # '-', '+', '!'
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Binary:
    op: str           # + - * / % ^ @ == != < > <= >= && ||
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple
    span: Span
    given: Optional["Expr"] = None   # the x of `D_lpdf(x | args)`


@dataclass(frozen=True)
class Slice:
    lower: Optional["Expr"]
    upper: Optional["Expr"]
    span: Span


@dataclass(frozen=True)
class Index:
    base: "Expr"
    indices: tuple    # of Expr or Slice
    span: Span


@dataclass(frozen=True)
class ArrayLit:
    items: tuple
    span: Span


@dataclass(frozen=True)
class IfElse:
    cond: "Expr"
    then: "Expr"
    other: "Expr"
    span: Span


@dataclass(frozen=True)
class Transpose:
    operand: "Expr"
    span: Span


Expr = Union[Num, Name, Unary, Binary, Call, Index, ArrayLit, IfElse, Transpose]

# ---------------------------------------------------------------- types


@dataclass(frozen=True)
class TypeSpec:
    base: str                        # real, int, simplex, ordered, ...
    lower: Optional[Expr] = None
    upper: Optional[Expr] = None
    shape: tuple = ()                # of Expr (integers or dimension names)
    span: Optional[Span] = None


# ---------------------------------------------------------------- statements


@dataclass(frozen=True)
class DataDecl:
    name: str
    type: TypeSpec
    default: Optional[Expr]
    span: Span


@dataclass(frozen=True)
class Sample:
    target: Expr                     # a Name, or any expression of data (an observation)
    type: Optional[TypeSpec]
    dist: Call
    span: Span


@dataclass(frozen=True)
class Assign:
    target: Expr                     # a Name (or an Index for piecewise definitions)
    type: Optional[TypeSpec]
    value: Expr
    span: Span


@dataclass(frozen=True)
class Declare:
    name: str
    type: TypeSpec
    span: Span


@dataclass(frozen=True)
class TargetIncrement:
    value: Expr
    span: Span


@dataclass(frozen=True)
class FnDef:
    name: str
    params: tuple
    body: tuple                      # statements of a block form (empty for expression form)
    result: Expr
    span: Span


@dataclass(frozen=True)
class Import:
    module: str
    span: Span


@dataclass(frozen=True)
class For:
    var: str
    start: Expr
    stop: Expr
    body: tuple
    span: Span


@dataclass(frozen=True)
class Return:
    value: Expr
    span: Span


Statement = Union[DataDecl, Sample, Assign, Declare, TargetIncrement, FnDef, Import, For, Return]


@dataclass
class Program:
    statements: list
    file: Optional[str] = None
    source: str = ""
    extras: dict = field(default_factory=dict)


def walk(expr):
    """Yield ``expr`` and every sub-expression (pre-order)."""
    stack = [expr]
    while stack:
        e = stack.pop()
        if e is None:
            continue
        yield e
        if isinstance(e, (Unary, Transpose)):
            stack.append(e.operand)
        elif isinstance(e, Binary):
            stack += [e.left, e.right]
        elif isinstance(e, Call):
            stack += list(e.args)
            if e.given is not None:
                stack.append(e.given)
        elif isinstance(e, Index):
            stack.append(e.base)
            for i in e.indices:
                if isinstance(i, Slice):
                    stack += [i.lower, i.upper]
                else:
                    stack.append(i)
        elif isinstance(e, ArrayLit):
            stack += list(e.items)
        elif isinstance(e, IfElse):
            stack += [e.cond, e.then, e.other]


def free_names(expr) -> list:
    """Names an expression refers to, in order of first use (function names excluded)."""
    seen, out = set(), []
    for e in walk(expr):
        if isinstance(e, Name) and e.id not in seen:
            seen.add(e.id)
            out.append(e)
    out.sort(key=lambda n: (n.span.line, n.span.column))
    return out
