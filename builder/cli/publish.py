"""``layers publish``, ``arns``, ``prune`` and ``plan``: the commands about AWS and Lambda's limits.

Part of the CLI (``builder.cli``): the same consoles, error mapping and
reporter; the library does the work (``publish``, ``manifest``, ``plan``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import LayerError, UsageError
from ..measure import human
from .app import RecipesDir, RichReporter, Verbose, _fail, _runner, app, err, out, printable, styled

# -- publishing ----------------------------------------------------------------
Regions = Annotated[Optional[str], typer.Option("--regions", help="Comma-separated regions, e.g. us-east-1,eu-west-1.")]
ManifestDir = Annotated[Path, typer.Option("--manifests", help="Where published/RECIPE.json manifests live.")]
SsmPrefix = Annotated[Optional[str], typer.Option(
    "--ssm-prefix", help="Where the SSM parameters of the ARNs go (default /layers).")]
NoSsm = Annotated[bool, typer.Option("--no-ssm", help="Write no SSM parameters.")]


def _split(value: str | None, option: str = "--regions") -> tuple[str, ...]:
    """A comma-separated option's items; one that was given but names nothing is refused, never taken as "all"."""
    parts = tuple(part.strip() for part in (value or "").split(",") if part.strip())
    if value is not None and not parts:
        raise UsageError(f"{option} {value!r} names nothing", hint=f"give at least one name after {option}")
    return parts


def _aws_client():
    """The AWS seam as the commands use it: Lambda's rate, and the retry policy (tunable from the environment).

    Everything that can be wrong with the environment is refused here, before a request: the variables
    (``read_aws_environment``), the profile and config files (``open_session``) and what botocore checks
    when it makes a client (``open_clients``). A ``UsageError`` (exit 2), one line and a hint.
    """
    import os

    from ..publish.aws import AwsClient, RateLimiter, open_session, read_aws_environment
    from ..publish.plan import lambda_api

    settings = read_aws_environment(os.environ)
    client = AwsClient(session=open_session(), limiter=RateLimiter(lambda_api()["limits"]["control_plane_per_second"]),
                       max_attempts=settings.max_attempts, base_delay=settings.base_delay)
    return client.open_clients()


def check_aws_environment() -> None:
    """Refuse a bad AWS environment before any work, for a command that makes its AWS client only later.

    ``layers rebuild --publish`` hands ``_aws_client`` to the rebuilder as a factory, called after the
    builds: without this the first word about a mistyped AWS_PROFILE would come minutes later. The client
    made here is dropped; making one sends no request.
    """
    _aws_client()


def _check_runtime_names(names: tuple[str, ...]) -> None:
    """--runtimes names Lambda Python runtimes: known before a zip is built (whether they fit it, only after)."""
    from ..runtimes import get_runtime

    for name in names:
        try:
            get_runtime(name)
        except LayerError as error:
            raise UsageError(f"{name!r} is not a Lambda Python runtime", hint=error.hint) from None


def _check_arch(arch: str | None) -> None:
    import difflib

    from ..publish.plan import lambda_api

    known = lambda_api()["limits"]["architectures"]
    if arch is not None and arch not in known:
        close = difflib.get_close_matches(arch, known, n=1)
        raise UsageError(f"--arch {arch!r} is not a Lambda architecture",
                         hint=f"did you mean {close[0]!r}?" if close else " or ".join(known))


