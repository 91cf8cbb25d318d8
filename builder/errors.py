"""Typed errors of the library.

The library raises; only the CLI (``builder.cli*``) prints. Each error carries the exit
code the CLI returns and an optional hint (the one line that tells the user
what to do next), so the mapping from failure to message lives here, once.
"""

from __future__ import annotations


class LayerError(Exception):
    """Base class: a failure the user can act on (never a bug)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class RecipeError(LayerError):
    """The recipe (or a command-line choice about it) is invalid."""

    exit_code = 2


class UsageError(LayerError):
    """A command was called with arguments that cannot work."""

    exit_code = 2


class ResolveError(LayerError):
    """The requirements cannot be satisfied with wheels the runtime can load."""

    exit_code = 3


class BuildError(LayerError):
    """Installing, stripping or zipping failed."""

    exit_code = 3


class VerifyError(LayerError):
    """The built layer would not work on its runtime (ELF or smoke test)."""

    exit_code = 4


class BudgetError(LayerError):
    """The layer does not fit Lambda's size limits."""

    exit_code = 5


class ToolMissing(LayerError):
    """An external tool the step needs is not installed."""

    exit_code = 6
