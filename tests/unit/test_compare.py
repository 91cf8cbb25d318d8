"""Comparing two layer zips: every difference is found and given a reason."""

from __future__ import annotations

import zipfile

from builder.compare import compare_zips

ELF = b"\x7fELF" + bytes(60)


def write_zip(path, files: dict[str, bytes], modes: dict[str, int] | None = None):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (modes or {}).get(name, 0o644) << 16
            archive.writestr(info, data)
    return path


def test_identical_zips_have_no_differences(tmp_path):
    files = {"python/a.py": b"x = 1\n", "python/b.so": ELF}
    result = compare_zips(write_zip(tmp_path / "a.zip", files), write_zip(tmp_path / "b.zip", files))
    assert result.identical and result.same_file_list and result.files == (2, 2)


def test_each_kind_of_difference_has_its_reason(tmp_path):
    first = write_zip(tmp_path / "a.zip", {
        "python/numpy-2.2.6.dist-info/METADATA": b"m", "python/lib.so": ELF + b"1",
        "python/__pycache__/m.cpython-311.pyc": b"a", "python/run": b"#!", "python/only_here.py": b"",
    }, modes={"python/run": 0o755})
    second = write_zip(tmp_path / "b.zip", {
        "python/numpy-2.2.5.dist-info/METADATA": b"m", "python/lib.so": ELF + b"2",
        "python/__pycache__/m.cpython-311.pyc": b"b", "python/run": b"#!",
    })
    result = compare_zips(first, second)
    by_path = {(d.path, d.kind): d.reason for d in result.differences}
    assert not result.same_file_list
    assert "numpy 2.2.6 here, 2.2.5 in the other build" == by_path[("python/numpy-2.2.6.dist-info/METADATA", "only in first")]
    assert by_path[("python/numpy-2.2.5.dist-info/METADATA", "only in second")].startswith("numpy 2.2.5 here")
    assert "shared object" in by_path[("python/lib.so", "content")]
    assert "bytecode" in by_path[("python/__pycache__/m.cpython-311.pyc", "content")]
    assert "mode" in by_path[("python/run", "mode")]
    assert "one build only" in by_path[("python/only_here.py", "only in first")]