def _artifacts(target: str, arch: str | None, out_dir: Path, recipes_dir: Path | None, reporter, verbose: bool):
    """The built layers to publish: a zip, or a recipe's zips (built first where missing)."""
    from ..publish.artifact import built_zip, load_artifact

    if target.endswith(".zip"):
        artifact = load_artifact(Path(target))
        # --arch is never ignored: with a zip it must say what the zip holds.
        if arch is not None and arch != artifact.arch:
            raise UsageError(f"{Path(target).name} is built for {artifact.arch}, not --arch {arch}",
                             hint="drop --arch, or give the zip built for it")
        return [artifact]
    from ..backends.base import Target
    from ..backends.select import choose_backend
    from ..build import BuildOptions
    from ..build import build as run_build
    from ..lockfile import committed_lock
    from ..recipe import load_recipe

    recipe = load_recipe(target, recipes_dir)
    arches = [arch] if arch else list(recipe.architectures)
    found = []
    for one in arches:
        path = built_zip(out_dir, recipe.name, recipe.runtime, one)
        if not path.is_file():
            reporter.notice(f"{path} is not built yet: building it first")
            runner = _runner(verbose)
            backend = choose_backend("auto", Target(recipe.runtime_info, one), runner, reporter,
                                     recipe.base_image or None, recipe.runtime_image or None)
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
    force: Annotated[bool, typer.Option("--force", help="Publish a layer whose smoke test did not run or whose load check fails.")] = False,
    ssm_prefix: SsmPrefix = None,
    no_ssm: NoSsm = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where built zips are (dist/).")] = Path("dist"),
    manifests: ManifestDir = Path("published"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan or the outcome as JSON.")] = False,
    recipes_dir: RecipesDir = None,
    verbose: Verbose = False,
) -> None:
    """Publish a built layer as a new version in every asked region that lacks this zip.

    In each region the version's ARN goes into the SSM parameters
    PREFIX/LAYER/ARCH/latest and PREFIX/LAYER/ARCH/VERSION (--no-ssm: none).
    Publishes of one zip running at once (CI runners) make one version: the
    others wait for it and adopt it (LAYERS_LEASE_SECONDS: how long a crashed
    one blocks them, default 600).
    """
    from ..publish.executor import Executor, read_latest
    from ..publish.manifest import Manifest, manifest_path
    from ..files import check_directory_option
    from ..publish.plan import Grant, PublishRequest, check_arguments, check_loads, check_request, make_plan

    reporter = RichReporter(err, quiet=as_json)
    failed = False
    try:
        if bool(regions) == all_regions:
            raise UsageError("say where: --regions R1,R2,... or --all-regions",
                             hint="give --regions us-east-1,eu-west-1 (say) or --all-regions, not both")
        # An empty --org-id is refused by the check, not dropped: nothing the user typed is ignored.
        grants = ([Grant.public()] if public else []) + [Grant.account(a) for a in principal or []] \
            + ([Grant.organization(org_id)] if org_id is not None else [])
        request = PublishRequest(regions=_split(regions), grants=tuple(grants), runtimes=_split(runtimes, "--runtimes"),
                                 direct_upload=direct, force=force, bucket_template=bucket_template,
                                 **_ssm_and_lease(ssm_prefix, no_ssm))
        check_arguments(request)  # before a missing zip is built
        _check_runtime_names(request.runtimes)
        _check_arch(arch)
        check_directory_option(manifests, "--manifests")
        aws = _aws_client()  # a bad environment is refused before a zip is read or built, and no request is sent
        if request.ssm_prefix is not None:
            aws.open_clients(("ssm",))
        artifacts = _artifacts(target, arch, out_dir, recipes_dir, reporter, verbose)
        for artifact in artifacts:  # before any AWS call
            check_request(artifact, request)
            for warning in check_loads(artifact, request):
                reporter.notice(f"load check: {warning}")
        if direct and not dry_run:
            reporter.notice("--direct: no staging bucket, so no lease: publishes of this zip running at once "
                            "may each make a version")
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
        err.print(styled("bold red", "error: ", "some regions failed; run the same command again to finish them"))
        raise typer.Exit(7)


def _ssm_and_lease(ssm_prefix: str | None, no_ssm: bool) -> dict:
    """The request's SSM prefix (None: --no-ssm; checked with the request) and lease length (LAYERS_LEASE_SECONDS)."""
    import os

    from ..publish.lease import read_lease_seconds
    from ..publish.plan import DEFAULT_SSM_PREFIX

    if no_ssm and ssm_prefix is not None:
        raise UsageError("--no-ssm writes no parameters, so --ssm-prefix has nothing to do",
                         hint="give one of them, not both")
    # An empty --ssm-prefix is refused by the check, not taken as the default: nothing typed is ignored.
    return {"ssm_prefix": None if no_ssm else (DEFAULT_SSM_PREFIX if ssm_prefix is None else ssm_prefix),
            "lease_seconds": read_lease_seconds(os.environ)}


def _outcome_json(outcome) -> dict:
    version = outcome.version
    return {"region": outcome.region, "status": outcome.status, "message": outcome.message,
            "version": version.version if version else None, "arn": version.arn if version else None,
            "uploaded": outcome.uploaded, "granted": list(outcome.granted), "seconds": outcome.seconds,
            "ssm": list(outcome.ssm), "ssm_written": list(outcome.ssm_written), "note": outcome.note}


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
    if plan.ssm_prefix is not None:
        names = sorted({name for region in plan.regions for name in region.ssm})
        out.print(Text("SSM parameters in each region (written where they differ): " + ", ".join(names)))
    else:
        out.print("SSM parameters: none (--no-ssm)")
    if plan.upload == "s3" and plan.to_publish:
        out.print(Text(f"lease while publishing: s3://BUCKET/{plan.to_publish[0].lease.split('/', 3)[3]} "
                       f"({plan.lease_seconds} s)"))
    out.print(Text(f"description: {plan.description}", style="dim"))


