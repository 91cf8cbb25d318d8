"""``layers publish`` writes SSM parameters per region, against moto over HTTP behind the recording proxy.

``{prefix}/{layer}/{arch}/latest`` and ``.../{version}`` name the version's
ARN once it exists and its CodeSha256 was checked; a publish that changes
nothing writes none (counted in the proxy's records, and seen in each
parameter's Version). The layers are small zips made here with a report
beside them, as ``layers build`` writes it. ``rebuild --publish`` goes
through the same executor: one run of it is here too.

Every AWS operation the runs here make is checked against ``IAM_ACTIONS``,
the policy the README documents: a new call without a README line fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.aws_fixtures import make_client

pytestmark = pytest.mark.integration
LAYERS = [sys.executable, "-m", "builder"]
THREE = ("us-east-1", "eu-west-1", "ap-southeast-2")
ACCOUNT = "123456789012"  # moto's

# Operation -> the IAM action it needs (the README's publishing policy). GetCallerIdentity needs none.
IAM_ACTIONS = {
    "GetCallerIdentity": None,
    "DescribeRegions": "ec2:DescribeRegions",
    "ListLayerVersions": "lambda:ListLayerVersions",
    "GetLayerVersion": "lambda:GetLayerVersion",
    "PublishLayerVersion": "lambda:PublishLayerVersion",
    "GetLayerVersionPolicy": "lambda:GetLayerVersionPolicy",
    "AddLayerVersionPermission": "lambda:AddLayerVersionPermission",
    "DeleteLayerVersion": "lambda:DeleteLayerVersion",   # prune
    "ListFunctions": "lambda:ListFunctions",             # prune: which versions functions still use
    "HeadBucket": "s3:ListBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "CreateBucket": "s3:CreateBucket",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "GetParameters": "ssm:GetParameters",
    "PutParameter": "ssm:PutParameter",
    "GetParameter": "ssm:GetParameter",                  # prune: the version 'latest' names
}


def small_layer(directory: Path, marker: str, *, name: str = "tiny") -> Path:
    """A pure-Python layer zip and its build report: ``marker`` makes its sha256 its own."""
    directory.mkdir(parents=True, exist_ok=True)
    zip_path = directory / f"{name}-python3.11-x86_64.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(f"python/{name}_marker.py", (2020, 1, 1, 0, 0, 0)), f"MARK = {marker!r}\n")
    data = zip_path.read_bytes()
    digest = hashlib.sha256(data).digest()
    report = {
        "recipe": name, "layer_name": name, "runtime": "python3.11", "architecture": "x86_64",
        "lock_digest": "0" * 64, "builder_version": "0.1.0", "versions": {}, "license": "MIT",
        "zip": {"sha256": digest.hex(), "code_sha256": base64.b64encode(digest).decode(), "zipped_bytes": len(data),
                "unzipped_bytes": 100},
        "budget": {"unzipped_bytes": 100, "unzipped_budget": 100_000, "zipped_bytes": len(data),
                   "direct_upload_limit": 50 << 20, "fits": True},
        "sizes": {"installed_bytes": 100}, "verification": {"verified": True, "how": "test", "elf_files": 0},
        "bytecode": {"mode": "none"},
    }
    zip_path.with_name(zip_path.name[:-4] + ".report.json").write_text(json.dumps(report))
    return zip_path


def environment(proxy, **env: str) -> dict:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "AWS_ENDPOINT_URL": proxy.url,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "LAYERS_AWS_BASE_DELAY": "0.05", **env}
    environ.pop("AWS_PROFILE", None)
    return environ


def publish(zip_path: Path, *args: str, proxy, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LAYERS, "publish", str(zip_path), *args, "--manifests", str(cwd / "published")],
                          cwd=cwd, capture_output=True, text=True, check=False, timeout=120, env=environment(proxy, **env))


def parameter(moto_server, region: str, name: str) -> dict | None:
    found = make_client("ssm", region, moto_server.url).get_parameters(Names=[name])["Parameters"]
    return found[0] if found else None


def manifest(cwd: Path, name: str = "tiny") -> dict:
    return json.loads((cwd / "published" / f"{name}.json").read_text())["layers"][name]["regions"]


@pytest.fixture
def fresh(moto_server, fault_proxy):
    moto_server.reset()
    fault_proxy.clear()
    return fault_proxy


def test_parameters_name_each_version_and_a_rerun_writes_none(fresh, moto_server, tmp_path):
    proxy = fresh
    seen: set[str] = set()
    first_zip, second_zip = small_layer(tmp_path / "one", "one"), small_layer(tmp_path / "two", "two")

    first = publish(first_zip, "--regions", ",".join(THREE), "--json", proxy=proxy, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    seen |= set(proxy.operations())
    outcomes = {o["region"]: o for o in json.loads(first.stdout)["outcomes"]}
    recorded = manifest(tmp_path)
    for region in THREE:
        arn = recorded[region]["arn"]
        assert arn == f"arn:aws:lambda:{region}:{ACCOUNT}:layer:tiny:1"
        for name in ("/layers/tiny/x86_64/latest", "/layers/tiny/x86_64/1"):
            held = parameter(moto_server, region, name)
            assert held["Value"] == arn and held["Type"] == "String" and held["Version"] == 1, (region, held)
        assert recorded[region]["ssm"] == ["/layers/tiny/x86_64/1", "/layers/tiny/x86_64/latest"]
        assert outcomes[region]["ssm_written"] == outcomes[region]["ssm"] == recorded[region]["ssm"]
    assert len(proxy.operations(operation="PutParameter")) == 6
    # Written only after the version was published and its CodeSha256 read back (GetLayerVersion), per region.
    for region in THREE:
        order = [s.operation for s in proxy.requests if s.region == region]
        assert order.index("PublishLayerVersion") < order.index("PutParameter")

    proxy.clear()
    again = publish(first_zip, "--regions", ",".join(THREE), "--json", proxy=proxy, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    seen |= set(proxy.operations())
    assert proxy.operations(operation="PutParameter") == [] and proxy.operations(operation="PublishLayerVersion") == []
    assert len(proxy.operations(operation="GetParameters")) == 3  # read, found right, left alone
    for outcome in json.loads(again.stdout)["outcomes"]:
        assert outcome["status"] == "unchanged" and outcome["ssm_written"] == [] and len(outcome["ssm"]) == 2
    for region in THREE:
        assert parameter(moto_server, region, "/layers/tiny/x86_64/latest")["Version"] == 1

    proxy.clear()
    moved = publish(second_zip, "--regions", ",".join(THREE), proxy=proxy, cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    seen |= set(proxy.operations())
    recorded = manifest(tmp_path)
    for region in THREE:
        new_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:layer:tiny:2"
        assert recorded[region]["arn"] == new_arn
        latest = parameter(moto_server, region, "/layers/tiny/x86_64/latest")
        assert latest["Value"] == new_arn and latest["Version"] == 2
        assert parameter(moto_server, region, "/layers/tiny/x86_64/2")["Value"] == new_arn
        kept = parameter(moto_server, region, "/layers/tiny/x86_64/1")  # the pin of version 1 still pins it
        assert kept["Value"] == new_arn[:-1] + "1" and kept["Version"] == 1
    assert len(proxy.operations(operation="PutParameter")) == 6
    assert "2 written" in moved.stdout

    unknown = seen - set(IAM_ACTIONS)
    assert not unknown, f"document the IAM action of {unknown} in the README's policy and in IAM_ACTIONS"
    assert {"PutParameter", "GetParameters", "PutObject", "GetObject", "DeleteObject"} <= seen


def test_no_ssm_writes_none_and_another_prefix_is_used_as_given(fresh, moto_server, tmp_path):
    proxy = fresh
    layer = small_layer(tmp_path / "one", "one")
    quiet = publish(layer, "--regions", "eu-west-1", "--no-ssm", "--json", proxy=proxy, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert proxy.operations(service="ssm") == []
    assert json.loads(quiet.stdout)["plan"]["ssm_prefix"] is None
    assert manifest(tmp_path)["eu-west-1"]["ssm"] == []
    assert parameter(moto_server, "eu-west-1", "/layers/tiny/x86_64/latest") is None

    dry = publish(layer, "--regions", "eu-west-1", "--ssm-prefix", "/team/layers", "--dry-run", proxy=proxy,
                  cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "/team/layers/tiny/x86_64/1, /team/layers/tiny/x86_64/latest" in dry.stdout
    assert parameter(moto_server, "eu-west-1", "/team/layers/tiny/x86_64/latest") is None  # a dry run

    team = publish(layer, "--regions", "eu-west-1", "--ssm-prefix", "/team/layers", proxy=proxy, cwd=tmp_path)
    assert team.returncode == 0, team.stderr
    arn = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:layer:tiny:1"
    assert parameter(moto_server, "eu-west-1", "/team/layers/tiny/x86_64/latest")["Value"] == arn
    assert parameter(moto_server, "eu-west-1", "/layers/tiny/x86_64/latest") is None
    # The version was there already (published with --no-ssm): the parameters are made anyway, and recorded.
    assert manifest(tmp_path)["eu-west-1"]["ssm"] == ["/team/layers/tiny/x86_64/1", "/team/layers/tiny/x86_64/latest"]


@pytest.mark.parametrize("args, words", [
    (["--ssm-prefix", "layers"], "is not an SSM parameter path"),
    (["--ssm-prefix", "/aws/layers"], "is not an SSM parameter path"),
    (["--ssm-prefix", "/a b"], "is not an SSM parameter path"),
    (["--ssm-prefix", ""], "is not an SSM parameter path"),
    (["--ssm-prefix", "/a" * 9], "is not an SSM parameter path"),
    (["--ssm-prefix", "/team", "--no-ssm"], "--no-ssm writes no parameters"),
])
def test_a_bad_prefix_is_refused_before_any_request(fresh, tmp_path, args, words):
    result = publish(small_layer(tmp_path / "one", "one"), "--regions", "us-east-1", *args, proxy=fresh, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and words in lines[0] and lines[1].startswith("hint: ")
    assert fresh.requests == [] and not (tmp_path / "published").exists()


def test_a_pin_holding_another_arn_fails_the_region_and_latest_is_not_moved(fresh, moto_server, tmp_path):
    stale = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:layer:tiny:99"
    ssm = make_client("ssm", "eu-west-1", moto_server.url)
    ssm.put_parameter(Name="/layers/tiny/x86_64/1", Value=stale, Type="String")
    result = publish(small_layer(tmp_path / "one", "one"), "--regions", "eu-west-1", proxy=fresh, cwd=tmp_path)
    assert result.returncode == 7, result.stderr
    assert "/layers/tiny/x86_64/1 holds" in result.stdout and "some regions failed" in result.stderr
    assert parameter(moto_server, "eu-west-1", "/layers/tiny/x86_64/latest") is None
    assert parameter(moto_server, "eu-west-1", "/layers/tiny/x86_64/1")["Value"] == stale
    # The version exists and is recorded: a rerun after the stale pin is deleted only writes the parameters.
    assert manifest(tmp_path)["eu-west-1"]["version"] == 1 and manifest(tmp_path)["eu-west-1"]["ssm"] == []
    ssm.delete_parameter(Name="/layers/tiny/x86_64/1")
    fresh.clear()
    rerun = publish(small_layer(tmp_path / "one", "one"), "--regions", "eu-west-1", proxy=fresh, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert fresh.operations(operation="PublishLayerVersion") == [] and len(fresh.operations(operation="PutParameter")) == 2


RECIPE = """name = "sixer"
runtime = "python3.11"
requirements = ["six==1.17.0"]
[smoke]
imports = ["six"]
code = ""
"""


def test_rebuild_publish_writes_the_same_parameters_under_a_lease(fresh, moto_server, tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "sixer.toml").write_text(RECIPE)
    env = environment(fresh, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    result = subprocess.run([*LAYERS, "rebuild", "sixer", "--recipes", "recipes", "--publish", "--regions",
                             "us-east-1,eu-west-1", "--ssm-prefix", "/ci/layers", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, check=False, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert [o["status"] for o in json.loads(result.stdout)] == ["published"]
    recorded = manifest(tmp_path, "sixer")
    for region in ("us-east-1", "eu-west-1"):
        arn = recorded[region]["arn"]
        assert parameter(moto_server, region, "/ci/layers/sixer/x86_64/latest")["Value"] == arn
        assert parameter(moto_server, region, "/ci/layers/sixer/x86_64/1")["Value"] == arn
        lease_writes = [s for s in fresh.requests if s.region == region and "/leases/sixer/" in s.path]
        assert [s.operation for s in lease_writes][:2] == ["PutObject", "GetObject"]
        assert lease_writes[-1].operation == "DeleteObject"
    bucket = f"lambda-layer-builder-{ACCOUNT}-eu-west-1"
    left = make_client("s3", "eu-west-1", moto_server.url).list_objects_v2(Bucket=bucket, Prefix="leases/")
    assert left.get("KeyCount", 0) == 0

    refused = subprocess.run([*LAYERS, "rebuild", "sixer", "--recipes", "recipes", "--no-ssm"], cwd=tmp_path,
                             capture_output=True, text=True, check=False, timeout=60, env=env)
    assert refused.returncode == 2 and "go with --publish" in refused.stderr


def test_a_real_np311_build_publishes_its_parameters_in_three_regions_and_a_rerun_writes_none(
        fresh, moto_server, tmp_path):
    """The issue's own case: np311 (numpy, Pillow, requests) built for real with the pip backend, then published."""
    from builder.backends.pip import PipBackend
    from builder.build import BuildOptions, build
    from builder.recipe import load_recipe
    from builder.runner import Runner

    recipe = load_recipe("np311", ROOT / "recipes")
    built = build(recipe, "x86_64", PipBackend(Runner(), tmp_path / "cache"),
                  BuildOptions(out_dir=tmp_path / "dist", time_imports=False))
    assert built.report["verification"]["verified"]
    proxy = fresh
    first = publish(built.zip.path, "--regions", ",".join(THREE), proxy=proxy, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    name = recipe.layer_name
    recorded = manifest(tmp_path, "np311")
    for region in THREE:
        arn = recorded[region]["arn"]
        assert arn == f"arn:aws:lambda:{region}:{ACCOUNT}:layer:{name}:1"
        for which in ("latest", "1"):
            assert parameter(moto_server, region, f"/layers/{name}/x86_64/{which}")["Value"] == arn
    assert len(proxy.operations(operation="PutParameter")) == 6

    proxy.clear()
    again = publish(built.zip.path, "--regions", ",".join(THREE), proxy=proxy, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert proxy.operations(operation="PutParameter") == [] and proxy.operations(operation="PublishLayerVersion") == []
