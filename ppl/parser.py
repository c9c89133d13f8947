"""Text -> parse tree (Lark, grammar/gm.lark) -> AST (ppl.ast), with located syntax errors."""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from . import ast as A
from .errors import ModelError, Span
from .grammar import tables as grammar_tables

TYPE_NAMES = ("real", "int", "simplex", "ordered", "positive_ordered", "corr_cholesky", "cov_matrix")
KEYWORDS = ("data", "fn", "import", "for", "in", "if", "then", "else", "return", "target")

# A line ending in one of these continues on the next line.
_CONTINUES = {"PLUS", "MINUS", "MULOP", "POW", "COMPOP", "OROR", "ANDAND", "TILDE", "PLUSEQ",
              "BAR", "COMMA", "EQUAL", "COLON", "LANGLE", "LBRACE", "BANG", "_NL"}
_OPEN = {"LPAR", "LSQB"}
_CLOSE = {"RPAR", "RSQB"}


class _Separators:
    """Post-lexer: statement separators, line continuation, and a type's angle brackets."""

    always_accept = ("_NL", "SEMI", "COMPOP")

    def process(self, stream):
        depth, angle, prev, prev_value = 0, 0, None, None
        for tok in stream:
            kind = tok.type
            if kind == "_NL" and depth > 0:
                continue
            if kind in ("_NL", "SEMI") and depth == 0:
                if prev is None or prev in _CONTINUES:
                    continue
                prev, prev_value = "_NL", "\n"
                yield Token.new_borrow_pos("_NL", "\n", tok)
                continue
            if kind in _OPEN:
                depth += 1
            elif kind in _CLOSE:
                depth = max(depth - 1, 0)
            elif kind == "COMPOP" and tok.value == "<" and prev == "NAME" and prev_value in TYPE_NAMES:
                angle += 1
                tok = Token.new_borrow_pos("LANGLE", "<", tok)
            elif kind == "COMPOP" and tok.value == ">" and angle:
                angle -= 1
                tok = Token.new_borrow_pos("RANGLE", ">", tok)
            prev, prev_value = tok.type, tok.value
            yield tok


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """The LALR parser: from the stored tables (grammar/tables.py) when they match the grammar."""
    return grammar_tables.load(_Separators())


def _span(meta_or_tok) -> Span:
    m = meta_or_tok
    if isinstance(m, Token):
        return Span(m.line, m.column, m.end_line, m.end_column)
    if getattr(m, "empty", False):
        return Span(1, 1)
    return Span(m.line, m.column, m.end_line, m.end_column)


def _tokens(children):
    return [c for c in children if not isinstance(c, Token) or c.type not in ("COLON", "TILDE", "PLUSEQ")]


@v_args(meta=True)
class _ToAst(Transformer):
    # ---- expressions
    def number(self, meta, ch):
        text = str(ch[0])
        value = int(text) if text.isdigit() else float(text)
        if (isinstance(value, int) and value > 2 ** 53) or value == float("inf"):
            raise ModelError(f"the number `{text}` is too large", _span(ch[0]),
                             hint="integers go up to 2^53 and reals up to about 1.8e308"
                             if isinstance(value, int) else "reals go up to about 1.8e308")
        return A.Num(value, _span(ch[0]))

    def name(self, meta, ch):
        tok = _not_keyword(ch[0])
        return A.Name(str(tok), _span(tok))

    def binary(self, meta, ch):
        left, op, right = ch
        return A.Binary(str(op), left, right, _span(op))

    def unary(self, meta, ch):
        op, x = ch
        if str(op) == "-" and isinstance(x, A.Num):
            return A.Num(-x.value, _span(meta))
        return A.Unary(str(op), x, _span(meta))

    def ifelse(self, meta, ch):
        return A.IfElse(ch[0], ch[1], ch[2], _span(meta))

    def transpose(self, meta, ch):
        return A.Transpose(ch[0], _span(meta))

    def array(self, meta, ch):
        return A.ArrayLit(tuple(c for c in ch if c is not None), _span(meta))

    def args(self, meta, ch):
        return (None, tuple(ch))

    def given_args(self, meta, ch):
        return (ch[0], tuple(c for c in ch[2:]))

    def call(self, meta, ch):
        fn, arguments = ch
        if not isinstance(fn, A.Name):
            raise ModelError("only a named function can be called", _span(meta))
        given, args = arguments if arguments is not None else (None, ())
        return A.Call(fn.id, args, _span(meta), given)

    def index(self, meta, ch):
        return A.Index(ch[0], tuple(ch[1:]), _span(meta))

    def slice(self, meta, ch):
        lower, _colon, upper = ch
        return A.Slice(lower, upper, _span(meta))

    # ---- types
    def bound(self, meta, ch):
        return (str(ch[0]), ch[1], _span(ch[0]))

    def shape(self, meta, ch):
        return tuple(ch)

    def type(self, meta, ch):
        name = ch[0]
        bounds = [c for c in ch[1:] if isinstance(c, tuple) and len(c) == 3 and isinstance(c[0], str)]
        shape = ch[-1] if isinstance(ch[-1], tuple) and not (ch[-1] and isinstance(ch[-1][0], str)) else ()
        if str(name) not in TYPE_NAMES:
            from .errors import did_you_mean
            raise ModelError(f"unknown type `{name}`", _span(name),
                             hint=did_you_mean(str(name), TYPE_NAMES) or "types are " + ", ".join(TYPE_NAMES))
        lower = upper = None
        for key, value, span in bounds:
            if key == "lower" and lower is None:
                lower = value
            elif key == "upper" and upper is None:
                upper = value
            else:
                raise ModelError(f"unexpected bound `{key}`; a type takes `lower=` and `upper=` once each", span)
        return A.TypeSpec(str(name), lower, upper, shape or (), _span(meta))

    # ---- statements
    def data_decl(self, meta, ch):
        name, _colon, typ, default = ch
        _not_keyword(name)
        return A.DataDecl(str(name), typ, default, _span(meta))

    def sample_stmt(self, meta, ch):
        target, _colon, typ, _tilde, dist = ch
        if not isinstance(dist, A.Call):
            raise ModelError("the right of `~` must be a distribution, like `normal(0, 1)`", _expr_span(dist))
        return A.Sample(target, typ, dist, _span(meta))

    def assign_stmt(self, meta, ch):
        target, _colon, typ, value = ch
        if not isinstance(target, (A.Name, A.Index)):
            raise ModelError("the left of `=` must be a name (or an element `x[i]`)", _expr_span(target),
                             hint="to observe an expression of data use `~`")
        return A.Assign(target, typ, value, _span(meta))

    def declare_stmt(self, meta, ch):
        target, _colon, typ = ch
        if not isinstance(target, A.Name):
            raise ModelError("only a name can be declared with a type", _expr_span(target))
        return A.Declare(target.id, typ, _span(meta))

    def target_stmt(self, meta, ch):
        return A.TargetIncrement(ch[-1], _span(meta))

    def fn_expr(self, meta, ch):
        name, *params, body = ch
        _not_keyword(name, *params)
        return A.FnDef(str(name), tuple(str(p) for p in params if p is not None), (), body, _span(meta))

    def fn_block(self, meta, ch):
        name, *params, body = ch
        _not_keyword(name, *params)
        stmts = tuple(body)
        returns = [s for s in stmts if isinstance(s, A.Return)]
        if not returns or not isinstance(stmts[-1], A.Return):
            raise ModelError(f"function `{name}` must end with `return EXPR`", _span(meta))
        return A.FnDef(str(name), tuple(str(p) for p in params if p is not None), stmts[:-1],
                       stmts[-1].value, _span(meta))

    def import_stmt(self, meta, ch):
        return A.Import(str(ch[0]), _span(meta))

    def for_stmt(self, meta, ch):
        var, rng, start, stop, body = ch
        _not_keyword(var)
        if str(rng) != "range":
            raise ModelError(f"a loop runs over `range(a, b)`, not `{rng}(...)`", _span(rng))
        return A.For(str(var), start, stop, tuple(body), _span(meta))

    def return_stmt(self, meta, ch):
        return A.Return(ch[0], _span(meta))

    def block(self, meta, ch):
        return [c for c in ch if c is not None]

    def start(self, meta, ch):
        return [c for c in ch if c is not None]


