"""The Docker backend on the real engine, with the local base image (nothing is pulled).

The python3.11 recipe is built in a container and compared with the pip
backend's build of the same lock; native sources compile in the container;
an interrupted build leaves no container; every error says what to do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from builder.backends.base import Target
from builder.backends.docker import DockerBackend
from builder.errors import ResolveError
from builder.recipe import parse_recipe
from builder.runner import Runner
from builder.runtimes import get_runtime
from tests.conftest import ROOT
from tests.integration.conftest import BASE_IMAGE, our_containers

pytestmark = pytest.mark.integration
LAYERS = [sys.executable, "-m", "builder"]

NATIVE_RECIPE = """
name = "native"
runtime = "python3.11"
requirements = ["netifaces==0.11.0"]

[smoke]
imports = ["netifaces"]
code = "import netifaces; assert 'lo' in netifaces.interfaces()"
"""


def layers(*args: str, cwd: Path, cache: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT), "LAYERS_CACHE_DIR": str(cache)}
    return subprocess.run([*LAYERS, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def np311_by_both(docker_engine, tmp_path_factory, cache, stand_in_runtime):
    """np311 built by the pip backend, then by the Docker backend from the pip build's lock.

    The Docker build's smoke test runs in the stand-in for Lambda's runtime image.
    """
    work = tmp_path_factory.mktemp("np311")
    # x86_64 only: np311 has arm64 too, and --lock takes one architecture's lock.
    by_pip = layers("build", "np311", "--arch", "x86_64", "--backend", "pip", "--out", str(work / "pip"),
                    "--no-import-timing",
                    "--recipes", str(ROOT / "recipes"), cwd=work, cache=cache)
    assert by_pip.returncode == 0, by_pip.stderr
    stem = "np311/np311-python3.11-x86_64"
    by_docker = layers("build", "np311", "--arch", "x86_64", "--backend", "docker", "--base-image", BASE_IMAGE,
                       "--runtime-image", stand_in_runtime, "--lock", str(work / "pip" / f"{stem}.lock.json"),
                       "--compare-to", str(work / "pip" / f"{stem}.zip"),
                       "--out", str(work / "docker"), "--no-import-timing", "-v",
                       "--recipes", str(ROOT / "recipes"), cwd=work, cache=cache)
    assert by_docker.returncode == 0, by_docker.stderr[-3000:]
    report = json.loads((work / "docker" / f"{stem}.report.json").read_text())
    return work, report, by_docker


def test_docker_build_is_smoke_tested_in_the_runtime_image(np311_by_both, stand_in_runtime):
    _, report, run = np311_by_both
    assert report["backend"] == "docker"
    assert report["build_image"]["base"] == BASE_IMAGE
    verification = report["verification"]
    assert verification["verified"] and verification["sandbox"] == "lambda-runtime-image"
    assert f"smoke test in the Lambda runtime image {stand_in_runtime}" in verification["how"]
    assert "read-only /opt, only /tmp writable" in verification["how"] and "no network" in verification["how"]
    assert verification["load_check"]["status"] == "passed" and verification["load_check"]["complete"]
    # strip ran in the build container, as the echo shows.
    assert "+ [container] strip --strip-unneeded" in run.stderr
    debug = next(r for r in report["strip"]["rules"] if r["rule"] == "debug-symbols")
    assert debug["files"] > 10 and debug["bytes"] > 1_000_000


def test_docker_and_pip_builds_of_one_lock_hold_the_same_files(np311_by_both):
    _, report, _ = np311_by_both
    comparison = report["comparison"]
    assert comparison["same_file_list"], comparison["differences"][:10]
    assert comparison["files"][0] == comparison["files"][1] > 500
    # Any byte-level difference must come with its reason.
    assert all(d["reason"] for d in comparison["differences"])


def test_locked_docker_build_downloads_nothing_once_the_wheels_are_stored(np311_by_both):
    _, report, _ = np311_by_both
    assert report["downloaded"] == []  # the pip build stored every wheel; the lock names them


def test_dist_files_belong_to_the_invoking_user(np311_by_both):
    work, _, _ = np311_by_both
    files = list((work / "docker").rglob("*"))
    assert files
    for path in files:
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid()), path


def test_container_commands_run_as_the_callers_uid(docker_engine, tmp_path):
    # As root here, prove the mechanism with another uid: what pip writes is owned by it.
    uid = gid = 12345
    scratch = tmp_path / "scratch"
    for sub in ("", "wheels", "python"):
        (scratch / sub).mkdir(exist_ok=True)
        os.chown(scratch / sub, uid, gid)
    recipe = parse_recipe({"name": "six", "runtime": "python3.11", "requirements": ["six==1.17.0"],
                           "smoke": {"imports": ["six"], "code": ""}})
    backend = DockerBackend(Runner(), tmp_path / "cache", base_image=BASE_IMAGE, client=docker_engine,
                            user=(uid, gid))
    with backend.session(Target(get_runtime("python3.11"), "x86_64"), scratch) as session:
        session.install(session.resolve(recipe, scratch), scratch / "python")
    installed = list((scratch / "python").rglob("*"))
    assert any(p.name == "six.py" for p in installed)
    assert {(p.stat().st_uid, p.stat().st_gid) for p in installed} == {(uid, gid)}
    assert not our_containers(docker_engine)


def test_native_sdist_compiles_in_the_container(docker_engine, tmp_path, cache):
    (tmp_path / "native.toml").write_text(NATIVE_RECIPE)
    result = layers("build", str(tmp_path / "native.toml"), "--backend", "docker", "--base-image", BASE_IMAGE,
                    "--out", str(tmp_path / "dist"), "--no-import-timing", cwd=tmp_path, cache=cache)
    assert result.returncode == 0, result.stderr[-3000:]
    lock = json.loads((tmp_path / "dist/native/native-python3.11-x86_64.lock.json").read_text())
    (wheel,) = lock["wheels"]
    assert wheel["origin"] == "sdist" and wheel["filename"].endswith("linux_x86_64.whl")
    report = json.loads((tmp_path / "dist/native/native-python3.11-x86_64.report.json").read_text())
    assert report["verification"]["verified"] and report["verification"]["elf_files"] == 1
    # No --runtime-image, and AWS's cannot be pulled here: the report says plainly where the smoke test ran.
    assert report["verification"]["sandbox"] == "host"
    assert "in the build container, whose libraries are more than Lambda's" in report["verification"]["how"]
    assert "public.ecr.aws/lambda/python:3.11" in report["verification"]["how"]
    assert "smoke test in the build container instead of Lambda's runtime image" in result.stderr


def test_pip_backend_refuses_the_same_native_sdist(tmp_path, cache):
    (tmp_path / "native.toml").write_text(NATIVE_RECIPE)
    result = layers("build", str(tmp_path / "native.toml"), "--backend", "pip", "--out", str(tmp_path / "dist"),
                    cwd=tmp_path, cache=cache)
    assert result.returncode == 3
    assert "native code" in result.stderr and "--backend docker" in result.stderr
    assert not (tmp_path / "dist").exists()


def test_failed_source_build_shows_the_end_of_pips_output(docker_engine, tmp_path, cache):
    # psycopg2 ships only sources and needs pg_config, which the image lacks.
    (tmp_path / "pg.toml").write_text(NATIVE_RECIPE.replace('"native"', '"pg"')
                                      .replace("netifaces==0.11.0", "psycopg2==2.9.10"))
    result = layers("build", str(tmp_path / "pg.toml"), "--backend", "docker", "--base-image", BASE_IMAGE,
                    "--out", str(tmp_path / "dist"), cwd=tmp_path, cache=cache)
    assert result.returncode == 3, result.stderr
    assert "failed to build" in result.stderr and "pg_config" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "dist").exists()


def test_without_the_hosts_cas_pip_in_the_container_cannot_verify_the_index(docker_engine, tmp_path):
    # Why the CA bundle is passed in: this machine's HTTPS goes through a proxy with its own CA.
    recipe = parse_recipe({"name": "six", "runtime": "python3.11", "requirements": ["six==1.17.0"],
                           "smoke": {"imports": ["six"], "code": ""}})
    backend = DockerBackend(Runner(), tmp_path / "cache", base_image=BASE_IMAGE, client=docker_engine,
                            trust_host_cas=False)
    with pytest.raises(ResolveError) as caught:
        with backend.session(Target(get_runtime("python3.11"), "x86_64"), tmp_path) as session:
            session.resolve(recipe, tmp_path)
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message and "SSL_CERT_FILE" in caught.value.hint
    assert not our_containers(docker_engine)


def test_interrupted_build_leaves_no_container(docker_engine, tmp_path, cache):
    # The smoke test sleeps for ten minutes, so the interrupt lands inside the build however
    # fast this machine is (with np311 from a warm cache, the whole build once ended first).
    (tmp_path / "slow.toml").write_text('name = "slow"\nruntime = "python3.11"\nrequirements = ["six==1.17.0"]\n'
                                        '[smoke]\nimports = ["six"]\ncode = "import time; time.sleep(600)"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAYERS_CACHE_DIR": str(cache)}
    # A suite started in the background (as `.ci/run &` is) inherits SIGINT ignored, and Python then never
    # turns it into KeyboardInterrupt: the build gets SIGINT's default back, as in a terminal.
    build = subprocess.Popen([*LAYERS, "build", str(tmp_path / "slow.toml"), "--backend", "docker",
                              "--base-image", BASE_IMAGE, "--out", str(tmp_path / "dist")],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not our_containers(docker_engine):
            assert build.poll() is None, build.communicate()
            assert time.monotonic() < deadline, "the build never started a container"
            time.sleep(0.1)
        time.sleep(1.0)  # inside the build: pip or the smoke test is running in the container
        build.send_signal(signal.SIGINT)
        _, stderr = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not our_containers(docker_engine)
    assert not (tmp_path / "dist").exists()


def test_auto_uses_docker_where_the_build_image_can_be_had(docker_engine, tmp_path, cache):
    (tmp_path / "demo.toml").write_text(NATIVE_RECIPE.replace('"native"', '"demo"')
                                        .replace("netifaces==0.11.0", "six==1.17.0")
                                        .replace('"netifaces"', '"six"').replace("import netifaces; assert", "#"))
    result = layers("build", str(tmp_path / "demo.toml"), "--base-image", BASE_IMAGE, "--json",
                    "--no-import-timing", "--out", str(tmp_path / "dist"), cwd=tmp_path, cache=cache)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "docker"
    assert "using the pip backend" not in result.stderr


def test_auto_falls_back_to_pip_when_the_base_image_cannot_be_pulled(docker_engine, tmp_path, cache):
    (tmp_path / "demo.toml").write_text(NATIVE_RECIPE.replace('"native"', '"demo"')
                                        .replace("netifaces==0.11.0", "six==1.17.0")
                                        .replace('"netifaces"', '"six"').replace("import netifaces; assert", "#"))
    result = layers("build", str(tmp_path / "demo.toml"), "--base-image", "registry.invalid/none:1", "--json",
                    "--no-import-timing", "--out", str(tmp_path / "dist"), cwd=tmp_path, cache=cache)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "pip"
    notices = [l for l in result.stderr.splitlines() if l.startswith("notice: using the pip backend")]
    assert len(notices) == 1 and "registry.invalid/none:1" in notices[0]


def test_docker_by_name_with_an_unpullable_image_names_it(docker_engine, tmp_path, cache):
    result = layers("build", "np311", "--backend", "docker", "--base-image", "registry.invalid/none:1",
                    "--recipes", str(ROOT / "recipes"), "--out", str(tmp_path / "dist"), cwd=tmp_path, cache=cache)
    assert result.returncode == 3
    assert "registry.invalid/none:1" in result.stderr and "--base-image" in result.stderr
    assert not (tmp_path / "dist").exists()


TRACED_RECIPE = """
name = "traced"
runtime = "python3.11"
requirements = ["six==1.17.0", "idna==3.10"]
bytecode = "only"

