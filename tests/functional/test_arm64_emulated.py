"""arm64 layers proven on an x86_64 machine: Debian's aarch64 pythons under QEMU user-mode emulation.

``.ci/test-arm64-roots.sh`` registers qemu-aarch64 in binfmt_misc (F flag)
and debootstraps two arm64 roots: bookworm's python3.11 and trixie's
python3.13. The builder finds those interpreters (``find_interpreter(...,
"aarch64")``) and runs them under bwrap with the root's /usr; the smoke test
runs in the sandbox of Lambda's arm64 libraries, taken from the root. Here:
a real ``make layer RECIPE=np311 ARCH=arm64``, the sandbox's own view of an
aarch64 NumPy, bytecode compiled by the emulated interpreter, and layers of
the wrong machine refused both by the ELF check and by the emulated smoke
test, as Lambda would refuse them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.backends.pip import PipBackend
from builder.build import BuildOptions, build
from builder.errors import VerifyError
from builder.recipe import SmokeTest, load_recipe
from builder.runner import Runner
from builder.runtimes import get_runtime, system_libraries
from builder.strip.bytecode import compile_tree
from builder.verify.elf import read_elf
from builder.verify.interpreters import EMULATION, Interpreter, find_interpreter, missing_reason
from builder.verify.loadcheck import check_tree, raise_for
from builder.verify.sandbox import prepare_sandbox
from builder.verify.smoke import run_workload, verify
from tests.conftest import ROOT

pytestmark = pytest.mark.functional
PY311 = get_runtime("python3.11")
PLAIN = f"by an aarch64 python3.11 under emulation ({EMULATION}), with Lambda's libraries only"


@pytest.fixture(scope="module")
def arm311() -> Interpreter:
    found = find_interpreter("3.11", Runner(), "aarch64")
    assert found is not None, f"{missing_reason('3.11', 'aarch64')}: run .ci/test-arm64-roots.sh as root"
    return found


def wheel_tree(where: Path, platform: str) -> Path:
    """numpy 2.2.6's cp311 wheel for ``platform``, unpacked into WHERE/layer/python."""
    subprocess.run([sys.executable, "-m", "pip", "download", "numpy==2.2.6", "--only-binary=:all:",
                    "--platform", platform, "--python-version", "3.11", "--implementation", "cp",
                    "--abi", "cp311", "--no-deps", "--dest", where / "wheels"], check=True, capture_output=True)
    tree = where / "layer" / "python"
    (wheel,) = (where / "wheels").glob("numpy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tree)
    return tree


@pytest.fixture(scope="module")
def x86_numpy(tmp_path_factory) -> Path:
    return wheel_tree(tmp_path_factory.mktemp("x86-numpy"), "manylinux2014_x86_64")


@pytest.fixture(scope="module")
def arm_numpy(tmp_path_factory) -> Path:
    return wheel_tree(tmp_path_factory.mktemp("arm-numpy"), "manylinux2014_aarch64")


def test_the_arm64_root_gives_an_emulated_aarch64_python311(arm311):
    assert arm311.root is not None and arm311.emulated and arm311.machine == "aarch64"
    assert read_elf(arm311.host_path(arm311.path)).machine == "aarch64"  # the root's binary, not this machine's
    said = subprocess.run(arm311.argv("-I", "-c", "import platform, sys; print(platform.machine(), sys.version)"),
                          capture_output=True, text=True, check=True).stdout.split()
    assert said[:2] == ["aarch64", "3.11.2"]  # Debian bookworm's python3.11
    # This machine's /sys describes x86_64 CPUs, which aarch64 code misreads (onnxruntime's cpuinfo segfaults).
    sys_dir = subprocess.run(arm311.argv("-I", "-c", "import os; print(os.listdir('/sys'))"),
                             capture_output=True, text=True, check=True).stdout
    assert sys_dir.strip() == "[]"


def test_no_roots_configured_means_no_arm64_interpreter_and_says_so(monkeypatch):
    monkeypatch.setenv("LAYERS_ARM64_ROOTS", "")
    assert find_interpreter("3.11", Runner(), "aarch64") is None
    assert "LAYERS_ARM64_ROOTS names none" in missing_reason("3.11", "aarch64")


def test_make_layer_np311_arm64_is_smoke_tested_under_emulation_with_lambdas_libraries_only():
    built = subprocess.run(["make", "layer", "RECIPE=np311", "ARCH=arm64", "BACKEND=pip"], cwd=ROOT, check=False,
                           capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]
    assert f"verified: smoke test passed {PLAIN}" in " ".join(built.stderr.split())
    stem = "dist/np311/np311-python3.11-arm64"
    report = json.loads((ROOT / f"{stem}.report.json").read_text())
    verification = report["verification"]
    assert verification["verified"] and verification["smoke_test"] == "passed"
    assert verification["how"].startswith(PLAIN), verification["how"]
    assert verification["sandbox"] == "lambda-libraries" and verification["emulated"]
    assert verification["interpreter"] == f"python3.11 (aarch64) under emulation ({EMULATION})"
    assert verification["load_check"]["status"] == "passed" and verification["load_check"]["arch"] == "arm64"
    assert report["cold_import_seconds"] is None  # emulated times would say nothing of Lambda's
    assert any("under emulation" in note for note in report["environment_notes"])
    # Every ELF file of the layer is aarch64: what was smoke-tested is what ships.
    machines = set()
    with zipfile.ZipFile(ROOT / f"{stem}.zip") as archive:
        for name in archive.namelist():
            head = archive.read(name)[:20] if name.endswith(".so") or ".so." in name else b""
            if head.startswith(b"\x7fELF"):
                machines.add(int.from_bytes(head[18:20], "little"))
    assert machines == {183}  # EM_AARCH64


def test_aarch64_numpy_runs_in_the_sandbox_mapping_only_lambdas_libraries(arm_numpy, arm311):
    runner = Runner()
    box = prepare_sandbox(arm311, PY311, "arm64", runner)
    assert box.loader_path == "/lib/ld-linux-aarch64.so.1"
    assert all(arm311.root in path.parents for path in box.system.values())  # the root's copies, not this machine's
    code = ("import platform; a = numpy.arange(9.0).reshape(3, 3) + numpy.eye(3)\n"
            "assert numpy.allclose(numpy.linalg.inv(a) @ a, numpy.eye(3))\n"
            "print('MACHINE', platform.machine()); print(open('/proc/self/maps').read())\n")
    result = run_workload(arm_numpy, SmokeTest(imports=("numpy",), code=code), arm311, runner, sandbox=box)
    assert result.ok and "SMOKE-OK" in result.stdout, result.tail()
    assert "MACHINE aarch64" in result.stdout
    mapped = {line.split()[-1] for line in result.stdout.splitlines() if line.count("/") and ".so" in line}
    assert any("numpy.libs/libscipy_openblas" in path for path in mapped), mapped
    assert all(path.startswith(("/opt/python/", "/usr/lib64/", "/var/lang/lib/", "/lib/ld-linux-aarch64",
                                "/usr/lib/python3.11/")) for path in mapped), mapped


SOURCE = "import platform\nWHERE = platform.machine()\nSEEN = {3, 1, 2}\n"  # a set literal: marshalled in hash order


def test_bytecode_for_arm64_is_compiled_by_the_emulated_python(tmp_path, arm311):
    tree = tmp_path / "python"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "__init__.py").write_text(SOURCE)
    result = compile_tree(tree, "only", arm311, Runner())
    assert result.compiled == 1 and not (tree / "pkg" / "__init__.py").exists()
    pyc = (tree / "pkg" / "__init__.pyc").read_bytes()
    host = find_interpreter("3.11", Runner())
    probe = "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"
    magic = subprocess.run([host.path, "-I", "-c", probe],
                           capture_output=True, text=True, check=True).stdout
    assert pyc[:4].hex() == magic and int.from_bytes(pyc[4:8], "little") == 0b01  # unchecked-hash pyc
    ran = subprocess.run(arm311.argv("-I", "-S", "-B", "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); "
                                     "import pkg; print(pkg.WHERE, pkg.__file__)"),
                         capture_output=True, text=True, check=True).stdout.split()
    assert ran == ["aarch64", str(tree / "pkg" / "__init__.pyc")]
    again = tmp_path / "again"
    (again / "pkg").mkdir(parents=True)
    (again / "pkg" / "__init__.py").write_text(SOURCE)
    compile_tree(again, "only", arm311, Runner())
    assert (again / "pkg" / "__init__.pyc").read_bytes() == pyc  # reproducible under emulation too