def _show_outcomes(plan, outcomes, manifest_file: Path) -> None:
    table = Table(title=f"published {plan.layer_name}", title_justify="left")
    for column in ("region", "outcome", "version", "ARN or error", "SSM"):
        table.add_column(column, overflow="fold")
    colours = {"published": "green", "adopted": "green", "unchanged": "dim", "failed": "red"}
    for outcome in outcomes:
        ssm = f"{len(outcome.ssm_written)} written" if outcome.ssm_written else ("as they were" if outcome.ssm else "-")
        table.add_row(outcome.region, styled(colours[outcome.status], outcome.status),
                      str(outcome.version.version) if outcome.version else "-",
                      outcome.version.arn if outcome.version else outcome.message, ssm)
    out.print(table)
    for outcome in outcomes:
        if outcome.note:
            out.print(Text(f"{outcome.region}: {outcome.note}"))
    out.print(f"manifest: {manifest_file}")


# -- layers arns ----------------------------------------------------------------------
# table, json, csv and terraform first: the order `--format` has always listed them in.
ARN_FORMATS = ("table", "json", "csv", "terraform", "sam", "cloudformation", "cdk", "serverless", "html")
INDEX_FORMATS = ("table", "json", "html")  # with --all: every manifest


def _check_format(fmt: str) -> None:
    import difflib

    if fmt not in ARN_FORMATS:
        close = difflib.get_close_matches(fmt, ARN_FORMATS, n=1)
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(ARN_FORMATS)}",
                         hint=f"did you mean {close[0]!r}?" if close else
                         f"--format {', '.join(ARN_FORMATS[:-1])} or {ARN_FORMATS[-1]}")


def _check_arns_arguments(recipe: str | None, all_manifests: bool, fmt: str, pin: bool, latest: bool,
                          ssm_prefix: str | None, region: str | None, output: Path | None) -> None:
    """Everything ``layers arns`` was given, checked together before a manifest is read or a file written."""
    from ..publish.index import check_output
    from ..publish.plan import check_regions, check_ssm_prefix

    _check_format(fmt)  # a typo is not "nothing published"
    if pin and latest:
        raise UsageError("--pin and --latest: choose one",
                         hint="--pin (the default) names each region's exact version; --latest the SSM parameter "
                              "publish keeps pointing at the newest")
    if all_manifests and recipe is not None:
        raise UsageError(f"--all indexes every manifest, so it takes no recipe (got {recipe!r})",
                         hint=f"drop --all for {recipe}'s ARNs, or drop the recipe for the index")
    if not all_manifests and recipe is None:
        raise UsageError("say which: a RECIPE, or --all for every manifest",
                         hint="layers arns RECIPE --format sam, or layers arns --all --format html --output index.html")
    if all_manifests and fmt not in INDEX_FORMATS:
        raise UsageError(f"--all --format {fmt}: a {fmt} document is for one recipe's layers",
                         hint="give a recipe instead of --all, or --all with --format table, json or html")
    if latest and (all_manifests or fmt == "html"):
        raise UsageError("--latest is for a recipe's snippets and lists; the index shows the versions published",
                         hint="drop --latest, or give a recipe and --format sam, cloudformation, cdk, serverless, "
                              "terraform, json or csv")
    if ssm_prefix is not None:
        if not latest:
            raise UsageError("--ssm-prefix says where --latest reads; without --latest it has nothing to do",
                             hint="add --latest, or drop --ssm-prefix")
        check_ssm_prefix(ssm_prefix)
    if region is not None:
        check_regions((region,))  # a typo would print an empty table, as if nothing were published there
    if output is not None:
        if fmt == "table":
            raise UsageError("--output writes a document; the table is for the terminal",
                             hint="give --format too: json, csv, html, sam, cloudformation, cdk, serverless or terraform")
        check_output(output)


