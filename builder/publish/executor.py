"""Publish, step 3: carry out a ``plan.Plan`` against AWS, region by region.

``read_latest`` asks each region for its newest version (read-only), which
``plan.make_plan`` compares with the zip. ``Executor`` then runs regions
concurrently: each stages the zip in its own region's bucket (created
private and encrypted when missing; uploaded with its SHA256 checksum,
skipped when already there), publishes from S3, checks the CodeSha256 Lambda
reports, grants permissions, and records the version in the manifest at
once. A failed region is reported and the others go on; a rerun publishes
only what is missing. All AWS calls go through ``aws.AwsClient``.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from ..errors import LayerError
from .aws import AwsClient, AwsError, PublishedVersion
from .manifest import Entry, Manifest
from .plan import Plan, RegionPlan, staging_key


def read_latest(aws: AwsClient, layer_name: str, regions: tuple[str, ...], workers: int = 16
                ) -> dict[str, PublishedVersion | None]:
    """Each region's newest version with its CodeSha256, asked concurrently (read-only)."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(regions)))) as pool:
        futures = {region: pool.submit(aws.latest_version, region, layer_name) for region in regions}
        return {region: future.result() for region, future in futures.items()}


# -- 3. execute --------------------------------------------------------------
@dataclass(frozen=True)
class RegionOutcome:
    region: str
    status: str                          # "published" | "adopted" | "unchanged" | "failed"
    version: PublishedVersion | None
    message: str = ""
    seconds: float = 0.0
    uploaded: bool = False
    granted: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class Executor:
    aws: AwsClient
    manifest: Manifest
    progress: Callable[[int], None] = lambda n: None
    workers: int = 16
    now: Callable[[], str] = field(default=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def run(self, plan: Plan) -> list[RegionOutcome]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(plan.regions)))) as pool:
            futures = [pool.submit(self._region, plan, region_plan) for region_plan in plan.regions]
            outcomes = [future.result() for future in as_completed(futures)]
        return sorted(outcomes, key=lambda o: o.region)

    def _region(self, plan: Plan, region_plan: RegionPlan) -> RegionOutcome:
        start = time.perf_counter()
        region = region_plan.region
        try:
            uploaded = False
            if region_plan.action == "unchanged":
                version, status = region_plan.current, "unchanged"
            else:
                content, uploaded = self._content(plan, region_plan)
                version, adopted = self.aws.publish(
                    region, plan.layer_name, content, description=plan.description, runtimes=list(plan.runtimes),
                    architectures=[plan.artifact.arch], license=plan.artifact.license,
                    code_sha256=plan.artifact.code_sha256,
                    newest_before=region_plan.current.version if region_plan.current else 0)
                status = "adopted" if adopted else "published"
                if version.code_sha256 != plan.artifact.code_sha256:
                    raise AwsError(f"Lambda reports CodeSha256 {version.code_sha256!r} for version {version.version}, "
                                   f"the zip has {plan.artifact.code_sha256}",
                                   hint="the staged object differs from the zip; publish again")
            granted = self._grant(region, plan, version.version)
            self.manifest.record(Entry(
                layer_name=plan.layer_name, architecture=plan.artifact.arch, region=region, arn=version.arn,
                version=version.version, sha256=plan.artifact.sha256_hex, code_sha256=plan.artifact.code_sha256,
                lock_digest=plan.artifact.lock_digest, published_at=self.now(), runtimes=plan.runtimes,
                identity=plan.artifact.identity))
            return RegionOutcome(region, status, version, seconds=round(time.perf_counter() - start, 2),
                                 uploaded=uploaded, granted=granted)
        except LayerError as error:
            return RegionOutcome(region, "failed", None, error.message, round(time.perf_counter() - start, 2))

    def _content(self, plan: Plan, region_plan: RegionPlan) -> tuple[dict, bool]:
        artifact = plan.artifact
        if plan.upload == "direct":
            return {"ZipFile": artifact.zip_path.read_bytes()}, False
        region, bucket, key = region_plan.region, region_plan.bucket, staging_key(artifact)
        self.aws.ensure_bucket(region, bucket)
        uploaded = False
        if self.aws.staged_sha256(region, bucket, key) != artifact.code_sha256:
            # S3 checks the body against the SHA256 sent with it; the CodeSha256
            # Lambda reports after publishing is checked again in ``_region``.
            self.aws.upload(region, bucket, key, artifact.zip_path, artifact.code_sha256, self.progress)
            uploaded = True
        return {"S3Bucket": bucket, "S3Key": key}, uploaded

    def _grant(self, region: str, plan: Plan, version: int) -> tuple[str, ...]:
        if not plan.grants:
            return ()
        present = self.aws.statement_ids(region, plan.layer_name, version)
        made = []
        for grant in plan.grants:
            if grant.statement_id not in present:
                self.aws.grant(region, plan.layer_name, version, grant.statement_id, grant.principal,
                               grant.organization_id)
                made.append(grant.statement_id)
        return tuple(made)
