"""The pip backend against the real index: tags, sdists, hashes."""

from pathlib import Path

import pytest

from builder.backends.base import Target
from builder.backends.pip import PipBackend
from builder.errors import ResolveError
from builder.recipe import parse_recipe
from builder.runner import Runner
from builder.runtimes import wheel_min_glibc

pytestmark = pytest.mark.functional


def recipe(runtime: str, *requirements: str, arch: str = "x86_64"):
    return parse_recipe({"name": "t", "runtime": runtime, "architectures": [arch], "requirements": list(requirements),
                         "smoke": {"imports": ["x"]}})


def resolve(tmp_path: Path, r, arch: str = "x86_64"):
    backend = PipBackend(Runner(), tmp_path / "cache")
    return backend, backend.resolve(r, Target(r.runtime_info, arch), tmp_path / "work")


def test_python311_never_gets_a_wheel_newer_than_glibc_226(tmp_path):
    # Unpinned: the newest numpy and Pillow ship manylinux_2_28 wheels only for
    # cp311, so the resolver must fall back to the newest loadable release.
    _, resolution = resolve(tmp_path, recipe("python3.11", "numpy", "pillow"))
    for wheel in resolution.lock.wheels:
        assert (wheel_min_glibc(wheel.filename) or (0, 0)) <= (2, 26), wheel.filename
    assert {w.name for w in resolution.lock.wheels} == {"numpy", "pillow"}


def test_python312_arm64_gets_aarch64_wheels(tmp_path):
    _, resolution = resolve(tmp_path, recipe("python3.12", "numpy==2.2.6", arch="arm64"), arch="arm64")
    (wheel,) = resolution.lock.wheels
    assert "aarch64" in wheel.filename and "cp312" in wheel.filename


def test_pure_sdist_is_built_into_a_wheel(tmp_path):
    _, resolution = resolve(tmp_path, recipe("python3.6", "termcolor==1.1.0"))
    (wheel,) = resolution.lock.wheels
    assert wheel.filename == "termcolor-1.1.0-py3-none-any.whl"
    assert wheel.origin == "sdist" and len(wheel.source_sha256) == 64
    assert wheel.identity == wheel.source_sha256


def test_native_sdist_is_refused_with_a_pointer_to_docker(tmp_path):
    # netifaces 0.11.0 has no Linux wheels at all, and its source is C.
    with pytest.raises(ResolveError) as caught:
        resolve(tmp_path, recipe("python3.11", "netifaces==0.11.0"))
    assert "native code" in caught.value.message and "docker" in caught.value.hint


def test_unknown_version_is_a_resolve_error(tmp_path):
    with pytest.raises(ResolveError) as caught:
        resolve(tmp_path, recipe("python3.11", "six==0.0.1"))
    assert "six==0.0.1" in caught.value.message + (caught.value.hint or "")


def test_pinned_hash_is_enforced(tmp_path):
    bad = "six==1.17.0 --hash=sha256:" + "0" * 64
    with pytest.raises(ResolveError, match="does not list"):
        resolve(tmp_path, recipe("python3.11", bad))


def test_install_writes_nothing_build_specific(tmp_path):
    backend, resolution = resolve(tmp_path, recipe("python3.11", "six==1.17.0"))
    tree = tmp_path / "tree"
    backend.install(resolution, Target(recipe("python3.11", "six").runtime_info, "x86_64"), tree)
    info = tree / "six-1.17.0.dist-info"
    assert (tree / "six.py").exists() and (info / "METADATA").exists()
    assert not (info / "direct_url.json").exists() and not (info / "REQUESTED").exists()
    assert "direct_url.json" not in (info / "RECORD").read_text()
    assert not list(tree.rglob("*.pyc"))  # installed without host bytecode


def test_a_lock_is_installed_exactly_and_from_the_wheel_store(tmp_path):
    backend, first = resolve(tmp_path, recipe("python3.11", "requests==2.32.5"))
    assert (tmp_path / "cache" / "wheels" / first.lock.wheels[0].filename).is_file()
    commands_before = len(backend.runner.history)
    again = backend.resolve(recipe("python3.11", "requests==2.32.5"),
                            Target(recipe("python3.11", "six").runtime_info, "x86_64"), tmp_path / "again",
                            lock=first.lock)
    assert again.lock == first.lock
    assert again.downloaded == ()
    assert len(backend.runner.history) == commands_before  # not even pip ran: every file came from the store


def test_a_lock_whose_file_changed_is_refused(tmp_path):
    import dataclasses

    backend, first = resolve(tmp_path, recipe("python3.11", "six==1.17.0"))
    (stored,) = (tmp_path / "cache" / "wheels").glob("six-*.whl")
    stored.unlink()  # the store cannot serve it: the index must, and its file differs from the lock's
    (wheel,) = first.lock.wheels
    forged = dataclasses.replace(first.lock, wheels=(dataclasses.replace(wheel, sha256="0" * 64),))
    with pytest.raises(ResolveError, match="the lock records 0000"):
        backend.resolve(recipe("python3.11", "six==1.17.0"), Target(recipe("python3.11", "six").runtime_info, "x86_64"),
                        tmp_path / "again", lock=forged)


def test_a_lock_for_another_target_is_a_usage_error(tmp_path):
    from builder.errors import UsageError

    backend, first = resolve(tmp_path, recipe("python3.11", "six==1.17.0"))
    with pytest.raises(UsageError, match="the lock is for python3.11 x86_64"):
        backend.resolve(recipe("python3.12", "six==1.17.0"), Target(recipe("python3.12", "six").runtime_info, "x86_64"),
                        tmp_path / "again", lock=first.lock)
