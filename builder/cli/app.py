"""The ``layers`` application: its consoles, the one error-to-exit mapping, shared options.

Commands live beside this module, by subject (``build``, ``publish``,
``rebuild``), and add themselves to ``app``; this module imports none of
them, so the package has no import circle.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from .. import __version__
from ..errors import LayerError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build, verify and publish heavy Python stacks as AWS Lambda layers.")
# Markup and emoji off: every string printed is text (paths, requirements, tool and AWS output hold [brackets]
# and :colons:); our own styling goes through styled() and Text.
err = Console(stderr=True, highlight=False, markup=False, emoji=False)
out = Console(highlight=False, markup=False, emoji=False)


# Control characters (ANSI escapes above all) in what users or tools wrote would be obeyed by the terminal:
# show them as \xNN instead. Newlines and tabs stay.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f)}


def printable(text: str) -> str:
    return str(text).translate(_CONTROL)


def styled(style: str, label: str, *rest: str) -> Text:
    """``label`` in ``style``, then the rest as plain text: the one way the CLI colours what it prints."""
    return Text.assemble((label, style), *(printable(part) for part in rest))


class RichReporter:
    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet

    def step(self, title: str) -> None:
        if not self.quiet:
            self.console.print(styled("bold cyan", "• ", title))

    def notice(self, text: str) -> None:
        self.console.print(styled("yellow", "notice: ", text))

    @contextmanager
    def progress(self, title: str, total: int):
        with Progress(TextColumn(f"  {title}"), BarColumn(), DownloadColumn(binary_units=True),
                      TimeElapsedColumn(), console=self.console, transient=True,
                      disable=self.quiet or not self.console.is_terminal) as bar:
            task = bar.add_task(title, total=total)
            yield lambda n: bar.advance(task, n)


def _fail(error: LayerError) -> None:
    # The message and hint hold what users and libraries wrote (paths, requirements, tool output): text, not markup.
    err.print(styled("bold red", "error: ", error.message), soft_wrap=True)
    if error.hint:
        err.print(styled("dim", "hint: ", error.hint), soft_wrap=True)
    raise typer.Exit(error.exit_code)


def _runner(verbose: bool):
    from ..runner import Runner

    return Runner(verbose=verbose, echo=lambda line: err.print(Text(printable(line), style="dim"), soft_wrap=True))


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Echo every command as '+ cmd'.")]
RecipesDir = Annotated[Optional[Path], typer.Option("--recipes", help="Directory of recipe TOML files.")]


@app.callback(invoke_without_command=True)
def _version(version: Annotated[bool, typer.Option("--version", help="Show the version.")] = False) -> None:
    if version:
        out.print(f"layers {__version__}")
        raise typer.Exit(0)


# A bug (an exception that is no LayerError) exits with EX_SOFTWARE, saying so in one line; the traceback only
# when asked for, since it says nothing a user can act on.
BUG_EXIT = 70


def main() -> None:
    import os

    try:
        code = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        err.print(styled("red", "interrupted"))
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (layers arns ... | head): nothing left to say to it.
        sys.stderr.close()
        sys.exit(0)
    except Exception as error:
        if hasattr(error, "format_message") and isinstance(getattr(error, "exit_code", None), int):
            # click's own parsing errors (unknown option, bad integer, missing argument; typer vendors click, so
            # they are matched by shape) in the same one-line form as the library's, not a boxed panel.
            context = getattr(error, "ctx", None)
            command = context.command_path if context is not None else "layers"
            err.print(styled("bold red", "error: ", " ".join(error.format_message().split())), soft_wrap=True)
            err.print(styled("dim", "hint: ", f"see: {command} --help"), soft_wrap=True)
            sys.exit(error.exit_code)
        if os.environ.get("LAYERS_DEBUG"):
            raise
        err.print(styled("bold red", "error: ", f"internal error (a bug in layers): {type(error).__name__}: {error}"),
                  soft_wrap=True)
        err.print(styled("dim", "hint: ", "rerun with LAYERS_DEBUG=1 for the traceback, and report it"),
                  soft_wrap=True)
        sys.exit(BUG_EXIT)
    sys.exit(code if isinstance(code, int) else 0)
