"""arm64 layers from the Docker backend on this x86_64 engine, the container's programs run by QEMU.

The build container comes from the arm64 test base image (``.ci/test-base-image.sh arm64``: Debian
bookworm for arm64, the same packages as the x86_64 one), and the smoke test runs in the arm64
stand-in for Lambda's runtime image (``.ci/test-runtime-image.sh arm64``: that image cut down to
``lambda_os.toml``'s arm64 table). Both run because QEMU's aarch64 handler is registered with
binfmt_misc (``.ci/test-arm64-roots.sh``), which the engine is asked to prove by running one.

np311 is built for arm64 by the pip backend (host pip cross-installs the aarch64 wheels), then by
the Docker backend from that lock with the stand-in runtime image, and once more exactly as a user
would type it (no lock, no runtime image: AWS's cannot be pulled here, so the smoke test runs in
the build container, and the report says why). Each is verified by an aarch64 python3.11 under
emulation, which the report names, and each zip lists the same files as the pip backend's.
An extension linked to libexpat.so.1 passes in the arm64 build container and fails in the arm64
stand-in, as it would on Lambda.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from builder.backends import container as container_module
from builder.backends.base import Target
from builder.backends.container import Container, ContainerRunner, check_engine_runs
from builder.backends.docker import DockerBackend
from builder.backends.runtime_image import run_in_runtime_image, runtime_container
from builder.backends.select import choose_backend
from builder.errors import VerifyError
from builder.events import Silent
from builder.recipe import SmokeTest
from builder.runner import Runner
from builder.runtimes import get_runtime
from builder.verify.interpreters import Interpreter
from builder.verify.smoke import run_smoke_test
from tests.conftest import ROOT
from tests.integration.conftest import our_containers

pytestmark = pytest.mark.integration
LAYERS = [sys.executable, "-m", "builder"]
RUNTIME = get_runtime("python3.11")
STEM = "np311/np311-python3.11-arm64"
EMULATED = "python3.11 (aarch64) under emulation (QEMU user mode via binfmt)"
EXPAT_EXTENSION = r"""
#include <Python.h>
const char *XML_ExpatVersion(void);  /* from libexpat.so.1 */

static PyObject *version(PyObject *self, PyObject *unused) { return PyUnicode_FromString(XML_ExpatVersion()); }
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "expatext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_expatext(void) { return PyModule_Create(&module); }
"""
EXPAT_SMOKE = SmokeTest(imports=("expatext",), code="assert expatext.version().startswith('expat_')")


def layers(*args: str, cwd: Path, cache: Path, timeout: int = 900) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT), "LAYERS_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    run = subprocess.run([*LAYERS, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                         check=False)
    return run, time.perf_counter() - started


def _report(out: Path) -> dict:
    return json.loads((out / f"{STEM}.report.json").read_text())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("arm64")


@pytest.fixture(scope="module")
def by_pip(work):
    """np311 for arm64 by the pip backend: the zip to compare with, and the lock the Docker build takes."""
    run, seconds = layers("build", "np311", "--arch", "arm64", "--backend", "pip", "--out", str(work / "pip"),
                          "--no-import-timing", "--recipes", str(ROOT / "recipes"), cwd=work, cache=work / "cache")
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"pip backend, arm64 np311: {seconds:.1f} s")
    return work / "pip" / f"{STEM}.zip"


@pytest.fixture(scope="module")
def in_runtime_image(work, by_pip, arm64_base_image, stand_in_runtime_arm64):
    """np311 for arm64 in a linux/arm64 build container, from the pip build's lock, smoke-tested in the arm64 stand-in."""
    out = work / "docker"
    run, seconds = layers("build", "np311", "--arch", "arm64", "--backend", "docker", "--base-image", arm64_base_image,
                          "--runtime-image", stand_in_runtime_arm64, "--lock", str(by_pip.with_suffix(".lock.json")),
                          "--compare-to", str(by_pip), "--out", str(out), "--no-import-timing", "-v",
                          "--recipes", str(ROOT / "recipes"), cwd=work, cache=work / "cache")
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"Docker backend, arm64 np311 under emulation (build image included where new): {seconds:.1f} s")
    return _report(out), out / f"{STEM}.zip", run


