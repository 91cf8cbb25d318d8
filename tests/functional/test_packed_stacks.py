"""The shipped packed recipes: tf18-packed (TF 1.8, Python 3.6) and tf2 (TensorFlow 2 CPU + Keras 3, Python 3.12).

Each is built with ``make layer`` (pip backend). Its Keras workload must
pass twice in the build: on the tree, and through the layer's own stubs and
unpacker in the sandbox (Lambda's libraries only, /opt read-only, nothing
unpacked, /tmp the only writable place). Here the zip is also run again
from a read-only bind mount at /opt (``unshare -m``, so the mount is this
test's alone) with an empty unpack directory, as Lambda's first start does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.runner import Runner
from builder.verify.interpreters import find_interpreter
from tests.conftest import ROOT

pytestmark = [pytest.mark.functional, pytest.mark.slow]
MIB = 1 << 20


def _make(recipe: str) -> tuple[Path, dict]:
    result = subprocess.run(["make", "layer", f"RECIPE={recipe}", "BACKEND=pip"], cwd=ROOT, capture_output=True,
                            text=True, timeout=3000, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    runtime = json.loads(next((ROOT / "dist" / recipe).glob("*.report.json")).read_text())["runtime"]
    zip_path = ROOT / "dist" / recipe / f"{recipe}-{runtime}-x86_64.zip"
    return zip_path, json.loads(zip_path.with_name(zip_path.name[:-4] + ".report.json").read_text())


def _run_at_opt(zip_path: Path, tmp_path: Path, python: str, code: str) -> subprocess.CompletedProcess:
    """``code`` with the layer read-only at /opt and an empty unpack directory, in a mount namespace of its own."""
    layer = tmp_path / "layer"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(layer)
    (tmp_path / "unpacked").mkdir()
    script = tmp_path / "run.py"
    script.write_text(f"import sys\nsys.path.insert(0, '/opt/python')\n{code}\n")
    shell = (f"mount --bind {layer} /opt && mount -o remount,bind,ro /opt && "
             f"exec {python} -I -S -B {script}")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LAYER_UNPACK_DIR": str(tmp_path / "unpacked"),
           "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(["unshare", "-m", "sh", "-c", shell], capture_output=True, text=True, env=env,
                          timeout=900, check=False)


def _workload(recipe: str) -> str:
    import tomllib

    smoke = tomllib.loads((ROOT / "recipes" / f"{recipe}.toml").read_text())["smoke"]
    imports = "".join(f"import {name}\n" for name in smoke["imports"])
    return imports + smoke["code"] + "\nprint('WORKLOAD-OK', tensorflow.__file__)\n"


def _assert_packed_and_verified(report: dict) -> dict:
    pack = report["pack"]
    assert report["verification"]["verified"] and pack["verification"]["verified"]
    assert "read-only at /opt/python" in pack["verification"]["how"]
    assert pack["counted_bytes"] == report["budget"]["unzipped_bytes"]
    return pack


def test_tf18_packed_counts_under_40_mib_and_leaves_100_mb_for_a_model(tmp_path):
    zip_path, report = _make("tf18-packed")
    pack = _assert_packed_and_verified(report)
    assert report["budget"]["unzipped_bytes"] <= 40 * MIB
    assert pack["unpacked_bytes"] > 200 * MIB and "python3.6" in pack["verification"]["how"]
    assert pack["ephemeral_storage_mb"] == 512 and pack["snapstart_keeps_tmp"]
    python = str(find_interpreter("3.6", Runner()).path)
    run = _run_at_opt(zip_path, tmp_path, python, _workload("tf18-packed"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"WORKLOAD-OK {tmp_path}/unpacked/{pack['id']}/tensorflow/" in run.stdout
    planned = subprocess.run([sys.executable, "-m", "builder", "plan", "--layer", "tf18-packed",
                              "--model", "model.h5=100MB", "--json"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, check=False)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["recommended"] == "package"
    package = plan["options"][0]
    spare = 262_144_000 - package["checks"][0]["value"]
    assert spare >= 100 * MIB, package


def test_tf2_counts_under_230_mib_and_says_what_tmp_it_needs(tmp_path):
    zip_path, report = _make("tf2")
    pack = _assert_packed_and_verified(report)
    assert report["budget"]["unzipped_bytes"] <= 230 * MIB
    assert report["versions"]["tensorflow-cpu"].startswith("2.") and report["versions"]["keras"].startswith("3.")
    assert "python3.12" in pack["verification"]["how"]
    assert pack["ephemeral_storage_mb"] == 960 and not pack["snapstart_keeps_tmp"]  # 782 MiB unpacked, 844 MiB usable
    planned = subprocess.run([sys.executable, "-m", "builder", "plan", "--layer", "tf2", "--json"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
    assert planned.returncode == 0, planned.stderr
    advice = json.loads(planned.stdout)["options"][0]["advice"]
    assert "set EphemeralStorage to" in advice and "SnapStart" in advice  # it unpacks to more than 512 MB
    python = str(find_interpreter("3.12", Runner()).path)
    run = _run_at_opt(zip_path, tmp_path, python, _workload("tf2"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"WORKLOAD-OK {tmp_path}/unpacked/{pack['id']}/tensorflow/" in run.stdout