@app.command()
def arns(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe name (reads published/RECIPE.json).")] = None,
    all_manifests: Annotated[bool, typer.Option(
        "--all", help="Every manifest in --manifests: one index (table, json or html).")] = False,
    region: Annotated[Optional[str], typer.Option(help="Only this region.")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="table | json | csv | terraform | sam | cloudformation | cdk (Python) | serverless | html"
    )] = "table",
    pin: Annotated[bool, typer.Option(
        "--pin", help="Snippets name each region's exact published version (the default).")] = False,
    latest: Annotated[bool, typer.Option(
        "--latest", help="Snippets read the ARN from the SSM parameter publish keeps at the newest version.")] = False,
    ssm_prefix: Annotated[Optional[str], typer.Option(
        "--ssm-prefix", help="With --latest: the prefix publish wrote under (default: what the manifest records).")]
        = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", help="Write to this file (by a rename, never half a file) instead of printing.")] = None,
    manifests: ManifestDir = Path("published"),
) -> None:
    """Print a recipe's published layer ARNs, an IaC snippet that uses them, or (--all) an index of every manifest.

    Layers are regional: every format says which ARN is for which region.
    """
    from ..publish.manifest import Manifest, load_all, manifest_path
    from ..publish.snippets import render

    try:
        _check_arns_arguments(recipe, all_manifests, fmt, pin, latest, ssm_prefix, region, output)
        if all_manifests:
            text = _arns_index(load_all(manifests), fmt, region, manifests)
        else:
            path = manifest_path(manifests, recipe)
            if not path.is_file():
                raise UsageError(f"nothing published for {recipe} ({path} does not exist)",
                                 hint=f"layers publish {recipe} --regions ...")
            manifest = Manifest.load(path, recipe)
            rows = manifest.rows(region)
            if not rows:
                raise UsageError(f"nothing published for {recipe}" + (f" in {region}" if region else "")
                                 + f" ({path})", hint=f"layers publish {recipe} --regions ...")
            if fmt == "table":
                text = None
                _arns_table(f"{recipe}: published layers", [(recipe, e) for e in rows],
                            _latest_names(rows, ssm_prefix) if latest else None)
            elif fmt == "html":
                from ..publish.index import index_html

                text = index_html([manifest], region)
            else:
                text = render(rows, fmt, recipe, latest=latest, ssm_prefix=ssm_prefix)
        if text is not None:
            if output is not None:
                from ..publish.index import write_output

                write_output(output, text if text.endswith("\n") else text + "\n")
                err.print(Text(f"wrote {printable(str(output))}"))
            else:
                print(text)
    except LayerError as error:
        _fail(error)


def _latest_names(rows, ssm_prefix: str | None) -> dict[str, str]:
    from ..publish.snippets import latest_parameter

    by_name: dict[str, list] = {}
    for entry in rows:
        by_name.setdefault(entry.layer_name, []).append(entry)
    return {name: latest_parameter(name, found, ssm_prefix) for name, found in by_name.items()}


def _arns_table(title: str, rows, latest_names: dict[str, str] | None = None, with_recipe: bool = False) -> None:
    table = Table(title=title, title_justify="left")
    columns = (("recipe",) if with_recipe else ()) + ("layer", "arch", "region", "version", "ARN") \
        + (("SSM parameter",) if latest_names is not None else ())
    for column in columns:
        table.add_column(column, overflow="fold")
    for recipe, e in rows:
        cells = ((recipe,) if with_recipe else ()) + (e.layer_name, e.architecture, e.region, str(e.version), e.arn) \
            + ((latest_names[e.layer_name],) if latest_names is not None else ())
        table.add_row(*(Text(printable(c)) for c in cells))  # the manifest's values as text, never markup
    out.print(table)


def _arns_index(manifests, fmt: str, region: str | None, directory: Path) -> str | None:
    """``--all``: the index of every manifest as a table (printed here), JSON or an HTML page."""
    from ..publish.index import index_html, render_json

    rows = [(m.recipe, e) for m in manifests for e in m.rows(region)]
    if not rows:
        raise UsageError(f"nothing published in any of the {len(manifests)} manifest(s) in {directory}"
                         + (f" in {region}" if region else ""), hint="layers publish RECIPE --regions ...")
    if fmt == "table":
        _arns_table(f"published layers ({len(manifests)} manifest(s) in {directory})", rows, with_recipe=True)
        return None
    return render_json(manifests, region) if fmt == "json" else index_html(manifests, region)


