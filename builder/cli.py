"""The ``layers`` command: the only place that prints or exits.

Each command parses its arguments, calls the library, and renders the result
with rich. Library errors (``LayerError``) become one line, a hint and the
error's exit code; nothing reaches the user as a traceback.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .errors import LayerError, RecipeError, UsageError
from .measure import human

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build, verify and publish heavy Python stacks as AWS Lambda layers.")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


class RichReporter:
    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet

    def step(self, title: str) -> None:
        if not self.quiet:
            self.console.print(f"[bold cyan]•[/] {title}")

    def notice(self, text: str) -> None:
        self.console.print(f"[yellow]notice:[/] {text}")

    @contextmanager
    def progress(self, title: str, total: int):
        with Progress(TextColumn(f"  {title}"), BarColumn(), DownloadColumn(binary_units=True),
                      TimeElapsedColumn(), console=self.console, transient=True,
                      disable=self.quiet or not self.console.is_terminal) as bar:
            task = bar.add_task(title, total=total)
            yield lambda n: bar.advance(task, n)


def _fail(error: LayerError) -> None:
    err.print(f"[bold red]error:[/] {error.message}", soft_wrap=True)
    if error.hint:
        err.print(f"[dim]hint:[/] {error.hint}", soft_wrap=True)
    raise typer.Exit(error.exit_code)


def _runner(verbose: bool):
    from .runner import Runner

    return Runner(verbose=verbose, echo=lambda line: err.print(f"[dim]{line}[/]", soft_wrap=True, markup=False))


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Echo every command as '+ cmd'.")]
RecipesDir = Annotated[Optional[Path], typer.Option("--recipes", help="Directory of recipe TOML files.")]


@app.command()
def build(
    recipe: Annotated[str, typer.Argument(help="Recipe name (recipes/NAME.toml) or path to a TOML file.")],
    arch: Annotated[Optional[str], typer.Option(help="x86_64 or arm64; default: every architecture of the recipe.")] = None,
    backend: Annotated[str, typer.Option(help="auto (Docker where it can run, else pip) | pip | docker")] = "auto",
    base_image: Annotated[Optional[str], typer.Option(
        "--base-image", help="Docker backend: base image (default: the recipe's, else AWS SAM's build image).")] = None,
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
    from .backends.base import Target
    from .backends.select import choose_backend
    from .build import BuildOptions, build as run_build
    from .lockfile import committed_lock
    from .recipe import load_recipe

    reporter = RichReporter(err, quiet=as_json)
    try:
        loaded = load_recipe(recipe, recipes_dir)
        if arch is not None and arch not in ("x86_64", "arm64"):
            raise UsageError(f"unknown architecture {arch!r}", hint="x86_64 or arm64")
        arches = [arch] if arch else list(loaded.architectures)
        if lock is not None and len(arches) > 1:
            raise UsageError("a lock is for one architecture", hint="add --arch")
        locked = _read_lock(lock) if lock is not None else None
        runner = _runner(verbose)
        reports = []
        for one in arches:
            chosen = choose_backend("docker" if image else backend, Target(loaded.runtime_info, one), runner, reporter,
                                    base_image or loaded.base_image or None)
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
        err.print("[red]interrupted[/]: the build container is removed, and no partial file was written")
        raise typer.Exit(130) from None
    if as_json:
        out.print_json(json.dumps(reports if len(reports) > 1 else reports[0]))


def _read_lock(path: Path):
    from .backends.base import Lock

    try:
        return Lock.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a lock written by layers build: {exc}") from None


@app.command()
def diff(
    first: Annotated[Path, typer.Argument(help="A layer zip.")],
    second: Annotated[Path, typer.Argument(help="Another layer zip.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """List the files two layer zips do not share or hold differently, with the reason for each."""
    from .compare import compare_zips

    try:
        comparison = compare_zips(first, second)
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
        out.print(table if comparison.differences else "[green]same files, same contents[/]")
    raise typer.Exit(0 if comparison.same_file_list else 1)


def _show_build(result) -> None:
    report = result.report
    if result.zip is None:
        image = report["image"]
        out.print(f"[green]built image[/] {image['tag']} ({human(image['size_bytes'])}, "
                  f"stack {human(report['sizes']['layer_bytes'])}) FROM {image['base']}; report {result.report_path}")
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
    out.print(f"[green]built[/] {result.zip.path}  sha256 {report['zip']['sha256']}")


def _show_budget(report: dict) -> None:
    budget, verification = report["budget"], report["verification"]
    table = Table(title=f"{report['recipe']} for {report['runtime']} {report['architecture']}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("")
    table.add_row("unzipped", human(budget["unzipped_bytes"]), human(budget["unzipped_budget"]),
                  "[green]fits[/]" if budget["fits"] else "[red]over[/]")
    table.add_row("zipped", human(budget["zipped_bytes"]), human(budget["direct_upload_limit"]),
                  "direct upload" if budget["zipped_bytes"] <= budget["direct_upload_limit"] else "[yellow]via S3[/]")
    table.add_row("installed (raw)", human(report["sizes"]["installed_bytes"]), "", "")
    if report.get("cold_import_seconds") is not None:
        table.add_row("cold import (python -B)", f"{report['cold_import_seconds']:.3f} s", "", report["bytecode"]["mode"])
    err.print(table)
    if verification["verified"]:
        err.print(f"[green]verified:[/] smoke test passed; {verification['how']}")
    else:
        err.print(f"[yellow]NOT verified by a smoke test:[/] {verification['how']}")


@app.command("recipes")
def list_recipes(recipes_dir: RecipesDir = None) -> None:
    """List the recipes and whether each one parses."""
    from .recipe import default_recipes_dir, load_recipe

    directory = recipes_dir or default_recipes_dir()
    table = Table()
    for column in ("recipe", "runtime", "architectures", "requirements", "description"):
        table.add_column(column, overflow="fold")
    bad = 0
    for path in sorted(directory.glob("*.toml")):
        try:
            r = load_recipe(path)
        except RecipeError as error:
            bad += 1
            table.add_row(path.stem, "[red]invalid[/]", "", "", error.message)
            continue
        table.add_row(r.name, r.runtime, ", ".join(r.architectures), ", ".join(p.text for p in r.requirements), r.description)
    out.print(table)
    if bad:
        raise typer.Exit(RecipeError.exit_code)


@app.command()
def report(zip_path: Annotated[Path, typer.Argument(metavar="ZIP", help="A built layer zip.")],
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the report of a built zip (and check the zip is the one it describes)."""
    from .artifact import load_artifact

    try:
        data = load_artifact(zip_path).report
    except LayerError as error:
        _fail(error)
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
) -> None:
    """Make a recipe from a requirements file."""
    from .init import write_recipe
    from .recipe import default_recipes_dir

    try:
        path = write_recipe(name, requirements, runtime, tuple(arch), recipes_dir or default_recipes_dir(), force)
    except LayerError as error:
        _fail(error)
    out.print(f"[green]wrote[/] {path}; check its smoke test, then: layers build {name}")


