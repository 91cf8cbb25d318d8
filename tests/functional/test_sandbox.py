"""The smoke test in the sandbox of Lambda's libraries (bubblewrap), on real layers.

This Debian machine has libGL, libmagic, GLib... which Lambda's runtime images
lack: each layer here passes the smoke test with this machine's libraries and
must fail in the sandbox, or passes both because it needs only what Lambda
has. Extensions are compiled with gcc against the pyenv interpreters' headers.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.errors import VerifyError
from builder.recipe import SmokeTest
from builder.runner import Runner
from builder.runtimes import get_runtime
from builder.verify.interpreters import Interpreter, find_interpreter
from builder.verify.sandbox import prepare_sandbox, sandbox_available
from builder.verify.smoke import run_workload, verify

pytestmark = pytest.mark.functional

NUMPY_WHEEL = "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


@pytest.fixture(scope="module", autouse=True)
def bwrap_works():
    reason = sandbox_available(Runner())
    if reason:
        pytest.fail(f"the sandbox cannot run here: {reason}; install bubblewrap (apt-get install -y bubblewrap)")


def interpreter(version: str) -> Interpreter:
    found = find_interpreter(version, Runner())
    assert found is not None, f"pyenv's python{version} is part of this machine"
    return found


def smoke_check(tree: Path, smoke: SmokeTest, version: str = "3.11", sandbox: bool = True):
    """verify() as the pip backend's build calls it."""
    runtime = get_runtime(f"python{version}")
    return verify(tree, smoke, runtime.glibc, interpreter(version), Runner(), version,
                  runtime=runtime, arch="x86_64", lambda_sandbox=sandbox)


def extension(tree: Path, name: str, libs: list[str], *, header: str = "", init: str = "",
              version: str = "3.11") -> None:
    """A real CPython extension module ``name`` in ``tree``, linked to ``libs``; ``init`` runs at import."""
    python = interpreter(version)
    probe = "import json, sysconfig as s; print(json.dumps([s.get_paths()['include'], s.get_config_var('EXT_SUFFIX')]))"
    include, suffix = json.loads(subprocess.run([python.path, "-c", probe], check=True, capture_output=True,
                                                text=True).stdout)
    source = tree.parent / f"{name}.c"
    source.write_text(f"""#include <Python.h>
{header}
static struct PyModuleDef def = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, NULL}};
PyMODINIT_FUNC PyInit_{name}(void) {{ {init} return PyModule_Create(&def); }}
""")
    tree.mkdir(parents=True, exist_ok=True)
    # --no-as-needed: the DT_NEEDED entry stays even where nothing calls into the library.
    subprocess.run(["gcc", "-shared", "-fPIC", "-I", include, "-o", tree / f"{name}{suffix}", source,
                    "-Wl,--no-as-needed", *libs], check=True)


def test_an_extension_linking_libGL_passes_here_and_fails_in_the_sandbox(tmp_path):
    tree = tmp_path / "python"
    extension(tree, "glmod", ["-l:libGL.so.1"])
    smoke = SmokeTest(imports=("glmod",), code="")
    on_host = smoke_check(tree, smoke, sandbox=False)
    assert on_host.verified and on_host.sandbox == "host"
    with pytest.raises(VerifyError) as caught:
        smoke_check(tree, smoke)
    message = caught.value.message
    assert "libGL.so.1: cannot open shared object file" in message
    assert "in the sandbox of amazonlinux2/x86_64's libraries" in message
    assert "libGL.so.1 is not on Lambda's amazonlinux2/x86_64 image" in message
    assert "bundles it" in caught.value.hint


