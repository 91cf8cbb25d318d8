"""``layers publish`` against a real moto server over HTTP, behind the fault-injecting proxy.

moto checks almost nothing, so these tests also prove the tool refuses bad
layers itself, before any request reaches the proxy. Layers are real builds
of a small recipe (six, pure Python), with two pins for "a changed pin".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.backends.pip import PipBackend
from builder.build import BuildOptions, build
from builder.recipe import parse_recipe
from builder.runner import Runner
from tests.conftest import ROOT
from tests.integration.aws_fixtures import make_client

pytestmark = pytest.mark.integration
LAYERS = [sys.executable, "-m", "builder"]
FIVE = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2")


def tiny_recipe(pin: str, *, name: str = "tiny", runtime: str = "python3.11", arch: str = "x86_64"):
    return parse_recipe({"name": name, "runtime": runtime, "architectures": [arch], "requirements": [pin],
                         "license": "MIT", "smoke": {"imports": ["six"], "code": "assert six.PY3"}})


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Two real builds of one recipe: six 1.16.0, then the pin changed to 1.17.0."""
    work = tmp_path_factory.mktemp("builds")
    backend = PipBackend(Runner(), work / "cache")
    made = {}
    for key, pin in (("old", "six==1.16.0"), ("new", "six==1.17.0")):
        result = build(tiny_recipe(pin), "x86_64", backend, BuildOptions(out_dir=work / key, time_imports=False))
        assert result.report["verification"]["verified"]
        made[key] = result.zip.path
    return made


def publish(*args: str, proxy, cwd: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "AWS_ENDPOINT_URL": proxy.url,
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "LAYERS_AWS_BASE_DELAY": "0.05", **env}
    environment.pop("AWS_PROFILE", None)
    return subprocess.run([*LAYERS, "publish", *args, "--manifests", str(cwd / "published")], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=environment)


def server_versions(moto_server, region: str, name: str = "tiny") -> list[dict]:
    client = make_client("lambda", region, moto_server.url)
    return client.list_layer_versions(LayerName=name)["LayerVersions"]


def manifest(cwd: Path) -> dict:
    return json.loads((cwd / "published" / "tiny.json").read_text())["layers"]["tiny"]["regions"]


@pytest.fixture
def fresh(moto_server, fault_proxy):
    moto_server.reset()
    fault_proxy.clear()
    return fault_proxy


