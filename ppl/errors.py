"""Errors a user can act on: where (file, line, column), what, and how to fix it."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Optional


@dataclass(frozen=True)
class Span:
    """A place in a source text: 1-based line and column, plus the end of the construct."""

    line: int
    column: int
    end_line: Optional[int] = None
    end_column: Optional[int] = None


_MAX_SHOWN = 100     # characters of a source line shown with an error


class ModelError(Exception):
    """An error in a model or its data, located in the source text.

    Attributes: ``message``, ``file``, ``line``, ``column``, ``hint`` (a suggested fix or
    None) and ``source`` (the text of the file, used to print the offending line).
    """

    def __init__(self, message: str, span: Optional[Span] = None, *, hint: Optional[str] = None,
                 file: Optional[str] = None, source: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.file = file
        self.source = source

    @property
    def line(self) -> Optional[int]:
        return self.span.line if self.span else None

    @property
    def column(self) -> Optional[int]:
        return self.span.column if self.span else None

    def located(self, file: Optional[str], source: Optional[str]) -> "ModelError":
        """Fill in the file and source text if they are not known yet (returns self)."""
        if self.file is None:
            self.file = file
        if self.source is None:
            self.source = source
        return self

    def format(self) -> str:
        """``file:line:col: error: message``, the source line, a caret, and the hint."""
        where = self.file or "<model>"
        if self.span is not None:
            where += f":{self.span.line}:{self.span.column}"
        out = [f"{where}: error: {self.message}"]
        if self.span is not None and self.source is not None:
            lines = self.source.split("\n")       # lines as the parser counts them
            if 1 <= self.span.line <= len(lines):
                text = lines[self.span.line - 1].rstrip("\r").expandtabs(1)
                col = max(self.span.column, 1)
                width = 1
                if self.span.end_line == self.span.line and self.span.end_column:
                    width = max(1, self.span.end_column - col)
                if len(text) > _MAX_SHOWN:          # a window of a long line around the caret
                    start = max(0, min(col - 1 - _MAX_SHOWN // 3, len(text) - _MAX_SHOWN))
                    shown = text[start:start + _MAX_SHOWN]
                    col -= start
                    if start:
                        shown, col = "..." + shown, col + 3
                    if start + _MAX_SHOWN < len(text):
                        shown += "..."
                    text, width = shown, max(1, min(width, len(shown) - col + 1))
                text = "".join(c if c.isprintable() else " " for c in text)
                out.append(f"    {text}")
                out.append("    " + " " * (col - 1) + "^" + "~" * (width - 1))
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


class DataError(ModelError):
    """A problem with the data supplied to a model (missing, wrong shape, out of support)."""


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The closest candidate to ``name``, as a hint, or None."""
    cands = sorted(set(candidates))
    lowered = {c.lower(): c for c in cands}
    if name.lower() in lowered and lowered[name.lower()] != name:
        return f"did you mean `{lowered[name.lower()]}`?"
    close = difflib.get_close_matches(name, cands, n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None