def test_a_library_loaded_with_ctypes_at_run_time_passes_here_and_fails_in_the_sandbox(tmp_path):
    # No ELF header shows this need: only running where libmagic is absent does.
    tree = tmp_path / "python"
    (tree / "magicish").mkdir(parents=True)
    (tree / "magicish" / "__init__.py").write_text(
        "import ctypes, ctypes.util\n"
        "LIB = ctypes.CDLL(ctypes.util.find_library('magic') or 'libmagic.so.1')\n")
    smoke = SmokeTest(imports=("magicish",), code="assert magicish.LIB\n")
    assert smoke_check(tree, smoke, sandbox=False).verified
    with pytest.raises(VerifyError, match="libmagic.so.1: cannot open shared object file"):
        smoke_check(tree, smoke)
    # python3.12's table (Amazon Linux 2023) is partial: the message says Lambda may have it.
    with pytest.raises(VerifyError, match="table of amazonlinux2023/x86_64 is partial and does not list it"):
        smoke_check(tree, smoke, version="3.12")


def test_an_extension_needing_only_libz_and_libm_passes_in_the_sandbox(tmp_path):
    tree = tmp_path / "python"
    extension(tree, "zmod", ["-l:libz.so.1", "-lm"], header="#include <math.h>\n"
              "const char *zlibVersion(void);  /* zlib.h's, declared: no zlib headers needed */\n"
              "volatile double x = 2.0;", init="if (!zlibVersion()[0] || sqrt(x) < 1.4) return NULL;")
    result = smoke_check(tree, SmokeTest(imports=("zmod",), code=""))
    assert result.verified and result.sandbox == "lambda-libraries"
    assert "in a sandbox showing only the" in result.how and "amazonlinux2/x86_64" in result.how
    assert not list(tree.rglob("__pycache__"))


def test_inside_the_sandbox_only_tmp_is_writable_and_there_is_no_network(tmp_path):
    tree = tmp_path / "python"
    (tree / "probe").mkdir(parents=True)
    (tree / "probe" / "__init__.py").write_text("")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    code = f"""
import ctypes.util, errno, os, socket
for path in ("/opt/python/probe/new.txt", "/opt/new.txt", "/var/task/new.txt", "/new.txt", "/usr/lib64/x"):
    try:
        open(path, "w")
    except OSError as e:
        assert e.errno in (errno.EROFS, errno.EACCES), (path, e)
    else:
        raise AssertionError(path + " is writable")
with open("/tmp/scratch.txt", "w") as f:
    f.write("ok")
with open(os.path.join(os.environ["HOME"], "keras.json"), "w") as f:
    f.write("{{}}")
assert os.environ["HOME"].startswith("/tmp/")
# This machine listens on 127.0.0.1:{port}; the sandbox has a loopback of its own and nothing else.
with open("/proc/net/dev") as f:
    interfaces = {{line.split(":")[0].strip() for line in f.readlines()[2:]}}
assert interfaces == {{"lo"}}, interfaces
for address in (("127.0.0.1", {port}), ("192.0.2.1", 53)):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(address)
    except OSError:
        pass
    else:
        raise AssertionError("connected to %s:%d" % address)
assert os.environ["LAMBDA_TASK_ROOT"] == "/var/task"
assert os.environ["LD_LIBRARY_PATH"].split(":")[:3] == ["/var/lang/lib", "/lib64", "/usr/lib64"]
assert not os.path.exists("/etc/ld.so.conf") and not os.path.exists("/usr/bin")
# find_library finds what Lambda has, and nothing it lacks
assert ctypes.util.find_library("z") == "libz.so.1", ctypes.util.find_library("z")
assert ctypes.util.find_library("GL") is None and ctypes.util.find_library("magic") is None
"""
    try:
        result = smoke_check(tree, SmokeTest(imports=("probe",), code=code))
    finally:
        listener.close()
    assert result.verified and result.sandbox == "lambda-libraries"
    assert not (tree / "probe" / "new.txt").exists() and not list(tmp_path.rglob("scratch.txt"))


def test_other_python_versions_and_their_tables(tmp_path):
    tree = tmp_path / "python"
    (tree / "lib" / "python3.6" / "site-packages" / "deep").mkdir(parents=True)
    (tree / "lib" / "python3.6" / "site-packages" / "deep" / "__init__.py").write_text("import json, zlib\n")
    (tree / "top.py").write_text("import ssl, lzma\n")
    old = smoke_check(tree, SmokeTest(imports=("top", "deep"), code=""), version="3.6")
    # /opt/python/lib/python3.6/site-packages is on sys.path, as on Lambda
    assert old.verified and old.sandbox == "lambda-libraries" and "python3.6" in old.how
    assert any("amazonlinux1/x86_64's libraries is partial" in note for note in old.sandbox_notes)
    new = smoke_check(tree, SmokeTest(imports=("top",), code=""), version="3.13")
    assert new.verified and any("amazonlinux2023" in note for note in new.sandbox_notes)
    report = new.to_json()
    assert report["sandbox"] == "lambda-libraries" and report["sandbox_notes"]


