import datetime as dt

import pytest

from builder.errors import RecipeError
from builder.runtimes import all_runtimes, get_runtime


def test_every_runtime_from_36_to_314_is_known():
    assert [f"python3.{m}" for m in range(6, 15)] == sorted(all_runtimes(), key=lambda n: int(n.split(".")[1]))


@pytest.mark.parametrize("name,os,glibc", [
    ("python3.6", "amazonlinux1", (2, 17)), ("python3.7", "amazonlinux1", (2, 17)),
    ("python3.8", "amazonlinux2", (2, 26)), ("python3.11", "amazonlinux2", (2, 26)),
    ("python3.12", "amazonlinux2023", (2, 34)), ("python3.14", "amazonlinux2023", (2, 34)),
])
def test_os_and_glibc(name, os, glibc):
    runtime = get_runtime(name)
    assert (runtime.os, runtime.glibc) == (os, glibc)


def test_python311_tags_stop_at_glibc_226():
    tags = get_runtime("python3.11").platform_tags("x86_64")
    assert "manylinux_2_26_x86_64" in tags and "manylinux2014_x86_64" in tags and "manylinux1_x86_64" in tags
    assert "manylinux_2_27_x86_64" not in tags and "manylinux_2_28_x86_64" not in tags


def test_arm64_tags_start_at_manylinux2014():
    tags = get_runtime("python3.12").platform_tags("arm64")
    assert tags[0] == "manylinux_2_34_aarch64"
    assert "manylinux2014_aarch64" in tags and not any("x86_64" in t or "manylinux1" in t for t in tags)


def test_abis():
    assert get_runtime("python3.6").abis() == ["cp36m", "abi3", "none"]
    assert get_runtime("python3.12").abis() == ["cp312", "abi3", "none"]


def test_the_notice_names_each_end_of_life_step_that_has_passed():
    today = dt.date(2026, 12, 1)
    py310 = get_runtime("python3.10")
    assert (py310.end_of_support, py310.block_create, py310.block_update) == (
        dt.date(2026, 10, 31), dt.date(2027, 2, 1), dt.date(2027, 3, 3))
    assert py310.lifecycle_notice(today) == ("python3.10 on Lambda: end of support (no security patches) since "
                                             "2026-10-31. A layer for it still serves existing functions")
    blocked = get_runtime("python3.8").lifecycle_notice(today)
    assert "creating functions blocked since 2025-10-01" in blocked and "updating functions blocked" in blocked
    assert "still serves" not in blocked
    assert get_runtime("python3.13").lifecycle_notice(today) is None
    # Where no source gives the dates, the notice says so rather than guessing.
    assert "not known here" in get_runtime("python3.11").lifecycle_notice(today)
    assert not get_runtime("python3.11").is_deprecated(today)


def test_every_runtime_names_where_its_dates_come_from():
    for runtime in all_runtimes().values():
        assert runtime.dates_source
        dates = [d for d in (runtime.end_of_support, runtime.block_create, runtime.block_update) if d]
        assert dates == sorted(dates), runtime.name


def test_deprecation_and_images():
    assert get_runtime("python3.6").is_deprecated(dt.date(2026, 11, 25))
    assert not get_runtime("python3.13").is_deprecated(dt.date(2026, 11, 25))
    assert get_runtime("python3.12").build_image("arm64") == "public.ecr.aws/sam/build-python3.12:latest-arm64"
    assert get_runtime("python3.6").architectures == ("x86_64",)


def test_unknown_runtime():
    with pytest.raises(RecipeError, match="unknown Lambda runtime"):
        get_runtime("python2.7")


@pytest.mark.parametrize("filename,glibc", [
    ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", (2, 27)),
    ("charset_normalizer-3.5.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl", (2, 17)),
    ("numpy-1.16.6-cp36-cp36m-manylinux1_x86_64.whl", (2, 5)),
    ("six-1.17.0-py2.py3-none-any.whl", None),
    ("x-1.0-cp311-cp311-linux_x86_64.whl", (99, 0)),
])
def test_wheel_min_glibc(filename, glibc):
    from builder.runtimes import wheel_min_glibc

    assert wheel_min_glibc(filename) == glibc
