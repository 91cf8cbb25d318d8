"""Publishes of one zip running at once make one version per region: the lease, against moto over HTTP.

Each publish is its own process (``python -m builder publish``), as two CI
runners would be. The fault proxy delays every request (``FaultProxy.delay``),
so both have planned before either can publish and their lease writes meet;
the holder of a region's lease publishes, the other waits and adopts. A
holder killed with SIGKILL while it holds a lease blocks the next publish
only until the expiry it wrote (``LAYERS_LEASE_SECONDS``, 6 s here: the next
publish, started at once, finds it alive, waits, then takes it over).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.aws_fixtures import make_client
from tests.integration.test_publish_ssm import ACCOUNT, LAYERS, environment, parameter, small_layer

pytestmark = pytest.mark.integration
THREE = ("us-east-1", "eu-west-1", "ap-southeast-2")


def start(zip_path: Path, regions: tuple[str, ...], *, proxy, cwd: Path, **env: str) -> subprocess.Popen:
    """A runner of its own (own folder and manifest), publishing ``zip_path`` in the background."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([*LAYERS, "publish", str(zip_path), "--regions", ",".join(regions), "--json",
                             "--manifests", str(cwd / "published")], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment(proxy, **env))


def versions(moto_server, region: str, name: str = "tiny") -> list[dict]:
    client = make_client("lambda", region, moto_server.url)
    try:
        return client.list_layer_versions(LayerName=name)["LayerVersions"]
    except client.exceptions.ResourceNotFoundException:
        return []


def leases(moto_server, region: str) -> list[str]:
    s3 = make_client("s3", region, moto_server.url)
    try:
        listed = s3.list_objects_v2(Bucket=f"lambda-layer-builder-{ACCOUNT}-{region}", Prefix="leases/")
    except s3.exceptions.NoSuchBucket:
        return []
    return [item["Key"] for item in listed.get("Contents", [])]


@pytest.fixture
def fresh(moto_server, fault_proxy):
    moto_server.reset()
    fault_proxy.clear()
    return fault_proxy


def test_two_publishes_at_once_make_one_version_per_region(fresh, moto_server, tmp_path):
    proxy = fresh
    proxy.delay = 0.3  # every request: both runners plan, stage and reach the lease before either publishes
    layer = small_layer(tmp_path / "zip", "raced")
    runners = [start(layer, THREE, proxy=proxy, cwd=tmp_path / name) for name in ("a", "b")]
    results = [runner.communicate(timeout=120) for runner in runners]
    for runner, (stdout, stderr) in zip(runners, results):
        assert runner.returncode == 0, stderr
    outcomes = [{o["region"]: o for o in json.loads(stdout)["outcomes"]} for stdout, _ in results]

    for region in THREE:
        listed = versions(moto_server, region)
        assert len(listed) == 1, (region, listed)
        statuses = sorted(outcome[region]["status"] for outcome in outcomes)
        assert statuses == ["adopted", "published"], (region, statuses)
        loser = next(outcome[region] for outcome in outcomes if outcome[region]["status"] == "adopted")
        assert loser["note"].startswith("waited for ") and " pid " in loser["note"]
        assert {outcome[region]["arn"] for outcome in outcomes} == {listed[0]["LayerVersionArn"]}
        assert parameter(moto_server, region, "/layers/tiny/x86_64/latest")["Value"] == listed[0]["LayerVersionArn"]
        assert leases(moto_server, region) == []  # each holder deleted its own
    assert len(proxy.operations(operation="PublishLayerVersion")) == 3
    # Both did try for each lease, conditionally; a refused write is moto's 412.
    lease_puts = [s for s in proxy.requests if s.operation == "PutObject" and "/leases/" in s.path]
    assert len(lease_puts) >= 6


def test_a_killed_holder_blocks_the_next_publish_only_until_its_lease_expires(fresh, moto_server, tmp_path):
    proxy = fresh
    proxy.delay = 0.3  # from its lease to its PublishLayerVersion the holder needs 3 more requests: time to kill it
    layer = small_layer(tmp_path / "zip", "killed")
    holder = start(layer, ("eu-west-1",), proxy=proxy, cwd=tmp_path / "a", LAYERS_LEASE_SECONDS="6")
    deadline = time.monotonic() + 60
    while not leases(moto_server, "eu-west-1"):
        assert holder.poll() is None and time.monotonic() < deadline, holder.communicate()
        time.sleep(0.02)
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    proxy.delay = 0.0
    time.sleep(0.4)  # the holder's last request, delayed in the proxy, lands (a read)
    assert versions(moto_server, "eu-west-1") == []  # killed before publishing
    s3 = make_client("s3", "eu-west-1", moto_server.url)
    key = leases(moto_server, "eu-west-1")[0]
    dead = json.loads(s3.get_object(Bucket=f"lambda-layer-builder-{ACCOUNT}-eu-west-1", Key=key)["Body"].read())
    assert dead["pid"] == holder.pid and dead["expires_at"] - dead["acquired_at"] == 6

    proxy.clear()
    began = time.time()
    nxt = start(layer, ("eu-west-1",), proxy=proxy, cwd=tmp_path / "b")  # its own lease length: the default 600 s
    stdout, stderr = nxt.communicate(timeout=60)
    ended = time.time()
    assert nxt.returncode == 0, stderr
    outcome = json.loads(stdout)["outcomes"][0]
    assert outcome["status"] == "published"
    assert outcome["note"] == f"waited for {dead['host']} pid {holder.pid}; took over the expired lease of " \
                              f"{dead['host']} pid {holder.pid}"
    assert ended >= dead["expires_at"] and ended - began < 30  # waited for the expiry, not for 600 s
    assert len(versions(moto_server, "eu-west-1")) == 1
    assert leases(moto_server, "eu-west-1") == []
    # The dead lease was replaced only on its ETag (If-Match), then deleted by its new holder.
    ops = [s.operation for s in proxy.requests if "/leases/" in s.path]
    assert ops[0] == "PutObject" and "DeleteObject" == ops[-1] and ops.count("PutObject") == 2


def test_a_bad_lease_length_is_refused_before_any_request(fresh, tmp_path):
    layer = small_layer(tmp_path / "zip", "bad")
    for value in ("0", "3601", "1.5", "", "x", "-3"):
        result = subprocess.run([*LAYERS, "publish", str(layer), "--regions", "us-east-1"], cwd=tmp_path,
                                capture_output=True, text=True, check=False, timeout=60,
                                env=environment(fresh, LAYERS_LEASE_SECONDS=value))
        assert result.returncode == 2, (value, result.stderr)
        assert result.stderr.startswith("error: LAYERS_LEASE_SECONDS=") and "\nhint: " in result.stderr
    assert fresh.requests == []


def test_a_direct_upload_has_no_lease_and_says_so(fresh, moto_server, tmp_path):
    layer = small_layer(tmp_path / "zip", "direct")
    result = subprocess.run([*LAYERS, "publish", str(layer), "--regions", "eu-west-1", "--direct", "--manifests",
                             str(tmp_path / "published")], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
                            env=environment(fresh))
    assert result.returncode == 0, result.stderr
    assert "no staging bucket, so no lease" in result.stderr
    assert fresh.operations(service="s3") == [] and len(versions(moto_server, "eu-west-1")) == 1
