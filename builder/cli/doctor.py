"""``layers doctor``: what this machine can verify per runtime and architecture, and how to verify more.

Part of the CLI (``builder.cli``): it prints what the library's
``verify.doctor`` found (``survey``) and concluded (``diagnose``). A table
on stdout, one row per runtime and architecture, then the steps that would
enable each missing smoke test; ``--json`` gives the same as data. Exit 0:
it reports, it does not judge.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..errors import LayerError
from .app import Verbose, _fail, _runner, app, out, printable, styled

_STYLE = {"native": "green", "emulated": "cyan", "none": "yellow"}


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON on stdout.")] = False,
    verbose: Verbose = False,
) -> None:
    """Say, per runtime and architecture, how this machine verifies layers, and how to enable what is missing."""
    from ..runtimes import all_runtimes
    from ..verify.doctor import diagnose, survey

    try:
        runtimes = list(all_runtimes().values())
        facts = survey(runtimes, _runner(verbose))
        rows = diagnose(facts, runtimes)
    except LayerError as error:
        _fail(error)
    if as_json:
        out.print_json(json.dumps({
            "host_machine": facts.host_machine, "sandbox": facts.sandbox, "binfmt": dict(facts.binfmt),
            "arm64_roots": {str(root): list(versions) for root, versions in facts.roots.items()},
            "runtimes": [row.to_json() for row in rows]}))
        return
    table = Table(title=f"what this {facts.host_machine} machine verifies (pip backend)", title_justify="left")
    for column in ("runtime", "arch", "smoke test", "sandbox"):
        table.add_column(column, no_wrap=True)
    table.add_column("interpreter, or the root it runs from", overflow="fold")
    for row in rows:
        smoke = {"emulated": "emulated (QEMU)", "none": "none: ELF only"}.get(row.smoke, row.smoke)
        table.add_row(row.runtime, row.arch, Text(smoke, style=_STYLE[row.smoke]),
                      "Lambda's libraries" if row.sandbox else "-", Text(printable(row.location or "-")))
    out.print(table)
    source = "LAYERS_ARM64_ROOTS" if facts.roots_from_env else "the default ones that exist"
    listed = ", ".join(f"{root} ({', '.join('python' + v for v in versions) or 'no python3.X in usr/bin'})"
                       for root, versions in facts.roots.items()) or "none"
    out.print(styled("dim", f"arm64 roots ({source}): ", listed), soft_wrap=True)
    for row in rows:
        if row.enable:
            out.print(styled(_STYLE[row.smoke], f"{row.runtime} {row.arch}: ", row.summary), soft_wrap=True)
            for step in row.enable:
                out.print(styled("dim", "  to enable: ", step), soft_wrap=True)
    if not any(row.enable for row in rows):
        out.print(styled("green", "every runtime and architecture is smoke-tested here"))
