"""Text -> parse tree (Lark, grammar/gm.lark) -> AST (ppl.ast), with located syntax errors."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Optional

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast as A
from .errors import ModelError, Span

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
    text = resources.files("ppl.grammar").joinpath("gm.lark").read_text()
    return Lark(text, parser="lalr", lexer="contextual", postlex=_Separators(),
                propagate_positions=True, maybe_placeholders=True)


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
        return A.Num(value, _span(ch[0]))

    def name(self, meta, ch):
        tok = ch[0]
        if str(tok) in KEYWORDS:
            raise ModelError(f"`{tok}` is a keyword and cannot be used as a name", _span(tok))
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
        return A.FnDef(str(name), tuple(str(p) for p in params if p is not None), (), body, _span(meta))

    def fn_block(self, meta, ch):
        name, *params, body = ch
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
        if str(rng) != "range":
            raise ModelError(f"a loop runs over `range(a, b)`, not `{rng}(...)`", _span(rng))
        return A.For(str(var), start, stop, tuple(body), _span(meta))

    def return_stmt(self, meta, ch):
        return A.Return(ch[0], _span(meta))

    def block(self, meta, ch):
        return [c for c in ch if c is not None]

    def start(self, meta, ch):
        return [c for c in ch if c is not None]


def _expr_span(e) -> Span:
    return getattr(e, "span", None) or Span(1, 1)


_TOKEN_TEXT = {
    "_NL": "end of line", "$END": "end of file", "NAME": "a name", "NUMBER": "a number",
    "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "LBRACE": "`{`", "RBRACE": "`}`",
    "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`", "TILDE": "`~`", "PLUSEQ": "`+=`", "SEMI": "`;`",
    "PLUS": "`+`", "MINUS": "`-`", "MULOP": "an operator", "POW": "`^`", "COMPOP": "a comparison",
    "LANGLE": "`<`", "RANGLE": "`>`", "BAR": "`|`", "QUOTE": "`'`", "BANG": "`!`",
}


def _describe(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "end of line"
    return f"`{tok.value}`"


def _syntax_error(err: UnexpectedInput, text: str) -> ModelError:
    line, col = getattr(err, "line", 1) or 1, getattr(err, "column", 1) or 1
    if isinstance(err, UnexpectedCharacters):
        ch = text.splitlines()[line - 1][col - 1] if line - 1 < len(text.splitlines()) else "?"
        hint = None
        if ch == '"' or ch == "'":
            hint = "GM has no strings"
        return ModelError(f"unexpected character `{ch}`", Span(line, col), hint=hint)
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            lines = text.rstrip().splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
        expected = sorted({_TOKEN_TEXT.get(t, f"`{t.lower()}`" if t.lower() in KEYWORDS else t)
                           for t in err.expected if not t.startswith("__")})
        msg = f"unexpected {_describe(tok)}"
        hint = _hint_for(tok, err.expected)
        if expected and len(expected) <= 6:
            msg += "; expected " + ", ".join(expected)
        return ModelError(msg, Span(line, col, line, col + max(len(str(tok.value)), 1) if tok.type != "_NL" else None),
                          hint=hint)
    if isinstance(err, UnexpectedEOF):
        lines = text.rstrip().splitlines() or [""]
        return ModelError("unexpected end of file", Span(len(lines), len(lines[-1]) + 1),
                          hint="a bracket or a statement is not finished")
    return ModelError(str(err), Span(line, col))


def _hint_for(tok: Token, expected) -> Optional[str]:
    if tok.type in ("$END", "_NL") and ("RPAR" in expected or "RSQB" in expected):
        return "a bracket is not closed"
    if tok.type in ("$END", "_NL"):
        return "the statement is incomplete"
    if tok.type == "EQUAL" and "TILDE" in expected:
        return "use `~` for a distribution and `=` for a definition"
    if tok.type == "NAME" and tok.value in TYPE_NAMES:
        return "a type follows a colon: `name: real[N]`"
    return None


def parse(text: str, file: Optional[str] = None) -> A.Program:
    """Parse GM source text into a Program; raises ModelError with a location on bad input."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text).located(file, text) from None
    except RecursionError:
        raise ModelError("the model is nested too deeply to parse", Span(1, 1)).located(file, text) from None
    try:
        statements = _ToAst().transform(tree)
    except VisitError as err:
        inner = err.orig_exc
        if isinstance(inner, ModelError):
            raise inner.located(file, text) from None
        raise
    except RecursionError:
        raise ModelError("the model is nested too deeply to parse", Span(1, 1)).located(file, text) from None
    return A.Program(statements, file=file, source=text)
