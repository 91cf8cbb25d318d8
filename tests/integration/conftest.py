"""Integration tier: the real Docker engine (started by .ci/run) and its local base image.

No skips: a missing engine or image fails these tests, since CI must run them.
"""

import os

import pytest

from builder.container import LABEL, docker_client

BASE_IMAGE = os.environ.get("LAYERS_TEST_BASE_IMAGE", "layers-test-base:bookworm")


@pytest.fixture(scope="session")
def docker_engine():
    client = docker_client()  # raises ToolMissing: start dockerd (see .ci/run)
    images = [tag for image in client.images.list() for tag in image.tags]
    assert BASE_IMAGE in images, f"build the test base image first: bash .ci/test-base-image.sh ({BASE_IMAGE})"
    yield client
    client.close()


def our_containers(client):
    return client.containers.list(all=True, filters={"label": LABEL})
