"""arm64 on an x86_64 engine: a clear error where the engine cannot run the image's binaries.

The arm64 base image is made here, with no registry: ``FROM scratch`` holding
a minimal aarch64 ELF executable as /bin/sh and /bin/sleep, so the engine
records it as linux/arm64 and the kernel refuses to run it. Whether this
machine has a QEMU binfmt handler must not decide the outcome: the ELF sets
one padding byte of its identification, which QEMU's handler (magic and mask
of qemu-binfmt-conf.sh, Debian's and tonistiigi/binfmt's) requires to be zero,
so no handler claims it and the kernel answers "exec format error" either way.
"""

from __future__ import annotations

import io
import struct
import tarfile

import pytest

from builder.backends.base import Target
from builder.backends.container import Container
from builder.backends.pip import PipBackend
from builder.backends.select import choose_backend
from builder.errors import BuildError
from builder.events import Silent
from builder.recipe import parse_recipe
from builder.runner import Runner
from tests.integration.conftest import BASE_IMAGE, our_containers

pytestmark = pytest.mark.integration
ARM64_IMAGE = "layers-test-arm64:tiny"


def _aarch64_exit0() -> bytes:
    """An aarch64 ELF executable that exits 0: header, one PT_LOAD, three instructions."""
    header = b"\x7fELF\x02\x01\x01\x00\x00" + b"\x01" + bytes(6)  # EI_PAD[0] = 1: no binfmt handler matches
    header += struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, 0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x84, 0x84, 0x1000)
    code = bytes.fromhex("000080d2a80b80d2010000d4")  # mov x0, #0; mov x8, #93 (exit); svc #0
    return header + program + code


@pytest.fixture(scope="module")
def arm64_image(docker_engine):
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        files = {"Dockerfile": (b"FROM scratch\nCOPY prog /bin/sh\nCOPY prog /bin/sleep\n", 0o644),
                 "prog": (_aarch64_exit0(), 0o755)}
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = docker_engine.images.build(fileobj=context, custom_context=True, tag=ARM64_IMAGE,
                                          platform="linux/arm64", rm=True, forcerm=True)
    assert image.attrs["Architecture"] == "arm64"
    yield ARM64_IMAGE
    docker_engine.images.remove(ARM64_IMAGE, force=True)


def _arm64_recipe():
    return parse_recipe({"name": "six", "runtime": "python3.12", "architectures": ["arm64"],
                         "requirements": ["six==1.17.0"], "smoke": {"imports": ["six"], "code": ""}})


def test_container_of_a_foreign_image_fails_clearly(docker_engine, arm64_image):
    with pytest.raises(BuildError) as caught:
        with Container(arm64_image, client=docker_engine, platform="linux/arm64"):
            pass
    assert "cannot run linux/arm64" in caught.value.message
    assert "binfmt" in caught.value.hint and "--backend pip" in caught.value.hint
    assert not our_containers(docker_engine)


def test_docker_backend_for_arm64_says_to_use_pip(docker_engine, arm64_image):
    target = Target(_arm64_recipe().runtime_info, "arm64")
    with pytest.raises(BuildError) as caught:
        choose_backend("docker", target, Runner(), Silent(), base_image=arm64_image)
    assert "cannot run linux/arm64" in caught.value.message and "--backend pip" in caught.value.hint
    assert not our_containers(docker_engine)


def test_an_amd64_base_image_is_refused_for_arm64(docker_engine):
    target = Target(_arm64_recipe().runtime_info, "arm64")
    with pytest.raises(BuildError) as caught:
        choose_backend("docker", target, Runner(), Silent(), base_image=BASE_IMAGE)
    assert "built for amd64, the target is arm64" in caught.value.message


def test_auto_falls_back_to_pip_for_arm64(docker_engine, arm64_image):
    reporter = Silent()
    target = Target(_arm64_recipe().runtime_info, "arm64")
    chosen = choose_backend("auto", target, Runner(), reporter, base_image=arm64_image)
    assert isinstance(chosen, PipBackend)
    assert len(reporter.notices) == 1 and "cannot run linux/arm64" in reporter.notices[0]
