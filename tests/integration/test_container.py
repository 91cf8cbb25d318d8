"""The container wrapper on the real engine: commands, copies, and removal in every case."""

import os

import pytest

from builder.backends.container import Container
from tests.integration.conftest import BASE_IMAGE, our_containers

pytestmark = pytest.mark.integration


def test_call_and_copy_round_trip(docker_engine, tmp_path):
    source = tmp_path / "in"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("x = 1\n")
    (source / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    (source / "pkg" / "run.sh").chmod(0o755)
    with Container(BASE_IMAGE, client=docker_engine) as box:
        assert box.call(["python3", "-c", "import sys; print(sys.version_info[:2])"]).stdout.strip() == "(3, 11)"
        box.copy_into(source, "/work/in")
        made = box.call(["sh", "-c", "cp -r /work/in /work/out && touch /work/out/made-inside && chown -R 0:0 /work/out"])
        assert made.ok, made.stderr
        failed = box.call(["sh", "-c", "echo oops >&2; exit 3"])
        assert (failed.returncode, failed.stderr.strip()) == (3, "oops")
        box.copy_out("/work/out", tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert os.access(out / "pkg" / "run.sh", os.X_OK)
    for path in [out, *out.rglob("*")]:
        assert path.stat().st_uid == os.getuid() and path.stat().st_gid == os.getgid()
    assert not our_containers(docker_engine)


def test_removed_after_an_exception(docker_engine):
    with pytest.raises(RuntimeError):
        with Container(BASE_IMAGE, client=docker_engine):
            assert our_containers(docker_engine)
            raise RuntimeError("build failed")
    assert not our_containers(docker_engine)


def test_removed_after_ctrl_c(docker_engine):
    with pytest.raises(KeyboardInterrupt):
        with Container(BASE_IMAGE, client=docker_engine) as box:
            box.call(["true"])
            raise KeyboardInterrupt
    assert not our_containers(docker_engine)


def test_failed_start_leaves_nothing(docker_engine, tmp_path):
    # Create succeeds, start fails: a file mounted over a directory.
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(Exception):
        with Container(BASE_IMAGE, client=docker_engine, volumes={str(a_file): {"bind": "/etc", "mode": "ro"}}):
            pass
    assert not our_containers(docker_engine)