def _not_keyword(tok, *more):
    for t in (tok, *more):
        if t is not None and str(t) in KEYWORDS:
            raise ModelError(f"`{t}` is a keyword and cannot be used as a name", _span(t),
                             hint=f"rename it, e.g. `{t}_`")
    return tok


def _expr_span(e) -> Span:
    return getattr(e, "span", None) or Span(1, 1)


def _syntax_error(err: UnexpectedInput, text: str) -> ModelError:
    from .parse_errors import syntax_error      # messages for common mistakes: grammar/syntax_errors.py
    return syntax_error(err, text, _lark().parse)


def parse(text: str, file: Optional[str] = None) -> A.Program:
    """Parse GM source text into a Program; raises ModelError with a location on bad input."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text).located(file, text) from None
    except RecursionError:
        raise ModelError("the model is nested too deeply to parse", Span(1, 1), hint=_TOO_DEEP).located(file, text) from None
    try:
        statements = _ToAst().transform(tree)
    except VisitError as err:
        inner = err.orig_exc
        if isinstance(inner, ModelError):
            raise inner.located(file, text) from None
        if isinstance(inner, RecursionError):
            raise ModelError("the model is nested too deeply to parse", Span(1, 1), hint=_TOO_DEEP).located(file, text) from None
        raise
    except RecursionError:
        raise ModelError("the model is nested too deeply to parse", Span(1, 1), hint=_TOO_DEEP).located(file, text) from None
    _check_nesting(statements, file, text)
    return A.Program(statements, file=file, source=text)


_TOO_DEEP = "split deep expressions into named intermediate definitions"

# Later passes (graph, evaluation, tracing) recurse over expressions: keep them far from
# Python's recursion limit. An array literal's nesting is its rank (NumPy allows 64).
MAX_NESTING = 100
MAX_ARRAY_RANK = 32


def _check_nesting(statements, file, text) -> None:
    stack = [(s, 1) for s in statements]
    while stack:
        node, depth = stack.pop()
        if node is None or isinstance(node, (str, int, float, Span)):
            continue
        if depth > MAX_NESTING:
            span = getattr(node, "span", None) or Span(1, 1)
            raise ModelError(f"this is nested too deeply (more than {MAX_NESTING} levels)", span,
                             hint=_TOO_DEEP).located(file, text)
        if isinstance(node, A.ArrayLit):
            rank, inner = 1, node
            while inner.items and isinstance(inner.items[0], A.ArrayLit):
                rank, inner = rank + 1, inner.items[0]
                if rank > MAX_ARRAY_RANK:
                    raise ModelError(f"an array literal nested more than {MAX_ARRAY_RANK} deep", node.span,
                                     hint=f"arrays have at most {MAX_ARRAY_RANK} axes").located(file, text)
        if isinstance(node, (tuple, list)):
            stack += [(c, depth) for c in node]
        elif hasattr(node, "__dataclass_fields__"):
            stack += [(getattr(node, f), depth + 1) for f in node.__dataclass_fields__ if f != "span"]
