"""``layers lock`` and ``layers rebuild`` as users run them, with real pip (no publishing here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.functional
LAYERS = [sys.executable, "-m", "builder"]

SIXER = """name = "sixer"
runtime = "python3.11"
requirements = ["six==1.16.0"]
[smoke]
imports = ["six"]
code = "assert six.PY3"
"""
# numpy 2.3 ships cp311 wheels for glibc 2.27+ only; python3.11 runs on glibc 2.26.
NUMPY_RANGE = """name = "nprange"
runtime = "python3.11"
requirements = ["numpy>=2.2,<2.4"]
[smoke]
imports = ["numpy"]
code = "assert numpy.arange(3).sum() == 3"
"""
BROKEN = """name = "broken"
runtime = "python3.11"
requirements = ["this-distribution-does-not-exist-anywhere==1.0"]
[smoke]
imports = ["x"]
code = ""
"""


def layers(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200",
           "DOCKER_HOST": f"unix://{cwd}/no-engine.sock"}  # the pip backend, without a pull attempt
    return subprocess.run([*LAYERS, *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "sixer.toml").write_text(SIXER)
    return tmp_path


def test_lock_then_build_installs_exactly_the_lock(project):
    locked = layers("lock", "sixer", "--recipes", "recipes", cwd=project)
    assert locked.returncode == 0, locked.stderr
    lockfile = json.loads((project / "recipes" / "sixer.lock").read_text())
    assert [w["version"] for w in lockfile["targets"]["x86_64"]["wheels"]] == ["1.16.0"]
    again = layers("lock", "sixer", "--recipes", "recipes", cwd=project)
    assert "up to date" in again.stdout

    built = layers("build", "sixer", "--recipes", "recipes", "--no-import-timing", cwd=project)
    assert built.returncode == 0, built.stderr
    assert "from the lock" in built.stderr
    report = json.loads((project / "dist/sixer/sixer-python3.11-x86_64.report.json").read_text())
    assert report["lock_digest"] == lockfile["targets"]["x86_64"]["digest"]
    assert len(report["identity"]) == 64

    # The recipe moves on: the lock no longer applies, and the build says so.
    (project / "recipes" / "sixer.toml").write_text(SIXER.replace("1.16.0", "1.17.0"))
    stale = layers("build", "sixer", "--recipes", "recipes", "--no-import-timing", cwd=project)
    assert stale.returncode == 0 and "layers lock sixer" in stale.stderr


def test_rebuild_builds_only_what_moved_and_names_the_change(project):
    (project / "recipes" / "broken.toml").write_text(BROKEN)
    first = layers("rebuild", "--all", "--recipes", "recipes", "--json", cwd=project)
    assert first.returncode == 8, first.stderr  # one recipe failed...
    outcomes = {o["recipe"]: o for o in json.loads(first.stdout)}
    assert outcomes["broken"]["status"] == "failed" and outcomes["broken"]["message"]
    assert outcomes["sixer"]["status"] == "rebuilt"  # ...and did not stop the other
    (project / "recipes" / "broken.toml").unlink()

    second = layers("rebuild", "--all", "--recipes", "recipes", "--json", cwd=project)
    assert second.returncode == 0, second.stderr
    assert [o["status"] for o in json.loads(second.stdout)] == ["unchanged"]

    (project / "recipes" / "sixer.toml").write_text(SIXER.replace("1.16.0", "1.17.0"))
    third = layers("rebuild", "sixer", "--recipes", "recipes", cwd=project)
    assert third.returncode == 0, third.stderr
    assert "six 1.16.0 → 1.17.0" in third.stdout and "rebuilt" in third.stdout
    lockfile = json.loads((project / "recipes" / "sixer.lock").read_text())
    assert lockfile["targets"]["x86_64"]["wheels"][0]["version"] == "1.17.0"


def test_a_release_the_runtime_cannot_load_is_not_picked_and_the_summary_says_so(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "nprange.toml").write_text(NUMPY_RANGE)
    result = layers("rebuild", "nprange", "--recipes", "recipes", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (outcome,) = json.loads(result.stdout)
    assert outcome["changes"] == ["+ numpy 2.2.6"]
    assert any(note.startswith("numpy 2.3.") and "not picked" in note and "glibc 2.26" in note
               for note in outcome["notes"]), outcome["notes"]


def test_generated_workflow_passes_githubs_schema(tmp_path):
    tools = tmp_path / "tools"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tools),
                                "check-jsonschema==0.39.0"], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    workflow = tmp_path / ".github" / "workflows" / "layers-rebuild.yml"
    made = layers("schedule", "github", "--regions", "us-east-1,eu-west-1", "--output", str(workflow),
                  "--recipes", str(ROOT / "recipes"), cwd=tmp_path)
    assert made.returncode == 0, made.stderr

    def validate(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                               "vendor.github-workflows", str(path)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(tools)}, timeout=120)

    good = validate(workflow)
    assert good.returncode == 0, good.stdout + good.stderr
    # The validator can fail: a job without runs-on is not a workflow.
    broken = tmp_path / "broken.yml"
    broken.write_text(workflow.read_text().replace("    runs-on: ${{ matrix.runner }}\n", ""))
    assert validate(broken).returncode != 0
