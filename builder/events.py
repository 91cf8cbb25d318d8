"""How the library tells the CLI what it is doing, without printing.

The pipeline calls a ``Reporter``; the CLI's implementation draws rich
progress bars, tests use ``Silent`` or a recording one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Reporter(Protocol):
    def step(self, title: str) -> None:
        """A pipeline stage starts."""

    def notice(self, text: str) -> None:
        """Something the user should read (a fallback, a deprecation)."""

    def progress(self, title: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        """A context giving an ``advance(n)`` callable for a long step."""


class Silent:
    def __init__(self) -> None:
        self.notices: list[str] = []
        self.steps: list[str] = []

    def step(self, title: str) -> None:
        self.steps.append(title)

    def notice(self, text: str) -> None:
        self.notices.append(text)

    @contextmanager
    def progress(self, title: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None
