"""Extensions compiled from sdists in the build container, checked against Lambda's runtime image.

The test base image compiles with Debian bookworm's GCC 12, whose libstdc++
defines up to GLIBCXX_3.4.30; Amazon Linux 2 (python3.8-3.11) stops at
GLIBCXX_3.4.24. A C++17 extension that uses std::filesystem needs a newer
libstdc++ than Lambda has, and must be refused naming the symbol version; a
C extension that needs only old GLIBC symbols must pass. One that links
libbz2.so.1.0, which the build image has and Lambda lacks, gets the library
grafted into the layer and loads in the stand-in runtime image, which has no
libbz2 of its own by that name. The sdists are made
here and served from a PEP 503 index on 127.0.0.1 (the build container joins
the host's network); their build dependency (setuptools) comes from the
usual index.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from builder.backends.docker import DockerBackend
from builder.build import BuildOptions, build
from builder.errors import VerifyError
from builder.recipe import parse_recipe
from builder.runner import Runner
from tests.integration.conftest import BASE_IMAGE
from tests.support.package_index import serve_index

pytestmark = pytest.mark.integration

_SETUP = """
from setuptools import Extension, setup
setup(name={name!r}, version="1.0", ext_modules=[Extension({name!r}, [{source!r}], {extra})])
"""
_CPP = """
#include <Python.h>
#include <filesystem>
static PyObject *cwd(PyObject *, PyObject *) {
    return PyUnicode_FromString(std::filesystem::current_path().string().c_str());
}
static PyMethodDef methods[] = {{"cwd", cwd, METH_NOARGS, ""}, {nullptr, nullptr, 0, nullptr}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "fsext", nullptr, -1, methods};
PyMODINIT_FUNC PyInit_fsext(void) { return PyModule_Create(&module); }
"""
_C = """
#include <Python.h>
#include <string.h>
static PyObject *length(PyObject *self, PyObject *arg) {
    const char *text = PyUnicode_AsUTF8(arg);
    return text ? PyLong_FromSize_t(strlen(text)) : NULL;
}
static PyMethodDef methods[] = {{"length", length, METH_O, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "oldext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_oldext(void) { return PyModule_Create(&module); }
"""
_BZ = """
#include <Python.h>
extern const char *BZ2_bzlibVersion(void);  /* libbz2's; the image has the library, not its headers */
static PyObject *version(PyObject *self, PyObject *args) { return PyUnicode_FromString(BZ2_bzlibVersion()); }
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "bzext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_bzext(void) { return PyModule_Create(&module); }
"""


def _sdist(name: str, source: str, code: str, extra: str) -> bytes:
    files = {
        "setup.py": _SETUP.format(name=name, source=source, extra=extra),
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n',
        source: code,
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-1.0/{path}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sdist_index():
    sdists = {
        "fsext": _sdist("fsext", "fsext.cpp", _CPP, 'language="c++", extra_compile_args=["-std=c++17"]'),
        "oldext": _sdist("oldext", "oldext.c", _C, ""),
        "bzext": _sdist("bzext", "bzext.c", _BZ, 'extra_link_args=["-l:libbz2.so.1.0"]'),
    }

    with serve_index({name: [(f"{name}-1.0.tar.gz", data)] for name, data in sdists.items()}) as (url, _):
        yield url


def _build(name: str, code: str, index: str, docker_engine, tmp_path: Path, runtime_image: str | None = None):
    recipe = parse_recipe({"name": name, "runtime": "python3.11", "requirements": [f"{name}==1.0"],
                           "smoke": {"imports": [name], "code": code}})
    # The local index first; setuptools (the sdists' build dependency) from the usual one.
    environ = {**os.environ, "PIP_INDEX_URL": index, "PIP_EXTRA_INDEX_URL": "https://pypi.org/simple",
               "PIP_TRUSTED_HOST": "127.0.0.1"}
    backend = DockerBackend(Runner(), tmp_path / "cache", base_image=BASE_IMAGE, client=docker_engine,
                            environ=environ, network="host", runtime_image=runtime_image)
    return build(recipe, "x86_64", backend, BuildOptions(out_dir=tmp_path / "dist", time_imports=False))


def test_a_cpp_extension_needing_a_newer_libstdcxx_than_lambda_has_is_refused(docker_engine, sdist_index, tmp_path):
    with pytest.raises(VerifyError) as caught:
        _build("fsext", "assert fsext.cwd()", sdist_index, docker_engine, tmp_path)
    message = caught.value.message
    assert "fsext" in message and "GLIBCXX_3.4." in message and "3.4.24" in message, message
    assert not (tmp_path / "dist").exists()


def test_a_c_extension_needing_only_old_symbols_passes(docker_engine, sdist_index, tmp_path):
    result = _build("oldext", "assert oldext.length('four') == 4", sdist_index, docker_engine, tmp_path)
    assert result.report["verification"]["verified"]
    assert result.zip.path.is_file()


def test_a_library_lambda_lacks_is_grafted_and_loads_in_the_runtime_image(docker_engine, sdist_index, tmp_path,
                                                                         stand_in_runtime):
    result = _build("bzext", "assert bzext.version().startswith('1.0')", sdist_index, docker_engine, tmp_path,
                    runtime_image=stand_in_runtime)
    report = result.report
    (graft,) = report["grafted"]["grafted"]
    assert graft["soname"] == "libbz2.so.1.0" and graft["origin"].startswith("/usr/lib/x86_64-linux-gnu/libbz2")
    assert graft["path"].startswith("python/") and "libbz2-" in graft["path"]
    verification = report["verification"]
    assert verification["load_check"]["status"] == "passed"
    assert verification["sandbox"] == "lambda-runtime-image" and stand_in_runtime in verification["how"]
    import zipfile

    import docker.errors

    with zipfile.ZipFile(result.zip.path) as archive:
        assert graft["path"] in archive.namelist()
    # Only the graft made it load: the runtime image has no libbz2.so.1.0 of its own.
    with pytest.raises(docker.errors.ContainerError, match="libbz2.so.1.0"):
        docker_engine.containers.run(stand_in_runtime, ["-c", "import ctypes; ctypes.CDLL('libbz2.so.1.0')"],
                                     entrypoint=["python3.11"], remove=True, network_mode="none")
