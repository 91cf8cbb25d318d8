"""ELF glibc check and smoke test on real files and real interpreters."""

import subprocess
from pathlib import Path

import pytest

from builder.errors import VerifyError
from builder.recipe import SmokeTest
from builder.runner import Runner
from builder.verify.interpreters import find_interpreter
from builder.verify.smoke import check_glibc, verify

pytestmark = pytest.mark.functional


def compile_so(tmp_path: Path, name: str, body: str) -> Path:
    source = tmp_path / f"{name}.c"
    source.write_text(body)
    out = tmp_path / "layer" / "pkg" / f"{name}.so"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", out, source], check=True)
    return out


def test_elf_check_rejects_a_library_needing_newer_glibc(tmp_path):
    # arc4random appeared in glibc 2.36 (this machine's); Amazon Linux 2 has 2.26.
    compile_so(tmp_path, "fresh", "#include <stdlib.h>\nunsigned f(void){return arc4random();}\n")
    with pytest.raises(VerifyError) as caught:
        check_glibc(tmp_path / "layer", (2, 26))
    assert "pkg/fresh.so needs GLIBC_2.36" in caught.value.message and "2.26" in caught.value.message


def test_elf_check_passes_old_enough_libraries(tmp_path):
    compile_so(tmp_path, "plain", "#include <string.h>\nint f(const char*s){return (int)strlen(s);}\n")
    count, top = check_glibc(tmp_path / "layer", (2, 17))
    assert count == 1 and tuple(map(int, top.split("."))) <= (2, 17)


def test_smoke_test_sees_only_the_layer(tmp_path):
    runner = Runner()
    interpreter = find_interpreter("3.11", runner)
    assert interpreter is not None, "pyenv's python3.11 is part of this machine"
    layer = tmp_path / "layer"
    (layer / "mypkg").mkdir(parents=True)
    (layer / "mypkg" / "__init__.py").write_text("VALUE = 42\n")
    ok = SmokeTest(imports=("mypkg",), code="import mypkg\nassert mypkg.VALUE == 42\n")
    result = verify(layer, ok, (2, 26), interpreter, runner, "3.11")
    assert result.verified and "python3.11" in result.how
    assert not list(layer.rglob("__pycache__"))  # -B: nothing written into the layer
    # A package present on the host but not in the layer must not import.
    with pytest.raises(VerifyError, match="smoke test failed"):
        verify(layer, SmokeTest(imports=("pytest",), code=""), (2, 26), interpreter, runner, "3.11")


def test_no_interpreter_means_not_verified(tmp_path):
    (tmp_path / "x.py").write_text("")
    result = verify(tmp_path, SmokeTest(imports=("x",), code=""), (2, 34), None, Runner(), "3.14")
    assert not result.verified and "no python3.14" in result.how