def test_x86_64_wheels_in_an_arm64_layer_are_refused_by_the_elf_check_naming_file_and_machine(x86_numpy):
    check = check_tree(x86_numpy.parent, system_libraries(PY311, "arm64"))
    assert not check.ok
    machine = [p for p in check.errors if p.kind == "machine"]
    assert machine and len(machine) == len(check.errors)
    files = {p.file for p in machine}
    assert "/opt/python/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so" in files
    assert all(p.detail == "is a x86_64 file, Amazon Linux 2 arm64 is aarch64" for p in machine)
    with pytest.raises(VerifyError) as caught:
        raise_for(check)
    assert "/opt/python/" in caught.value.message and "is a x86_64 file, Amazon Linux 2 arm64 is aarch64" in \
        caught.value.message
    assert "--arch arm64" in caught.value.hint


def test_x86_64_numpy_fails_the_emulated_smoke_test_as_lambda_would(x86_numpy, arm311):
    smoke = SmokeTest(imports=("numpy",), code="numpy.linalg.inv(numpy.eye(2))")
    with pytest.raises(VerifyError) as caught:
        verify(x86_numpy, smoke, PY311.glibc, arm311, Runner(), "3.11", runtime=PY311, arch="arm64",
               lambda_sandbox=True)
    message = caught.value.message
    # Python on aarch64 looks only for its own suffix, so the x86_64 extension is "No module named" there.
    assert "ImportError" in message, message
    assert ("/opt/python/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so is built for x86_64, and "
            "amazonlinux2/arm64 runs aarch64 code") in message
    assert "--arch arm64" in caught.value.hint


