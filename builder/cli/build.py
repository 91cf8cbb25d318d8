"""``layers build``, ``diff``, ``recipes``, ``report`` and ``init``: building and inspecting layers.

Part of the CLI (``builder.cli``): the same consoles, error mapping and
reporter (``app``); the library does the work (``build``, ``compare``,
``measure``, ``init``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import LayerError, RecipeError, UsageError
from ..measure import human
from .app import RecipesDir, RichReporter, Verbose, _fail, _runner, app, err, out, styled


@app.command()
def build(
    recipe: Annotated[str, typer.Argument(help="Recipe name (recipes/NAME.toml) or path to a TOML file.")],
    arch: Annotated[Optional[str], typer.Option(help="x86_64 or arm64; default: every architecture of the recipe.")] = None,
    backend: Annotated[str, typer.Option(help="auto (Docker where it can run, else pip) | pip | docker")] = "auto",
    base_image: Annotated[Optional[str], typer.Option(
        "--base-image", help="Docker backend: base image (default: the recipe's, else AWS SAM's build image).")] = None,
    runtime_image: Annotated[Optional[str], typer.Option(
        "--runtime-image", help="Docker backend: the image the smoke test runs in (default: the recipe's, else "
                                "public.ecr.aws/lambda/python:X.Y, Lambda's runtime image).")] = None,
    lock: Annotated[Optional[Path], typer.Option(
        help="Install exactly this lock (a .lock.json written by a build), hashes enforced.")] = None,
    compare_to: Annotated[Optional[Path], typer.Option(
        "--compare-to", help="Another build's zip: list every difference, with its reason, in the report.")] = None,
    image: Annotated[bool, typer.Option(
        "--image", help="Build a Lambda container image (10 GB) instead of a layer zip (250 MB); Docker backend.")] = False,
    function_base: Annotated[Optional[str], typer.Option(
        "--function-base", help="With --image: the image's base (default: public.ecr.aws/lambda/python:X.Y).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory; files go to OUT/RECIPE/.")] = Path("dist"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the build report(s) as JSON on stdout.")] = False,
    import_timing: Annotated[bool, typer.Option(help="Measure the smoke imports' cold import time.")] = True,
    recipes_dir: RecipesDir = None,
    verbose: Verbose = False,
) -> None:
    """Build a recipe into a stripped, verified, reproducible layer zip."""
    from ..backends.base import Target
    from ..backends.select import choose_backend
    from ..build import BuildOptions, check_outputs
    from ..build import build as run_build
    from ..lockfile import committed_lock
    from ..recipe import load_recipe

    reporter = RichReporter(err, quiet=as_json)
    try:
        loaded = load_recipe(recipe, recipes_dir)
        if arch is not None and arch not in ("x86_64", "arm64"):
            raise UsageError(f"unknown architecture {arch!r}", hint="x86_64 or arm64")
        arches = [arch] if arch else list(loaded.architectures)
        if lock is not None and len(arches) > 1:
            raise UsageError("a lock is for one architecture", hint="add --arch")
        locked = _read_lock(lock) if lock is not None else None
        check_outputs(loaded, arches, BuildOptions(out_dir=out_dir, compare_to=compare_to, image=image))
        runner = _runner(verbose)
        reports = []
        for one in arches:
            chosen = choose_backend("docker" if image else backend, Target(loaded.runtime_info, one), runner, reporter,
                                    base_image or loaded.base_image or None,
                                    runtime_image or loaded.runtime_image or None)
            use = locked or committed_lock(loaded, one, reporter.notice)
            options = BuildOptions(out_dir=out_dir, time_imports=import_timing, lock=use, compare_to=compare_to,
                                   image=image, function_base=function_base)
            result = run_build(loaded, one, chosen, options, reporter)
            reports.append(result.report)
            if not as_json:
                _show_build(result)
    except LayerError as error:
        _fail(error)
    except KeyboardInterrupt:
        # typer would exit 130 silently; say what state things are in.
        err.print(styled("red", "interrupted", ": the build container is removed, and no partial file was written"))
        raise typer.Exit(130) from None
    if as_json:
        out.print_json(json.dumps(reports if len(reports) > 1 else reports[0]))


def _read_lock(path: Path):
    from ..files import read_json
    from ..lockfile import parse_lock

    data = read_json(path, "lock", hint="give a .lock.json written by layers build")
    try:
        return parse_lock(data)
    except ValueError as exc:
        raise UsageError(f"{path} is not a lock written by layers build: {exc}",
                         hint="give a .lock.json written by layers build") from None


@app.command()
def diff(
    first: Annotated[Path, typer.Argument(help="A layer zip.")],
    second: Annotated[Path, typer.Argument(help="Another layer zip.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    html: Annotated[Optional[Path], typer.Option(
        "--html", metavar="OUT", help="Also write the two trees side by side, as one self-contained HTML page.")] = None,
) -> None:
    """List the files two layer zips do not share or hold differently, with the reason for each."""
    from ..compare import compare_zips

    try:
        if html is not None:
            from ..picture import check_out

            check_out(html)
        comparison = compare_zips(first, second)
        if html is not None:
            from ..picture import diff_page, write_page

            write_page(html, diff_page(first, second, comparison))
            err.print(Text.assemble(("wrote ", "green"), str(html)))
    except LayerError as error:
        _fail(error)
    if as_json:
        out.print_json(json.dumps(comparison.to_json()))
    else:
        table = Table(title=f"{first.name} vs {second.name}: {comparison.files[0]} and {comparison.files[1]} files",
                      title_justify="left")
        for column in ("path", "difference", "reason"):
            table.add_column(column, overflow="fold")
        for item in comparison.differences:
            table.add_row(item.path, item.kind, item.reason)
        out.print(table if comparison.differences else styled("green", "same files, same contents"))
    raise typer.Exit(0 if comparison.same_file_list else 1)


def _show_build(result) -> None:
    report = result.report
    if result.zip is None:
        image = report["image"]
        out.print(styled("green", "built image ", f"{image['tag']} ({human(image['size_bytes'])}, "
                         f"stack {human(report['sizes']['layer_bytes'])}) FROM {image['base']}; "
                         f"report {result.report_path}"))
        return
    rules = Table(title="strip rules", title_justify="left")
    rules.add_column("rule")
    rules.add_column("files", justify="right")
    rules.add_column("removed", justify="right")
    rules.add_column("notes", overflow="fold")
    for rule in report["strip"]["rules"]:
        rules.add_row(rule["rule"], str(rule["files"]), human(rule["bytes"]), "; ".join(rule["notes"][:3]))
    err.print(rules)
    packages = Table(title="packages (biggest first)", title_justify="left")
    packages.add_column("package")
    packages.add_column("installed", justify="right")
    packages.add_column("in layer", justify="right")
    for row in report["packages"][:12]:
        packages.add_row(row["package"], human(row["installed_bytes"]), human(row["layer_bytes"]))
    err.print(packages)
    _show_budget(report)
    out.print(styled("green", "built ", f"{result.zip.path}  sha256 {report['zip']['sha256']}"))
    picture = result.zip.path.with_suffix(".html")
    if picture.is_file():
        out.print(styled("green", "picture ", f"{picture}  (the treemap: open it in a browser)"))
    if result.sbom_path is not None:
        out.print(styled("green", "sbom ", f"{result.sbom_path}  ({report['sbom']['components']} components, "
                                           f"{report['sbom']['format']})"))


def _show_budget(report: dict) -> None:
    budget = report["budget"]
    table = Table(title=f"{report['recipe']} for {report['runtime']} {report['architecture']}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("")
    table.add_row("unzipped", human(budget["unzipped_bytes"]), human(budget["unzipped_budget"]),
                  styled("green", "fits") if budget["fits"] else styled("red", "over"))
    table.add_row("zipped", human(budget["zipped_bytes"]), human(budget["direct_upload_limit"]),
                  "direct upload" if budget["zipped_bytes"] <= budget["direct_upload_limit"]
                  else styled("yellow", "via S3"))
    table.add_row("installed (raw)", human(report["sizes"]["installed_bytes"]), "", "")
    if report.get("cold_import_seconds") is not None:
        table.add_row("cold import (python -B)", f"{report['cold_import_seconds']:.3f} s", "", report["bytecode"]["mode"])
    err.print(table)
    _show_proven(report)


def _show_proven(report: dict) -> None:
    """What was proven about this layer, and how: the load check, the grafts, the smoke test."""
    verification = report["verification"]
    load = verification.get("load_check")  # absent in reports of builds before the load check existed
    if load:
        warned = f", {load['warnings']} warning(s)" if load.get("warnings") else ""
        style = "green" if load["status"] == "passed" else "red"
        err.print(Text.assemble((f"{load['status']}: ", style), f"{load['how']}{warned}"))
    else:
        err.print(Text.assemble(("not run: ", "yellow"), "static load check (report from an older build)"))
    for graft in (report.get("grafted") or {}).get("grafted", []):
        err.print(Text.assemble(("grafted: ", "cyan"), f"{graft['soname']} as {graft['path']} from {graft['origin']}"))
    if verification["verified"]:
        err.print(Text.assemble(("verified: ", "green"), f"smoke test passed {verification['how']}"))
    else:
        err.print(Text.assemble(("NOT verified by a smoke test: ", "yellow"), verification["how"]))
    pack = report.get("pack")
    if pack:
        cold = (f"; cold start {pack['cold_start_seconds']:.2f} s on one core, unpacking into this machine's "
                "temporary directory" if pack.get("cold_start_seconds") else "")
        err.print(Text.assemble(("packed: ", "cyan"), f"{human(pack['archive_bytes'])} {pack['compression']} archive "
                                f"counts {human(pack['counted_bytes'])} of the 250 MB and unpacks to "
                                f"{human(pack['unpacked_bytes'])} under {pack['unpack_dir']}{cold}"))
        if pack["verification"]["verified"]:
            err.print(Text.assemble(("verified packed: ", "green"),
                                    f"smoke test passed through the layer's own unpacker, {pack['verification']['how']}"))


@app.command("recipes")
def list_recipes(recipes_dir: RecipesDir = None) -> None:
    """List the recipes and whether each one parses."""
    from ..recipe import default_recipes_dir, load_recipe

    from ..files import check_directory_option

    directory = recipes_dir or default_recipes_dir()
    try:
        check_directory_option(directory, "--recipes", must_exist=True)
    except LayerError as error:
        _fail(error)
    table = Table()
    for column in ("recipe", "runtime", "architectures", "requirements", "description"):
        table.add_column(column, overflow="fold")
    bad = 0
    for path in sorted(directory.glob("*.toml")):
        try:
            r = load_recipe(path)
        except RecipeError as error:
            bad += 1
            table.add_row(path.stem, styled("red", "invalid"), "", "", error.message)
            continue
        table.add_row(r.name, r.runtime, ", ".join(r.architectures), ", ".join(p.text for p in r.requirements), r.description)
    out.print(table)
    if bad:
        _fail(RecipeError(f"{bad} of {len(table.rows)} recipes in {directory} are invalid (see the table)",
                          hint="layers build NAME names the first problem of a recipe, with a hint"))


@app.command()
def report(zip_path: Annotated[Path, typer.Argument(metavar="ZIP", help="A built layer zip.")],
           page_path: Annotated[Optional[Path], typer.Argument(
               metavar="[OUT]", help="With --html: the page to write (default: beside the zip, named like it, "
                                     ".html).")] = None,
           as_json: Annotated[bool, typer.Option("--json")] = False,
           html: Annotated[bool, typer.Option(
               "--html", help="Also write the treemap of where the megabytes go: one self-contained HTML page.")]
           = False) -> None:
    """Show the report of a built zip (and check the zip is the one it describes)."""
    from ..publish.artifact import load_artifact

    try:
        page = None
        if page_path is not None and not html:
            raise UsageError(f"{page_path}: a second argument is where --html writes its page",
                             hint=f"layers report {zip_path} --html {page_path}")
        if html:
            from ..picture import check_out

            page = page_path or zip_path.with_name(zip_path.stem + ".html")
            check_out(page)
        data = load_artifact(zip_path).report
        if page is not None:
            from ..picture import layer_page, write_page

            write_page(page, layer_page(zip_path, data))
    except LayerError as error:
        _fail(error)
    if page is not None:
        err.print(Text.assemble(("wrote ", "green"), str(page)))
    if as_json:
        out.print_json(json.dumps(data))
        return
    _show_budget(data)
    versions = ", ".join(f"{k} {v}" for k, v in sorted(data["versions"].items()))
    out.print(f"{zip_path}: {data['zip']['code_sha256']} (CodeSha256)\n{versions}")


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Recipe name; writes recipes/NAME.toml.")],
    requirements: Annotated[Path, typer.Option("--requirements", "-r", help="A pip requirements file.")],
    runtime: Annotated[str, typer.Option(help="Lambda runtime, e.g. python3.12.")] = "python3.12",
    arch: Annotated[list[str], typer.Option(help="Architecture(s).")] = ["x86_64"],
    recipes_dir: RecipesDir = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing recipe.")] = False,
    guess: Annotated[bool, typer.Option(
        "--guess", help="Offline: guess the smoke imports from the distribution names; pip is not run.")] = False,
    verbose: Verbose = False,
) -> None:
    """Make a recipe from a requirements file, its smoke test importing the modules the wheels hold.

    By default pip fetches each listed wheel (no dependencies) for the runtime and architectures, from PIP_INDEX_URL.

    --guess runs no pip (offline): the imports are guessed from the distribution names, which can be wrong.
    """
    from ..init import write_recipe
    from ..recipe import default_recipes_dir

    try:
        path = write_recipe(name, requirements, runtime, tuple(arch), recipes_dir or default_recipes_dir(), force,
                            runner=None if guess else _runner(verbose))
    except LayerError as error:
        _fail(error)
    out.print(styled("green", "wrote ", f"{path}; check its smoke test, then: layers build {name}"))
