"""Build images on the real engine: built once from the local base image, then reused."""

import pytest

from builder.backends.images import ensure_build_image
from builder.errors import BuildError
from builder.runtimes import get_runtime
from tests.integration.conftest import BASE_IMAGE

pytestmark = pytest.mark.integration


def test_build_image_is_built_once_then_reused(docker_engine):
    runtime = get_runtime("python3.11")
    first = ensure_build_image(docker_engine, runtime, "x86_64", BASE_IMAGE)
    again = ensure_build_image(docker_engine, runtime, "x86_64", BASE_IMAGE)
    assert again.tag == first.tag and not again.built
    assert docker_engine.images.get(first.tag)


def test_base_image_missing_the_runtime_python_fails_the_contract(docker_engine):
    # Bookworm has python3.11, not python3.12: the contract check must say so.
    with pytest.raises(BuildError) as caught:
        ensure_build_image(docker_engine, get_runtime("python3.12"), "x86_64", BASE_IMAGE)
    assert "base-image contract" in caught.value.message


def test_unpullable_base_image_is_named(docker_engine):
    with pytest.raises(BuildError) as caught:
        ensure_build_image(docker_engine, get_runtime("python3.11"), "x86_64", "registry.invalid/nothing:here")
    assert "registry.invalid/nothing:here" in caught.value.message and "--base-image" in caught.value.hint
