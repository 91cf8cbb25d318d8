"""Reports, locks, manifests and requirements files are untrusted input: damaged ones are refused, never crash.

Each case is a file a pull request could carry, handed to the command that
reads it; each must end with exit 2, one ``error:`` line naming the file,
and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.archive import sha256_of
from builder.files import MAX_JSON_DEPTH, parse_json, read_json
from builder.errors import UsageError
from tests.conftest import ROOT, VALID_RECIPE

pytestmark = pytest.mark.functional
LAYERS = [sys.executable, "-m", "builder"]
STEM = "demo-python3.11-x86_64"


def layers(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LAYERS, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "HOME": str(cwd)})


def _report(zip_path: Path) -> dict:
    sha_hex, code = sha256_of(zip_path)
    return {
        "recipe": "demo", "layer_name": "demo", "runtime": "python3.11", "architecture": "x86_64",
        "lock_digest": "0" * 64, "builder_version": "0.1.0", "versions": {"six": "1.17.0"}, "license": "",
        "zip": {"sha256": sha_hex, "code_sha256": code, "zipped_bytes": zip_path.stat().st_size, "unzipped_bytes": 10},
        "budget": {"unzipped_bytes": 10, "unzipped_budget": 1000, "zipped_bytes": zip_path.stat().st_size,
                   "direct_upload_limit": 50 << 20, "fits": True},
        "sizes": {"installed_bytes": 10}, "verification": {"verified": True, "how": "test", "elf_files": 0},
        "bytecode": {"mode": "none"},
    }


@pytest.fixture
def built(tmp_path) -> Path:
    zip_path = tmp_path / "dist" / "demo" / f"{STEM}.zip"
    zip_path.parent.mkdir(parents=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("python/six.py", "x = 1\n")
    (zip_path.parent / f"{STEM}.report.json").write_text(json.dumps(_report(zip_path)))
    return zip_path


def _refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], result.stderr


def test_a_good_report_is_read(built, tmp_path):
    assert layers("report", str(built), cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("damage, words", [
    (lambda r: r.pop("sizes"), ["sizes is missing"]),
    (lambda r: r.update(verification=[]), ["verification"]),
    (lambda r: r["budget"].update(fits="yes"), ["budget.fits should be bool"]),
    (lambda r: r["zip"].update(zipped_bytes=True), ["zip.zipped_bytes should be int"]),
])
def test_a_damaged_report_is_refused(built, tmp_path, damage, words):
    path = built.with_name(f"{STEM}.report.json")
    report = json.loads(path.read_text())
    damage(report)
    path.write_text(json.dumps(report))
    for command in (["report", str(built)], ["publish", str(built), "--regions", "us-east-1", "--dry-run"]):
        _refused(layers(*command, cwd=tmp_path), *words)


def test_a_report_nested_5000_deep_or_not_json_or_not_utf8_is_refused(built, tmp_path):
    path = built.with_name(f"{STEM}.report.json")
    for content, words in ((b"[" * 5000 + b"]" * 5000, "nests more than"), (b"{not json", "not valid JSON"),
                           (b"\xff\xfe{}", "not UTF-8")):
        path.write_bytes(content)
        _refused(layers("report", str(built), cwd=tmp_path), "report", words)


def test_damaged_locks_are_refused(tmp_path):
    (tmp_path / "demo.toml").write_text(VALID_RECIPE.format(name="demo"))
    for content in ('{"recipe": "x", "targets": []}', "[]", '{"wheels": {"a": 1}}', "[" * 100 + "]" * 100):
        (tmp_path / "bad.lock.json").write_text(content)
        _refused(layers("build", "demo.toml", "--backend", "pip", "--lock", "bad.lock.json", cwd=tmp_path), "lock")
        assert not (tmp_path / "dist").exists()
    os.mkfifo(tmp_path / "fifo.lock.json")  # would hang a plain read
    _refused(layers("build", "demo.toml", "--lock", "fifo.lock.json", cwd=tmp_path), "is a FIFO")


def test_lock_filenames_must_stay_in_the_wheel_store(tmp_path):
    """A lock from a pull request naming ``../../..`` would read a file from outside the store into the layer."""
    (tmp_path / "demo.toml").write_text(VALID_RECIPE.format(name="demo"))
    (tmp_path / "secret-1.0-py3-none-any.whl").write_bytes(b"not for the layer")
    good = {"name": "six", "version": "1.17.0", "filename": "six-1.17.0-py2.py3-none-any.whl", "sha256": "0" * 64}
    for bad in ({"filename": "../../../secret-1.0-py3-none-any.whl"}, {"filename": "/etc/passwd"},
                {"filename": "six-1.17.0-py2.py3-none-any.whl/../../x.whl"}, {"filename": "numpy-2.2.6-py3-none-any.whl"},
                {"filename": "six-9.9-py3-none-any.whl"}, {"sha256": "../" * 20}, {"origin": "elsewhere"},
                {"filename": 7}):
        lock = {"recipe": "demo", "runtime": "python3.11", "architecture": "x86_64", "wheels": [{**good, **bad}]}
        (tmp_path / "bad.lock.json").write_text(json.dumps(lock))
        _refused(layers("build", "demo.toml", "--backend", "pip", "--lock", "bad.lock.json", cwd=tmp_path), "lock")
        assert not (tmp_path / "dist").exists()
    # The committed lock beside a recipe is read by the same parser.
    (tmp_path / "demo.lock").write_text(json.dumps({"recipe": "demo", "runtime": "python3.11", "requirements_digest": "0",
                                                    "targets": {"x86_64": lock | {"wheels": [good | {
                                                        "filename": "../secret-1.0-py3-none-any.whl"}]}}}))
    _refused(layers("build", "demo.toml", "--backend", "pip", cwd=tmp_path), "demo.lock")


def test_a_manifest_whose_layers_is_a_list_is_refused(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "demo.toml").write_text(VALID_RECIPE.format(name="demo"))
    (tmp_path / "published").mkdir()
    (tmp_path / "published" / "demo.json").write_text('{"recipe": "demo", "layers": []}')
    _refused(layers("arns", "demo", cwd=tmp_path), "not a manifest")


def test_requirements_files_that_would_lose_or_garble_a_line_are_refused(tmp_path):
    (tmp_path / "latin1.txt").write_bytes(b"six==1.17.0\nnumpy==1.0 # caf\xe9\n")
    _refused(layers("init", "one", "-r", "latin1.txt", "--runtime", "python3.11", cwd=tmp_path), "not UTF-8")
    (tmp_path / "continued.txt").write_text("six==1.17.0\nnumpy==2.2.6 \\\n")
    _refused(layers("init", "two", "-r", "continued.txt", "--runtime", "python3.11", cwd=tmp_path), "ends with")
    assert not (tmp_path / "recipes").exists()


def test_json_depth_is_counted_outside_strings():
    assert parse_json('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', "x") == {"a": "[" * 40}
    with pytest.raises(UsageError, match="nests more than"):
        parse_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "x")
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, "x")


def test_oversized_files_are_refused_without_reading_them_whole(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(" " * 2000)
    with pytest.raises(UsageError, match="over 1,000 bytes"):
        read_json(big, "report", limit=1000)
