"""``make bench``: publish wall time to 1 region and to 8 regions, in one run.

Writes ``bench/results/publish.json``. The layer is the python3.11 recipe
(np311, about 21 MiB zipped), built here with the pip backend. AWS is a
local moto server behind the fault proxy, which adds 150 ms to every
request: a real cross-region round trip. Without the delay, one moto process
on 2 cores would be the bottleneck, not the tool. Both publishes are first
publishes: the bucket is created, the zip uploaded, the version published.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

from bench.results import write_results
from builder.backends.pip import PipBackend
from builder.backends.select import cache_dir
from builder.build import BuildOptions, build
from builder.publish.artifact import load_artifact
from builder.publish.aws import AwsClient, RateLimiter
from builder.publish.executor import Executor, read_latest
from builder.publish.manifest import Manifest
from builder.publish.plan import PublishRequest, check_request, lambda_api, make_plan
from builder.recipe import load_recipe
from builder.runner import Runner
from tests.support.fault_proxy import FaultProxy
from tests.support.moto_server import MotoServer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "np311"
DELAY = 0.150
ONE = ("us-east-1",)
EIGHT = ("us-west-2", "eu-west-1", "eu-central-1", "eu-north-1", "ap-southeast-2", "ap-northeast-1",
         "sa-east-1", "ca-central-1")


def _publish(zip_path: Path, regions: tuple[str, ...], manifest_dir: Path, proxy: FaultProxy) -> dict:
    artifact = load_artifact(zip_path)
    request = PublishRequest(regions=regions)
    check_request(artifact, request)
    proxy.clear()
    start = time.perf_counter()
    aws = AwsClient(limiter=RateLimiter(lambda_api()["limits"]["control_plane_per_second"]))
    plan = make_plan(artifact, request, regions, aws.account_id(), read_latest(aws, artifact.published_name, regions))
    outcomes = Executor(aws, Manifest(manifest_dir / f"{artifact.recipe}.json", artifact.recipe)).run(plan)
    seconds = time.perf_counter() - start
    failed = [o.region for o in outcomes if o.failed]
    if failed:
        raise SystemExit(f"publishing failed in {failed}: {[o.message for o in outcomes if o.failed]}")
    return {"regions": len(regions), "seconds": round(seconds, 2), "requests": len(proxy.requests),
            "per_region_seconds": {o.region: o.seconds for o in outcomes},
            "statuses": sorted({o.status for o in outcomes})}


def main() -> int:
    runner = Runner()
    recipe = load_recipe(RECIPE, ROOT / "recipes")
    with tempfile.TemporaryDirectory(prefix="layers-publish-bench-") as scratch:
        work = Path(scratch)
        built = build(recipe, "x86_64", PipBackend(runner, cache_dir()),
                      BuildOptions(out_dir=work / "dist", time_imports=False))
        with MotoServer() as moto, FaultProxy(moto.url, delay=DELAY) as proxy:
            os.environ.update({"AWS_ENDPOINT_URL": proxy.url, "AWS_ACCESS_KEY_ID": "testing",
                               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
            os.environ.pop("AWS_PROFILE", None)
            one = _publish(built.zip.path, ONE, work / "published", proxy)
            eight = _publish(built.zip.path, EIGHT, work / "published", proxy)
    results = {
        "recipe": RECIPE, "zipped_bytes": built.zip.zipped_bytes, "machine": platform.machine(),
        "cpus": os.cpu_count(), "added_latency_per_request_seconds": DELAY,
        "one_region": one, "eight_regions": eight,
        "eight_over_one": round(eight["seconds"] / one["seconds"], 2),
    }
    write_results("publish", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
