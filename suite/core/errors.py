"""The error types the suite raises for bad input and bad configuration.

Every reader raises :class:`InputError` for anything wrong with a file; the CLI prints its
one-line message and exits with status 2.
"""

from __future__ import annotations

from os import PathLike


class TwsbenchError(Exception):
    """Base class of the errors the CLI reports as one line with exit status 2."""


class InputError(TwsbenchError, ValueError):
    """A file (or a variable in it) is not what the suite can read.

    Parameters
    ----------
    path
        The file concerned.
    variable
        The variable or attribute concerned (``"-"`` for the file as a whole).
    expected
        What the suite expected, in words.
    found
        What it found instead.
    """

    def __init__(self, path: str | PathLike, variable: str, expected: str, found: str):
        self.path = str(path)
        self.variable = variable
        self.expected = expected
        self.found = found
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.path}: {self.variable}: expected {self.expected}, found {self.found}"
        return " ".join(text.split())  # always one line


class ConfigError(TwsbenchError, ValueError):
    """A configuration or command-line request that makes no sense."""


class OutputError(TwsbenchError, ValueError):
    """A downscaler's output breaks the contract where it enters the harness: one line naming
    the model, its seed, the world, the stage, what was expected and what was found."""


class TaskFailed(TwsbenchError):
    """A run stopped at its first failed task (``twsbench run --fail-fast``); the message is
    the task's one-line reason."""
