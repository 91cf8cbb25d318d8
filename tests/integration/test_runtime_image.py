"""The smoke test in the Lambda runtime image, on the real engine, with the stand-in runtime image.

No registry is reachable, so ``tests/support/runtime_image.py`` cuts the
test base image down to what ``lambda_os.toml`` says Amazon Linux 2's runtime
image holds (built once per session, reused while the table and the script
are unchanged). NumPy and Pillow load there, with /opt read-only and only
/tmp writable; an extension linked to libexpat.so.1 passes in the build
container and fails in the stand-in, naming the library; an image that
cannot be pulled is a typed error naming it; no container is left behind.
"""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from builder.backends.container import Container, ContainerRunner
from builder.backends.runtime_image import (LAMBDA_USER, default_runtime_image, failure_summary, run_in_runtime_image,
                                            run_smoke_in, runtime_container)
from builder.errors import BuildError, VerifyError
from builder.recipe import SmokeTest
from builder.runtimes import get_runtime
from builder.verify.interpreters import Interpreter
from builder.verify.smoke import run_smoke_test
from tests.integration.conftest import BASE_IMAGE, our_containers
from tests.support.runtime_image import ensure_stand_in_runtime_image, private_name

pytestmark = pytest.mark.integration
RUNTIME = get_runtime("python3.11")
WHEELS = ("numpy==2.2.6", "pillow==12.2.0")
NUMPY_SMOKE = SmokeTest(imports=("numpy", "PIL.Image"), code="numpy.linalg.inv(numpy.eye(3))")
EXPAT_EXTENSION = r"""
#include <Python.h>
const char *XML_ExpatVersion(void);  /* from libexpat.so.1; declared here so no header is needed */

static PyObject *version(PyObject *self, PyObject *unused) { return PyUnicode_FromString(XML_ExpatVersion()); }
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "expatext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_expatext(void) { return PyModule_Create(&module); }
"""
EXPAT_SMOKE = SmokeTest(imports=("expatext",), code="assert expatext.version().startswith('expat_')")


@pytest.fixture(scope="module")
def stand_in(docker_engine):
    started = time.perf_counter()
    tag = ensure_stand_in_runtime_image(docker_engine, log=print)
    print(f"stand-in runtime image {tag} ready in {time.perf_counter() - started:.1f} s")
    return tag


def stand_in_containers(client, tag: str):
    """Ours from the stand-in image: other tests may run build containers meanwhile."""
    image_id = client.images.get(tag).id
    return [c for c in our_containers(client) if c.attrs.get("Image") == image_id]