# -- publishing ----------------------------------------------------------------
Regions = Annotated[Optional[str], typer.Option("--regions", help="Comma-separated regions, e.g. us-east-1,eu-west-1.")]
ManifestDir = Annotated[Path, typer.Option("--manifests", help="Where published/RECIPE.json manifests live.")]


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _aws_client():
    """The AWS seam as the commands use it: Lambda's rate, and the retry policy (tunable from the environment)."""
    import os

    from .aws import AwsClient, RateLimiter
    from .publish import lambda_api

    try:
        attempts = int(os.environ.get("LAYERS_AWS_MAX_ATTEMPTS", "8"))
        base_delay = float(os.environ.get("LAYERS_AWS_BASE_DELAY", "0.5"))
    except ValueError:
        raise UsageError("LAYERS_AWS_MAX_ATTEMPTS and LAYERS_AWS_BASE_DELAY must be numbers") from None
    return AwsClient(limiter=RateLimiter(lambda_api()["limits"]["control_plane_per_second"]),
                     max_attempts=max(1, attempts), base_delay=base_delay)


def _artifacts(target: str, arch: str | None, out_dir: Path, recipes_dir: Path | None, reporter, verbose: bool):
    """The built layers to publish: a zip, or a recipe's zips (built first where missing)."""
    from .artifact import built_zip, load_artifact

    if target.endswith(".zip"):
        return [load_artifact(Path(target))]
    from .backends.base import Target
    from .backends.select import choose_backend
    from .build import BuildOptions, build as run_build
    from .lockfile import committed_lock
    from .recipe import load_recipe

    recipe = load_recipe(target, recipes_dir)
    arches = [arch] if arch else list(recipe.architectures)
    found = []
    for one in arches:
        path = built_zip(out_dir, recipe.name, recipe.runtime, one)
        if not path.is_file():
            reporter.notice(f"{path} is not built yet: building it first")
            runner = _runner(verbose)
            backend = choose_backend("auto", Target(recipe.runtime_info, one), runner, reporter,
                                     recipe.base_image or None)
            run_build(recipe, one, backend,
                      BuildOptions(out_dir=out_dir, lock=committed_lock(recipe, one, reporter.notice)), reporter)
        found.append(load_artifact(path))
    return found