def test_without_bwrap_the_report_says_this_machines_libraries_were_used(tmp_path):
    class NoBwrap(Runner):
        def run(self, args, **kwargs):
            args = ["/nonexistent/bwrap", *args[1:]] if str(args[0]) == "bwrap" else args
            return super().run(args, **kwargs)

    tree = tmp_path / "python"
    extension(tree, "glmod", ["-l:libGL.so.1"])
    runtime = get_runtime("python3.11")
    result = verify(tree, SmokeTest(imports=("glmod",), code=""), runtime.glibc, interpreter("3.11"), NoBwrap(),
                    "3.11", runtime=runtime, arch="x86_64", lambda_sandbox=True)
    assert result.verified and result.sandbox == "host"
    assert "with this machine's libraries" in result.how and "bwrap is not installed" in result.how
    assert any("install bubblewrap" in note for note in result.sandbox_notes)


def test_a_sandbox_bwrap_cannot_set_up_falls_back_to_this_machines_libraries(tmp_path):
    class BrokenMount(Runner):
        def run(self, args, **kwargs):
            if str(args[0]) == "bwrap" and "--remount-ro" in args:  # the sandbox, not the probes
                args = ["bwrap", "--ro-bind", "/nonexistent-source", "/x", *args[1:]]
            return super().run(args, **kwargs)

    tree = tmp_path / "python"
    (tree / "plain.py").parent.mkdir(parents=True)
    (tree / "plain.py").write_text("")
    runtime = get_runtime("python3.11")
    result = verify(tree, SmokeTest(imports=("plain",), code=""), runtime.glibc, interpreter("3.11"), BrokenMount(),
                    "3.11", runtime=runtime, arch="x86_64", lambda_sandbox=True)
    assert result.verified and result.sandbox == "host" and "bwrap: Can't find source path" in result.how


@pytest.fixture(scope="module")
def numpy_tree(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("numpy")
    subprocess.run([sys.executable, "-m", "pip", "download", "numpy==2.2.6", "--only-binary=:all:",
                    "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp",
                    "--abi", "cp311", "--no-deps", "--dest", where / "wheels"], check=True, capture_output=True)
    tree = where / "python"
    with zipfile.ZipFile(where / "wheels" / NUMPY_WHEEL) as wheel:
        wheel.extractall(tree)
    return tree


def test_numpy_with_its_bundled_openblas_passes_in_the_sandbox(numpy_tree):
    smoke = SmokeTest(imports=("numpy",), code="assert (numpy.linalg.inv(numpy.eye(3)) == numpy.eye(3)).all()\n")
    result = smoke_check(numpy_tree, smoke)
    assert result.verified and result.sandbox == "lambda-libraries"
    # What the process mapped: numpy.libs' own libgfortran and openblas, nothing from this machine's /usr/lib.
    runner, python = Runner(), interpreter("3.11")
    box = prepare_sandbox(python, get_runtime("python3.11"), "x86_64", runner)
    dump = SmokeTest(imports=("numpy",), code=smoke.code + "print(open('/proc/self/maps').read())\n")
    maps = run_workload(numpy_tree, dump, python, runner, sandbox=box)
    assert maps.ok, maps.tail()
    mapped = {line.split()[-1] for line in maps.stdout.splitlines() if line.count("/") and ".so" in line}
    assert any("numpy.libs/libscipy_openblas" in path for path in mapped), mapped
    assert all(path.startswith(("/opt/python/", "/usr/lib64/", "/var/lang/lib/", str(box.executable.parents[1])))
               for path in mapped), mapped
