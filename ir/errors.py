"""The error types shared by every layer: bad user input (:class:`InputError`: a command-line front end prints
``str(err)`` as one line and exits with status 2) and a failure that is not bad input (:class:`CommandError`:
one line, status 1).
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input: names where it came from (file or option), the field, and the problem.

    ``str(err)`` is ``"<source>: <field>: <problem>"`` (source omitted when unknown).
    """

    def __init__(self, field: str, problem: str, source: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.source = source
        super().__init__(self._text())

    def _text(self) -> str:
        head = f"{self.source}: " if self.source else ""
        return f"{head}{self.field}: {self.problem}" if self.field else f"{head}{self.problem}"

    def with_source(self, source: str) -> "InputError":
        """A copy of this error attributed to ``source`` (a file path or option name)."""
        return InputError(self.field, self.problem, source)


class CommandError(Exception):
    """A failure that is not bad input (a worker died, a measurement failed): a front end prints one line
    and exits with status 1."""
