"""``layers schedule github``: scheduled rebuilds on an engine teams already run.

Writes a GitHub Actions workflow: a cron trigger (and a manual one), a
matrix of recipe × architecture (arm64 on GitHub's arm64 runners, so the
smoke test runs natively), AWS credentials by OIDC role assumption (no
stored keys), ``layers rebuild`` then publish, and the built zips, reports,
lock and manifest kept as artefacts. The README gives the same for AWS
CodeBuild with an EventBridge schedule, and for plain cron.

Three steps, each refusing what it cannot vouch for:

1. ``check_options`` and ``check_output`` (pure, before any work): the cron
   expression, the secret's name, the regions and the output path.
2. ``workflow`` builds the workflow as data; ``github_workflow`` serializes
   it with PyYAML, never by pasting text into YAML, so no value can add a
   key. The values that reach the ``run:`` shell line (regions, recipe names)
   are checked to hold no shell syntax either.
3. ``write_workflow`` writes a temporary file beside the output and renames
   it over; a failure leaves no partial file and is a typed error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from ..files import check_output_file, write_output_file
from ..publish.plan import check_regions
from ..recipe import Recipe

RUNNERS = {"x86_64": "ubuntu-24.04", "arm64": "ubuntu-24.04-arm"}

HEADER = """\
# Written by `layers schedule github`: rebuild the Lambda layers when upstream
# releases move, and publish the ones that changed. A rebuild whose identity
# (lock, strip settings, base image, builder version) is already published
# in every region builds nothing.
"""

MAX_CRON = 100
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# The five fields as GitHub documents them: name, smallest, largest, and the names it takes for numbers.
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of the month", 1, 31, {}),
    ("month", 1, 12, {name: number for number, name in enumerate(_MONTHS, 1)}),
    ("day of the week", 0, 6, {name: number for number, name in enumerate(_DAYS)}),
)
# One item of a field's comma list: *, */STEP, VALUE, or LOW-HIGH with an optional /STEP.
_CRON_ITEM = re.compile(r"(?:(?P<star>\*)|(?P<low>[0-9]{1,2}|[A-Za-z]{3})(?:-(?P<high>[0-9]{1,2}|[A-Za-z]{3}))?)"
                        r"(?:/(?P<step>[0-9]{1,2}))?")
_CRON_HINT = 'five fields, minute hour day month weekday, e.g. "17 5 * * 1" (Mondays 05:17 UTC)'

# GitHub's rule for secret names: letters, digits and _, not starting with a digit, and not GITHUB_
# (case-insensitive, as names are). GitHub documents no maximum; 100 is far beyond any real name.
_SECRET = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_SECRET_HINT = "letters, digits and _, not starting with a digit or GITHUB_, e.g. LAYERS_AWS_ROLE_ARN"
_PYTHON = re.compile(r"3\.[0-9]{1,2}")
# Recipe names reach the run: line through ${{ matrix.recipe }}; recipe.py already allows only these.
# Every pattern here is used with fullmatch: "$" would let a trailing newline through.
_SHELL_SAFE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_REGION_CHARS = re.compile(r"[a-z0-9-]{1,40}")


@dataclass(frozen=True)
class WorkflowOptions:
    cron: str = "17 5 * * 1"                 # Mondays 05:17 UTC: off the hour, as GitHub asks
    regions: tuple[str, ...] = ("us-east-1",)
    role_secret: str = "LAYERS_AWS_ROLE_ARN"  # a repository secret holding the IAM role's ARN
    aws_region: str = "us-east-1"
    python: str = "3.12"


# -- 1. checks ----------------------------------------------------------------------
def check_cron(cron: str) -> None:
    """Refuse anything but five space-separated fields of GitHub's cron syntax, each value in range."""
    fields = cron.split(" ")
    if len(cron) > MAX_CRON or len(fields) != 5:
        raise UsageError(f"--cron {cron!r} is not a five-field cron expression", hint=_CRON_HINT)
    for text, (what, smallest, largest, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            if not _cron_item_ok(item, smallest, largest, names):
                raise UsageError(f"--cron {cron!r}: {text!r} is not a valid {what} ({smallest}-{largest})",
                                 hint=_CRON_HINT)


def _cron_item_ok(item: str, smallest: int, largest: int, names: dict[str, int]) -> bool:
    match = _CRON_ITEM.fullmatch(item)
    if not match:
        return False

    def value(text: str | None) -> int | None:
        if text is None:
            return None
        number = int(text) if text.isdigit() else names.get(text.upper(), -1)
        return number if smallest <= number <= largest else -1

    low, high = value(match["low"]), value(match["high"])
    if -1 in (low, high) or (low is not None and high is not None and low > high):
        return False
    if match["step"] is None:
        return True
    # A step needs a range to step through: "*/15" or "0-30/10"; "5/15" means different things to different crons.
    return bool(match["star"] or high is not None) and 1 <= int(match["step"]) <= largest


def check_role_secret(name: str) -> None:
    """Refuse what GitHub would not take as a secret's name: it is written into ``${{ secrets.NAME }}``."""
    if not _SECRET.fullmatch(name) or name.upper().startswith("GITHUB_"):
        raise UsageError(f"--role-secret {name!r} is not a GitHub secret name", hint=_SECRET_HINT)


def check_options(options: WorkflowOptions) -> None:
    check_cron(options.cron)
    check_role_secret(options.role_secret)
    if not options.regions:
        raise UsageError("no regions to publish to", hint="give at least one with --regions")
    for region in (*options.regions, options.aws_region):
        # check_regions takes "us-gov-west-1\n" (its pattern ends in "$"); regions reach the run: shell line.
        if not _REGION_CHARS.fullmatch(region):
            raise UsageError(f"{region!r} is not an AWS region", hint="e.g. us-east-1,eu-west-1")
    check_regions(options.regions)
    check_regions((options.aws_region,))
    if not _PYTHON.fullmatch(options.python):
        raise UsageError(f"{options.python!r} is not a Python version", hint='e.g. "3.12"')


_OUTPUT_HINT = "give a path to a regular file, e.g. .github/workflows/layers-rebuild.yml"


def check_output(path: Path) -> None:
    """Refuse an output the rename would put a workflow in place of: anything but a regular file or nothing."""
    check_output_file(path, _OUTPUT_HINT)


# -- 2. the workflow as data, then YAML ------------------------------------------------
class _Quoted(str):
    """Written in double quotes: the cron (which may start with '*', an alias in YAML) and versions ("3.10")."""


class _Literal(str):
    """Written as a ``|`` block: one path a line, as people write them."""


class _Flow(dict):
    """Written on one line: a matrix entry."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent a list under its key, as GitHub's own examples do; PyYAML's default puts '-' under the key.
        super().increase_indent(flow, False)


_Dumper.add_representer(_Quoted, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"'))
_Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|"))
_Dumper.add_representer(_Flow, lambda d, m: d.represent_mapping("tag:yaml.org,2002:map", m, flow_style=True))


def workflow(recipes: list[Recipe], options: WorkflowOptions = WorkflowOptions()) -> dict[str, Any]:
    """The workflow as data, checked: what ``github_workflow`` serializes."""
    if not recipes:
        raise UsageError("no recipes to schedule", hint="make one with: layers init NAME -r requirements.txt")
    check_options(options)
    for r in recipes:
        if not _SHELL_SAFE.fullmatch(r.name):
            raise UsageError(f"the recipe name {r.name!r} cannot go into a workflow's shell step",
                             hint="recipe names are lowercase letters, digits, '_', '.' and '-'")
        unknown = sorted(set(r.architectures) - set(RUNNERS))
        if unknown:
            raise UsageError(f"recipe {r.name}: no GitHub runner for {', '.join(unknown)}",
                             hint=f"GitHub has runners for {', '.join(RUNNERS)}")
    include = [_Flow({_Quoted("recipe"): _Quoted(r.name), _Quoted("arch"): _Quoted(arch),
                      _Quoted("runner"): _Quoted(RUNNERS[arch])})
               for r in sorted(recipes, key=lambda r: r.name) for arch in r.architectures]
    one = "${{ matrix.recipe }}-${{ matrix.arch }}"
    return {
        "name": "Rebuild Lambda layers",
        "on": {"schedule": [{"cron": _Quoted(options.cron)}], "workflow_dispatch": {}},
        "permissions": {"id-token": "write", "contents": "read"},  # OIDC: assume the AWS role without stored keys
        "concurrency": {"group": "layers-rebuild", "cancel-in-progress": False},
        "jobs": {"rebuild": {
            "name": "${{ matrix.recipe }} (${{ matrix.arch }})",
            "runs-on": "${{ matrix.runner }}",
            "timeout-minutes": 90,
            "strategy": {"fail-fast": False, "matrix": {"include": include}},
            "steps": [
                {"uses": "actions/checkout@v4"},
                {"uses": "actions/setup-python@v5", "with": {"python-version": _Quoted(options.python)}},
                {"name": "Assume the publishing role",
                 "uses": "aws-actions/configure-aws-credentials@v4",
                 "with": {"role-to-assume": f"${{{{ secrets.{options.role_secret} }}}}",
                          "aws-region": options.aws_region}},
                {"name": "Install lambda-layer-builder", "run": "python -m pip install ."},
                {"name": "Rebuild, then publish what changed",
                 "run": (f"layers rebuild ${{{{ matrix.recipe }}}} --arch ${{{{ matrix.arch }}}} --publish "
                         f"--regions {','.join(options.regions)} --json > rebuild-{one}.json")},
                {"name": "Keep the zips, reports, lock and manifest",
                 "if": "always()",
                 "uses": "actions/upload-artifact@v4",
                 "with": {"name": f"layer-{one}",
                          "path": _Literal(f"rebuild-{one}.json\n"
                                           "dist/${{ matrix.recipe }}/\n"
                                           "recipes/${{ matrix.recipe }}.lock\n"
                                           "published/${{ matrix.recipe }}.json\n"),
                          "if-no-files-found": "warn"}},
            ],
        }},
    }


def github_workflow(recipes: list[Recipe], options: WorkflowOptions = WorkflowOptions()) -> str:
    """The workflow's text: the fixed header, then the data through PyYAML (``on`` comes out as ``'on'``)."""
    # width: never fold a line, so the run: step stays one readable command.
    body = yaml.dump(workflow(recipes, options), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=1 << 16, allow_unicode=False)
    return HEADER + body


# -- 3. writing ------------------------------------------------------------------------
def write_workflow(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` by a rename from a temporary file beside it (``files.write_output_file``)."""
    write_output_file(path, text, _OUTPUT_HINT)
