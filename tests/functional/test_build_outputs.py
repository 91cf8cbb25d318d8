"""A build whose outputs could not all be delivered is refused before it starts, and delivers all or nothing.

Each refusal is a real ``layers build`` of a small recipe, pointed at a pip
index on a closed loopback port: a check that came after resolving would
show as exit 3 (nothing to resolve from), not the usage error's 2.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.build import BuildOptions, _deliver, check_outputs
from builder.errors import BuildError, UsageError
from builder.recipe import load_recipe
from tests.conftest import ROOT, VALID_RECIPE

pytestmark = pytest.mark.functional
STEM = "demo-python3.11-x86_64"


def layers(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "HOME": str(cwd),
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0"}
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def _refused(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert any(line.startswith("hint:") for line in result.stderr.splitlines()), result.stderr


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    (tmp_path / "demo.toml").write_text(VALID_RECIPE.format(name="demo"))
    return tmp_path


def test_out_that_is_a_file_or_dev_null_is_refused_before_building(recipe_dir):
    (recipe_dir / "a-file").write_text("keep me")
    _refused(layers("build", "demo.toml", "--backend", "pip", "--out", "a-file", cwd=recipe_dir), "not a directory")
    assert (recipe_dir / "a-file").read_text() == "keep me"
    _refused(layers("build", "demo.toml", "--backend", "pip", "--out", "/dev/null", cwd=recipe_dir), "/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_an_output_place_taken_by_a_directory_or_fifo_is_refused_before_building(recipe_dir):
    target = recipe_dir / "dist" / "demo"
    target.mkdir(parents=True)
    (target / f"{STEM}.zip").mkdir()
    _refused(layers("build", "demo.toml", "--backend", "pip", cwd=recipe_dir), f"{STEM}.zip")
    os.rmdir(target / f"{STEM}.zip")
    os.mkfifo(target / f"{STEM}.report.json")
    _refused(layers("build", "demo.toml", "--backend", "pip", cwd=recipe_dir), f"{STEM}.report.json")
    assert sorted(p.name for p in target.iterdir()) == [f"{STEM}.report.json"]  # no lock, no zip delivered


def test_compare_to_is_checked_before_building(recipe_dir):
    _refused(layers("build", "demo.toml", "--backend", "pip", "--compare-to", "missing.zip", cwd=recipe_dir),
             "missing.zip")
    (recipe_dir / "not.zip").write_bytes(b"PK\x03\x04 nothing more")
    _refused(layers("build", "demo.toml", "--backend", "pip", "--compare-to", "not.zip", cwd=recipe_dir), "not.zip")
    assert not (recipe_dir / "dist").exists()


def test_the_library_checks_too(recipe_dir):
    recipe = load_recipe(recipe_dir / "demo.toml")
    (recipe_dir / "file").write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        check_outputs(recipe, ("x86_64",), BuildOptions(out_dir=recipe_dir / "file"))
    with zipfile.ZipFile(recipe_dir / "ok.zip", "w") as z:
        z.writestr("python/six.py", "")
    check_outputs(recipe, ("x86_64",), BuildOptions(out_dir=recipe_dir / "dist", compare_to=recipe_dir / "ok.zip"))


def test_delivery_is_all_or_nothing(tmp_path):
    staging, destination = tmp_path / "staging", tmp_path / "dist" / "demo"
    staging.mkdir()
    destination.mkdir(parents=True)
    (staging / "a.zip").write_text("new zip")
    (destination / "a.zip").write_text("old zip")
    (destination / "b.report.json").write_text("old report")
    # b.report.json was never made in staging: delivering must fail and leave the old pair as it was.
    with pytest.raises(BuildError) as refused:
        _deliver(staging, destination, ("a.zip", "b.report.json"))
    assert "nothing was delivered" in refused.value.hint
    assert (destination / "a.zip").read_text() == "old zip"
    assert sorted(p.name for p in destination.iterdir()) == ["a.zip", "b.report.json"]
    (staging / "b.report.json").write_text("new report")
    (staging / "a.zip").write_text("new zip")
    _deliver(staging, destination, ("a.zip", "b.report.json"))
    assert (destination / "a.zip").read_text() == "new zip"
    assert (destination / "b.report.json").read_text() == "new report"