[strip]
profile = "trace"
docstrings = "empty"

[smoke]
imports = ["six"]
code = "assert six.moves.range(3)[-1] == 2"
"""


def test_trace_pruning_and_sourceless_bytecode_run_in_the_container(docker_engine, tmp_path, cache):
    """The tracer, the experiments, the compiler (with its re-exec for a fixed hash seed) and the smoke test
    all run with the container's python3.11."""
    (tmp_path / "traced.toml").write_text(TRACED_RECIPE)
    result = layers("build", str(tmp_path / "traced.toml"), "--backend", "docker", "--base-image", BASE_IMAGE,
                    "--out", str(tmp_path / "dist"), "--no-import-timing", cwd=tmp_path, cache=cache)
    assert result.returncode == 0, result.stderr[-3000:]
    stem = tmp_path / "dist/traced/traced-python3.11-x86_64"
    report = json.loads(Path(f"{stem}.report.json").read_text())
    assert report["trace_prune"]["status"] == "pruned"
    assert "idna" in {p["package"] for p in report["trace_prune"]["removed_by_package"]}  # never imported
    assert report["bytecode"]["docstrings"] == "empty" and report["bytecode"]["compiled"] >= 1
    assert report["verification"]["verified"] and "container" in report["verification"]["how"]
    names = zipfile.ZipFile(f"{stem}.zip").namelist()
    assert "python/six.pyc" in names and not any(n.endswith(".py") for n in names)
    assert not any(n.startswith("python/idna/") for n in names)
    assert not our_containers(docker_engine)
