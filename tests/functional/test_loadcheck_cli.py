"""``layers check ZIP... --runtime``, as users run it: exit codes, one-line errors with a hint, JSON, merged layers.

The zips are made here with zipfile from objects compiled by gcc (the unit
tests' fixtures); the last test makes a layer the naive way, ``pip install -t``
with this machine's python3.11 and no platform flags, which picks today's
manylinux_2_28 wheels that Lambda's python3.11 (glibc 2.26) cannot load.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.runner import Runner
from builder.verify.interpreters import find_interpreter
from tests.conftest import ROOT
from tests.unit.test_loadcheck import EXT, _put, objects  # noqa: F401  (objects: the compiled-fixtures fixture)

pytestmark = pytest.mark.functional
LAYERS = [sys.executable, "-m", "builder"]


def layers(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LAYERS, *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200",
                               "PYTHONPATH": str(ROOT)})


def _zip(path: Path, members: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data.read_bytes() if isinstance(data, Path) else data)
    return path


def _errors(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def good_zip(objects, tmp_path) -> Path:  # noqa: F811
    return _zip(tmp_path / "good.zip", {"python/pkg/" + EXT: objects["getenv"], "python/pkg/__init__.py": b""})


@pytest.fixture
def gl_zip(objects, tmp_path) -> Path:  # noqa: F811
    """An extension whose bundled library needs libGL.so.1, which Lambda's python3.11 image lacks."""
    return _zip(tmp_path / "gl.zip", {"python/pkg/" + EXT: objects["ext_bundle"],
                                      "python/pkg.libs/libbundle-1a2b3c4d.so": objects["bundle"]})