@pytest.fixture(scope="module")
def as_asked(work, arm64_base_image):
    """`layers build np311 --arch arm64 --backend docker --base-image layers-test-base:bookworm-arm64`, nothing more."""
    out = work / "asked"
    run, seconds = layers("build", "np311", "--arch", "arm64", "--backend", "docker", "--base-image", arm64_base_image,
                          "--out", str(out), "--recipes", str(ROOT / "recipes"), cwd=work, cache=work / "cache-asked")
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"Docker backend, arm64 np311 as asked (resolved in the container): {seconds:.1f} s")
    return _report(out), out / f"{STEM}.zip", run


def test_the_engine_proves_it_runs_arm64_once_and_remembers(docker_engine, arm64_base_image):
    key = (docker_engine.info()["ID"], "linux/arm64")
    container_module._RUNS.discard(key)
    check_engine_runs(docker_engine, arm64_base_image, "linux/arm64")  # a container, started for real
    assert key in container_module._RUNS

    class NoContainers:  # the same engine, but any container it were asked for fails the test
        def info(self):
            return docker_engine.info()

        @property
        def containers(self):
            raise AssertionError("the engine was probed again")

    check_engine_runs(NoContainers(), arm64_base_image, "linux/arm64")
    assert not our_containers(docker_engine)