@app.command()
def prune(
    recipe: Annotated[str, typer.Argument(help="Recipe name (its layers in published/RECIPE.json).")],
    keep: Annotated[int, typer.Option(help="Versions to keep per region, newest first.")] = 3,
    older_than: Annotated[Optional[str], typer.Option(
        "--older-than", help="Delete only versions older than this: 12h, 30d, 2w.")] = None,
    regions: Regions = None,
    ssm_prefix: Annotated[Optional[str], typer.Option(
        "--ssm-prefix", help="Where publish wrote the SSM parameters (default /layers): 'latest' is kept.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print each version's fate and why; delete nothing.")]
        = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decisions as JSON.")] = False,
    manifests: ManifestDir = Path("published"),
) -> None:
    """Delete old layer versions, never one a deploy may still need.

    Kept: the manifest's current version, the one the SSM 'latest' parameter
    names, every version a function in the region (or a published version of
    one) lists, every version younger than --older-than, and the newest --keep.
    Every region is planned before anything is deleted.
    """
    from datetime import UTC, datetime

    from ..publish.manifest import Manifest, manifest_path
    from ..publish.plan import DEFAULT_SSM_PREFIX, check_keep, check_regions, check_ssm_prefix, parse_age

    try:
        # The arguments, then the environment, then the manifest: all before AWS is asked for any version.
        check_keep(keep)
        age = parse_age(older_than) if older_than is not None else None
        ssm_prefix = DEFAULT_SSM_PREFIX if ssm_prefix is None else ssm_prefix
        check_ssm_prefix(ssm_prefix)
        asked = _split(regions)
        check_regions(asked)
        aws = _aws_client().open_clients(("ssm",))
        manifest = Manifest.load(manifest_path(manifests, recipe), recipe)
        if not manifest.entries:
            raise UsageError(f"nothing published for {recipe}", hint="prune works on layers the manifest names")
        decisions, empty = _plan_prune(aws, manifest, asked, keep, age, ssm_prefix, datetime.now(UTC))
        outcomes = {} if dry_run else _delete(aws, decisions)
    except LayerError as error:
        _fail(error)
    failed = [d for d, outcome in outcomes.items() if outcome != "deleted"]
    if as_json:
        out.print_json(json.dumps({"recipe": recipe, "keep": keep, "older_than": older_than, "dry_run": dry_run,
                                   "decisions": [{**d.to_json(), **({"outcome": outcomes.get(d, "kept")}
                                                                    if not dry_run else {})} for d in decisions],
                                   "empty": [{"layer_name": n, "region": r} for n, r in empty]}))
    else:
        _show_prune(recipe, keep, older_than, dry_run, decisions, empty, outcomes)
    if failed:
        err.print(styled("bold red", "error: ", f"{len(failed)} version(s) could not be deleted; "
                                                "run the same command again to finish"))
        raise typer.Exit(7)


def _plan_prune(aws, manifest, asked: tuple[str, ...], keep: int, age, ssm_prefix: str, now):
    """Every version of every layer of the manifest in every region, decided: nothing is deleted here.

    ListFunctions is the costly read (a page per 50 function versions), so a
    region's functions are listed only once, and only where the cheaper facts
    leave something to delete: a function can only add a reason to keep.
    """
    from dataclasses import replace

    from ..publish.plan import PruneFacts, plan_prune, ssm_parameter_name

    reporter = RichReporter(err)
    users: dict[str, dict[str, tuple[str, ...]]] = {}
    decisions, empty = [], []
    for layer_name in sorted({e.layer_name for e in manifest.entries.values()}):
        entries = {e.region: e for e in manifest.entries.values() if e.layer_name == layer_name}
        arch = next(iter(entries.values())).architecture
        for region in asked or sorted(entries):
            current = entries.get(region)
            facts = PruneFacts(tuple(aws.layer_versions(region, layer_name)),
                               manifest_version=current.version if current else None)
            if not facts.versions:
                empty.append((layer_name, region))
                continue
            parameter = ssm_parameter_name(ssm_prefix, layer_name, arch, "latest")
            latest = aws.ssm_parameter(region, parameter)
            if latest is not None and latest not in {v.arn for v in facts.versions}:
                reporter.notice(f"{parameter} in {region} holds {latest[:200]!r}, no listed version of {layer_name}: "
                                "it protects nothing")
            facts = replace(facts, ssm_latest=latest)
            planned = plan_prune(layer_name, {region: facts}, keep, older_than=age, now=now)
            if any(d.delete for d in planned):
                if region not in users:
                    users[region] = aws.layer_users(region)
                planned = plan_prune(layer_name, {region: replace(facts, users=users[region])}, keep,
                                     older_than=age, now=now)
            decisions += planned
    return decisions, empty