@pytest.fixture(scope="module")
def numpy_layer(tmp_path_factory):
    """np311's NumPy and Pillow wheels for python3.11 x86_64, unzipped into layer/python."""
    work = tmp_path_factory.mktemp("numpy-layer")
    downloaded = subprocess.run(
        [sys.executable, "-m", "pip", "download", *WHEELS, "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
         "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--no-deps", "-d", str(work / "wheels")],
        capture_output=True, text=True, timeout=600)
    assert downloaded.returncode == 0, downloaded.stderr[-2000:]
    layer = work / "layer"
    for wheel in sorted((work / "wheels").glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                archive.extract(info, layer / "python")
                if info.external_attr >> 16 & 0o111:  # zipfile drops modes; keep the executable bit
                    (layer / "python" / info.filename).chmod(0o755)
    assert (layer / "python" / "numpy" / "__init__.py").is_file()
    return layer


@pytest.fixture(scope="module")
def expat_layer(docker_engine, tmp_path_factory):
    """An extension module compiled in the test base image, linked to libexpat.so.1."""
    import os

    work = tmp_path_factory.mktemp("expat-layer")
    (work / "expatext.c").write_text(EXPAT_EXTENSION)
    out = work / "layer" / "python"
    out.mkdir(parents=True)
    with Container(BASE_IMAGE, client=docker_engine, volumes={str(work): {"bind": str(work), "mode": "rw"}}) as box:
        built = box.call(["gcc", "-shared", "-fPIC", "-O1", "-I/usr/include/python3.11", str(work / "expatext.c"),
                          "-o", str(out / "expatext.cpython-311-x86_64-linux-gnu.so"), "-l:libexpat.so.1"],
                         user=f"{os.getuid()}:{os.getgid()}")
        assert built.ok, built.tail()
        needed = box.call(["objdump", "-p", str(out / "expatext.cpython-311-x86_64-linux-gnu.so")])
    assert "NEEDED               libexpat.so.1" in needed.stdout
    return work / "layer"


def test_numpy_and_pillow_load_in_the_stand_in(docker_engine, stand_in, numpy_layer):
    result = run_in_runtime_image(docker_engine, stand_in, numpy_layer, NUMPY_SMOKE, RUNTIME, "x86_64")
    print(f"one smoke test in the stand-in: {result.seconds:.2f} s (with container start and removal: "
          f"{result.total_seconds:.2f} s)")
    assert "SMOKE-OK" in result.output
    assert result.interpreter == "/usr/bin/python3.11"  # pythonX.Y on PATH; /var/lang/bin on Lambda
    assert result.how == (f"smoke test in the Lambda runtime image {stand_in} (/usr/bin/python3.11; read-only /opt, "
                          "only /tmp writable, uid 993, no network)")
    assert not stand_in_containers(docker_engine, stand_in)


def test_the_container_is_lambda_shaped(docker_engine, stand_in, numpy_layer):
    with runtime_container(docker_engine, stand_in, numpy_layer, RUNTIME, "x86_64") as runtime_box:
        box = runtime_box.box
        opt = box.call(["sh", "-c", "touch /opt/python/written-at-run-time"])
        assert opt.returncode != 0 and "Read-only file system" in opt.stderr
        root = box.call(["sh", "-c", "touch /written-at-run-time"])
        assert root.returncode != 0 and "Read-only file system" in root.stderr
        tmp = box.call(["python3.11", "-c", "open('/tmp/scratch', 'w').write('x'); print(open('/tmp/scratch').read())"])
        assert (tmp.returncode, tmp.stdout.strip()) == (0, "x")
        who = box.call(["id", "-u"])
        assert who.stdout.strip() == LAMBDA_USER.split(":")[0]
        # No network: only the loopback interface.
        assert box.call(["ls", "/sys/class/net"]).stdout.split() == ["lo"]
        env = box.call(["sh", "-c", 'echo "$LD_LIBRARY_PATH $LAMBDA_TASK_ROOT $LAMBDA_RUNTIME_DIR"']).stdout.split()
        assert env == ["/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
                       "/var/task", "/var/runtime"]
        # The workload sees the layer where Lambda puts it, both of its directories first on sys.path.
        probe = SmokeTest(imports=("numpy",), code="import sys; print('PATH', sys.path[:2]); print('AT', numpy.__file__)")
        ran = run_smoke_in(runtime_box, probe, RUNTIME)
        assert ran.ok, ran.tail()
        assert "PATH ['/opt/python', '/opt/python/lib/python3.11/site-packages']" in ran.stdout
        assert "AT /opt/python/numpy/__init__.py" in ran.stdout
        # The stand-in holds what the table lists, not Debian's libraries.
        cache = box.call(["/sbin/ldconfig", "-p"]).stdout
        assert "libz.so.1 " in cache and "libexpat.so.1 " not in cache and "libgomp.so.1 " not in cache
        assert box.call(["sh", "-c", "command -v gcc cc ld objdump"]).stdout.strip() == ""
    assert not stand_in_containers(docker_engine, stand_in)


def test_an_extension_needing_libexpat_passes_in_the_build_container_and_fails_on_lambda(
        docker_engine, stand_in, expat_layer, tmp_path):
    import os

    # The build container: where the Docker backend runs the smoke test today.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    mounts = {str(expat_layer): {"bind": str(expat_layer), "mode": "ro"}, str(scratch): {"bind": str(scratch), "mode": "rw"}}
    with Container(BASE_IMAGE, client=docker_engine, volumes=mounts) as box:
        runner = ContainerRunner(box, user=f"{os.getuid()}:{os.getgid()}", base_env={})
        run_smoke_test(expat_layer / "python", EXPAT_SMOKE, Interpreter(Path("/usr/bin/python3.11"), "3.11", "x86_64"),
                       runner, tmp=scratch)

    with pytest.raises(VerifyError) as failed:
        run_in_runtime_image(docker_engine, stand_in, expat_layer, EXPAT_SMOKE, RUNTIME, "x86_64")
    message = failed.value.message
    assert message.startswith(f"smoke test failed in the Lambda runtime image {stand_in}: libexpat.so.1 is not in the image")
    assert "libexpat.so.1: cannot open shared object file" in message
    assert failed.value.exit_code == 4 and "bundles the library" in failed.value.hint
    assert not stand_in_containers(docker_engine, stand_in)


def test_a_runtime_image_that_cannot_be_pulled_is_named(docker_engine, numpy_layer):
    missing = "registry.invalid/lambda/python:3.11"
    with pytest.raises(BuildError) as failed:
        run_in_runtime_image(docker_engine, missing, numpy_layer, NUMPY_SMOKE, RUNTIME, "x86_64")
    assert f"cannot pull the Lambda runtime image {missing}" in failed.value.message
    assert "--runtime-image" in failed.value.hint and failed.value.exit_code == 3
    assert not [c for c in our_containers(docker_engine) if c.attrs.get("Config", {}).get("Image") == missing]


def test_default_runtime_images_follow_aws_tags():
    # AWS publishes :3.11 as a multi-architecture manifest and :3.11-arm64 (and :3.11-x86_64) per architecture.
    assert default_runtime_image(RUNTIME, "x86_64") == "public.ecr.aws/lambda/python:3.11"
    assert default_runtime_image(RUNTIME, "arm64") == "public.ecr.aws/lambda/python:3.11-arm64"


def test_failure_summaries():
    assert failure_summary("ImportError: libgomp.so.1: cannot open shared object file: No such file or directory") \
        == "libgomp.so.1 is not in the image"
    assert failure_summary("/lib64/libstdc++.so.6: version `GLIBCXX_3.4.30' not found (required by /opt/python/x.so)") \
        == "x.so needs GLIBCXX_3.4.30, which the image's libraries do not define"
    assert failure_summary("AssertionError") == ""


def test_private_names_keep_their_length():
    assert private_name("libexpat.so.1") == "libEXPAT.so.1"
    assert private_name("libbz2.so.1.0") == "libBZ2.so.1.0"
    assert private_name("libdb-5.3.so") == "libDB-5.3.so"
