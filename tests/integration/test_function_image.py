"""A stack over the layer budget: the build says so with numbers, and --image makes a container image."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import BASE_IMAGE, our_containers

pytestmark = pytest.mark.integration
LAYERS = [sys.executable, "-m", "builder"]
# numpy + Pillow (68 MiB) against a budget cut to 5 MiB by the reserve: "too big for a layer".
RECIPE = """name = "toobig"
runtime = "python3.11"
reserve = "245MiB"
requirements = ["numpy==2.2.6", "pillow==12.2.0"]
[smoke]
imports = ["numpy", "PIL.Image"]
code = "assert numpy.asarray(PIL.Image.new('L', (4, 4))).shape == (4, 4)"
"""


def layers(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([*LAYERS, *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


def test_too_big_for_a_layer_becomes_a_container_image(docker_engine, tmp_path):
    (tmp_path / "toobig.toml").write_text(RECIPE)
    as_layer = layers("build", "toobig.toml", "--backend", "docker", "--base-image", BASE_IMAGE,
                      "--no-import-timing", cwd=tmp_path)
    assert as_layer.returncode == 5, as_layer.stderr
    assert "over its budget" in as_layer.stderr and "biggest packages: numpy" in as_layer.stderr
    assert "layers build toobig --image" in as_layer.stderr

    as_image = layers("build", "toobig.toml", "--image", "--base-image", BASE_IMAGE, "--function-base", BASE_IMAGE,
                      "--no-import-timing", "--json", cwd=tmp_path)
    assert as_image.returncode == 0, as_image.stderr
    report = json.loads(as_image.stdout)
    assert report["over_layer_budget"] and report["verification"]["image_imports"] == "passed"
    tag = report["image"]["tag"]
    try:
        ran = docker_engine.containers.run(tag, ["python3.11", "-c", "import numpy; print(numpy.__file__)"],
                                           remove=True, environment={"PYTHONPATH": "/opt/python"})
        assert ran.decode().startswith("/opt/python/numpy/")
        assert (tmp_path / "dist/toobig/toobig-python3.11-x86_64.image.json").is_file()
        assert not (tmp_path / "dist/toobig/toobig-python3.11-x86_64.zip").exists()
    finally:
        docker_engine.images.remove(tag, force=True)
    assert not our_containers(docker_engine)
