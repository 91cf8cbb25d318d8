"""``layers lock``, ``rebuild`` and ``schedule``: keeping layers fresh.

Part of the CLI (``builder.cli``); the library does the work (``lockfile``,
``rebuild``, ``schedule``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import LayerError, UsageError
from ..measure import human
from .app import RecipesDir, RichReporter, Verbose, _fail, _runner, app, err, out, styled
from .publish import ManifestDir, NoSsm, Regions, SsmPrefix, _aws_client, _split, _ssm_and_lease, check_aws_environment


# -- locks, rebuilds, schedules ---------------------------------------------------
def _load_recipes(names: list[str], all_recipes: bool, recipes_dir: Path | None):
    from ..recipe import default_recipes_dir, load_recipe

    if bool(names) == all_recipes:
        raise UsageError("name the recipes, or pass --all" if not names else "name the recipes or pass --all, not both",
                         hint="layers rebuild tf18 np311, or layers rebuild --all")
    if all_recipes:
        directory = recipes_dir or default_recipes_dir()
        names = sorted(p.stem for p in directory.glob("*.toml"))
        if not names:
            raise UsageError(f"no recipes in {directory}", hint="make one with: layers init NAME -r requirements.txt")
    return [load_recipe(name, recipes_dir) for name in names]


@app.command()
def lock(
    recipe: Annotated[str, typer.Argument(help="Recipe name or path; writes recipes/NAME.lock.")],
    upgrade: Annotated[bool, typer.Option("--upgrade", help="Resolve afresh even when the lock is current.")] = False,
    recipes_dir: RecipesDir = None,
    verbose: Verbose = False,
) -> None:
    """Pin a recipe's whole stack, per architecture, to exact versions and hashes."""
    from ..backends.base import Target
    from ..backends.select import choose_backend
    from ..lockfile import LockFile, load_lockfile, lock_path, requirements_digest, save_lockfile, version_changes
    from ..rebuild.rebuild import resolve_afresh
    from ..recipe import load_recipe

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
            fresh.targets[arch] = resolve_afresh(backend, loaded, target)
            before = existing.targets[arch].versions() if existing and arch in existing.targets else {}
            changes = version_changes(before, fresh.targets[arch].versions())
            table.add_row(arch, str(len(fresh.targets[arch].wheels)), "; ".join(changes) or "none")
        path = save_lockfile(loaded, fresh)
    except LayerError as error:
        _fail(error)
    out.print(table)
    out.print(styled("green", "wrote ", str(path)))


@app.command()
def rebuild(
    recipes: Annotated[Optional[list[str]], typer.Argument(help="Recipe names (or --all).")] = None,
    all_recipes: Annotated[bool, typer.Option("--all", help="Every recipe in the recipes directory.")] = False,
    arch: Annotated[Optional[str], typer.Option(help="Only this architecture.")] = None,
    publish_too: Annotated[bool, typer.Option("--publish", help="Publish what was rebuilt (needs --regions).")] = False,
    regions: Regions = None,
    public: Annotated[bool, typer.Option("--public", help="With --publish: let every AWS account use the layers.")] = False,
    ssm_prefix: SsmPrefix = None,
    no_ssm: NoSsm = False,
    base_image: Annotated[Optional[str], typer.Option("--base-image", help="Docker backend base image.")] = None,
    jobs: Annotated[int, typer.Option(help="Recipes at once (default: the machine's cores).")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Where builds go (and the last ones are).")] = Path("dist"),
    manifests: ManifestDir = Path("published"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    recipes_dir: RecipesDir = None,
    verbose: Verbose = False,
) -> None:
    """Re-resolve recipes; rebuild (and publish) only those whose layer would change."""
    from ..publish.plan import Grant, PublishRequest, check_arguments
    from ..rebuild.rebuild import Rebuilder, RebuildOptions

    from ..build import BuildOptions, check_outputs
    from ..files import check_directory_option

    reporter = RichReporter(err, quiet=as_json)
    try:
        if arch is not None and arch not in ("x86_64", "arm64"):
            raise UsageError(f"--arch {arch!r} is not a Lambda architecture", hint="x86_64 or arm64")
        if not 0 <= jobs <= 64:
            raise UsageError(f"--jobs {jobs} is not a number of recipes at once from 1 to 64",
                             hint="leave it out (0) for the machine's cores")
        loaded = _load_recipes(list(recipes or []), all_recipes, recipes_dir)
        check_directory_option(manifests, "--manifests")
        for recipe in loaded:  # a build's outputs that could not be delivered are refused before resolving
            check_outputs(recipe, [arch] if arch else list(recipe.architectures), BuildOptions(out_dir=out_dir))
        request = None
        if publish_too:
            if not regions:
                raise UsageError("--publish needs --regions", hint="e.g. --publish --regions us-east-1,eu-west-1")
            request = PublishRequest(regions=_split(regions), grants=(Grant.public(),) if public else (),
                                     **_ssm_and_lease(ssm_prefix, no_ssm))
            check_arguments(request)  # a region typo is refused before anything is resolved
            check_aws_environment()   # and so is a bad AWS environment
        elif regions or public or ssm_prefix is not None or no_ssm:
            raise UsageError("--regions, --public, --ssm-prefix and --no-ssm go with --publish",
                             hint="add --publish, or drop them")
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
        err.print(styled("bold red", "error: ", "some recipes failed (see the table); the others were done"))
        err.print(styled("dim", "hint: ", "layers build NAME shows one recipe's failure with its hint; "
                                          "rebuild again to retry only what failed"))
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
        table.add_row(o.recipe, o.arch, styled(colours[o.status], o.status), "; ".join(o.changes) or "-", size,
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
    from ..rebuild.schedule import WorkflowOptions, check_options, check_output, github_workflow, write_workflow

    try:
        # Every option is checked before the recipes are read or a folder is made: a refusal writes nothing.
        options = WorkflowOptions(cron=cron, regions=_split(regions), role_secret=role_secret)
        check_options(options)
        check_output(output)
        loaded = _load_recipes([], True, recipes_dir)
        write_workflow(output, github_workflow(loaded, options))
    except LayerError as error:
        _fail(error)
    out.print(styled("green", "wrote ", f"{output} ({len(loaded)} recipes); "
                                        f"set the secret {role_secret} to the role's ARN"))
