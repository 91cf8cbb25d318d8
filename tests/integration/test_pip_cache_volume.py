"""The pip cache volume: a second build downloads nothing from an index that allows caching.

This machine's proxy strips PyPI's Cache-Control headers, which defeats
pip's HTTP cache; so the test serves its own PEP 503 index, with the headers
PyPI sends (files: immutable, a year). Each build gets a fresh wheel store,
so only the volume can save the download.

The index listens on 127.0.0.1 only and the build containers join the host's
network: no bridge address is needed, so nothing depends on how this engine
reports its bridge (a freshly started engine reports no gateway at all).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from builder.backends.docker import DockerBackend
from builder.build import BuildOptions, build
from builder.recipe import parse_recipe
from builder.runner import Runner
from tests.integration.conftest import BASE_IMAGE
from tests.support.package_index import serve_index

pytestmark = pytest.mark.integration
VOLUME = "lambda-layer-builder-test-pip-cache"


@pytest.fixture(scope="module")
def caching_index(tmp_path_factory):
    files = tmp_path_factory.mktemp("index-files")
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                              "--dest", str(files), "six==1.17.0"], capture_output=True, text=True)
    assert fetched.returncode == 0, fetched.stderr
    (wheel,) = files.glob("six-*.whl")
    with serve_index({"six": [(wheel.name, wheel.read_bytes())]}, cache_headers=True) as served:
        yield served


@pytest.fixture
def fresh_volume(docker_engine):
    import docker.errors

    def remove():
        try:
            docker_engine.volumes.get(VOLUME).remove(force=True)
        except docker.errors.NotFound:
            pass

    remove()
    yield VOLUME
    remove()


def test_second_build_downloads_nothing_thanks_to_the_volume(docker_engine, caching_index, fresh_volume, tmp_path):
    index_url, requests = caching_index
    recipe = parse_recipe({"name": "six", "runtime": "python3.11", "requirements": ["six==1.17.0"],
                           "smoke": {"imports": ["six"], "code": ""}})
    environ = {"PIP_INDEX_URL": index_url, "PIP_TRUSTED_HOST": "127.0.0.1"}
    reports = []
    for run in ("first", "second"):
        backend = DockerBackend(Runner(), tmp_path / f"cache-{run}", base_image=BASE_IMAGE, client=docker_engine,
                                pip_cache_volume=fresh_volume, environ=environ, network="host")
        result = build(recipe, "x86_64", backend, BuildOptions(out_dir=tmp_path / run, time_imports=False))
        reports.append(result.report)
    assert reports[0]["downloaded"] == ["six-1.17.0-py2.py3-none-any.whl"]
    assert reports[1]["downloaded"] == []
    assert sum(path.startswith("/files/") for path in requests) == 1  # the wheel left the index once
    assert reports[0]["zip"]["sha256"] == reports[1]["zip"]["sha256"]