def _delete(aws, decisions) -> dict:
    """Carry out the plan's deletions; a failed one is said and the others still tried (a rerun finishes)."""
    from ..publish.aws import AwsError

    outcomes = {}
    for decision in decisions:
        if not decision.delete:
            continue
        try:
            aws.delete_version(decision.region, decision.layer_name, decision.version)
            outcomes[decision] = "deleted"
        except AwsError as error:
            outcomes[decision] = f"failed: {error.message}"
    return outcomes


def _show_prune(recipe: str, keep: int, older_than: str | None, dry_run: bool, decisions, empty, outcomes) -> None:
    from .app import printable

    title = f"prune {recipe}: keep the newest {keep}" + (f" and any younger than {older_than}" if older_than else "")
    table = Table(title=title + (" (dry run)" if dry_run else ""), title_justify="left")
    for column in ("layer", "region", "version", "created", "plan" if dry_run else "decision",
                   *(() if dry_run else ("outcome",))):
        table.add_column(column, overflow="fold")
    for d in decisions:
        outcome = () if dry_run else (printable(outcomes.get(d, "kept")),)
        table.add_row(d.layer_name, d.region, str(d.version), printable(d.created[:16] or "-"),
                      printable(d.describe()), *outcome)
    for layer_name, region in empty:
        table.add_row(layer_name, region, "-", "-", "no versions", *(() if dry_run else ("-",)))
    out.print(table)
    doomed = len([d for d in decisions if d.delete])
    if dry_run:
        out.print(f"would delete {doomed} of {len(decisions)} version(s)")
    else:
        done = len([d for d in decisions if outcomes.get(d) == "deleted"])
        out.print(f"deleted {done} of {len(decisions)} version(s)" + (f"; {doomed - done} failed" if done < doomed else ""))


# -- planning ------------------------------------------------------------------------
def _size(text: str, what: str) -> int:
    from ..recipe import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}",
                         hint="a size is a number of bytes, or one with KB, MB or GB: 150MB") from None


def _plan_layer(text: str, arch: str, out_dir: Path, recipes_dir: Path | None):
    from ..plan import Item
    from ..publish.artifact import built_zip, load_artifact
    from ..recipe import load_recipe

    if "=" in text:
        name, size = text.rsplit("=", 1)
        if not name.strip():
            raise UsageError(f"--layer {text!r} names no layer", hint="give NAME=SIZE, e.g. --layer numpy=60MB")
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
    return Item(artifact.recipe, artifact.unzipped_bytes, f"build report of {artifact.zip_path.name}",
                tmp_bytes=artifact.tmp_bytes)


_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _plan_model(text: str):
    from ..plan import Item

    location, size = text.rsplit("=", 1) if "=" in text else (text, "")
    if not location.strip():
        raise UsageError(f"--model {text!r} names no model", hint="give PATH, s3://BUCKET/KEY, or NAME=SIZE")
    if size or "=" in text:
        return Item(location, _size(size, f"--model {text}"), "given")
    if location.startswith("s3://"):
        bucket, _, key = location[5:].partition("/")
        if not _S3_BUCKET.fullmatch(bucket) or not key or len(key) > 1024:
            raise UsageError(f"--model {location!r} is not s3://BUCKET/KEY",
                             hint="an S3 bucket name (3-63 lowercase letters, digits, '.', '-') and a key")
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
    html: Annotated[Optional[Path], typer.Option(
        "--html", metavar="OUT", help="Also write the budgets as bars, one self-contained HTML page.")] = None,
    recipes_dir: RecipesDir = None,
) -> None:
    """Where do the layers and the models fit? The package, S3 + /tmp, or a container image."""
    from ..plan import plan_budget

    try:
        if html is not None:
            from ..picture import check_out

            check_out(html)
        _check_arch(arch)
        layers = [_plan_layer(text, arch, out_dir, recipes_dir) for text in layer or []]
        models = [_plan_model(text) for text in model or []]
        plan = plan_budget(_size(function_size, "--function-size"), layers, models,
                           _size(ephemeral, "--ephemeral"))
        if html is not None:
            from ..picture import plan_page, write_page

            write_page(html, plan_page(plan))
            err.print(styled("green", "wrote ", str(html)))
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
                          styled("green", "fits") if check.ok else styled("red", "over"))
    out.print(table)
    best = plan.recommended
    if best is None:
        out.print(styled("red", "nothing fits", ": even a container image is over 10 GB"))
    else:
        out.print(styled("bold", "recommended: ", f"{best.title}: {best.advice}"))
