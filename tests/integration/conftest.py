"""Integration tier: the real Docker engine (started by .ci/run) and its local base image, and a
moto server over real HTTP (started here), behind a fault-injecting proxy.

No skips: a missing engine or image fails these tests, since CI must run them.
"""

import os
import time

import pytest

from builder.backends.container import LABEL, docker_client
from tests.integration.aws_fixtures import aws_client, fault_proxy, moto_server  # noqa: F401  (fixtures)

BASE_IMAGE = os.environ.get("LAYERS_TEST_BASE_IMAGE", "layers-test-base:bookworm")


@pytest.fixture(scope="session")
def docker_engine():
    client = docker_client()  # raises ToolMissing: start dockerd (see .ci/run)
    images = [tag for image in client.images.list() for tag in image.tags]
    assert BASE_IMAGE in images, f"build the test base image first: bash .ci/test-base-image.sh ({BASE_IMAGE})"
    yield client
    client.close()


@pytest.fixture(scope="session")
def stand_in_runtime(docker_engine):
    """The stand-in for Lambda's python3.11 runtime image (no registry here), built once (.ci/test-runtime-image.sh)."""
    from tests.support.runtime_image import ensure_stand_in_runtime_image

    return ensure_stand_in_runtime_image(docker_engine)


# -- arm64 on this (x86_64) engine, under QEMU: the arm64 test base image and its stand-in runtime image --

ARM64_BASE_IMAGE = os.environ.get("LAYERS_TEST_BASE_IMAGE_ARM64", "layers-test-base:bookworm-arm64")


@pytest.fixture(scope="session")
def arm64_base_image(docker_engine):
    """The arm64 test base image (.ci/test-base-image.sh arm64), recorded as arm64 and runnable on this engine."""
    import docker.errors

    from builder.backends.container import check_engine_runs

    make = f"build the arm64 test base image first: bash .ci/test-base-image.sh arm64 ({ARM64_BASE_IMAGE})"
    try:
        image = docker_engine.images.get(ARM64_BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(make)
    assert image.attrs.get("Architecture") == "arm64", f"{ARM64_BASE_IMAGE} is not arm64: {make}"
    check_engine_runs(docker_engine, ARM64_BASE_IMAGE, "linux/arm64")  # BuildError: QEMU is not registered
    return ARM64_BASE_IMAGE


@pytest.fixture(scope="session")
def stand_in_runtime_arm64(arm64_base_image, docker_engine):
    """The arm64 stand-in for Lambda's python3.11 runtime image (.ci/test-runtime-image.sh arm64), built once."""
    from tests.support.runtime_image import ensure_stand_in_runtime_image

    return ensure_stand_in_runtime_image(docker_engine, arch="arm64")


def our_containers(client):
    """Every container carrying our label. The SDK lists, then inspects each one: a container being made or
    removed at that moment answers 404 (seen on Docker 20.10), so the listing is tried again."""
    import docker.errors

    for _ in range(20):
        try:
            return client.containers.list(all=True, filters={"label": LABEL})
        except docker.errors.NotFound:
            time.sleep(0.1)
    return client.containers.list(all=True, filters={"label": LABEL})


@pytest.fixture(scope="session", autouse=True)
def no_container_left_behind():
    """After the whole run, the engine holds no container of ours (failed, interrupted or not)."""
    yield
    try:
        client = docker_client()
    except Exception:
        return  # no engine: the docker_engine fixture has already failed the tests that needed one
    left = our_containers(client)
    assert not left, f"containers left behind: {[c.name for c in left]}"
