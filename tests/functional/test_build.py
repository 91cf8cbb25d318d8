"""Whole builds of the shipped recipes, as ``make layer`` runs them."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.backends.pip import PipBackend
from builder.build import BuildOptions, build
from builder.errors import BudgetError, VerifyError
from builder.recipe import load_recipe, parse_recipe
from builder.runner import Runner
from builder.runtimes import wheel_min_glibc
from builder.verify.interpreters import find_interpreter
from tests.conftest import ROOT

pytestmark = pytest.mark.functional
SAM_BUILD_NP311_MIB = 79.4  # `sam build` of the same pins, measured (shared/reference/measured.md)


def run_build(recipe, out: Path, cache: Path, arch="x86_64"):
    runner = Runner()
    return build(recipe, arch, PipBackend(runner, cache), BuildOptions(out_dir=out, time_imports=False))


@pytest.fixture(scope="module")
def np311_twice(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    recipe = load_recipe("np311", ROOT / "recipes")
    first = run_build(recipe, tmp_path_factory.mktemp("first"), cache)
    second = run_build(recipe, tmp_path_factory.mktemp("second"), cache)
    return first, second


def test_rebuild_gives_the_same_zip(np311_twice):
    first, second = np311_twice
    assert first.zip.sha256_hex == second.zip.sha256_hex
    assert first.zip.path.read_bytes() == second.zip.path.read_bytes()


def test_np311_is_verified_smaller_than_sam_build_and_lambda_shaped(np311_twice):
    result, _ = np311_twice
    report = json.loads(result.report_path.read_text())
    assert report["verification"]["verified"] and report["verification"]["smoke_test"] == "passed"
    assert report["versions"]["numpy"] == "2.2.6" and report["versions"]["pillow"] == "12.2.0"
    assert report["budget"]["unzipped_bytes"] < SAM_BUILD_NP311_MIB * 2**20
    assert report["budget"]["fits"]
    with zipfile.ZipFile(result.zip.path) as archive:
        names = archive.namelist()
        assert names == sorted(names) and all(n.startswith("python/") for n in names)
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert any(n.startswith("python/numpy-2.2.6.dist-info/METADATA") for n in names)
        assert not any("/tests/test_" in n for n in names)
    lock = json.loads(result.lock_path.read_text())
    assert lock["digest"] == report["lock_digest"]
    assert all((wheel_min_glibc(w["filename"]) or (0, 0)) <= (2, 26) for w in lock["wheels"])
    rules = {r["rule"]: r for r in report["strip"]["rules"]}
    assert rules["tests"]["bytes"] > 0 and rules["debug-symbols"]["bytes"] > 0


def test_np311_layer_imports_and_reports_versions_from_the_zip(np311_twice, tmp_path):
    result, _ = np311_twice
    with zipfile.ZipFile(result.zip.path) as archive:
        archive.extractall(tmp_path)
    code = ("import importlib.metadata as md, numpy, PIL.Image, requests;"
            "print(md.version('numpy'), md.version('pillow'), md.version('requests'))")
    python311 = find_interpreter("3.11", Runner())  # whichever 3.11 patch release this machine has
    assert python311 is not None, "python3.11 (pyenv) is part of this machine"
    out = subprocess.run([python311.path, "-I", "-S", "-B", "-c",
                          f"import sys; sys.path.insert(0, {str(tmp_path / 'python')!r}); " + code],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2.2.6", "12.2.0", "2.32.5"]


def test_failed_smoke_test_leaves_dist_untouched(tmp_path):
    recipe = parse_recipe({"name": "broken", "runtime": "python3.11", "requirements": ["six==1.17.0"],
                           "smoke": {"imports": ["six"], "code": "raise SystemExit('the stack is broken')"}})
    with pytest.raises(VerifyError, match="the stack is broken"):
        run_build(recipe, tmp_path / "dist", tmp_path / "cache")
    assert not (tmp_path / "dist").exists()


@pytest.mark.slow
def test_make_layer_tf18(tmp_path):
    """The headline: TF 1.8 + Keras + NumPy + Pillow, smoke-tested with Python 3.6, at most 230 MB."""
    result = subprocess.run(["make", "layer", "RECIPE=tf18", "BACKEND=pip"], cwd=ROOT, capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((ROOT / "dist/tf18/tf18-python3.6-x86_64.report.json").read_text())
    assert report["verification"]["verified"], report["verification"]
    assert "python3.6" in report["verification"]["how"]
    # Proven against Amazon Linux 1's libraries: statically, and by the smoke test in the sandbox.
    assert report["verification"]["load_check"]["status"] == "passed"
    assert report["verification"]["sandbox"] == "lambda-libraries"
    assert report["budget"]["unzipped_bytes"] <= 230 * 10**6
    assert report["versions"]["tensorflow"] == "1.8.0" and report["versions"]["keras"] == "2.2.4"
    assert report["versions"]["numpy"].startswith("1.16.") and report["versions"]["pillow"] == "5.4.1"
    assert not report["budget"]["publish_via"].startswith("direct")  # over 50 MB zipped: via S3


@pytest.mark.slow
def test_trace_pruned_tf18_runs_its_workload_and_leaves_room_for_a_100mb_model(tmp_path):
    """tf18-lean: traced, pruned, experiments kept only where the Keras workload still passes (Python 3.6)."""
    result = subprocess.run(["make", "layer", "RECIPE=tf18-lean", "BACKEND=pip"], cwd=ROOT, capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    lean_zip = ROOT / "dist/tf18-lean/tf18-lean-python3.6-x86_64.zip"
    lean = json.loads(lean_zip.with_suffix(".report.json").read_text())
    assert lean["verification"]["verified"] and "python3.6" in lean["verification"]["how"]
    pruned = lean["trace_prune"]
    assert pruned["status"] == "pruned" and pruned["removed_bytes"] > 40 * 2**20
    kept = [e["drop"] for e in pruned["experiments"] if e["kept"]]
    refused = [e["drop"] for e in pruned["experiments"] if not e["kept"]]
    assert "scipy/linalg" in kept  # Keras loads it (and SciPy's OpenBLAS) only inside try/except
    assert "scipy" in refused and "scipy/fft" in refused  # but it imports scipy.sparse, and scipy imports fft
    names = zipfile.ZipFile(lean_zip).namelist()
    assert not any(n.startswith("python/scipy.libs/") for n in names)
    assert lean["bytecode"] == {**lean["bytecode"], "mode": "only", "docstrings": "empty", "compiled_by": "python3.6",
                                "not_compiled": []}
    # The target, in Lambda's units (its 250 MB is 262,144,000 bytes): at most 150 MB.
    assert lean["budget"]["unzipped_bytes"] <= 150 * 2**20

    # The planner: a 100 MB model fits in the package beside the pruned layer, not beside the standard one.
    def recommended(zip_path: Path) -> str:
        planned = subprocess.run([sys.executable, "-m", "builder", "plan", "--layer", str(zip_path),
                                  "--model", "model.h5=100MB", "--json"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert planned.returncode == 0, planned.stderr
        return json.loads(planned.stdout)["recommended"]

    standard = ROOT / "dist/tf18/tf18-python3.6-x86_64.zip"
    if not standard.is_file():
        subprocess.run(["make", "layer", "RECIPE=tf18", "BACKEND=pip"], cwd=ROOT, check=True, capture_output=True,
                       timeout=1800)
    assert recommended(lean_zip) == "package"
    assert recommended(standard) == "s3-tmp"


def test_onnx312_builds_verified_against_amazon_linux_2023_and_says_why_arm64_is_not(tmp_path):
    recipe = load_recipe("onnx312", ROOT / "recipes")
    x86 = run_build(recipe, tmp_path / "dist", tmp_path / "cache", arch="x86_64").report["verification"]
    assert x86["verified"] and x86["sandbox"] == "lambda-libraries"
    assert x86["load_check"]["status"] == "passed" and not x86["load_check"]["complete"]  # AL2023's table is partial
    arm = run_build(recipe, tmp_path / "dist", tmp_path / "cache", arch="arm64").report["verification"]
    assert arm["load_check"]["status"] == "passed" and arm["load_check"]["arch"] == "arm64"
    assert not arm["verified"] and arm["how"].startswith(
        "no aarch64 python3.12 can be had here: Debian has 3.9 in bullseye, 3.11 in bookworm and 3.13 in trixie")


def test_over_budget_fails_naming_the_biggest_and_writes_nothing(tmp_path):
    # A 245 MiB reserve leaves 5 MiB for the layer; NumPy alone is ~40 MiB.
    recipe = parse_recipe({"name": "tight", "runtime": "python3.11", "reserve": "245MiB",
                           "requirements": ["numpy==2.2.6"], "smoke": {"imports": ["numpy"]}})
    with pytest.raises(BudgetError) as caught:
        run_build(recipe, tmp_path / "dist", tmp_path / "cache")
    assert "over its budget of 5.0 MiB" in caught.value.message
    assert "numpy" in caught.value.message and caught.value.exit_code == 5
    assert not (tmp_path / "dist").exists()


def test_model_loader_is_shipped_when_the_recipe_asks(tmp_path):
    import zipfile

    recipe = parse_recipe({"name": "withloader", "runtime": "python3.11", "requirements": ["six==1.17.0"],
                           "include": {"model_loader": True},
                           "smoke": {"imports": ["six", "layer_runtime.model_loader"],
                                     "code": "assert layer_runtime.model_loader.ModelCache"}})
    result = run_build(recipe, tmp_path / "dist", tmp_path / "cache")
    with zipfile.ZipFile(result.zip.path) as archive:
        names = set(archive.namelist())
    assert {"python/layer_runtime/__init__.py", "python/layer_runtime/model_loader.py"} <= names
    assert result.report["verification"]["verified"]
