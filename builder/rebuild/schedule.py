"""``layers schedule github``: scheduled rebuilds on an engine teams already run.

Writes a GitHub Actions workflow: a cron trigger (and a manual one), a
matrix of recipe × architecture (arm64 on GitHub's arm64 runners, so the
smoke test runs natively), AWS credentials by OIDC role assumption (no
stored keys), ``layers rebuild`` then publish, and the built zips, reports,
lock and manifest kept as artefacts. The README gives the same for AWS
CodeBuild with an EventBridge schedule, and for plain cron.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..errors import UsageError
from ..recipe import Recipe

_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z]+$")
RUNNERS = {"x86_64": "ubuntu-24.04", "arm64": "ubuntu-24.04-arm"}


@dataclass(frozen=True)
class WorkflowOptions:
    cron: str = "17 5 * * 1"                 # Mondays 05:17 UTC: off the hour, as GitHub asks
    regions: tuple[str, ...] = ("us-east-1",)
    role_secret: str = "LAYERS_AWS_ROLE_ARN"  # a repository secret holding the IAM role's ARN
    aws_region: str = "us-east-1"
    python: str = "3.12"


def check_cron(cron: str) -> None:
    fields = cron.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise UsageError(f"{cron!r} is not a five-field cron expression", hint='e.g. "17 5 * * 1" (Mondays 05:17 UTC)')


def github_workflow(recipes: list[Recipe], options: WorkflowOptions = WorkflowOptions()) -> str:
    if not recipes:
        raise UsageError("no recipes to schedule")
    check_cron(options.cron)
    matrix = [{"recipe": r.name, "arch": arch, "runner": RUNNERS[arch]}
              for r in sorted(recipes, key=lambda r: r.name) for arch in r.architectures]
    include = "\n".join(f"          - {json.dumps(item)}" for item in matrix)
    regions = ",".join(options.regions)
    return f"""# Written by `layers schedule github`: rebuild the Lambda layers when upstream
# releases move, and publish the ones that changed. A rebuild whose identity
# (lock, strip settings, base image, builder version) is already published
# in every region builds nothing.
name: Rebuild Lambda layers

on:
  schedule:
    - cron: "{options.cron}"
  workflow_dispatch: {{}}

permissions:
  id-token: write   # OIDC: assume the AWS role without stored keys
  contents: read

concurrency:
  group: layers-rebuild
  cancel-in-progress: false

jobs:
  rebuild:
    name: ${{{{ matrix.recipe }}}} (${{{{ matrix.arch }}}})
    runs-on: ${{{{ matrix.runner }}}}
    timeout-minutes: 90
    strategy:
      fail-fast: false
      matrix:
        include:
{include}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "{options.python}"
      - name: Assume the publishing role
        uses: aws-actions/configure-aws-credentials@v4
        with:
          role-to-assume: ${{{{ secrets.{options.role_secret} }}}}
          aws-region: {options.aws_region}
      - name: Install lambda-layer-builder
        run: python -m pip install .
      - name: Rebuild, then publish what changed
        run: >-
          layers rebuild ${{{{ matrix.recipe }}}} --arch ${{{{ matrix.arch }}}}
          --publish --regions {regions} --json > rebuild-${{{{ matrix.recipe }}}}-${{{{ matrix.arch }}}}.json
      - name: Keep the zips, reports, lock and manifest
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: layer-${{{{ matrix.recipe }}}}-${{{{ matrix.arch }}}}
          path: |
            rebuild-${{{{ matrix.recipe }}}}-${{{{ matrix.arch }}}}.json
            dist/${{{{ matrix.recipe }}}}/
            recipes/${{{{ matrix.recipe }}}}.lock
            published/${{{{ matrix.recipe }}}}.json
          if-no-files-found: warn
"""
