"""Publish, step 3: carry out a ``plan.Plan`` against AWS, region by region.

``read_latest`` asks each region for its newest version (read-only), which
``plan.make_plan`` compares with the zip. ``Executor`` then runs regions
concurrently: each stages the zip in its own region's bucket (created
private and encrypted when missing; uploaded with its SHA256 checksum,
skipped when already there), takes the region's lease (``lease``: one
publisher per zip and region, however many run at once), publishes from S3,
checks the CodeSha256 Lambda reports, grants permissions, and records the
version in the manifest at once. Only then, the version existing and
checked, are its SSM parameters written (where they differ), so ``latest``
never names a broken or missing version. A failed region is reported and
the others go on; a rerun publishes only what is missing. All AWS calls go
through ``aws.AwsClient``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import secrets
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from ..errors import LayerError
from . import lease
from .aws import AwsClient, AwsError, PublishedVersion
from .manifest import Entry, Manifest
from .plan import ParameterConflict, Plan, RegionPlan, newer_named, parameter_writes, ssm_parameter_name, staging_key


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
    ssm: tuple[str, ...] = ()            # the SSM parameters naming this version now
    ssm_written: tuple[str, ...] = ()    # those of them this run wrote
    note: str = ""                       # what the lease did: waited for another publish, took over a dead one

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
    # The lease's clock (seconds since the epoch: leases are compared across machines) and who this publisher is.
    clock: Callable[[], float] = time.time
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def run(self, plan: Plan) -> list[RegionOutcome]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(plan.regions)))) as pool:
            futures = [pool.submit(self._region, plan, region_plan) for region_plan in plan.regions]
            outcomes = [future.result() for future in as_completed(futures)]
        return sorted(outcomes, key=lambda o: o.region)

    def _region(self, plan: Plan, region_plan: RegionPlan) -> RegionOutcome:
        start = time.perf_counter()
        region = region_plan.region
        uploaded, note = False, ""
        try:
            if region_plan.action == "unchanged":
                version, status = region_plan.current, "unchanged"
            else:
                content, uploaded = self._content(plan, region_plan)
                version, adopted, note = self._publish(plan, region_plan, content)
                status = "adopted" if adopted else "published"
                if version.code_sha256 != plan.artifact.code_sha256:
                    raise AwsError(f"Lambda reports CodeSha256 {version.code_sha256!r} for version {version.version}, "
                                   f"the zip has {plan.artifact.code_sha256}",
                                   hint="the staged object differs from the zip; publish again")
            granted = self._grant(region, plan, version.version)
            previous = self.manifest.current(plan.layer_name, region)
            entry = Entry(
                layer_name=plan.layer_name, architecture=plan.artifact.arch, region=region, arn=version.arn,
                version=version.version, sha256=plan.artifact.sha256_hex, code_sha256=plan.artifact.code_sha256,
                lock_digest=plan.artifact.lock_digest, published_at=self.now(), runtimes=plan.runtimes,
                identity=plan.artifact.identity,
                # --no-ssm says nothing about the parameters: what an earlier run wrote for this version stays.
                ssm=previous.ssm if previous and previous.version == version.version else ())
            self.manifest.record(entry)
            ssm, written = (), ()
            if plan.ssm_prefix is not None:
                ssm, written = self._parameters(plan, region, version)
                if ssm != entry.ssm:
                    self.manifest.record(dataclasses.replace(entry, ssm=ssm))
            return RegionOutcome(region, status, version, seconds=round(time.perf_counter() - start, 2),
                                 uploaded=uploaded, granted=granted, ssm=ssm, ssm_written=written, note=note)
        except LayerError as error:
            return RegionOutcome(region, "failed", None, error.message, round(time.perf_counter() - start, 2),
                                 uploaded=uploaded, note=note)

    def _publish(self, plan: Plan, region_plan: RegionPlan, content: dict) -> tuple[PublishedVersion, bool, str]:
        """Publish under the region's lease (S3 upload) or as it is (direct: no bucket to hold a lease in)."""
        region, artifact = region_plan.region, plan.artifact

        def publish(newest_before: int) -> tuple[PublishedVersion, bool]:
            return self.aws.publish(
                region, plan.layer_name, content, description=plan.description, runtimes=list(plan.runtimes),
                architectures=[artifact.arch], license=artifact.license, code_sha256=artifact.code_sha256,
                newest_before=newest_before)

        if plan.upload == "direct":
            version, adopted = publish(region_plan.current.version if region_plan.current else 0)
            return version, adopted, ""
        held = lease.publish_under_lease(
            self.aws, region, region_plan.bucket, layer_name=plan.layer_name, sha256=artifact.sha256_hex,
            code_sha256=artifact.code_sha256, seconds=plan.lease_seconds, host=self.host, pid=self.pid,
            new_token=lambda: secrets.token_hex(16), clock=self.clock, sleep=self.aws.sleep, publish=publish)
        return held.version, held.adopted, held.note

    def _parameters(self, plan: Plan, region: str, version: PublishedVersion) -> tuple[tuple[str, ...],
                                                                                          tuple[str, ...]]:
        """Make the version's SSM parameters name it, writing only what differs: (naming it, written now)."""
        prefix, name, arch = plan.ssm_prefix, plan.layer_name, plan.artifact.arch
        pin = ssm_parameter_name(prefix, name, arch, version.version)
        latest = ssm_parameter_name(prefix, name, arch, "latest")
        current = self.aws.parameters(region, (pin, latest))
        newer = newer_named(current[latest], version.arn)
        # A newer version of the layer (another zip, published meanwhile) keeps ``latest``, if it exists.
        keep_latest = newer is not None and self.aws.layer_version(region, name, newer) is not None
        written = []
        for write in parameter_writes(prefix, name, arch, version.arn, version.version, current,
                                      keep_latest=keep_latest):
            try:
                self.aws.put_parameter(region, write.name, write.value, overwrite=write.overwrite,
                                       description=f"{name} ({arch}) version {version.version}, "
                                                   "by lambda-layer-builder")
            except AwsError as error:
                if error.code != "ParameterAlreadyExists":
                    raise
                # Written meanwhile by a concurrent publish of this version: right if it names it.
                held = self.aws.parameters(region, (write.name,))[write.name]
                if held != write.value:
                    raise ParameterConflict(f"the SSM parameter {write.name} holds {held!r}, not {write.value}",
                                            hint=f"if it is stale, delete it (aws ssm delete-parameter --name "
                                                 f"{write.name}) and publish again") from None
                continue
            written.append(write.name)
        return (pin,) + (() if keep_latest else (latest,)), tuple(written)

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
