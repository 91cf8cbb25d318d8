"""``layers init`` reads the smoke imports from the wheels pip resolves, from a local PEP 503 index.

The wheels are written here with zipfile and served on 127.0.0.1; pip is
the real one, run by the real command, with its cache in the test's folder.
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.errors import ResolveError
from builder.init import wheel_imports
from builder.recipe import load_recipe
from tests.conftest import ROOT
from tests.support.package_index import serve_index

pytestmark = pytest.mark.functional
LAYERS = [sys.executable, "-m", "builder"]


def layers(*args, cwd: Path, index: str) -> subprocess.CompletedProcess:
    # A fresh environment: no proxy, no user pip.conf, pip's cache in the test's folder.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200", "PYTHONPATH": str(ROOT),
           "PIP_INDEX_URL": index, "PIP_CONFIG_FILE": "/dev/null", "PIP_CACHE_DIR": str(cwd / "pip-cache")}
    return subprocess.run([*LAYERS, *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


def make_wheel(dist: str, version: str, files: dict[str, bytes], *, top_level: str | None = None) -> tuple[str, bytes]:
    """A minimal real wheel (py3-none-any): the files, METADATA, WHEEL, optional top_level.txt, RECORD."""
    stem = f"{dist.replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    contents[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if top_level is not None:
        contents[f"{info}/top_level.txt"] = top_level.encode()
    record = []
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    return f"{stem}-py3-none-any.whl", buffer.getvalue()


MAGIC = make_wheel("python-magic", "0.4.27", {"magic/__init__.py": b"from_file = None\n",
                                               "magic/compat.py": b""})


def test_init_reads_the_import_name_from_the_wheel(tmp_path):
    (tmp_path / "requirements.txt").write_text("python-magic==0.4.27\n")
    with serve_index({"python-magic": [MAGIC]}) as (index, requests):
        result = layers("init", "files", "-r", "requirements.txt", "--runtime", "python3.12",
                        "--arch", "x86_64", "--arch", "arm64", "--recipes", "recipes", cwd=tmp_path, index=index)
    assert result.returncode == 0, result.stderr
    assert f"/files/{MAGIC[0]}" in requests  # pip really fetched the wheel
    recipe = load_recipe(tmp_path / "recipes" / "files.toml")
    assert recipe.smoke.imports == ("magic",)  # not the guess "python_magic"
    assert recipe.runtime == "python3.12" and recipe.architectures == ("x86_64", "arm64")
    assert "read from the wheels" in (tmp_path / "recipes" / "files.toml").read_text()
    assert not list(tmp_path.glob("recipes/.*"))  # no temporary file left


def test_a_requirement_the_index_lacks_is_one_error_line_and_no_recipe(tmp_path):
    (tmp_path / "requirements.txt").write_text("python-magic==0.4.27\nno-such-dist==1.0\n")
    with serve_index({"python-magic": [MAGIC]}) as (index, _):
        result = layers("init", "files", "-r", "requirements.txt", "--recipes", "recipes", cwd=tmp_path, index=index)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and len(lines) == 2, result.stderr  # the error and its hint, not pip's output
    assert "no-such-dist==1.0" in errors[0] and "No matching distribution found for no-such-dist" in errors[0]
    assert lines[1].startswith("hint:") and "--guess" in lines[1]
    assert not (tmp_path / "recipes" / "files.toml").exists()


def test_a_hostile_top_level_txt_names_no_import(tmp_path):
    hostile = make_wheel("evil-pkg", "1.0", {"evilpkg/__init__.py": b""},
                         top_level="../x\nos; import sys\nos\n__import__('os')\n")
    (tmp_path / "requirements.txt").write_text("evil-pkg==1.0\n")
    with serve_index({"evil-pkg": [hostile]}) as (index, _):
        result = layers("init", "evil", "-r", "requirements.txt", "--recipes", "recipes", cwd=tmp_path, index=index)
    assert result.returncode == 0, result.stderr
    # None of top_level.txt's lines is a module the wheel holds ("os" is not in it): RECORD names the package.
    assert load_recipe(tmp_path / "recipes" / "evil.toml").smoke.imports == ("evilpkg",)


def test_guess_runs_no_pip_and_keeps_the_old_names(tmp_path):
    (tmp_path / "requirements.txt").write_text("python-magic==0.4.27\nPillow\n")
    # Nothing listens on port 9: any pip run would fail.
    result = layers("init", "files", "-r", "requirements.txt", "--guess", "--recipes", "recipes",
                    cwd=tmp_path, index="http://127.0.0.1:9/simple")
    assert result.returncode == 0, result.stderr
    assert load_recipe(tmp_path / "recipes" / "files.toml").smoke.imports == ("python_magic", "PIL.Image")


def test_an_invalid_recipe_is_refused_before_pip_runs(tmp_path):
    (tmp_path / "requirements.txt").write_text("python-magic\n")
    with serve_index({"python-magic": [MAGIC]}) as (index, requests):
        result = layers("init", "files", "-r", "requirements.txt", "--arch", "sparc", "--recipes", "recipes",
                        cwd=tmp_path, index=index)
    assert result.returncode == 2 and "architectures" in result.stderr and "Traceback" not in result.stderr
    assert requests == []


def _wheel_file(tmp_path: Path, wheel: tuple[str, bytes]) -> Path:
    path = tmp_path / wheel[0]
    path.write_bytes(wheel[1])
    return path


def test_record_gives_packages_modules_extensions_and_namespace_packages(tmp_path):
    wheel = make_wheel("many", "1.0", {
        "many/__init__.py": b"", "many/sub/__init__.py": b"", "single.py": b"",
        "fast.cpython-312-x86_64-linux-gnu.so": b"", "_private.py": b"", "tests/__init__.py": b"",
        "ns/inner/__init__.py": b"", "__pycache__/single.cpython-312.pyc": b"", "many-1.0.data/scripts/x": b"",
        "not-a-name/__init__.py": b"", "class.py": b"",
    })
    # The distribution's own name first, then the rest; private, test, keyword and dashed names left out.
    assert wheel_imports(_wheel_file(tmp_path, wheel), "many") == ("many", "fast", "ns.inner", "single")


def test_top_level_txt_and_table_overrides(tmp_path):
    pillow = make_wheel("pillow", "12.2.0", {"PIL/__init__.py": b"", "PIL/Image.py": b""}, top_level="PIL\n")
    assert wheel_imports(_wheel_file(tmp_path, pillow), "pillow") == ("PIL.Image",)
    only_private = make_wheel("cffi", "1.0", {"_cffi_backend.abi3.so": b""}, top_level="_cffi_backend\n")
    assert wheel_imports(_wheel_file(tmp_path, only_private), "cffi") == ("_cffi_backend",)


def test_oversized_top_level_txt_is_not_read_and_a_damaged_wheel_is_refused(tmp_path):
    big = make_wheel("big", "1.0", {"big/__init__.py": b""}, top_level="other\n" * 20_000)
    assert wheel_imports(_wheel_file(tmp_path, big), "big") == ("big",)  # from RECORD, not the 120 KB file
    damaged = tmp_path / "bad-1.0-py3-none-any.whl"
    damaged.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ResolveError, match="not a readable wheel"):
        wheel_imports(damaged, "bad")
