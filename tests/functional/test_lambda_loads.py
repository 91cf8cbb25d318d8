"""Real stacks from the index that build here but break on Lambda, and their Lambda-safe counterparts.

This machine has libGL, X11, GLib and libmagic; Lambda's python3.11 runtime
(Amazon Linux 2) has none of them. Two ways a layer breaks there:

- at link time: opencv-python's bundled Qt needs libGL.so.1 and
  libgthread-2.0.so.0. The static load check finds it in the ELF headers.
- at run time: python-magic loads libmagic with ctypes when imported. No ELF
  header shows it; only a smoke test where Lambda's libraries alone exist
  (the sandbox) does.

Each is refused by ``layers build`` (exit 4, nothing in dist/) naming the
library; opencv-python-headless and puremagic build verified.
"""

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

RECIPES = {
    "cvgui": ("opencv-python==5.0.0.93", "cv2", "import numpy; assert cv2.imdecode(numpy.zeros(1, 'uint8'), 0) is None"),
    "cvheadless": ("opencv-python-headless==5.0.0.93", "cv2",
                   "import numpy; assert cv2.imdecode(numpy.zeros(1, 'uint8'), 0) is None"),
    "magicctypes": ("python-magic==0.4.27", "magic", "assert magic.from_buffer(b'%PDF-1.4', mime=True)"),
    "puremagic": ("puremagic==1.30", "puremagic", "assert puremagic.from_string(b'%PDF-1.4 x', mime=True)"),
}


def _build(name: str, tmp_path: Path, cache: Path) -> subprocess.CompletedProcess:
    requirement, module, code = RECIPES[name]
    (tmp_path / f"{name}.toml").write_text(
        f'name = "{name}"\nruntime = "python3.11"\nrequirements = ["{requirement}"]\n'
        f'[smoke]\nimports = ["{module}"]\ncode = "{code}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "LAYERS_CACHE_DIR": str(cache)}
    return subprocess.run([*LAYERS, "build", str(tmp_path / f"{name}.toml"), "--backend", "pip", "--json",
                           "--no-import-timing", "--out", str(tmp_path / "dist")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_opencv_with_its_gui_is_refused_for_needing_libgl(tmp_path, cache):
    result = _build("cvgui", tmp_path, cache)
    assert result.returncode == 4, result.stderr
    assert "libGL.so.1" in result.stderr and "cv2" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "dist").exists()


def test_opencv_headless_builds_verified(tmp_path, cache):
    result = _build("cvheadless", tmp_path, cache)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one architecture: one report
    assert report["verification"]["verified"] and report["verification"]["sandbox"] == "lambda-libraries"
    assert report["verification"]["load_check"]["status"] == "passed"


def test_a_library_loaded_with_ctypes_that_lambda_lacks_is_refused(tmp_path, cache):
    result = _build("magicctypes", tmp_path, cache)
    assert result.returncode == 4, result.stderr
    assert "libmagic" in result.stderr and "in the sandbox of amazonlinux2/x86_64's libraries" in result.stderr
    assert "loads a library at run time (ctypes or dlopen)" in result.stderr
    assert not (tmp_path / "dist").exists()


def test_the_pure_python_counterpart_builds_verified(tmp_path, cache):
    result = _build("puremagic", tmp_path, cache)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verification"]["verified"]
    assert report["verification"]["sandbox"] == "lambda-libraries"
    assert "in a sandbox showing only the" in report["verification"]["how"]
