"""The one seam for subprocesses.

Every external command (pip, strip, the runtime's Python, zip in benchmarks)
goes through a ``Runner``, so verbose mode can echo ``+ cmd`` and tests can see
what ran. The runner never prints by itself: it hands the echo line to the
callable it was given (the CLI passes its console).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ToolMissing


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 15) -> str:
        """The last lines of the output, where tools put the reason they failed."""
        text = (self.stdout + "\n" + self.stderr).strip().splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Runner:
    verbose: bool = False
    echo: Callable[[str], None] = lambda line: None
    history: list[tuple[str, ...]] = field(default_factory=list)

    def run(
        self,
        args: Sequence[str | os.PathLike],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        input: str | None = None,
    ) -> Result:
        """Run a command to completion and capture its output; never raises on a non-zero exit."""
        argv = tuple(str(a) for a in args)
        self.history.append(argv)
        if self.verbose:
            self.echo("+ " + shlex.join(argv))
        full_env = None
        if env is not None:
            full_env = {**os.environ, **env}
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                errors="replace",
            )
        except FileNotFoundError:
            raise ToolMissing(f"{argv[0]} is not installed", hint=f"install {argv[0]} or put it on PATH") from None
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)