def test_a_layer_that_loads_exits_0(good_zip, tmp_path):
    result = layers("check", str(good_zip), "--runtime", "python3.11", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _errors(result) == []
    assert result.stdout.startswith("static load check against Amazon Linux 2 x86_64 (table complete): 1 ELF file,")
    assert "ok:" in result.stdout


def test_a_missing_library_exits_4_with_one_line_and_a_hint(gl_zip, tmp_path):
    result = layers("check", str(gl_zip), "--runtime", "python3.11", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    [error] = _errors(result)
    for part in ("libGL.so.1", f"/opt/python/pkg/{EXT} -> /opt/python/pkg.libs/libbundle-1a2b3c4d.so"):
        assert part in error
    hints = [line for line in result.stderr.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1 and "opencv-python-headless" in hints[0] and "layers build --image" in hints[0]
    assert "error: /opt/python/pkg.libs/libbundle-1a2b3c4d.so needs libGL.so.1" in result.stdout
    # Amazon Linux 1 (python3.7) had mesa's libGL.
    assert layers("check", str(gl_zip), "--runtime", "python3.7", cwd=tmp_path).returncode == 0


def test_an_unknown_soname_warns_and_exits_0(objects, tmp_path):  # noqa: F811
    so = _put(objects["plain"], tmp_path / "b" / EXT, needed=("libfrobnicate.so.3",))
    layer = _zip(tmp_path / "w.zip", {"python/" + EXT: so})
    result = layers("check", str(layer), "--runtime", "python3.12", cwd=tmp_path)
    assert result.returncode == 0 and _errors(result) == []
    assert "warning: /opt/python/" + EXT + " needs libfrobnicate.so.3" in result.stdout
    assert "table partial" in result.stdout
    assert layers("check", str(layer), "--runtime", "python3.11", cwd=tmp_path).returncode == 4  # complete table


def test_json(gl_zip, good_zip, tmp_path):
    result = layers("check", str(gl_zip), "--runtime", "python3.11", "--json", cwd=tmp_path)
    assert result.returncode == 4 and len(_errors(result)) == 1
    data = json.loads(result.stdout)
    assert {k: data[k] for k in ("zips", "runtime", "os", "arch", "complete", "elf_files", "ok", "errors",
                                 "warnings")} == {
        "zips": [str(gl_zip)], "runtime": "python3.11", "os": "amazonlinux2", "arch": "x86_64", "complete": True,
        "elf_files": 2, "ok": False, "errors": 1, "warnings": 0}
    assert data["how"] == "static load check against Amazon Linux 2 x86_64 (table complete)"
    assert data["problems"] == [{
        "file": "/opt/python/pkg.libs/libbundle-1a2b3c4d.so", "kind": "missing", "soname": "libGL.so.1",
        "version": None, "chain": ["/opt/python/pkg/" + EXT, "/opt/python/pkg.libs/libbundle-1a2b3c4d.so"],
        "severity": "error", "detail": "absent from Amazon Linux 2 x86_64"}]
    ok = layers("check", str(good_zip), "--runtime", "python3.11", "--json", cwd=tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout)["problems"] == [] and ok.stderr == ""


def test_two_zips_merge_in_order(objects, tmp_path):  # noqa: F811
    ext = _put(objects["plain"], tmp_path / "b" / EXT, needed=("libfoo.so.1",))
    good = _put(objects["plain"], tmp_path / "b" / "good.so", soname="libfoo.so.1")
    bad = _put(objects["plain"], tmp_path / "b" / "bad.so", soname="libfoo.so.1", needed=("libGL.so.1",))
    code = _zip(tmp_path / "code.zip", {"python/" + EXT: ext, "lib/libfoo.so.1": bad})
    fix = _zip(tmp_path / "fix.zip", {"lib/libfoo.so.1": good})
    assert layers("check", str(code), str(fix), "--runtime", "python3.11", cwd=tmp_path).returncode == 0
    reversed_order = layers("check", str(fix), str(code), "--runtime", "python3.11", cwd=tmp_path)
    assert reversed_order.returncode == 4
    assert f"/opt/python/{EXT} -> /opt/lib/libfoo.so.1" in _errors(reversed_order)[0]


def test_names_are_printed_as_written(objects, tmp_path):  # noqa: F811
    """A file name with [brackets] is text, not rich markup."""
    so = _put(objects["plain"], tmp_path / "b" / EXT, needed=("libGL.so.1",))
    layer = _zip(tmp_path / "m.zip", {"python/[red]x[/red]/" + EXT: so})
    result = layers("check", str(layer), "--runtime", "python3.11", cwd=tmp_path)
    assert result.returncode == 4
    assert f"/opt/python/[red]x[/red]/{EXT}" in _errors(result)[0]
    assert f"/opt/python/[red]x[/red]/{EXT}" in result.stdout


def test_wrong_machine_exits_4(objects, tmp_path):  # noqa: F811
    layer = _zip(tmp_path / "x86.zip", {"python/" + EXT: objects["plain"]})
    result = layers("check", str(layer), "--runtime", "python3.12", "--arch", "arm64", cwd=tmp_path)
    assert result.returncode == 4 and "x86_64" in _errors(result)[0] and "--arch" in result.stderr


@pytest.mark.parametrize("case", ["missing", "directory", "not-a-zip", "unknown-runtime", "no-runtime",
                                  "unknown-arch", "arch-the-runtime-lacks", "no-zip"])
def test_bad_arguments_exit_2_before_any_work(good_zip, tmp_path, case):
    (tmp_path / "notes.zip").write_text("not a zip\n")
    args = {
        "missing": [str(good_zip), str(tmp_path / "nowhere.zip"), "--runtime", "python3.11"],
        "directory": [str(tmp_path), "--runtime", "python3.11"],
        "not-a-zip": [str(good_zip), str(tmp_path / "notes.zip"), "--runtime", "python3.11"],
        "unknown-runtime": [str(good_zip), "--runtime", "python3.21"],
        "no-runtime": [str(good_zip)],
        "unknown-arch": [str(good_zip), "--runtime", "python3.11", "--arch", "sparc"],
        "arch-the-runtime-lacks": [str(good_zip), "--runtime", "python3.7", "--arch", "arm64"],
        "no-zip": ["--runtime", "python3.11"],
    }[case]
    result = layers("check", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    if case not in ("no-runtime", "no-zip"):  # typer's own usage errors are boxed, not "error:" lines
        assert len(_errors(result)) == 1
        assert any(line.startswith("hint:") for line in result.stderr.splitlines())


# --- the naive way: pip install -t with the host's python3.11 -----------------------------


@pytest.fixture(scope="module")
def naive_zip(tmp_path_factory) -> Path:
    python311 = find_interpreter("3.11", Runner())
    assert python311 is not None, "python3.11 (pyenv) is part of this machine"
    d = tmp_path_factory.mktemp("naive")
    proc = subprocess.run([str(python311.path), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--no-compile", "-t", str(d / "python"), "numpy", "pillow"],
                          check=False, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"pip install numpy pillow failed: {proc.stderr.strip()[-500:]}")
    out = d / "naive.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((d / "python").rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(d).as_posix())
    return out


def test_a_naive_numpy_pillow_layer_would_not_load_on_python311(naive_zip, tmp_path):
    result = layers("check", str(naive_zip), "--runtime", "python3.11", "--json", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    data = json.loads(result.stdout)
    errors = [p for p in data["problems"] if p["severity"] == "error"]
    # Today's wheels are manylinux_2_27/2_28: numpy's and Pillow's extensions need glibc's libm past AL2's 2.26.
    versions = {(p["soname"], p["version"]) for p in errors if p["kind"] == "version"}
    assert ("libm.so.6", "GLIBC_2.27") in versions, errors
    assert all(p["version"].startswith("GLIBC_2.2") and p["version"] > "GLIBC_2.26" for p in errors), errors
    files = {p["file"] for p in errors}
    assert any(f.startswith("/opt/python/numpy/_core/_multiarray_umath.") for f in files), files
    assert any(f.startswith("/opt/python/PIL/") for f in files), files
    # A bundled library's problem is reported with the extension that pulls it in.
    assert any(len(p["chain"]) > 1 and p["chain"][0].startswith("/opt/python/PIL/") for p in errors), errors
    [error] = _errors(result)
    assert "GLIBC_2.2" in error and "Amazon Linux 2" in error


def test_the_same_layer_loads_on_python312(naive_zip, tmp_path):
    result = layers("check", str(naive_zip), "--runtime", "python3.12", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _errors(result) == []
