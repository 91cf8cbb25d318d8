"""``layers check``: would these layer zips load on a Lambda runtime? (the static load check)

Part of the CLI (``builder.cli``): the same consoles and error mapping
(``app``); the library does the work (``verify.loadcheck`` against
``runtimes.system_libraries``). Every argument is checked before any zip is
read. Findings go to stdout, the failure's one line and hint to stderr; exit 4
when something would not load, 0 otherwise (warnings are printed, never
silenced).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..errors import LayerError, UsageError
from .app import _fail, app, out


@app.command()
def check(
    zips: Annotated[list[Path], typer.Argument(
        metavar="ZIP", help="Layer zips, in the order the function lists them (later files win).")],
    runtime: Annotated[str, typer.Option("--runtime", help="The Lambda runtime, e.g. python3.11.")],
    arch: Annotated[str, typer.Option("--arch", help="x86_64 or arm64.")] = "x86_64",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Check that every ELF file of the layers finds its libraries and symbol versions on the runtime."""
    from ..verify.loadcheck import check_zips, raise_for

    try:
        libs = _system_libraries(runtime, arch)
        for path in zips:
            _check_argument(path)
        result = check_zips(list(zips), libs)
    except LayerError as error:
        _fail(error)
    if as_json:
        out.print_json(json.dumps({"zips": [str(p) for p in zips], "runtime": runtime, **result.to_json()}))
    else:
        _show(result)
    try:
        raise_for(result)
    except LayerError as error:
        _fail(error)


def _system_libraries(runtime: str, arch: str):
    from ..runtimes import ARCHITECTURES, get_runtime, system_libraries

    info = get_runtime(runtime)  # RecipeError (exit 2) with a suggestion for an unknown name
    if arch not in ARCHITECTURES:
        raise UsageError(f"unknown architecture {arch!r}", hint=" or ".join(ARCHITECTURES))
    if arch not in info.architectures:
        raise UsageError(f"{runtime} does not run on {arch}", hint=f"{runtime} runs on {', '.join(info.architectures)}")
    try:
        return system_libraries(info, arch)
    except LayerError:
        raise UsageError(f"no table of Lambda's system libraries for {runtime} ({info.os_title}) on {arch}",
                         hint="add it to builder/lambda_os.toml, or check against another --arch") from None


def _check_argument(path: Path) -> None:
    from ..files import kind_of

    kind = kind_of(path, "zip", hint="give the path of a layer zip")
    if kind == "missing":
        raise UsageError(f"{path}: no such file", hint="give the path of a layer zip")
    if kind != "file":
        raise UsageError(f"{path} is not a regular file", hint="give the path of a layer zip, not a directory")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}",
                         hint="check the zip's path and permissions") from None
    if not is_zip:
        raise UsageError(f"{path} is not a zip", hint="give a layer zip (python/... inside)")


def _show(result) -> None:
    summary = (f"{result.how}: {result.elf_files} ELF file{'s' if result.elf_files != 1 else ''}, "
               f"{len(result.errors)} error{'s' if len(result.errors) != 1 else ''}, "
               f"{len(result.warnings)} warning{'s' if len(result.warnings) != 1 else ''}")
    out.print(Text(summary), soft_wrap=True)
    for problem in result.problems:
        line = Text(f"  {problem.severity}: ", style="red" if problem.severity == "error" else "yellow")
        line.append(problem.describe())
        out.print(line, soft_wrap=True)
    if result.ok:
        out.print(Text("ok: every ELF file finds what it needs", style="green"), soft_wrap=True)