def test_auto_chooses_docker_for_arm64_where_the_engine_runs_it(docker_engine, arm64_base_image, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("LAYERS_CACHE_DIR", str(tmp_path))
    reporter = Silent()
    chosen = choose_backend("auto", Target(RUNTIME, "arm64"), Runner(), reporter, base_image=arm64_base_image)
    assert isinstance(chosen, DockerBackend) and reporter.notices == []
    assert chosen.image.base == arm64_base_image
    assert not our_containers(docker_engine)


def test_arm64_layer_is_verified_in_the_arm64_runtime_image_under_emulation(in_runtime_image, arm64_base_image,
                                                                           stand_in_runtime_arm64):
    report, _, run = in_runtime_image
    assert (report["backend"], report["architecture"]) == ("docker", "arm64")
    assert report["build_image"]["base"] == arm64_base_image
    verification = report["verification"]
    assert verification["verified"] and verification["sandbox"] == "lambda-runtime-image"
    assert verification["interpreter"] == EMULATED and verification["emulated"]
    assert verification["how"].startswith(
        f"smoke test in the Lambda runtime image {stand_in_runtime_arm64} (/usr/bin/python3.11, aarch64 under "
        "emulation (QEMU user mode via binfmt); read-only /opt, only /tmp writable, uid 993, no network)")
    assert verification["load_check"]["status"] == "passed" and verification["load_check"]["arch"] == "arm64"
    assert any("linux/arm64, run under emulation" in note for note in report["environment_notes"])
    assert report["cold_import_seconds"] is None  # emulated times say nothing of Lambda's
    # pip and strip ran in the arm64 container: its aarch64 binutils, not this machine's.
    assert "+ [container] strip --strip-unneeded" in run.stderr
    assert report["downloaded"] == []  # the pip build stored every wheel the lock names
    assert "verified: smoke test passed smoke test in the Lambda runtime image" in run.stderr


def test_the_command_as_asked_smoke_tests_in_the_arm64_build_container(as_asked, arm64_base_image):
    report, _, run = as_asked
    verification = report["verification"]
    assert verification["verified"] and verification["interpreter"] == EMULATED and verification["emulated"]
    # AWS's arm64 runtime image cannot be pulled here: the build container instead, and the report says so.
    assert verification["sandbox"] == "host"
    assert verification["how"].startswith(
        "by an aarch64 python3.11 under emulation (QEMU user mode via binfmt): /usr/bin/python3.11 in a container of "
        "lambda-layer-builder/build:")
    assert f"(from {arm64_base_image})" in verification["how"]
    assert "cannot pull the Lambda runtime image public.ecr.aws/lambda/python:3.11-arm64" in verification["how"]
    assert "smoke test in the build container instead of Lambda's runtime image" in run.stderr


def test_docker_and_pip_arm64_zips_list_the_same_files(by_pip, in_runtime_image, as_asked):
    with zipfile.ZipFile(by_pip) as archive:
        by_pip_names = archive.namelist()
    assert len(by_pip_names) > 500 and any(n.endswith("-aarch64-linux-gnu.so") for n in by_pip_names)
    for _, docker_zip, _ in (in_runtime_image, as_asked):
        with zipfile.ZipFile(docker_zip) as archive:
            assert archive.namelist() == by_pip_names
    comparison = in_runtime_image[0]["comparison"]
    assert comparison["same_file_list"] and comparison["files"] == [len(by_pip_names)] * 2
    assert all(d["reason"] for d in comparison["differences"])  # stripped by another strip: said, per file


@pytest.fixture(scope="module")
def expat_layer(docker_engine, arm64_base_image, tmp_path_factory):
    """An aarch64 extension module compiled in the arm64 base image (emulated gcc), linked to libexpat.so.1."""
    work = tmp_path_factory.mktemp("expat-arm64")
    (work / "expatext.c").write_text(EXPAT_EXTENSION)
    out = work / "layer" / "python"
    out.mkdir(parents=True)
    built_so = out / "expatext.cpython-311-aarch64-linux-gnu.so"
    with Container(arm64_base_image, client=docker_engine, platform="linux/arm64",
                   volumes={str(work): {"bind": str(work), "mode": "rw"}}) as box:
        built = box.call(["gcc", "-shared", "-fPIC", "-O1", "-I/usr/include/python3.11", str(work / "expatext.c"),
                          "-o", str(built_so), "-l:libexpat.so.1"], user=f"{os.getuid()}:{os.getgid()}")
        assert built.ok, built.tail()
        needed = box.call(["objdump", "-p", str(built_so)])
    assert "NEEDED               libexpat.so.1" in needed.stdout and "aarch64" in needed.stdout
    return work / "layer"


def test_an_arm64_extension_needing_libexpat_passes_in_the_build_container_and_fails_in_the_stand_in(
        docker_engine, arm64_base_image, stand_in_runtime_arm64, expat_layer, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    mounts = {str(expat_layer): {"bind": str(expat_layer), "mode": "ro"}, str(scratch): {"bind": str(scratch), "mode": "rw"}}
    with Container(arm64_base_image, client=docker_engine, platform="linux/arm64", volumes=mounts) as box:
        runner = ContainerRunner(box, user=f"{os.getuid()}:{os.getgid()}", base_env={})
        run_smoke_test(expat_layer / "python", EXPAT_SMOKE, Interpreter(Path("/usr/bin/python3.11"), "3.11", "aarch64"),
                       runner, tmp=scratch)
    with pytest.raises(VerifyError) as failed:
        run_in_runtime_image(docker_engine, stand_in_runtime_arm64, expat_layer, EXPAT_SMOKE, RUNTIME, "arm64")
    assert failed.value.message.startswith(
        f"smoke test failed in the Lambda runtime image {stand_in_runtime_arm64}: libexpat.so.1 is not in the image")
    assert not our_containers(docker_engine)


def test_the_arm64_stand_in_is_lambda_shaped(docker_engine, stand_in_runtime_arm64, expat_layer):
    with runtime_container(docker_engine, stand_in_runtime_arm64, expat_layer, RUNTIME, "arm64") as runtime_box:
        assert runtime_box.emulated and runtime_box.interpreter.machine == "aarch64"
        box = runtime_box.box
        # arm64's loader, as Lambda's arm64 image has it; its table's libraries, not Debian's; no toolchain.
        assert box.call(["test", "-e", "/lib/ld-linux-aarch64.so.1"]).ok
        assert not box.call(["test", "-e", "/lib64/ld-linux-x86-64.so.2"]).ok
        cache = box.call(["/sbin/ldconfig", "-p"]).stdout
        assert "libz.so.1 " in cache and "libexpat.so.1 " not in cache and "AArch64" in cache
        assert box.call(["sh", "-c", "command -v gcc cc ld objdump"]).stdout.strip() == ""
        assert box.call(["id", "-u"]).stdout.strip() == "993"
    assert not our_containers(docker_engine)
