"""Syntax errors a user can act on: Lark's parse errors turned into located ModelErrors.

In order: a bracket that is never closed, closes nothing or closes the wrong kind; a specific
message from the table of example errors (``ppl/grammar/syntax_errors.py``, matched as lark's
``UnexpectedInput.match_examples`` does); a few rules that hold in every parser state (a
malformed number, a trailing comma, two expressions in a row, an operand missing after an
operator, `;` inside brackets, strings); otherwise "unexpected X; expected A, B".
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Callable, Optional

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .errors import ModelError, Span

KEYWORDS = ("data", "fn", "import", "for", "in", "if", "then", "else", "return", "target")

_TOKEN_TEXT = {
    "_NL": "end of line", "$END": "end of file", "NAME": "a name", "NUMBER": "a number",
    "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "LBRACE": "`{`", "RBRACE": "`}`",
    "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`", "TILDE": "`~`", "PLUSEQ": "`+=`", "SEMI": "`;`",
    "PLUS": "`+`", "MINUS": "`-`", "MULOP": "`*`", "POW": "`^`", "COMPOP": "a comparison",
    "LANGLE": "`<`", "RANGLE": "`>`", "BAR": "`|`", "QUOTE": "`'`", "BANG": "`!`", "ANDAND": "`&&`",
    "OROR": "`||`",
}
_EXPR_START = {"NAME", "NUMBER", "LPAR", "LSQB", "MINUS", "PLUS", "BANG", "IF"}
_BINARY_OPS = {"PLUS", "MINUS", "MULOP", "POW", "COMPOP", "ANDAND", "OROR"}
_OPERATORS = _BINARY_OPS | {"QUOTE"}
_OPEN, _CLOSE = {"(": ")", "[": "]", "{": "}"}, {")": "(", "]": "[", "}": "{"}

# Characters that look like ASCII operators (pasted from documents or papers).
_LOOKALIKES = {"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "*", "\u00b7": "*", "\u2264": "<=",
               "\u2265": ">=", "\u2260": "!=", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
               "\u00a0": " ", "\u2192": "->"}


def syntax_error(err: UnexpectedInput, text: str, parse: Callable) -> ModelError:
    """A ModelError (not yet given its file) explaining ``err``, raised by ``parse(text)``."""
    if isinstance(err, UnexpectedCharacters):
        return _bracket_problem(text, _offset(text, err.line, err.column), None) or _bad_character(err, text)
    if isinstance(err, UnexpectedToken):
        return _unexpected_token(err, text, parse)
    if isinstance(err, UnexpectedEOF):
        return _bracket_problem(text, len(text), "$END") or ModelError(
            "unexpected end of file", _end_span(text), hint="a bracket or a statement is not finished")
    line, col = _int(getattr(err, "line", 1)), _int(getattr(err, "column", 1))
    return ModelError(str(err).splitlines()[0] if str(err) else "syntax error", Span(line, col))


# ---------------------------------------------------------------------------- tokens


def _unexpected_token(err: UnexpectedToken, text: str, parse: Callable) -> ModelError:
    tok = err.token
    at_end = tok.type == "$END"
    if at_end:
        span = _end_span(text)
    else:
        line, col = _int(tok.line), _int(tok.column)
        end = col + max(len(str(tok.value)), 1) if tok.type != "_NL" else None
        span = Span(line, col, line if end else None, end)
    offset = len(text) if at_end else (tok.start_pos if tok.start_pos is not None else 0)
    bracket = _bracket_problem(text, offset, tok.type, first_on_line=_first_on_line(text, offset))
    if bracket is not None:
        return bracket
    what = _describe(tok)
    prev = _previous_token(err)
    accepts = _accepts(err)
    continued = _continued_line(text, offset) if not at_end else None
    if continued is not None and (tok.type in ("TILDE", "EQUAL", "COLON", "PLUSEQ")
                                  or _first_on_line(text, offset)):
        n, op = continued
        return ModelError(f"unexpected {what}: line {n} ends with `{op}`, so this line continues its statement",
                          span, hint=f"finish the statement on line {n}, or remove the `{op}` at its end")

    match = _match_example(err, accepts, parse)
    if match is not None:
        message, hint = match
        fill = lambda s: s.replace("{token}", what).replace("{prev}", str(prev) if prev is not None else "")  # noqa: E731
        return ModelError(f"unexpected {what}: {fill(message)}", span, hint=fill(hint) if hint else None)

    # rules that hold in every state
    if tok.type == "SEMI":
        return ModelError("unexpected `;` inside brackets", span,
                          hint="separate items with `,`; `;` ends a statement, after its brackets are closed")
    if prev is not None and prev.type == "NUMBER" and tok.type in ("NUMBER", "NAME") \
            and prev.end_pos == tok.start_pos:
        word = text[prev.start_pos:_word_end(text, tok.start_pos)]
        return ModelError(f"malformed number `{word}`", Span(prev.line, prev.column, prev.line,
                                                              prev.column + len(word)),
                          hint="numbers are written like 3, 2.5, .5, 1e-3 or 2.5E+4")
    if tok.type == "QUOTE" and prev is not None and prev.type in _BINARY_OPS | {"EQUAL", "TILDE", "LPAR", "COMMA",
                                                                                "LSQB", "PLUSEQ", "BAR"}:
        return ModelError("unexpected `'`: GM has no strings", span,
                          hint="`'` is the transpose operator, written after a matrix: `X'`")
    if prev is not None and prev.type == "COMMA" and tok.type in ("RPAR", "RSQB", "RANGLE"):
        return ModelError(f"unexpected {what} after `,`: another item is expected", span,
                          hint="remove the trailing comma")
    if prev is not None and prev.type in _BINARY_OPS | {"BANG"} and accepts and accepts <= _EXPR_START | {"IF"} \
            and tok.type not in _EXPR_START:
        return ModelError(f"unexpected {what}: an operand is missing after `{prev}`", span,
                          hint="write an expression after the operator")
    if accepts and {"PLUS", "MULOP"} <= accepts and tok.type in ("NAME", "NUMBER", "BANG", "IF"):
        hint = "put each statement on its own line, or separate statements on a line with `;`"
        if tok.type == "NAME" and tok.value == "T":
            hint = "Stan's truncation `T[a, b]` is written `truncated(normal(mu, sigma), a, b)`"
        return ModelError(f"unexpected {what}: an operator is missing before it", span, hint=hint)

    expected = _expected_text(accepts if accepts else set(err.expected or ()))
    msg = f"unexpected {what}"
    if expected:
        msg += "; expected " + expected
    return ModelError(msg, span, hint=_hint_for(tok, accepts or set(err.expected or ())))


def _hint_for(tok: Token, expected) -> Optional[str]:
    if tok.type in ("$END", "_NL"):
        return "the statement is incomplete"
    if tok.type == "EQUAL" and "TILDE" in expected:
        return "use `~` for a distribution and `=` for a definition"
    if tok.type == "NAME" and tok.value in ("real", "int", "simplex", "ordered"):
        return "a type follows a colon: `name: real[N]`"
    if tok.type == "RBRACE":
        return "`}` ends a loop or a function body"
    return None


def _describe(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "end of line"
    value = str(tok.value)
    if len(value) > 30:
        value = value[:27] + "..."
    return f"`{value}`"


def _expected_text(accepts: set) -> str:
    acc = {a for a in accepts if not a.startswith("__") and a not in ("SEMI", "LANGLE")}
    if "_NL" in acc:
        acc.discard("$END")     # "end of line" covers the end of the file
    parts = []
    if {"NAME", "NUMBER", "LPAR"} <= acc:
        acc -= _EXPR_START
        parts.append("an expression")
    if {"PLUS", "MULOP", "POW"} <= acc:
        acc -= _OPERATORS | {"LPAR", "LSQB"}
        parts.append("an operator")
    names = sorted({_TOKEN_TEXT.get(t, f"`{t.lower()}`" if t.lower() in KEYWORDS else f"`{t}`") for t in acc})
    parts += names
    if not parts or len(parts) > 6:
        return ""
    return ", ".join(parts[:-1]) + (" or " if len(parts) > 1 else "") + parts[-1]


def _accepts(err: UnexpectedToken) -> set:
    try:
        return set(err.accepts)
    except Exception:   # noqa: BLE001 - no interactive parser: fall back on `expected`
        return set()


def _previous_token(err) -> Optional[Token]:
    state = getattr(err, "state", None)
    stack = getattr(state, "value_stack", None)
    if stack:
        return _last_token(stack[-1])
    history = getattr(err, "token_history", None)
    return history[-1] if history else None


def _last_token(v) -> Optional[Token]:
    while isinstance(v, Tree):
        kids = [c for c in v.children if c is not None]
        if not kids:
            return None
        v = kids[-1]
    return v if isinstance(v, Token) else None


def _word_end(text: str, i: int) -> int:
    while i < len(text) and (text[i].isalnum() or text[i] in "._"):
        i += 1
    return i


# ---------------------------------------------------------------------------- examples


def _signature(err) -> tuple:
    state = getattr(err, "state", None)
    position = getattr(state, "position", state)
    kind = err.token.type if isinstance(err, UnexpectedToken) else "char:" + str(getattr(err, "char", ""))
    value = str(err.token) if isinstance(err, UnexpectedToken) else ""
    accepts = frozenset(_accepts(err)) if isinstance(err, UnexpectedToken) else frozenset()
    return position, accepts, kind, value


@lru_cache(maxsize=4)
def _example_signatures(parse: Callable) -> tuple:
    """(signature, (message, hint)) of every example in the table, in table order."""
    from .grammar.syntax_errors import SYNTAX_ERRORS
    out = []
    for label, examples in SYNTAX_ERRORS.items():
        for example in examples:
            try:
                parse(example)
            except UnexpectedInput as err:
                out.append((_signature(err), label, example))
            else:
                out.append((None, label, example))
    return tuple(out)


def check_examples(parse: Callable) -> list:
    """Examples of the table that parse without error (each should fail): for the tests."""
    return [example for sig, _label, example in _example_signatures(parse) if sig is None]


def _match_example(err, accepts, parse) -> Optional[tuple]:
    if getattr(err, "state", None) is None:
        return None
    position, _acc, kind, value = _signature(err)
    accepts = frozenset(accepts)
    by_kind = None
    for sig, label, _example in _example_signatures(parse):
        if sig is None or sig[0] != position or sig[1] != accepts or sig[2] != kind:
            continue
        if sig[3] == value:
            return label
        if by_kind is None:
            by_kind = label
    return by_kind


# ---------------------------------------------------------------------------- characters


def _bad_character(err: UnexpectedCharacters, text: str) -> ModelError:
    ch = getattr(err, "char", None) or "?"
    line, col = _int(err.line), _int(err.column)
    span = Span(line, col, line, col + 1)
    shown = f"'{ch}'" if ch == "`" else f"`{ch}`"
    hint = None
    if not ch.isprintable() or ord(ch) > 126:
        name = unicodedata.name(ch, "")
        shown += f" (U+{ord(ch):04X}{' ' + name if name else ''})"
        if ch in _LOOKALIKES:
            hint = f"type `{_LOOKALIKES[ch]}` instead"
        elif ch.isalpha():
            hint = "names use ASCII letters, digits and `_`"
    elif ch in "\"'":
        hint = "GM has no strings"
    elif ch == "?":
        hint = "GM has no `? :`; write `if C then A else B`"
    elif ch in "&":
        hint = "logical and is `&&`"
    elif ch == "\\":
        hint = "a statement continues on the next line while a bracket is open or after an operator"
    elif ch == ".":
        hint = "names cannot contain `.`; numbers are written like 0.5"
    elif ch in "`$":
        hint = "GM runs no shell commands or code"
    prev = _previous_token(err)
    if prev is not None and prev.type == "IMPORT":
        return ModelError(f"unexpected character {shown}: `import` takes a module name, like `import glm`",
                          span, hint="modules are `stdlib/NAME.gm` or `NAME.gm` beside the model; "
                                     "paths and strings are not allowed")
    return ModelError(f"unexpected character {shown}", span, hint=hint)


# ---------------------------------------------------------------------------- brackets


def _bracket_problem(text: str, offset: int, token_type: Optional[str], first_on_line: bool = False):
    """A bracket that closes nothing or the wrong kind (at or before ``offset``), or one opened
    before ``offset`` and never closed (when the error is at the end or starts a new line)."""
    stack = []
    line, col, i, n = 1, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
                col += 1
            continue
        if c == "\n":
            line, col, i = line + 1, 1, i + 1
            continue
        if c in _OPEN:
            stack.append((c, line, col, i))
        elif c in _CLOSE and i > offset:         # after the error: only keep the stack up to date
            if stack and stack[-1][0] == _CLOSE[c]:
                stack.pop()
        elif c in _CLOSE:
            if not stack:
                return ModelError(f"unexpected `{c}`: it closes no bracket", Span(line, col, line, col + 1),
                                  hint="remove it, or look for a missing opening bracket before it")
            o, ol, oc, _ = stack.pop()
            if o != _CLOSE[c]:
                return ModelError(f"unexpected `{c}`: the bracket open here is the `{o}` at line {ol}, "
                                  f"column {oc}", Span(line, col, line, col + 1),
                                  hint=f"close `{o}` with `{_OPEN[o]}`")
        i += 1
        col += 1
    if stack:
        o, ol, oc, oi = stack[-1]
        if oi < offset and (token_type == "$END" or (first_on_line and _line_of(text, offset) > ol)):
            return ModelError(f"`{o}` is never closed", Span(ol, oc, ol, oc + 1),
                              hint=f"close it with `{_OPEN[o]}`" + (
                                  "; until it is closed the statement runs on to the next line"
                                  if token_type != "$END" else ""))
    return None


_CONTINUATION = ("+", "-", "*", "/", "%", "@", "^", "~", "=", "<", ">", "&&", "||", "!", ",", ":", "|", "+=")


def _continued_line(text: str, offset: int) -> Optional[tuple]:
    """(line number, operator) when the line before the one holding ``offset`` ends with an
    operator (so the post-lexer joined the lines) outside brackets, else None."""
    line_start = text.rfind("\n", 0, offset) + 1
    if _depth_at(text, line_start):
        return None
    lines = text[:line_start].split("\n")[:-1]
    for k in range(len(lines) - 1, -1, -1):
        code = lines[k].split("#", 1)[0].rstrip()
        if not code:
            continue
        if code.endswith(_CONTINUATION) and not code.endswith(("{", "(", "[")):
            op = next(c for c in sorted(_CONTINUATION, key=len, reverse=True) if code.endswith(c))
            return k + 1, op
        return None
    return None


def _depth_at(text: str, offset: int) -> int:
    depth = 0
    for line in text[:offset].split("\n"):
        code = line.split("#", 1)[0]
        depth += sum(code.count(c) for c in "([") - sum(code.count(c) for c in ")]")
    return max(depth, 0)


def _first_on_line(text: str, offset: int) -> bool:
    start = text.rfind("\n", 0, offset) + 1
    return text[start:offset].strip() == ""


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _offset(text: str, line: int, col: int) -> int:
    pos = 0
    for _ in range(line - 1):
        nxt = text.find("\n", pos)
        if nxt < 0:
            return len(text)
        pos = nxt + 1
    return min(pos + col - 1, len(text))


def _end_span(text: str) -> Span:
    lines = text.rstrip().split("\n") or [""]
    return Span(len(lines), len(lines[-1]) + 1)


def _int(v, default: int = 1) -> int:
    return v if isinstance(v, int) and v > 0 else default
