"""``layers rebuild --publish`` against moto: only a recipe whose pin moved is rebuilt and republished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.aws_fixtures import make_client

pytestmark = pytest.mark.integration
LAYERS = [sys.executable, "-m", "builder"]
RECIPE = """name = "{name}"
runtime = "python3.11"
requirements = ["{pin}"]
[smoke]
imports = ["{module}"]
code = ""
"""
REGIONS = "us-east-1,eu-west-1,ap-northeast-1"


def rebuild(cwd: Path, proxy, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "AWS_ENDPOINT_URL": proxy.url,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "LAYERS_AWS_BASE_DELAY": "0.05", "DOCKER_HOST": f"unix://{cwd}/no-engine.sock"}
    return subprocess.run([*LAYERS, "rebuild", "--all", "--recipes", "recipes", "--publish", "--regions", REGIONS,
                           *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def versions(moto_server, name: str) -> dict[str, int]:
    return {region: len(make_client("lambda", region, moto_server.url).list_layer_versions(LayerName=name)["LayerVersions"])
            for region in REGIONS.split(",")}


def test_only_the_recipe_whose_pin_moved_is_republished(moto_server, fault_proxy, tmp_path):
    moto_server.reset()
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "sixer.toml").write_text(RECIPE.format(name="sixer", pin="six==1.16.0", module="six"))
    (recipes / "idnaer.toml").write_text(RECIPE.format(name="idnaer", pin="idna==3.9", module="idna"))

    first = rebuild(tmp_path, fault_proxy, "--json")
    assert first.returncode == 0, first.stderr
    assert {o["recipe"]: o["status"] for o in json.loads(first.stdout)} == {"idnaer": "published", "sixer": "published"}
    assert versions(moto_server, "sixer") == versions(moto_server, "idnaer") == {r: 1 for r in REGIONS.split(",")}

    # Nothing moved: nothing is built, uploaded or published.
    fault_proxy.clear()
    second = rebuild(tmp_path, fault_proxy, "--json")
    assert second.returncode == 0, second.stderr
    assert {o["status"] for o in json.loads(second.stdout)} == {"unchanged"}
    assert not [s for s in fault_proxy.requests if s.operation in ("PutObject", "PublishLayerVersion")]

    # Even with the build outputs gone (a fresh CI runner), the published identity is enough.
    subprocess.run(["rm", "-rf", str(tmp_path / "dist")], check=True)
    third = rebuild(tmp_path, fault_proxy, "--json")
    assert {o["status"] for o in json.loads(third.stdout)} == {"unchanged"}

    (recipes / "sixer.toml").write_text(RECIPE.format(name="sixer", pin="six==1.17.0", module="six"))
    fault_proxy.clear()
    moved = rebuild(tmp_path, fault_proxy)
    assert moved.returncode == 0, moved.stderr
    assert "six 1.16.0 → 1.17.0" in moved.stdout
    published_in = {(s.region, s.path.split("/")[3]) for s in fault_proxy.requests if s.operation == "PublishLayerVersion"}
    assert published_in == {(r, "sixer") for r in REGIONS.split(",")}
    assert versions(moto_server, "sixer") == {r: 2 for r in REGIONS.split(",")}
    assert versions(moto_server, "idnaer") == {r: 1 for r in REGIONS.split(",")}
    manifest = json.loads((tmp_path / "published" / "sixer.json").read_text())
    assert {e["version"] for e in manifest["layers"]["sixer"]["regions"].values()} == {2}
