"""builder.verify.elf on real shared objects compiled here with gcc (no mocks).

This host has glibc 2.36, so a library calling arc4random (GLIBC_2.36) is a
real "too new for Lambda" library, and one doing arithmetic only needs the
baseline versions every runtime has.
"""

from __future__ import annotations

import os
import platform
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from builder.errors import VerifyError
from builder.verify.elf import (
    GlibcViolation,
    elf_files,
    glibc_violations,
    is_elf,
    load_segments_problem,
    read_elf,
)

HOST = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())

NEW_GLIBC_C = """
#include <stdlib.h>
unsigned int roll(void) { return arc4random() % 6; }  /* GLIBC_2.36 */
"""
PLAIN_C = """
#include <stdlib.h>
int add(int a, int b) { return a + b + (getenv("ADD_ONE") != NULL); }  /* GLIBC_2.2.5 / 2.17 */
"""


def _compile(source: str, out: Path, *flags: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", *flags, "-o", str(out), str(src)], check=True)
    src.unlink()
    return out


@pytest.fixture(scope="session")
def libs(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build test shared objects")
    d = tmp_path_factory.mktemp("elf-libs")
    return {
        "new": _compile(NEW_GLIBC_C, d / "libnew.so", "-Wl,-soname,libnew.so.1"),
        "plain": _compile(PLAIN_C, d / "libplain.so"),
        "stripped": _compile(PLAIN_C, d / "libstripped.so", "-s"),
        "nolibc": _compile(PLAIN_C, d / "libnolibc.so", "-nostdlib"),
    }


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return dst


# --- is_elf / elf_files ---------------------------------------------------


def test_is_elf(libs, tmp_path):
    (tmp_path / "text.so").write_text("INPUT(-lc)\n")
    (tmp_path / "empty.so").write_bytes(b"")
    assert is_elf(libs["plain"])
    assert not is_elf(tmp_path / "text.so")
    assert not is_elf(tmp_path / "empty.so")
    assert not is_elf(tmp_path / "missing.so")


def test_elf_files_trusts_magic_not_names(libs, tmp_path):
    so = _copy(libs["plain"], tmp_path / "pkg" / "_ext.cpython-311-x86_64-linux-gnu.so")
    versioned = _copy(libs["plain"], tmp_path / "pkg.libs" / "libfoo.so.1.2")
    bare = _copy(libs["plain"], tmp_path / "bin" / "tool")
    (tmp_path / "pkg" / "libc.so").write_text("/* GNU ld script */\nGROUP ( libc.so.6 )\n")
    (tmp_path / "pkg" / "data.so").write_bytes(b"\x7fELX" + bytes(100))
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "link.so").symlink_to(so)
    (tmp_path / "pkg" / "dangling.so").symlink_to(tmp_path / "nowhere.so")

    assert elf_files(tmp_path) == sorted([so, versioned, bare])


def test_elf_files_empty_tree(tmp_path):
    assert elf_files(tmp_path) == []


# --- read_elf -------------------------------------------------------------


def test_read_elf_plain(libs):
    info = read_elf(libs["plain"])
    assert info.path == libs["plain"]
    assert info.machine == HOST
    assert info.elf_type == "ET_DYN"
    assert info.soname is None
    assert "libc.so.6" in info.needed
    assert info.max_glibc is not None and info.max_glibc <= (2, 17)
    assert info.glibc_versions == tuple(sorted(info.glibc_versions))
    assert info.has_debug_info  # gcc keeps .symtab unless told -s


def test_read_elf_new_glibc(libs):
    info = read_elf(libs["new"])
    assert info.soname == "libnew.so.1"
    assert (2, 36) in info.glibc_versions
    assert info.max_glibc == (2, 36)


def test_read_elf_stripped_has_no_debug_info(libs):
    assert not read_elf(libs["stripped"]).has_debug_info


def test_read_elf_without_version_needs(libs):
    info = read_elf(libs["nolibc"])
    assert info.glibc_versions == ()
    assert info.max_glibc is None
    assert info.needed == ()


def test_read_elf_rejects_non_elf(tmp_path):
    text = tmp_path / "libc.so"
    text.write_text("GROUP ( libc.so.6 )\n")
    with pytest.raises(VerifyError, match="not an ELF file"):
        read_elf(text)


@pytest.mark.parametrize("keep", [10, 60, 200, "half", -1])
def test_truncated_elf_is_a_verify_error(libs, tmp_path, keep):
    data = libs["plain"].read_bytes()
    cut = len(data) // 2 if keep == "half" else (len(data) + keep if keep < 0 else keep)
    broken = tmp_path / "libbroken.so"
    broken.write_bytes(data[:cut])
    with pytest.raises(VerifyError) as err:
        read_elf(broken)
    assert "libbroken.so" in err.value.message
    assert load_segments_problem(broken) is not None


# --- glibc_violations -----------------------------------------------------


@pytest.fixture
def tree(libs, tmp_path) -> Path:
    _copy(libs["new"], tmp_path / "newpkg" / "_roll.so")
    _copy(libs["plain"], tmp_path / "plainpkg" / "_add.so")
    (tmp_path / "plainpkg" / "fake.so").write_text("not an ELF file\n")
    return tmp_path


def test_glibc_violation_flags_new_library_only(tree):
    violations = glibc_violations(tree, (2, 26))
    assert violations == [
        GlibcViolation(
            path=tree / "newpkg" / "_roll.so",
            needs=(2, 36),
            allowed=(2, 26),
            symbols_versions=("arc4random@GLIBC_2.36",),
        )
    ]
    text = str(violations[0])
    assert "_roll.so" in text and "2.36" in text and "2.26" in text and "arc4random" in text


def test_glibc_violations_none_when_runtime_is_new_enough(tree):
    assert glibc_violations(tree, (2, 36)) == []


def test_glibc_violations_on_lambda_glibcs(tree):
    # Amazon Linux 1, 2 and 2023 all predate 2.36.
    for allowed in [(2, 17), (2, 26), (2, 34)]:
        assert [v.path.name for v in glibc_violations(tree, allowed)] == ["_roll.so"]


def test_glibc_violations_reports_corrupt_elf(tree, libs):
    data = libs["plain"].read_bytes()
    (tree / "plainpkg" / "_cut.so").write_bytes(data[: len(data) // 2])
    with pytest.raises(VerifyError, match="_cut.so"):
        glibc_violations(tree, (2, 26))


def test_glibc_scan_of_10000_files_is_fast(libs, tmp_path):
    for i in range(100):
        d = tmp_path / f"pkg{i}"
        d.mkdir()
        for j in range(99):
            (d / f"mod{j}.py").write_text("x = 1\n")
        _copy(libs["new" if i == 50 else "plain"], d / f"_ext{i}.so")
    start = time.perf_counter()
    violations = glibc_violations(tmp_path, (2, 26))
    elapsed = time.perf_counter() - start
    assert [v.path.name for v in violations] == ["_ext50.so"]
    assert elapsed < 10, f"scan took {elapsed:.1f}s"


# --- load_segments_problem ------------------------------------------------


def _load_headers(path: Path) -> list[tuple[int, int, int]]:
    """(file offset of the program header, p_offset, p_align) for each PT_LOAD."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 64 and elf.little_endian
        return [
            (elf["e_phoff"] + i * elf["e_phentsize"], seg["p_offset"], seg["p_align"])
            for i, seg in enumerate(elf.iter_segments())
            if seg["p_type"] == "PT_LOAD"
        ]


def _misaligned_copy(lib: Path, destination: Path) -> tuple[Path, int]:
    """A copy whose last PT_LOAD starts 0x10 bytes early: no longer congruent to its address."""
    broken = _copy(lib, destination)
    header_at, p_offset, p_align = _load_headers(broken)[-1]
    data = bytearray(broken.read_bytes())
    # Elf64_Phdr: p_type (4), p_flags (4), then p_offset (8).
    struct.pack_into("<Q", data, header_at + 8, p_offset - 0x10)
    broken.write_bytes(bytes(data))
    return broken, p_align


def test_load_segments_good_files(libs):
    for path in libs.values():
        assert load_segments_problem(path) is None, path


def test_load_segments_detects_misaligned_offset(libs, tmp_path):
    broken, p_align = _misaligned_copy(libs["plain"], tmp_path / "libmisaligned.so")
    problem = load_segments_problem(broken)
    assert problem is not None
    assert "not congruent modulo" in problem and hex(p_align) in problem
    assert problem.startswith("PT_LOAD ")


def test_load_segments_detects_segment_past_end(libs, tmp_path):
    broken = _copy(libs["plain"], tmp_path / "libpastend.so")
    header_at, p_offset, p_align = _load_headers(broken)[-1]
    data = bytearray(broken.read_bytes())
    # Keep congruence but point the segment one alignment unit further on.
    struct.pack_into("<Q", data, header_at + 8, p_offset + len(data) + p_align - (len(data) % p_align))
    broken.write_bytes(bytes(data))
    assert "past the end of the file" in load_segments_problem(broken)


def test_load_segments_problem_of_non_elf(tmp_path):
    text = tmp_path / "x.so"
    text.write_text("hello")
    assert load_segments_problem(text) == "not an ELF file"


def test_loader_agrees_with_the_check(libs, tmp_path):
    """The misalignment the check reports is the one ld.so refuses."""
    import ctypes

    broken, _ = _misaligned_copy(libs["plain"], tmp_path / "libldso.so")
    assert load_segments_problem(broken) is not None
    with pytest.raises(OSError, match="page-aligned|properly aligned"):
        ctypes.CDLL(os.fspath(broken))
