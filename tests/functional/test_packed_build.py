"""Packed layers end to end: ``layers build`` of a ``[pack] mode = "tmp"`` recipe with the pip backend.

Real pip (PyPI), the real pack stage and unpacker, the real sandboxed smoke
test. The layer is then run as Lambda would: extracted, made read-only, on
``sys.path`` alone, with nothing unpacked yet; its imports must come from
the unpacked tree and ``importlib.metadata`` must see every distribution.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.runner import Runner
from builder.verify.interpreters import find_interpreter
from tests.conftest import ROOT

pytestmark = pytest.mark.functional

RECIPE = """
name = "tiny"
runtime = "python3.11"
requirements = ["six==1.17.0", "idna==3.10", "zstandard"]
bytecode = "alongside"

[pack]
mode = "tmp"
compression = "{compression}"
level = {level}

[smoke]
imports = ["six", "idna"]
code = '''
import importlib.metadata, os, six
packed = os.path.exists("/opt/python/layer_runtime/packed.json")
# The first smoke test runs on the tree, the second through the packed layer's unpacker.
assert six.__file__.startswith("/tmp/") == packed, (packed, six.__file__)
assert importlib.metadata.version("idna") == "3.10"
'''
"""


def layers(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})


def _build(tmp_path: Path, compression: str, level: int, out: str = "dist") -> tuple[Path, dict]:
    (tmp_path / "recipes").mkdir(exist_ok=True)
    (tmp_path / "recipes" / "tiny.toml").write_text(RECIPE.format(compression=compression, level=level))
    result = layers("build", "tiny", "--backend", "pip", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder, stem = tmp_path / out / "tiny", "tiny-python3.11-x86_64"
    return folder / f"{stem}.zip", json.loads((folder / f"{stem}.report.json").read_text())


def _read_only_copy(zip_path: Path, where: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(where)
    for path in sorted(where.rglob("*"), reverse=True):
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    where.chmod(0o555)
    return where / "python"


@pytest.mark.parametrize(("compression", "level"), [("zstd", 19), ("gzip", 6)])
def test_a_packed_layer_builds_verifies_and_runs_from_a_read_only_copy(tmp_path, compression, level):
    zip_path, report = _build(tmp_path, compression, level)
    pack = report["pack"]
    suffix = "zst" if compression == "zstd" else "gz"
    assert pack["compression"] == compression and pack["archive"] == f"packed.tar.{suffix}"
    assert pack["verification"]["verified"] and "sandbox" in pack["verification"]["how"]
    assert pack["counted_bytes"] == report["budget"]["unzipped_bytes"] == report["zip"]["unzipped_bytes"]
    assert pack["unpacked_bytes"] > pack["archive_bytes"] and pack["unpack_seconds"] > 0
    names = set(zipfile.ZipFile(zip_path).namelist())
    assert {"python/six.py", "python/idna/__init__.py", f"python/layer_runtime/packed.tar.{suffix}",
            "python/layer_runtime/packed.json", "python/layer_runtime/_unpack.py",
            # The unpacker runs from read-only /opt at each cold start: compiled at build time, its source kept.
            "python/layer_runtime/__pycache__/_unpack.cpython-311.pyc"} <= names
    assert not any(n.startswith("python/idna/") and n != "python/idna/__init__.py" for n in names)  # in the archive
    # zstd for Python 3.11 needs its decoder beside the archive; with gzip (the stdlib's) it is packed like the rest.
    assert any(n.startswith("python/zstandard/backend_c") for n in names) == (compression == "zstd")

    layer = _read_only_copy(zip_path, tmp_path / "opt")
    unpack_dir = tmp_path / "unpacked"
    python = find_interpreter("3.11", Runner()).path
    probe = ("import importlib.metadata, idna, six, sys; print(six.__file__); print(idna.__file__); "
             "print(importlib.metadata.version('six'), importlib.metadata.version('idna'))")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(layer),
           "LAYER_UNPACK_DIR": str(unpack_dir)}
    for start in ("cold", "warm"):
        run = subprocess.run([python, "-I", "-c", f"import sys; sys.path.insert(0, {str(layer)!r}); {probe}"],
                             capture_output=True, text=True, env=env, timeout=120, check=False)
        assert run.returncode == 0, (start, run.stderr)
        six_file, idna_file, versions = run.stdout.split("\n")[:3]
        assert six_file.startswith(str(unpack_dir / pack["id"])), six_file
        assert idna_file.startswith(str(unpack_dir / pack["id"])), idna_file
        assert versions == "1.17.0 3.10"
    assert sorted(p.name for p in unpack_dir.iterdir() if not p.name.startswith(".")) == [pack["id"]]


def test_a_packed_build_is_reproducible_and_plan_counts_it_twice(tmp_path):
    first, report = _build(tmp_path, "zstd", 9, out="one")
    second, _ = _build(tmp_path, "zstd", 9, out="two")
    assert first.read_bytes() == second.read_bytes()
    # The commands that read a built layer take a packed one as it is.
    shown = layers("report", str(first), cwd=tmp_path)
    assert shown.returncode == 0 and "packed: " in shown.stderr and "verified packed: " in shown.stderr, shown.stderr
    checked = layers("check", str(first), "--runtime", "python3.11", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    plan = layers("plan", "--layer", "tiny", "--out", "one", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert data["layers"][0]["bytes"] == report["pack"]["counted_bytes"]
    assert data["layers"][0]["tmp_bytes"] == report["pack"]["unpacked_bytes"]