@app.command()
def publish(
    target: Annotated[str, typer.Argument(metavar="RECIPE|ZIP", help="A recipe name (its built zips) or a zip.")],
    regions: Regions = None,
    all_regions: Annotated[bool, typer.Option("--all-regions", help="Every region the account has enabled.")] = False,
    public: Annotated[bool, typer.Option("--public", help="Let every AWS account use the layer.")] = False,
    principal: Annotated[Optional[list[str]], typer.Option(
        "--principal", help="An AWS account ID allowed to use the layer (repeatable).")] = None,
    org_id: Annotated[Optional[str], typer.Option("--org-id", help="Let an AWS Organization use the layer.")] = None,
    runtimes: Annotated[Optional[str], typer.Option(help="Compatible runtimes (default: the build's).")] = None,
    arch: Annotated[Optional[str], typer.Option(help="Publish one architecture of the recipe.")] = None,
    direct: Annotated[bool, typer.Option("--direct", help="Upload the zip in the API call (under 50 MB), not via S3.")] = False,
    bucket_template: Annotated[str, typer.Option(help="Staging bucket name; {account} and {region} are filled in.")]
        = "lambda-layer-builder-{account}-{region}",
    force: Annotated[bool, typer.Option("--force", help="Publish a layer whose smoke test did not run.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where built zips are (dist/).")] = Path("dist"),
    manifests: ManifestDir = Path("published"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan or the outcome as JSON.")] = False,
    recipes_dir: RecipesDir = None,
    verbose: Verbose = False,
) -> None:
    """Publish a built layer as a new version in every asked region that lacks this zip."""
    from .manifest import Manifest, manifest_path
    from .publish import Executor, Grant, PublishRequest, check_request, make_plan, read_latest

    reporter = RichReporter(err, quiet=as_json)
    failed = False
    try:
        if bool(regions) == all_regions:
            raise UsageError("say where: --regions R1,R2,... or --all-regions")
        grants = ([Grant.public()] if public else []) + [Grant.account(a) for a in principal or []] \
            + ([Grant.organization(org_id)] if org_id else [])
        request = PublishRequest(regions=_split(regions), grants=tuple(grants), runtimes=_split(runtimes),
                                 direct_upload=direct, force=force, bucket_template=bucket_template)
        artifacts = _artifacts(target, arch, out_dir, recipes_dir, reporter, verbose)
        for artifact in artifacts:
            check_request(artifact, request)  # before any AWS call
        aws = _aws_client()
        account = aws.account_id()
        asked = request.regions or tuple(aws.enabled_regions())  # the account's own list needs no check
        results = []
        for artifact in artifacts:
            reporter.step(f"read {artifact.published_name} in {len(asked)} region(s)")
            plan = make_plan(artifact, request, asked, account, read_latest(aws, artifact.published_name, asked))
            if dry_run:
                results.append({"plan": plan.to_json()})
                if not as_json:
                    _show_plan(plan)
                continue
            manifest = Manifest.load(manifest_path(manifests, artifact.recipe), artifact.recipe)
            uploads = len([r for r in plan.to_publish if plan.upload == "s3"])
            with reporter.progress("upload", artifact.zipped_bytes * max(uploads, 1)) as advance:
                outcomes = Executor(aws, manifest, progress=advance).run(plan)
            failed = failed or any(o.failed for o in outcomes)
            results.append({"plan": plan.to_json(), "outcomes": [_outcome_json(o) for o in outcomes],
                            "manifest": str(manifest.path), "retries": len(aws.retries)})
            if not as_json:
                _show_outcomes(plan, outcomes, manifest.path)
    except LayerError as error:
        _fail(error)
    if as_json:
        out.print_json(json.dumps(results if len(results) > 1 else results[0]))
    if failed:
        err.print("[bold red]error:[/] some regions failed; run the same command again to finish them")
        raise typer.Exit(7)


def _outcome_json(outcome) -> dict:
    version = outcome.version
    return {"region": outcome.region, "status": outcome.status, "message": outcome.message,
            "version": version.version if version else None, "arn": version.arn if version else None,
            "uploaded": outcome.uploaded, "granted": list(outcome.granted), "seconds": outcome.seconds}


def _show_plan(plan) -> None:
    table = Table(title=f"plan: {plan.layer_name} ({plan.artifact.arch}, {', '.join(plan.runtimes)}), "
                        f"upload via {plan.upload}", title_justify="left")
    for column in ("region", "action", "why", "staging bucket"):
        table.add_column(column)
    for region in plan.regions:
        table.add_row(region.region, region.action, region.reason, region.bucket or "-")
    out.print(table)
    if plan.grants:
        out.print("grants: " + ", ".join(g.describe() for g in plan.grants))
    out.print(f"[dim]description: {plan.description}[/]")


def _show_outcomes(plan, outcomes, manifest_file: Path) -> None:
    table = Table(title=f"published {plan.layer_name}", title_justify="left")
    for column in ("region", "outcome", "version", "ARN or error"):
        table.add_column(column, overflow="fold")
    colours = {"published": "green", "adopted": "green", "unchanged": "dim", "failed": "red"}
    for outcome in outcomes:
        table.add_row(outcome.region, f"[{colours[outcome.status]}]{outcome.status}[/]",
                      str(outcome.version.version) if outcome.version else "-",
                      outcome.version.arn if outcome.version else outcome.message)
    out.print(table)
    out.print(f"manifest: {manifest_file}")


@app.command()
def arns(
    recipe: Annotated[str, typer.Argument(help="Recipe name (reads published/RECIPE.json).")],
    region: Annotated[Optional[str], typer.Option(help="Only this region.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv | terraform")] = "table",
    manifests: ManifestDir = Path("published"),
) -> None:
    """Print the published layer ARNs of a recipe."""
    from .manifest import Manifest, manifest_path, render

    try:
        path = manifest_path(manifests, recipe)
        if not path.is_file():
            raise UsageError(f"nothing published for {recipe} ({path} does not exist)",
                             hint=f"layers publish {recipe} --regions ...")
        rows = Manifest.load(path, recipe).rows(region)
        if fmt == "table":
            table = Table(title=f"{recipe}: published layers", title_justify="left")
            for column in ("layer", "arch", "region", "version", "ARN"):
                table.add_column(column, overflow="fold")
            for e in rows:
                table.add_row(e.layer_name, e.architecture, e.region, str(e.version), e.arn)
            out.print(table)
        else:
            print(render(rows, fmt, recipe))
    except LayerError as error:
        _fail(error)


@app.command()
def prune(
    recipe: Annotated[str, typer.Argument(help="Recipe name (its layers in published/RECIPE.json).")],
    keep: Annotated[int, typer.Option(help="Versions to keep per region, newest first.")] = 3,
    regions: Regions = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be deleted; delete nothing.")] = False,
    manifests: ManifestDir = Path("published"),
) -> None:
    """Delete old layer versions in every region, never the one the manifest names as current."""
    from .manifest import Manifest, manifest_path
    from .publish import check_regions, plan_prune

    try:
        manifest = Manifest.load(manifest_path(manifests, recipe), recipe)
        if not manifest.entries:
            raise UsageError(f"nothing published for {recipe}", hint="prune works on layers the manifest names")
        asked = _split(regions)
        check_regions(asked)
        aws = _aws_client()
        table = Table(title=f"prune {recipe}: keep {keep}" + (" (dry run)" if dry_run else ""), title_justify="left")
        for column in ("layer", "region", "current", "deleted" if not dry_run else "would delete"):
            table.add_column(column)
        for layer_name in sorted({e.layer_name for e in manifest.entries.values()}):
            in_manifest = {e.region: e.version for e in manifest.entries.values() if e.layer_name == layer_name}
            where = [r for r in (asked or sorted(in_manifest))]
            listed = {r: aws.layer_versions(r, layer_name) for r in where}
            doomed = plan_prune(listed, keep, in_manifest)
            for region in where:
                if not dry_run:
                    for version in doomed[region]:
                        aws.delete_version(region, layer_name, version)
                table.add_row(layer_name, region, str(in_manifest.get(region, "-")),
                              ", ".join(map(str, doomed[region])) or "-")
        out.print(table)
    except LayerError as error:
        _fail(error)


# -- planning ------------------------------------------------------------------------
def _size(text: str, what: str) -> int:
    from .recipe import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _plan_layer(text: str, arch: str, out_dir: Path, recipes_dir: Path | None):
    from .artifact import built_zip, load_artifact
    from .plan import Item
    from .recipe import load_recipe

    if "=" in text:
        name, size = text.rsplit("=", 1)
        return Item(name, _size(size, f"--layer {text}"), "given")
    if text.endswith(".zip"):
        artifact = load_artifact(Path(text))
    else:
        recipe = load_recipe(text, recipes_dir)
        path = built_zip(out_dir, recipe.name, recipe.runtime, arch)
        if not path.is_file():
            raise UsageError(f"{recipe.name} is not built for {arch} ({path} is missing)",
                             hint=f"layers build {recipe.name} --arch {arch}, or give its size: --layer {text}=150MB")
        artifact = load_artifact(path)
    return Item(artifact.recipe, artifact.unzipped_bytes, f"build report of {artifact.zip_path.name}")


def _plan_model(text: str):
    from .plan import Item

    location, size = text.rsplit("=", 1) if "=" in text else (text, "")
    if size:
        return Item(location, _size(size, f"--model {text}"), "given")
    if location.startswith("s3://"):
        bucket, _, key = location[5:].partition("/")
        aws = _aws_client()
        region = (aws.call("s3", "us-east-1", "GetBucketLocation", Bucket=bucket).get("LocationConstraint")
                  or "us-east-1")
        head = aws.call("s3", region, "HeadObject", Bucket=bucket, Key=key)
        return Item(location, int(head["ContentLength"]), "S3 HeadObject")
    path = Path(location)
    if not path.is_file():
        raise UsageError(f"no model file {path}", hint="give its size instead: --model NAME=100MB")
    return Item(path.name, path.stat().st_size, "file")


@app.command("plan")
def plan_command(
    layer: Annotated[Optional[list[str]], typer.Option(
        "--layer", help="RECIPE (its build), a zip, or NAME=SIZE; up to 5.")] = None,
    function_size: Annotated[str, typer.Option("--function-size", help="The function's own code, unzipped.")] = "0",
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", help="A model: PATH, s3://BUCKET/KEY (size asked of S3) or either with =SIZE.")] = None,
    ephemeral: Annotated[str, typer.Option(help="The function's /tmp (512MB to 10240MB).")] = "512MiB",
    arch: Annotated[str, typer.Option(help="Which build of each recipe.")] = "x86_64",
    out_dir: Annotated[Path, typer.Option("--out", help="Where built zips are.")] = Path("dist"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    recipes_dir: RecipesDir = None,
) -> None:
    """Where do the layers and the models fit? The package, S3 + /tmp, or a container image."""
    from .plan import plan_budget

    try:
        layers = [_plan_layer(text, arch, out_dir, recipes_dir) for text in layer or []]
        models = [_plan_model(text) for text in model or []]
        plan = plan_budget(_size(function_size, "--function-size"), layers, models,
                           _size(ephemeral, "--ephemeral"))
    except LayerError as error:
        _fail(error)
    if as_json:
        out.print_json(json.dumps(plan.to_json()))
        return
    sizes = Table(title="what the function carries", title_justify="left")
    for column in ("item", "size", "from"):
        sizes.add_column(column)
    sizes.add_row("function code", human(plan.function), "--function-size")
    for item in plan.layers:
        sizes.add_row(f"layer {item.name}", human(item.bytes), item.source)
    for item in plan.models:
        sizes.add_row(f"model {item.name}", human(item.bytes), item.source)
    out.print(sizes)
    table = Table(title="where the models can go", title_justify="left")
    for column in ("option", "measure", "needs", "limit", ""):
        table.add_column(column, overflow="fold")
    for option in plan.options:
        for i, check in enumerate(option.checks):
            limit = str(check.limit) if check.measure == "layers" else human(check.limit)
            value = str(check.value) if check.measure == "layers" else human(check.value)
            table.add_row(option.title if i == 0 else "", check.measure, value, limit,
                          "[green]fits[/]" if check.ok else "[red]over[/]")
    out.print(table)
    best = plan.recommended
    if best is None:
        out.print("[red]nothing fits[/]: even a container image is over 10 GB")
    else:
        out.print(f"[bold]recommended:[/] {best.title}: {best.advice}")


# -- locks, rebuilds, schedules ---------------------------------------------------
def _load_recipes(names: list[str], all_recipes: bool, recipes_dir: Path | None):
    from .recipe import default_recipes_dir, load_recipe

    if bool(names) == all_recipes:
        raise UsageError("name the recipes, or pass --all")
    if all_recipes:
        directory = recipes_dir or default_recipes_dir()
        names = sorted(p.stem for p in directory.glob("*.toml"))
        if not names:
            raise UsageError(f"no recipes in {directory}")
    return [load_recipe(name, recipes_dir) for name in names]


@app.command()
def lock(
    recipe: Annotated[str, typer.Argument(help="Recipe name or path; writes recipes/NAME.lock.")],
    upgrade: Annotated[bool, typer.Option("--upgrade", help="Resolve afresh even when the lock is current.")] = False,
    recipes_dir: RecipesDir = None,
    verbose: Verbose = False,
) -> None:
    """Pin a recipe's whole stack, per architecture, to exact versions and hashes."""
    from .backends.base import Target
    from .backends.select import choose_backend
    from .lockfile import LockFile, load_lockfile, lock_path, requirements_digest, save_lockfile, version_changes
    from .recipe import load_recipe
    import tempfile

    reporter = RichReporter(err)
    try:
        loaded = load_recipe(recipe, recipes_dir)
        existing = load_lockfile(loaded)
        if (existing and existing.fresh_for(loaded) and not upgrade
                and all(a in existing.targets for a in loaded.architectures)):
            out.print(f"{lock_path(loaded)} is up to date (use --upgrade to move it)")
            return
        fresh = LockFile(loaded.name, loaded.runtime, requirements_digest(loaded))
        runner = _runner(verbose)
        table = Table(title=f"{lock_path(loaded)}", title_justify="left")
        for column in ("arch", "packages", "changes"):
            table.add_column(column, overflow="fold")
        for arch in loaded.architectures:
            target = Target(loaded.runtime_info, arch)
            backend = choose_backend("auto", target, runner, reporter, loaded.base_image or None)
            with tempfile.TemporaryDirectory(prefix="layers-lock-") as scratch:
                work = Path(scratch).resolve()
                with backend.session(target, work) as session:
                    fresh.targets[arch] = session.resolve(loaded, work)
                    fresh.targets[arch] = fresh.targets[arch].lock
            before = existing.targets[arch].versions() if existing and arch in existing.targets else {}
            changes = version_changes(before, fresh.targets[arch].versions())
            table.add_row(arch, str(len(fresh.targets[arch].wheels)), "; ".join(changes) or "none")
        path = save_lockfile(loaded, fresh)
    except LayerError as error:
        _fail(error)
    out.print(table)
    out.print(f"[green]wrote[/] {path}")


@app.command()
def rebuild(
    recipes: Annotated[Optional[list[str]], typer.Argument(help="Recipe names (or --all).")] = None,
    all_recipes: Annotated[bool, typer.Option("--all", help="Every recipe in the recipes directory.")] = False,
    arch: Annotated[Optional[str], typer.Option(help="Only this architecture.")] = None,
    publish_too: Annotated[bool, typer.Option("--publish", help="Publish what was rebuilt (needs --regions).")] = False,
    regions: Regions = None,
    public: Annotated[bool, typer.Option("--public", help="With --publish: let every AWS account use the layers.")] = False,
    base_image: Annotated[Optional[str], typer.Option("--base-image", help="Docker backend base image.")] = None,
    jobs: Annotated[int, typer.Option(help="Recipes at once (default: the machine's cores).")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Where builds go (and the last ones are).")] = Path("dist"),
    manifests: ManifestDir = Path("published"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    recipes_dir: RecipesDir = None,
    verbose: Verbose = False,
) -> None:
    """Re-resolve recipes; rebuild (and publish) only those whose layer would change."""
    from .publish import Grant, PublishRequest
    from .rebuild import RebuildOptions, Rebuilder

    reporter = RichReporter(err, quiet=as_json)
    try:
        loaded = _load_recipes(list(recipes or []), all_recipes, recipes_dir)
        request = None
        if publish_too:
            if not regions:
                raise UsageError("--publish needs --regions")
            request = PublishRequest(regions=_split(regions), grants=(Grant.public(),) if public else ())
        elif regions or public:
            raise UsageError("--regions and --public go with --publish")
        options = RebuildOptions(out_dir=out_dir, manifests=manifests, publish=request, base_image=base_image,
                                 jobs=jobs)
        outcomes = Rebuilder(_runner(verbose), reporter, options, aws_factory=_aws_client).run(loaded, arch)
    except LayerError as error:
        _fail(error)
    if as_json:
        out.print_json(json.dumps([o.to_json() for o in outcomes]))
    else:
        _show_rebuild(outcomes)
    if any(o.failed for o in outcomes):
        err.print("[bold red]error:[/] some recipes failed (see the table); the others were done")
        raise typer.Exit(8)


def _show_rebuild(outcomes) -> None:
    table = Table(title="rebuild", title_justify="left")
    for column in ("recipe", "arch", "outcome", "what changed", "size", "notes"):
        table.add_column(column, overflow="fold")
    colours = {"unchanged": "dim", "rebuilt": "green", "published": "green", "failed": "red"}
    for o in outcomes:
        if o.size_before is not None and o.size_after is not None and o.size_before != o.size_after:
            size = f"{human(o.size_before)} → {human(o.size_after)}"
        else:
            size = human(o.size_after) if o.size_after is not None else "-"
        table.add_row(o.recipe, o.arch, f"[{colours[o.status]}]{o.status}[/]", "; ".join(o.changes) or "-", size,
                      "; ".join([*o.notes, *([o.message] if o.message else [])]) or "-")
    out.print(table)


schedule_app = typer.Typer(help="Write a schedule for 'layers rebuild' on an existing CI engine.")
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("github")
def schedule_github(
    cron: Annotated[str, typer.Option(help="When, in UTC (five-field cron).")] = "17 5 * * 1",
    regions: Annotated[str, typer.Option("--regions", help="Where to publish.")] = "us-east-1",
    role_secret: Annotated[str, typer.Option(help="Repository secret holding the IAM role ARN to assume.")]
        = "LAYERS_AWS_ROLE_ARN",
    output: Annotated[Path, typer.Option("--output", help="The workflow file to write.")]
        = Path(".github/workflows/layers-rebuild.yml"),
    recipes_dir: RecipesDir = None,
) -> None:
    """Write a GitHub Actions workflow: cron, recipe × arch matrix, OIDC role, rebuild then publish."""
    from .publish import check_regions
    from .schedule import WorkflowOptions, github_workflow

    try:
        loaded = _load_recipes([], True, recipes_dir)
        asked = _split(regions)
        check_regions(asked)
        text = github_workflow(loaded, WorkflowOptions(cron=cron, regions=asked, role_secret=role_secret))
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(f".{output.name}.partial")
        partial.write_text(text)
        partial.replace(output)
    except LayerError as error:
        _fail(error)
    out.print(f"[green]wrote[/] {output} ({len(loaded)} recipes); set the secret {role_secret} to the role's ARN")


@app.callback(invoke_without_command=True)
def _version(version: Annotated[bool, typer.Option("--version", help="Show the version.")] = False) -> None:
    if version:
        out.print(f"layers {__version__}")
        raise typer.Exit(0)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        sys.exit(130)
