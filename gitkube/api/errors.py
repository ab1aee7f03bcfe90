"""Errors as values with a location: what is wrong, where, in which field."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about an input file: `path:line: field: message`."""

    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        field = self.field or "<document>"
        return f"{where}: {field}: {self.message}"


class InvalidInput(Exception):
    """Raised where a whole input is refused; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], what: str = "input"):
        self.problems = sorted(problems, key=lambda p: (p.path, p.line or 0, p.field))
        super().__init__(f"{what} is invalid ({len(problems)} problem(s)):\n" + "\n".join(map(str, self.problems)))
