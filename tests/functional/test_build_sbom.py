"""The SBOM of real builds (pip backend, six + idna): valid CycloneDX, the lock's every distribution and hash,
delivered beside the zip, the same bytes from a second build; and tf18's, from ``make layer`` (slow tier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from builder.backends.pip import PipBackend
from builder.build import BuildOptions, build, check_outputs
from builder.errors import UsageError
from builder.lockfile import load_lockfile
from builder.recipe import load_recipe, parse_recipe
from builder.runner import Runner
from tests.conftest import ROOT

pytestmark = pytest.mark.functional
RECIPE = """
name = "sbomdemo"
runtime = "python3.11"
requirements = ["six==1.17.0", "idna==3.10"]

[smoke]
imports = ["six", "idna"]
"""


def validate(path: Path) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(path.read_text())
    assert error is None, str(error)[:2000]


def assert_lists_the_lock(sbom: dict, lock: dict, excluded: set[str] = frozenset()) -> None:
    components = {c["purl"]: c for c in sbom["components"] if "purl" in c}
    assert len(components) == len(lock["wheels"])
    for wheel in lock["wheels"]:
        component = components[f"pkg:pypi/{wheel['name']}@{wheel['version']}"]
        expected = wheel["source_sha256"] if wheel["origin"] == "sdist" else wheel["sha256"]
        assert component["hashes"] == [{"alg": "SHA-256", "content": expected}]
        assert component["scope"] == ("excluded" if wheel["name"] in excluded else "required")


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory, own_cache_dir):
    """The same recipe built twice: through ``layers build`` (what it prints), then in-process."""
    work = tmp_path_factory.mktemp("sbom")
    (work / "sbomdemo.toml").write_text(RECIPE)
    cli = subprocess.run([sys.executable, "-m", "builder", "build", str(work / "sbomdemo.toml"), "--backend", "pip",
                          "--out", str(work / "first"), "--no-import-timing"],
                         cwd=work, capture_output=True, text=True, timeout=600, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"})
    assert cli.returncode == 0, cli.stderr[-3000:]
    recipe = load_recipe(str(work / "sbomdemo.toml"))
    second = build(recipe, "x86_64", PipBackend(Runner(), own_cache_dir),
                   BuildOptions(out_dir=work / "second", time_imports=False))
    return work / "first" / "sbomdemo", second, cli.stdout


def test_the_sbom_is_valid_cyclonedx_and_lists_the_lock_with_its_hashes(two_builds):
    first, _, _ = two_builds
    sbom_path = first / "sbomdemo-python3.11-x86_64.cdx.json"
    validate(sbom_path)
    sbom = json.loads(sbom_path.read_text())
    lock = json.loads((first / "sbomdemo-python3.11-x86_64.lock.json").read_text())
    report = json.loads((first / "sbomdemo-python3.11-x86_64.report.json").read_text())
    assert_lists_the_lock(sbom, lock)
    assert sbom["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": report["zip"]["sha256"]}]
    assert report["sbom"]["file"] == sbom_path.name and report["sbom"]["components"] == 2
    six = next(c for c in sbom["components"] if c["name"] == "six")
    assert six["licenses"] == [{"license": {"id": "MIT", "acknowledgement": "declared"}}]


def test_it_is_delivered_beside_the_zip_and_printed_with_it(two_builds):
    first, second, stdout = two_builds
    delivered = {p.name for p in first.iterdir()}
    assert {"sbomdemo-python3.11-x86_64.cdx.json", "sbomdemo-python3.11-x86_64.zip",
            "sbomdemo-python3.11-x86_64.report.json", "sbomdemo-python3.11-x86_64.lock.json"} <= delivered
    assert not any(name.endswith(".partial") for name in delivered)
    assert second.sbom_path == second.zip.path.with_name("sbomdemo-python3.11-x86_64.cdx.json")
    assert f"sbom {first / 'sbomdemo-python3.11-x86_64.cdx.json'}  (2 components, CycloneDX 1.6)" in stdout


def test_a_second_build_gives_the_same_bytes(two_builds):
    first, second, _ = two_builds
    assert second.zip.path.read_bytes() == (first / "sbomdemo-python3.11-x86_64.zip").read_bytes()
    assert second.sbom_path.read_bytes() == (first / "sbomdemo-python3.11-x86_64.cdx.json").read_bytes()


def test_an_sbom_place_that_cannot_be_written_is_refused_before_the_build(tmp_path):
    recipe = parse_recipe({"name": "sbomdemo", "runtime": "python3.11", "requirements": ["six==1.17.0"],
                           "smoke": {"imports": ["six"]}})
    (tmp_path / "sbomdemo" / "sbomdemo-python3.11-x86_64.cdx.json").mkdir(parents=True)
    with pytest.raises(UsageError, match="cdx.json exists and is not a regular file"):
        check_outputs(recipe, ("x86_64",), BuildOptions(out_dir=tmp_path))


@pytest.mark.slow
def test_make_layer_tf18_sbom_lists_the_committed_lock():
    """tf18 as ``make layer`` builds it (minutes, like test_build.py's tf18 test): every distribution of its
    committed lock with the lock's hash, tensorboard and grpcio (strip.drop) and what only they needed excluded."""
    result = subprocess.run(["make", "layer", "RECIPE=tf18", "BACKEND=pip"], cwd=ROOT, capture_output=True,
                            text=True, timeout=1800, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = ROOT / "dist" / "tf18"
    sbom_path = out / "tf18-python3.6-x86_64.cdx.json"
    validate(sbom_path)
    sbom = json.loads(sbom_path.read_text())
    lock = json.loads((out / "tf18-python3.6-x86_64.lock.json").read_text())
    committed = load_lockfile(load_recipe("tf18", ROOT / "recipes")).targets["x86_64"]
    assert lock["digest"] == committed.digest  # built from the committed lock
    report = json.loads((out / "tf18-python3.6-x86_64.report.json").read_text())
    assert report["sbom"]["excluded"] and {"tensorboard", "grpcio"} <= set(report["sbom"]["excluded"])
    assert_lists_the_lock(sbom, lock, set(report["sbom"]["excluded"]))
    shipped = {c["name"] for c in sbom["components"] if c.get("scope") == "required"}
    assert {"tensorflow", "keras", "numpy", "pillow", "h5py"} <= shipped