def test_an_x86_64_abi3_extension_fails_to_load_under_emulation_naming_its_machine(tmp_path, arm311):
    """A suffix every machine's Python tries (abi3): ld.so itself refuses the x86_64 file."""
    host = find_interpreter("3.11", Runner())
    include = subprocess.run([host.path, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    source = tmp_path / "xmod.c"
    source.write_text('#include <Python.h>\nstatic struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "xmod", NULL, -1};\n'
                      "PyMODINIT_FUNC PyInit_xmod(void) { return PyModule_Create(&d); }\n")
    tree = tmp_path / "python"
    tree.mkdir()
    subprocess.run(["gcc", "-shared", "-fPIC", "-I", include, "-o", tree / "xmod.abi3.so", source], check=True)
    with pytest.raises(VerifyError) as caught:
        verify(tree, SmokeTest(imports=("xmod",), code=""), PY311.glibc, arm311, Runner(), "3.11", runtime=PY311,
               arch="arm64", lambda_sandbox=True)
    message = caught.value.message
    assert "/opt/python/xmod.abi3.so: cannot open shared object file" in message
    assert "/opt/python/xmod.abi3.so is built for x86_64, and amazonlinux2/arm64 runs aarch64 code" in message
    assert "table of amazonlinux2/arm64 is partial" not in message  # not mistaken for a missing system library


def test_layers_doctor_says_what_this_machine_verifies_and_how_to_enable_the_rest(arm311):
    env = {**os.environ, "COLUMNS": "200"}
    as_json = subprocess.run([sys.executable, "-m", "builder", "doctor", "--json"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300, check=False)
    assert as_json.returncode == 0, as_json.stderr
    found = json.loads(as_json.stdout)
    rows = {(r["runtime"], r["architecture"]): r for r in found["runtimes"]}
    assert found["binfmt"] == {"aarch64": None} and found["sandbox"] is None
    assert rows[("python3.11", "arm64")]["smoke_test"] == "emulated"
    assert rows[("python3.11", "arm64")]["location"] == str(arm311.root)
    assert rows[("python3.13", "arm64")]["smoke_test"] == "emulated"  # trixie's root, from the same script
    assert rows[("python3.11", "x86_64")]["smoke_test"] == "native"
    assert rows[("python3.12", "arm64")]["smoke_test"] == "none"
    assert rows[("python3.12", "arm64")]["summary"].startswith("ELF checks only: no aarch64 python3.12 can be had")
    text = subprocess.run([sys.executable, "-m", "builder", "doctor"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert any("python3.11" in line and "arm64" in line and "emulated (QEMU)" in line and str(arm311.root) in line
               for line in lines), text.stdout
    assert any(line.startswith("python3.12 arm64: ELF checks only: no aarch64 python3.12") for line in lines)
    assert any(line.startswith("  to enable: name an arm64 root of another system that holds python3.12")
               for line in lines)


# What recipes/onnx313.toml's model is: its network, built with the onnx package's helper API.
MAKE_MODEL = """
import base64, sys
import numpy as np
from onnx import TensorProto, checker, helper, numpy_helper

w = (((np.arange(108) % 7) - 3) / 10).astype(np.float32).reshape(4, 3, 3, 3)
b = np.array([0.1, -0.2, 0.05, 0.0], dtype=np.float32)
w2 = (((np.arange(12) % 5) - 2) / 4).astype(np.float32).reshape(3, 4)
b2 = np.array([0.0, 0.5, -0.5], dtype=np.float32)
nodes = [
    helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["conv"], ["relu"]),
    helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
    helper.make_node("Flatten", ["pooled"], ["flat"]),
    helper.make_node("Gemm", ["flat", "w2", "b2"], ["logits"], transB=1),
    helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
]
graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])],
                          [numpy_helper.from_array(a, n) for a, n in zip((w, b, w2, b2), ("w", "b", "w2", "b2"))])
model = helper.make_model(graph, producer_name="lambda-layer-builder", ir_version=8,
                          opset_imports=[helper.make_opsetid("", 13)])
checker.check_model(model)
sys.stdout.write(base64.b64encode(model.SerializeToString()).decode())
"""


def test_onnx313s_model_is_what_the_onnx_helper_api_makes(tmp_path):
    target = tmp_path / "onnx"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", target, "onnx==1.23.2"],
                   check=True, capture_output=True)
    made = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r})\n"
                           + MAKE_MODEL], check=True, capture_output=True, text=True).stdout
    code = load_recipe("onnx313", ROOT / "recipes").smoke.code
    embedded = "".join(re.search(r"b64decode\(\"\"\.join\(\'\'\'(.*?)\'\'\'", code, re.DOTALL).group(1).split())
    assert base64.b64decode(embedded) == base64.b64decode(made)


def test_onnx313_arm64_runs_its_onnx_model_under_emulation_with_lambdas_libraries_only(tmp_path):
    recipe = load_recipe("onnx313", ROOT / "recipes")
    result = build(recipe, "arm64", PipBackend(Runner(), tmp_path / "cache"),
                   BuildOptions(out_dir=tmp_path / "dist", time_imports=False))
    verification = result.report["verification"]
    assert verification["verified"] and verification["sandbox"] == "lambda-libraries"
    assert verification["how"].startswith(
        f"by an aarch64 python3.13 under emulation ({EMULATION}), with Lambda's libraries only"), verification["how"]
    assert "amazonlinux2023/arm64" in verification["how"] and "arm64-trixie" in verification["how"]
    assert verification["load_check"]["status"] == "passed"
    assert result.report["versions"]["onnxruntime"] == "1.32.0"