def test_five_regions_once_then_nothing_then_one_more_after_a_pin_change(builds, fresh, moto_server, tmp_path):
    proxy = fresh
    first = publish(str(builds["old"]), "--regions", ",".join(FIVE), proxy=proxy, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert {r: len(server_versions(moto_server, r)) for r in FIVE} == {r: 1 for r in FIVE}
    assert proxy.operations(operation="PutObject") and len(proxy.operations(operation="PublishLayerVersion")) == 5

    proxy.clear()
    again = publish(str(builds["old"]), "--regions", ",".join(FIVE), proxy=proxy, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert proxy.operations(operation="PublishLayerVersion") == [] and proxy.operations(operation="PutObject") == []
    assert {r: len(server_versions(moto_server, r)) for r in FIVE} == {r: 1 for r in FIVE}
    assert again.stdout.count("unchanged") == 5

    changed = publish(str(builds["new"]), "--regions", ",".join(FIVE), proxy=proxy, cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    for region in FIVE:
        listed = server_versions(moto_server, region)
        assert [v["Version"] for v in listed] == [2, 1]
        assert manifest(tmp_path)[region]["version"] == 2
        assert manifest(tmp_path)[region]["arn"] == listed[0]["LayerVersionArn"]
    new_report = json.loads(builds["new"].with_name(builds["new"].name[:-4] + ".report.json").read_text())
    assert new_report["lock_digest"][:16] in server_versions(moto_server, "eu-west-1")[0]["Description"]


def test_every_region_ends_with_exactly_one_version_under_faults(builds, fresh, moto_server, tmp_path):
    proxy = fresh
    proxy.add_fault("throttle", service="lambda", operation="PublishLayerVersion", times=3, retry_after=0.2)
    proxy.add_fault("throttle", service="lambda", operation="GetLayerVersion", times=2, retry_after=0.1)
    proxy.add_fault("error500", service="lambda", operation="ListLayerVersions", times=3)
    proxy.add_fault("error500", service="s3", operation="CreateBucket", times=1)
    proxy.add_fault("reset", service="s3", operation="PutObject", times=2)
    # The server publishes, the answer is lost: a retry must not make a second version.
    proxy.add_fault("lost-answer", service="lambda", operation="PublishLayerVersion", region="eu-west-1", times=1)
    result = publish(str(builds["old"]), "--regions", ",".join(FIVE), "--json", proxy=proxy, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    faults = [seen.fault for seen in proxy.requests if seen.fault]
    assert sorted(set(faults)) == ["error500", "lost-answer", "reset", "throttle"] and len(faults) == 12
    outcome = json.loads(result.stdout)
    assert outcome["retries"] >= 12
    statuses = {o["region"]: o["status"] for o in outcome["outcomes"]}
    assert statuses["eu-west-1"] == "adopted" and set(statuses.values()) <= {"published", "adopted"}
    recorded = manifest(tmp_path)
    for region in FIVE:
        listed = server_versions(moto_server, region)
        assert len(listed) == 1, (region, listed)
        assert recorded[region]["arn"] == listed[0]["LayerVersionArn"] and recorded[region]["version"] == 1


def test_a_failed_region_does_not_stop_the_others_and_a_rerun_finishes_it(builds, fresh, moto_server, tmp_path):
    proxy = fresh
    proxy.add_fault("error500", service="lambda", operation="PublishLayerVersion", region="eu-central-1", times=None)
    failed = publish(str(builds["old"]), "--regions", ",".join(FIVE), proxy=proxy, cwd=tmp_path,
                     LAYERS_AWS_MAX_ATTEMPTS="3")
    assert failed.returncode == 7, failed.stderr
    assert "some regions failed" in failed.stderr and "failed" in failed.stdout
    assert "eu-central-1" not in manifest(tmp_path) and len(manifest(tmp_path)) == 4

    proxy.clear()
    rerun = publish(str(builds["old"]), "--regions", ",".join(FIVE), proxy=proxy, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert {s.region for s in proxy.requests if s.operation == "PublishLayerVersion"} == {"eu-central-1"}
    assert {r: len(server_versions(moto_server, r)) for r in FIVE} == {r: 1 for r in FIVE}
    assert len(manifest(tmp_path)) == 5


def _over_budget_zip(tmp_path: Path, builds) -> Path:
    """A real zip that unpacks past 250 MB (zeros compress to almost nothing), with a report."""
    report = json.loads(builds["old"].with_name(builds["old"].name[:-4] + ".report.json").read_text())
    zip_path = tmp_path / "huge" / "tiny-python3.11-x86_64.zip"
    zip_path.parent.mkdir()
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("python/weights.bin", "w", force_zip64=True) as handle:
            chunk = bytes(1 << 20)
            for _ in range(251):
                handle.write(chunk)
    from builder.archive import sha256_of

    sha_hex, code = sha256_of(zip_path)
    report["zip"].update(sha256=sha_hex, code_sha256=code, zipped_bytes=zip_path.stat().st_size)
    zip_path.with_name(zip_path.name[:-4] + ".report.json").write_text(json.dumps(report))
    return zip_path


def test_bad_layers_are_refused_before_any_request(builds, fresh, tmp_path):
    proxy = fresh
    huge = publish(str(_over_budget_zip(tmp_path, builds)), "--regions", "us-east-1", proxy=proxy, cwd=tmp_path)
    assert huge.returncode == 5 and "over its budget" in huge.stderr, huge.stderr

    unverified_recipe = tiny_recipe("six==1.17.0", runtime="python3.12", arch="arm64")
    backend = PipBackend(Runner(), tmp_path / "cache")
    made = build(unverified_recipe, "arm64", backend, BuildOptions(out_dir=tmp_path / "arm", time_imports=False))
    if made.report["verification"]["verified"]:
        pytest.fail("an arm64 python3.12 ran here; this test needs a layer that could not be smoke-tested")
    unverified = publish(str(made.zip.path), "--regions", "us-east-1", proxy=proxy, cwd=tmp_path)
    assert unverified.returncode == 4 and "was not verified" in unverified.stderr and "--force" in unverified.stderr

    bad_runtime = publish(str(builds["old"]), "--regions", "us-east-1", "--runtimes", "python3.99", proxy=proxy,
                          cwd=tmp_path)
    assert bad_runtime.returncode == 2 and "not a Lambda Python runtime" in bad_runtime.stderr

    typo = publish(str(builds["old"]), "--regions", "us-east-1,eu-west1", proxy=proxy, cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean 'eu-west-1'" in typo.stderr

    for result in (huge, unverified, bad_runtime, typo):
        assert "Traceback" not in result.stderr
    assert proxy.requests == []  # nothing reached the server
    assert not (tmp_path / "published").exists()


def test_a_layer_that_would_not_load_on_lambda_is_refused_before_any_request(builds, fresh, tmp_path):
    # A zip made elsewhere: its extension links libGL.so.1, which this machine has and Lambda's python3.11 lacks.
    source = tmp_path / "gl.c"
    source.write_text("int uses_gl(void) { return 1; }\n")
    so = tmp_path / "_gl.so"
    compiled = subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(source), "-Wl,--no-as-needed",
                               "-l:libGL.so.1"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    report = json.loads(builds["old"].with_name(builds["old"].name[:-4] + ".report.json").read_text())
    zip_path = tmp_path / "gl" / "tiny-python3.11-x86_64.zip"
    zip_path.parent.mkdir()
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.write(so, "python/glpkg/_gl.so")
        archive.writestr("python/glpkg/__init__.py", "")
    from builder.archive import sha256_of

    sha_hex, code = sha256_of(zip_path)
    report["zip"].update(sha256=sha_hex, code_sha256=code, zipped_bytes=zip_path.stat().st_size)
    zip_path.with_name(zip_path.name[:-4] + ".report.json").write_text(json.dumps(report))

    refused = publish(str(zip_path), "--regions", "us-east-1", proxy=fresh, cwd=tmp_path)
    assert refused.returncode == 4, refused.stderr
    assert "would not load on python3.11" in refused.stderr and "libGL.so.1" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert fresh.requests == []  # nothing reached the server
    assert not (tmp_path / "published").exists()


@pytest.mark.parametrize("args, words", [
    (["--regions", "us-east-1", "--principal", "*"], "is not an AWS account ID"),  # never public by the back door
    (["--regions", ","], "--regions ',' names nothing"),  # never "every enabled region"
    (["--regions", "us-east-1", "--org-id", ""], "is not an organization ID"),  # never dropped
    (["--regions", "us-east-1", "--bucket-template", "{account.x}-{region}"], "is not valid"),
    (["--regions", "us-east-1", "--runtimes", " , "], "--runtimes ' , ' names nothing"),
])
def test_arguments_that_would_widen_access_or_scope_are_refused_before_any_request(builds, fresh, tmp_path, args,
                                                                                   words):
    result = publish(str(builds["old"]), *args, proxy=fresh, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert fresh.requests == []
    assert not (tmp_path / "published").exists()


def test_grants_are_made_once_and_kept_on_rerun(builds, fresh, moto_server, tmp_path):
    proxy = fresh
    grants = ("--public", "--principal", "111122223333", "--org-id", "o-abcdefghij")
    for _ in range(2):
        result = publish(str(builds["old"]), "--regions", "us-east-1,eu-west-1", *grants, proxy=proxy, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    client = make_client("lambda", "eu-west-1", moto_server.url)
    policy = json.loads(client.get_layer_version_policy(LayerName="tiny", VersionNumber=1)["Policy"])
    assert sorted(s["Sid"] for s in policy["Statement"]) == [
        "layers-account-111122223333", "layers-org-o-abcdefghij", "layers-public"]


def test_dry_run_prints_the_plan_and_changes_nothing(builds, fresh, moto_server, tmp_path):
    proxy = fresh
    publish(str(builds["old"]), "--regions", "us-east-1", proxy=proxy, cwd=tmp_path)
    proxy.clear()
    dry = publish(str(builds["new"]), "--regions", "us-east-1,eu-west-1", "--dry-run", "--json", proxy=proxy,
                  cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)["plan"]
    assert [(r["region"], r["action"]) for r in plan["regions"]] == [("us-east-1", "publish"), ("eu-west-1", "publish")]
    writes = [s for s in proxy.requests if s.method not in ("GET", "HEAD") and s.operation != "GetCallerIdentity"]
    assert writes == []
    assert len(server_versions(moto_server, "us-east-1")) == 1


def test_all_regions_asks_the_account(builds, fresh, tmp_path):
    dry = publish(str(builds["old"]), "--all-regions", "--dry-run", "--json", proxy=fresh, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    regions = [r["region"] for r in json.loads(dry.stdout)["plan"]["regions"]]
    assert "us-east-1" in regions and "eu-west-1" in regions
    assert not any(r.startswith(("cn-", "us-gov-")) for r in regions)  # other partitions
    assert "DescribeRegions" in fresh.operations()


def test_arns_and_prune(builds, fresh, moto_server, tmp_path):
    proxy = fresh
    for key in ("old", "new", "old"):
        assert publish(str(builds[key]), "--regions", "us-east-1,eu-west-1", proxy=proxy, cwd=tmp_path).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ENDPOINT_URL": proxy.url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def layers(*args):
        return subprocess.run([*LAYERS, *args, "--manifests", str(tmp_path / "published")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=env)

    terraform = layers("arns", "tiny", "--format", "terraform")
    assert terraform.returncode == 0 and '"eu-west-1" = "arn:aws:lambda:eu-west-1:123456789012:layer:tiny:3"' in terraform.stdout
    csv = layers("arns", "tiny", "--region", "us-east-1", "--format", "csv")
    assert csv.stdout.strip().splitlines()[1].startswith("tiny,x86_64,us-east-1,3,")

    # A team pinned version 1 in eu-west-1: the manifest names it, so prune must keep it.
    path = tmp_path / "published" / "tiny.json"
    data = json.loads(path.read_text())
    data["layers"]["tiny"]["regions"]["eu-west-1"]["version"] = 1
    data["layers"]["tiny"]["regions"]["eu-west-1"]["arn"] = "arn:aws:lambda:eu-west-1:123456789012:layer:tiny:1"
    path.write_text(json.dumps(data))
    dry = layers("prune", "tiny", "--keep", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [v["Version"] for v in server_versions(moto_server, "us-east-1")] == [3, 2, 1]
    done = layers("prune", "tiny", "--keep", "1")
    assert done.returncode == 0, done.stderr
    assert [v["Version"] for v in server_versions(moto_server, "us-east-1")] == [3]
    assert [v["Version"] for v in server_versions(moto_server, "eu-west-1")] == [3, 1]


def test_direct_upload_skips_s3(builds, fresh, moto_server, tmp_path):
    result = publish(str(builds["old"]), "--regions", "eu-west-1", "--direct", proxy=fresh, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert fresh.operations(service="s3") == []
    assert len(server_versions(moto_server, "eu-west-1")) == 1


def test_a_recipe_is_built_first_when_its_zip_is_missing(fresh, moto_server, tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny.toml").write_text(
        'name = "tiny"\nruntime = "python3.11"\nrequirements = ["six==1.17.0"]\n'
        '[smoke]\nimports = ["six"]\ncode = "assert six.PY3"\n')
    result = publish("tiny", "--recipes", str(tmp_path / "recipes"), "--out", str(tmp_path / "dist"),
                     "--regions", "us-east-1", proxy=fresh, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "is not built yet: building it first" in result.stderr
    assert (tmp_path / "dist" / "tiny" / "tiny-python3.11-x86_64.zip").is_file()
    assert len(server_versions(moto_server, "us-east-1")) == 1
