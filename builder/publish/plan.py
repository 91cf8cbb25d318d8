"""Publish a built layer to many regions: check, plan, then execute.

1. ``check_request`` (pure, before any AWS call): the zip fits the unzipped
   budget, it was verified (unless forced), and the layer name, runtimes,
   architectures, description, licence, regions, grants and bucket template
   are what the Lambda and S3 APIs accept. moto accepts anything; AWS would
   refuse only after the upload.
2. ``make_plan`` (pure): for each region, the newest published version's
   CodeSha256 against the zip's. Same: nothing to publish (grants are still
   made sure of). Different or none: publish. ``--dry-run`` prints this.
3. ``executor.Executor`` carries the plan out against AWS.
"""

from __future__ import annotations

import difflib
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources

from ..errors import BudgetError, LayerError, RecipeError, UsageError, VerifyError
from ..recipe import DIRECT_UPLOAD_LIMIT
from ..runtimes import get_runtime, system_libraries
from ..verify.loadcheck import check_zips
from .artifact import Artifact, license_too_long
from .aws import PublishedVersion
from .lease import DEFAULT_LEASE_SECONDS, check_lease_seconds, lease_key

DEFAULT_BUCKET_TEMPLATE = "lambda-layer-builder-{account}-{region}"
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
_ACCOUNT = re.compile(r"^\d{12}$")
_ORG = re.compile(r"^o-[a-z0-9]{10,32}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@cache
def lambda_api() -> dict:
    return tomllib.loads(resources.files(__package__).joinpath("lambda_api.toml").read_text())


@dataclass(frozen=True)
class Grant:
    """Who may use the layer version (lambda:GetLayerVersion)."""

    statement_id: str
    principal: str
    organization_id: str | None = None
    # What the user asked for: "public" only from --public, so that no other
    # argument (an account of '*', say) can make a layer public by accident.
    kind: str = "account"

    @classmethod
    def public(cls) -> "Grant":
        return cls("layers-public", "*", kind="public")

    @classmethod
    def account(cls, account_id: str) -> "Grant":
        return cls(f"layers-account-{account_id}", account_id, kind="account")

    @classmethod
    def organization(cls, org_id: str) -> "Grant":
        return cls(f"layers-org-{org_id}", "*", org_id, kind="organization")

    def describe(self) -> str:
        if self.organization_id:
            return f"organization {self.organization_id}"
        return "everyone" if self.principal == "*" else f"account {self.principal}"


@dataclass(frozen=True)
class PublishRequest:
    regions: tuple[str, ...] = ()            # empty: every region the account has enabled
    grants: tuple[Grant, ...] = ()
    runtimes: tuple[str, ...] = ()           # compatible runtimes; empty: the build's runtime
    direct_upload: bool = False
    force: bool = False                      # publish even though the smoke test did not run
    bucket_template: str = DEFAULT_BUCKET_TEMPLATE
    ssm_prefix: str | None = "/layers"       # where the SSM parameters go (DEFAULT_SSM_PREFIX); None: none written
    lease_seconds: int = DEFAULT_LEASE_SECONDS  # how long a publish's lease lasts (lease.py)


# -- 1. checks ------------------------------------------------------------------
def check_request(artifact: Artifact, request: PublishRequest) -> None:
    """Everything that can be known wrong before asking AWS anything."""
    limits = lambda_api()["limits"]
    if artifact.unzipped_bytes > artifact.unzipped_budget:
        raise BudgetError(f"{artifact.zip_path.name} is {artifact.unzipped_bytes:,} bytes unzipped, over its budget "
                          f"of {artifact.unzipped_budget:,} (Lambda's 250 MB minus the recipe's reserve)",
                          hint="strip more (strip.drop, strip.remove), or lower the recipe's reserve")
    if not artifact.verified and not request.force:
        raise VerifyError(f"{artifact.zip_path.name} was not verified ({artifact.verification})",
                          hint="build where the runtime's Python can run (Docker backend), or pass --force")
    if not re.match(limits["layer_name_pattern"], artifact.published_name):
        raise UsageError(f"{artifact.published_name!r} is not a valid Lambda layer name "
                         "(1-140 letters, digits, '-' and '_')", hint="set layer_name in the recipe")
    runtimes = compatible_runtimes(artifact, request)
    if len(runtimes) > limits["runtimes_max"]:
        raise UsageError(f"{len(runtimes)} compatible runtimes; Lambda takes at most {limits['runtimes_max']}", hint="name fewer with --runtimes")
    if artifact.arch not in limits["architectures"]:
        raise UsageError(f"{artifact.arch!r} is not a Lambda architecture", hint="x86_64 or arm64")
    if len(layer_description(artifact)) > limits["description_max"]:
        raise UsageError(f"the layer description is over {limits['description_max']} characters",
                         hint="shorten the recipe's name")
    if len(artifact.license) > limits["license_max"]:
        raise license_too_long(artifact, limits["license_max"])
    if request.direct_upload and artifact.zipped_bytes > DIRECT_UPLOAD_LIMIT:
        raise UsageError(f"{artifact.zipped_bytes:,} bytes zipped is over the 50 MB direct-upload limit",
                         hint="drop --direct: the zip goes through S3")
    check_arguments(request)


def check_arguments(request: PublishRequest) -> None:
    """The request's own parts (regions, grants, bucket template): checked before any zip is read or built."""
    check_regions(request.regions)
    for grant in request.grants:
        if grant.kind == "organization" and not _ORG.fullmatch(grant.organization_id or ""):
            raise UsageError(f"--org-id {grant.organization_id!r} is not an organization ID (o-xxxxxxxxxx)",
                             hint="give the ID AWS Organizations shows: o- and 10 to 32 lowercase letters or digits")
        if grant.kind == "account" and not _ACCOUNT.fullmatch(grant.principal):
            raise UsageError(f"--principal {grant.principal!r} is not an AWS account ID (12 digits)",
                             hint="to let every account use the layer, say so with --public")
        if grant.kind == "public" and (grant.principal != "*" or grant.organization_id):
            raise UsageError("a public grant is for everyone ('*') and no organization",
                             hint="use --public alone, or --principal/--org-id without it")

    if not request.direct_upload:
        check_bucket_template(request.bucket_template)
    if request.ssm_prefix is not None:
        check_ssm_prefix(request.ssm_prefix)
    check_lease_seconds(request.lease_seconds)


def check_loads(artifact: Artifact, request: PublishRequest) -> list[str]:
    """Run the static load check on the zip for every runtime it is published for, before any AWS call.

    A zip that would not load on one of them is refused (``--force`` aside,
    which publishes it anyway); returns the warnings, one line each.
    """
    warnings = []
    for name in compatible_runtimes(artifact, request):
        # load_artifact read the zip through already: once per runtime would read it again each time.
        check = check_zips([artifact.zip_path], system_libraries(get_runtime(name), artifact.arch),
                           read_through=False)
        if check.errors and not request.force:
            first = check.errors[0]
            more = f" (and {len(check.errors) - 1} more)" if len(check.errors) > 1 else ""
            raise VerifyError(f"{artifact.zip_path.name} would not load on {name}: {first.describe()}{more}",
                              hint="rebuild with 'layers build', which checks and repairs what it can; "
                                   "'layers check' lists every problem; --force publishes it anyway")
        # With --force the errors are published anyway, and still said.
        warnings += [f"{name}: {'forced past: ' if problem.severity == 'error' else ''}{problem.describe()}"
                     for problem in check.problems]
    return warnings


def compatible_runtimes(artifact: Artifact, request: PublishRequest) -> list[str]:
    names = list(dict.fromkeys(request.runtimes or (artifact.runtime,)))
    built_for = get_runtime(artifact.runtime)
    for name in names:
        try:
            runtime = get_runtime(name)
        except RecipeError as error:
            raise UsageError(f"{name!r} is not a Lambda Python runtime", hint=error.hint) from None
        if artifact.elf_files and runtime.python != built_for.python:
            raise UsageError(f"{artifact.zip_path.name} holds compiled code for Python {built_for.python}; "
                             f"{name} runs Python {runtime.python}",
                             hint="build the recipe for that runtime instead")
        if artifact.arch not in runtime.architectures:
            raise UsageError(f"{name} does not run on {artifact.arch}", hint="choose --runtimes that run on the zip's architecture")
    return names


def check_regions(regions: tuple[str, ...]) -> None:
    known = lambda_api()["regions"]["known"]
    seen = set()
    for region in regions:
        if region in seen:
            raise UsageError(f"{region} is listed twice", hint="name each region once")
        seen.add(region)
        if not _REGION.fullmatch(region) or (region not in known and not region.startswith(("us-gov-", "us-iso"))):
            close = difflib.get_close_matches(region, known, n=1)
            raise UsageError(f"{region!r} is not an AWS region",
                             hint=f"did you mean {close[0]!r}?" if close else "a region name such as us-east-1")


def check_bucket_template(template: str) -> None:
    if "{region}" not in template:
        raise UsageError(f"the bucket template {template!r} has no {{region}}",
                         hint="Lambda publishes only from a bucket in the layer's own region")
    try:
        # Only bare {account} and {region}: a format spec such as {region:>999999999} would build a GB string.
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
        bad = [name for name, spec, conversion in fields if name not in ("account", "region") or spec or conversion]
        if bad:
            raise ValueError(f"{{{bad[0]}...}} is not {{account}} or {{region}}")
        sample = template.format(account="123456789012", region="ap-southeast-2")
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise UsageError(f"the bucket template {template!r} is not valid ({exc}); "
                         "it may hold {account} and {region}",
                         hint="e.g. --bucket-template 'layers-{account}-{region}'") from None
    if not _BUCKET.fullmatch(sample) or ".." in sample:
        raise UsageError(f"the bucket template {template!r} gives {sample!r}, not a valid S3 bucket name",
                         hint="3-63 lowercase letters, digits, '-' and '.'")


def layer_description(artifact: Artifact) -> str:
    """What the layer version says about itself: recipe, lock, zip, builder."""
    identity = f"id {artifact.identity[:16]}; " if artifact.identity else ""
    return (f"{artifact.recipe} for {artifact.runtime} {artifact.arch}; {identity}lock {artifact.lock_digest[:16]}; "
            f"sha256 {artifact.sha256_hex[:16]}; lambda-layer-builder {artifact.builder_version}")


def identity_marker(identity: str) -> str:
    """How a layer version's description names the identity it was built with."""
    return f"id {identity[:16]};"


def staging_key(artifact: Artifact) -> str:
    # Content-addressed: a rerun finds the object already there.
    return f"layers/{artifact.published_name}/{artifact.sha256_hex}.zip"


# -- SSM parameters ----------------------------------------------------------
# Where a team's templates find a layer: ``{prefix}/{layer}/{arch}/latest``
# holds the newest checked version's ARN, ``{prefix}/{layer}/{arch}/{version}``
# pins one. Shared by publish (which writes them) and ``layers arns`` (which
# names them in IaC snippets), so the two can never disagree.
DEFAULT_SSM_PREFIX = "/layers"
_SSM_PREFIX = re.compile(r"^(/[A-Za-z0-9_.-]{1,64}){1,8}$")


def check_ssm_prefix(prefix: str) -> None:
    """``--ssm-prefix``: an absolute SSM path of at most 8 levels (the names below add 3 of SSM's 15)."""
    if not _SSM_PREFIX.fullmatch(prefix) or prefix.lower().startswith(("/aws", "/ssm")):
        raise UsageError(f"--ssm-prefix {prefix!r} is not an SSM parameter path",
                         hint="a path such as /layers or /team/layers: '/'-separated letters, digits, '_', '.', '-'; "
                              "not under /aws or /ssm")


def ssm_parameter_name(prefix: str, layer_name: str, arch: str, which: str | int) -> str:
    """The parameter holding a layer's ARN: ``which`` is ``"latest"`` or a version number."""
    check_ssm_prefix(prefix)
    if which != "latest" and not (isinstance(which, int) and not isinstance(which, bool) and which >= 1):
        raise UsageError(f"an SSM parameter names 'latest' or a version number, not {which!r}",
                         hint="this is a bug in the caller")
    return f"{prefix}/{layer_name}/{arch}/{which}"


# What publish writes there, decided from what the parameters hold now (read
# just before, with GetParameters): nothing when they already name the
# version, so a publish that changes nothing writes nothing. The version's
# own parameter is written first and never overwritten (a pin must not move);
# ``latest`` last, so it never names a version whose pin is missing, and
# never moved back to an older version of the layer (a concurrent publish of
# another zip may have published a newer one).
class ParameterConflict(LayerError):
    """A version's SSM parameter holds another ARN: it is not overwritten."""

    exit_code = 7


@dataclass(frozen=True)
class ParameterWrite:
    name: str
    value: str
    overwrite: bool          # only ``latest`` is ever overwritten


def newer_named(value: str | None, arn: str) -> int | None:
    """The version ``value`` names when it is the ARN of a newer version of ``arn``'s layer; else None."""
    base, _, version = arn.rpartition(":")
    if not value or not value.startswith(base + ":"):
        return None
    named = value[len(base) + 1:]
    if not (named.isascii() and named.isdigit() and len(named) <= 10 and version.isdigit()):
        return None
    return int(named) if int(named) > int(version) else None


def parameter_writes(prefix: str, layer_name: str, arch: str, arn: str, version: int,
                     current: Mapping[str, str | None], *, keep_latest: bool = False) -> list[ParameterWrite]:
    """The writes that make ``{prefix}/{layer}/{arch}/{version}`` and ``.../latest`` name ``arn``.

    ``current`` holds what the parameters hold now (None: missing);
    ``keep_latest``: ``latest`` names a newer version that exists, and stays.
    """
    pin = ssm_parameter_name(prefix, layer_name, arch, version)
    latest = ssm_parameter_name(prefix, layer_name, arch, "latest")
    writes = []
    if current.get(pin) is None:
        writes.append(ParameterWrite(pin, arn, overwrite=False))
    elif current[pin] != arn:
        raise ParameterConflict(f"the SSM parameter {pin} holds {current[pin]!r}, not {arn}: a pin is not "
                                "overwritten", hint=f"if it is stale, delete it (aws ssm delete-parameter --name "
                                                    f"{pin}) and publish again")
    if current.get(latest) != arn and not keep_latest:
        writes.append(ParameterWrite(latest, arn, overwrite=True))
    return writes


# -- 2. plan -----------------------------------------------------------------
@dataclass(frozen=True)
class RegionPlan:
    region: str
    action: str                          # "publish" | "unchanged"
    reason: str
    current: PublishedVersion | None
    bucket: str | None                   # None: direct upload
    # The SSM parameters made to name the version (each written only where it differs); the version's own
    # is ".../<new version>" while that is not published yet.
    ssm: tuple[str, ...] = ()
    lease: str | None = None             # s3://BUCKET/KEY taken while publishing; None: no publish, or direct


@dataclass(frozen=True)
class Plan:
    artifact: Artifact
    layer_name: str
    description: str
    runtimes: tuple[str, ...]
    grants: tuple[Grant, ...]
    upload: str                          # "s3" | "direct"
    regions: tuple[RegionPlan, ...]
    ssm_prefix: str | None = None        # None: no SSM parameters (--no-ssm)
    lease_seconds: int = DEFAULT_LEASE_SECONDS

    @property
    def to_publish(self) -> list[RegionPlan]:
        return [r for r in self.regions if r.action == "publish"]

    def to_json(self) -> dict:
        return {
            "layer_name": self.layer_name,
            "zip": str(self.artifact.zip_path),
            "code_sha256": self.artifact.code_sha256,
            "description": self.description,
            "runtimes": list(self.runtimes),
            "architecture": self.artifact.arch,
            "upload": self.upload,
            "grants": [g.describe() for g in self.grants],
            "ssm_prefix": self.ssm_prefix,
            "lease_seconds": self.lease_seconds if self.upload == "s3" else None,
            "regions": [{"region": r.region, "action": r.action, "reason": r.reason, "bucket": r.bucket,
                         "current_version": r.current.version if r.current else None,
                         "ssm_parameters": list(r.ssm), "lease": r.lease} for r in self.regions],
        }


def make_plan(artifact: Artifact, request: PublishRequest, regions: tuple[str, ...], account: str,
              latest: Mapping[str, PublishedVersion | None]) -> Plan:
    planned = []
    for region in regions:
        current = latest.get(region)
        if current is None:
            action, reason = "publish", "no version yet"
        elif current.code_sha256 == artifact.code_sha256:
            action, reason = "unchanged", f"version {current.version} has this zip"
        else:
            action, reason = "publish", f"version {current.version} has another zip"
        bucket = None if request.direct_upload else request.bucket_template.format(account=account, region=region)
        ssm: tuple[str, ...] = ()
        if request.ssm_prefix is not None:
            name = artifact.published_name
            pin = (ssm_parameter_name(request.ssm_prefix, name, artifact.arch, current.version)
                   if action == "unchanged" else f"{request.ssm_prefix}/{name}/{artifact.arch}/<new version>")
            ssm = (pin, ssm_parameter_name(request.ssm_prefix, name, artifact.arch, "latest"))
        lease = (f"s3://{bucket}/{lease_key(artifact.published_name, artifact.sha256_hex)}"
                 if bucket and action == "publish" else None)
        planned.append(RegionPlan(region, action, reason, current, bucket, ssm, lease))
    return Plan(artifact, artifact.published_name, layer_description(artifact),
                tuple(compatible_runtimes(artifact, request)), request.grants,
                "direct" if request.direct_upload else "s3", tuple(planned), request.ssm_prefix,
                request.lease_seconds)


# -- prune -------------------------------------------------------------------
# Retention that cannot break a deploy. For each layer and region the CLI
# gathers the facts (``PruneFacts``: what ListLayerVersions lists, the
# manifest's current version, the ARN the SSM ``latest`` parameter holds, the
# functions whose Layers name each version); ``plan_prune`` (pure) decides
# every version, with every reason it has; only when all regions are decided
# are the deletions made. A version is kept when any of these holds: the
# manifest names it, SSM ``latest`` points at it, a function (any published
# version of one, too) lists it, it is younger than ``--older-than``, or it
# is one of the newest ``--keep``.
KEEP_MAX = 10_000
AGE_MAX_DAYS = 3650
_AGE = re.compile(r"([1-9][0-9]{0,5})([hdw])")
_AGE_HOURS = {"h": 1, "d": 24, "w": 24 * 7}
# A reason names a few functions, then counts the rest: an account can have thousands.
USERS_SHOWN = 3


@dataclass(frozen=True)
class Age:
    """``--older-than`` as typed (for the reasons) and as a duration."""

    text: str
    delta: timedelta


@dataclass(frozen=True)
class PruneFacts:
    """What one region says about one layer."""

    versions: tuple[PublishedVersion, ...]
    manifest_version: int | None = None
    ssm_latest: str | None = None   # the value of the SSM "latest" parameter (an ARN); None: no parameter
    # layer version ARN -> the functions listing it ("name" for $LATEST, "name:3" for a published version)
    users: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneDecision:
    layer_name: str
    region: str
    version: int
    arn: str
    created: str
    delete: bool
    reasons: tuple[str, ...]        # every reason to keep it, or why it goes

    @property
    def action(self) -> str:
        return "delete" if self.delete else "keep"

    def describe(self) -> str:
        return f"{self.action}: {'; '.join(self.reasons)}"

    def to_json(self) -> dict:
        return {"layer_name": self.layer_name, "region": self.region, "version": self.version, "arn": self.arn,
                "created": self.created, "action": self.action, "reasons": list(self.reasons)}


def plan_prune(layer_name: str, facts: Mapping[str, PruneFacts], keep: int, *, older_than: Age | None = None,
               now: datetime | None = None) -> tuple[PruneDecision, ...]:
    """Every listed version of ``layer_name`` in every region, newest first, kept or deleted, and why."""
    check_keep(keep)
    if older_than is not None and now is None:
        raise ValueError("plan_prune needs now to judge --older-than")
    decisions = []
    for region, known in facts.items():
        newest_first = sorted(known.versions, key=lambda v: -v.version)
        for rank, version in enumerate(newest_first):
            reasons = []
            if version.version == known.manifest_version:
                reasons.append("manifest's current")
            if known.ssm_latest is not None and known.ssm_latest == version.arn:
                reasons.append("SSM latest")
            if known.users.get(version.arn):
                reasons.append(_used_by(known.users[version.arn], region))
            if older_than is not None:
                created = _created_at(version.created)
                if created is None:
                    reasons.append(f"no creation date, so not known to be older than {older_than.text}")
                elif now - created < older_than.delta:
                    reasons.append(f"{_age(now - created)}, younger than {older_than.text}")
            if rank < keep:
                reasons.append(f"newest {keep}")
            delete = not reasons
            if delete:
                reasons = [f"older than {older_than.text}, beyond the newest {keep}" if older_than
                           else f"beyond the newest {keep}"]
            decisions.append(PruneDecision(layer_name, region, version.version, version.arn, version.created,
                                           delete, tuple(reasons)))
    return tuple(decisions)


def parse_age(text: str) -> Age:
    """``--older-than``: a whole number of hours, days or weeks (12h, 30d, 2w), up to 10 years; nothing else."""
    match = _AGE.fullmatch(text)
    if match is None:
        raise UsageError(f"--older-than {text!r} is not an age", hint="a whole number and h, d or w: 12h, 30d, 2w")
    hours = int(match[1]) * _AGE_HOURS[match[2]]
    if hours > AGE_MAX_DAYS * 24:
        raise UsageError(f"--older-than {text} is over {AGE_MAX_DAYS:,} days",
                         hint="an age up to 10 years, e.g. 30d or 52w")
    return Age(text, timedelta(hours=hours))


def check_keep(keep: int) -> None:
    """``prune --keep``: checked with the other arguments, before AWS is asked for the versions."""
    if not 1 <= keep <= KEEP_MAX:
        raise UsageError(f"--keep {keep} is not a number of versions from 1 to {KEEP_MAX:,}",
                         hint="how many of the newest versions to keep per region, e.g. --keep 3")


def _used_by(functions: tuple[str, ...], region: str) -> str:
    shown = ", ".join(functions[:USERS_SHOWN])
    more = f" and {len(functions) - USERS_SHOWN} more" if len(functions) > USERS_SHOWN else ""
    return f"used by function{'s' if len(functions) > 1 else ''} {shown}{more} ({region})"


def _created_at(text: str) -> datetime | None:
    """Lambda's CreatedDate (2018-11-27T15:10:45.123+0000) as an aware time; None when absent or unreadable."""
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _age(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours < 1:
        return "under an hour old"
    if hours < 48:
        return f"{hours} hour{'s' if hours > 1 else ''} old"
    return f"{hours // 24} days old"
