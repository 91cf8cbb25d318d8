"""builder.strip.symbols with the real tools: gcc, GNU strip, llvm-strip, patchelf.

The breakage binstrip guards against is reproduced for real twice here:

* x86_64: a gcc-built library grown by three patchelf edits (what auditwheel
  does to a wheel's libraries), then ``strip --strip-unneeded``: ld.so says
  "ELF load command address/offset not page-aligned". Needs patchelf.
* aarch64: numpy 2.2.6's manylinux2014 aarch64 wheel (downloaded once with
  pip into pytest's cache): llvm-strip breaks ``lapack_lite`` the same way.

A fake strip on PATH (the one seam) covers the cases no real tool produces on
demand: a corrupting strip, a failing strip.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from builder.runner import Runner
from builder.strip.symbols import NO_DEBUG, VENDORED, StripOutcome, find_strip_tool, strip_shared_objects
from builder.verify.elf import load_segments_problem, read_elf

HOST = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())

DEBUG_C = """
#include <stdio.h>
#include <string.h>
struct point { double x, y, z; const char *label; int tags[8]; };
static struct point table[64];
int fill(int n) {
    for (int i = 0; i < n && i < 64; i++) {
        table[i].x = i; table[i].y = i * 2.0; table[i].z = i * 3.0;
        table[i].label = "p"; memset(table[i].tags, i, sizeof table[i].tags);
    }
    return n < 64 ? n : 64;
}
double sum(int n) {
    double s = 0;
    for (int i = 0; i < n && i < 64; i++) s += table[i].x + table[i].y + table[i].z;
    return s;
}
int describe(char *buf, int len, int i) { return snprintf(buf, len, "%s%d", table[i].label, i); }
"""


@pytest.fixture(scope="session")
def debug_lib(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build test shared objects")
    d = tmp_path_factory.mktemp("binstrip-src")
    (d / "dbg.c").write_text(DEBUG_C)
    out = d / "libdbg.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-g", "-O0", "-Wl,-soname,libdbg.so.1", "-o", str(out), str(d / "dbg.c")],
        check=True,
    )
    return out


def _place(src: Path, dst: Path, mode: int = 0o755) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    dst.chmod(mode)
    return dst


def _loads(path: Path) -> None:
    lib = ctypes.CDLL(os.fspath(path))
    lib.sum.restype = ctypes.c_double
    assert lib.fill(10) == 10
    assert lib.sum(10) == 6 * 45


# --- the normal case ------------------------------------------------------


def test_strips_debug_info_and_still_loads(debug_lib, tmp_path):
    lib = _place(debug_lib, tmp_path / "pkg" / "_dbg.so", 0o750)
    before = read_elf(lib)
    size = lib.stat().st_size
    runner = Runner()

    outcome = strip_shared_objects(tmp_path, runner=runner, machine=HOST)

    assert [p for p, _ in outcome.stripped] == [lib]
    assert outcome.restored == () and outcome.skipped == ()
    saved = outcome.stripped[0][1]
    assert saved > 0 and lib.stat().st_size == size - saved == size - outcome.bytes_saved
    after = read_elf(lib)
    assert not after.has_debug_info
    assert (after.soname, after.needed, after.machine) == (before.soname, before.needed, before.machine)
    assert stat.S_IMODE(lib.stat().st_mode) == 0o750
    assert sorted(os.listdir(lib.parent)) == ["_dbg.so"]  # no temporary file left behind
    _loads(lib)
    strip_runs = [argv for argv in runner.history if "--strip-unneeded" in argv]
    # The tool works on a copy beside the original; the original is only replaced once checked.
    assert len(strip_runs) == 1 and Path(strip_runs[0][-1]).parent == lib.parent
    assert Path(strip_runs[0][-1]).name.startswith("._dbg.so.") and str(lib) not in strip_runs[0]


def test_second_run_has_nothing_to_do(debug_lib, tmp_path):
    lib = _place(debug_lib, tmp_path / "_dbg.so")
    strip_shared_objects(tmp_path, runner=Runner(), machine=HOST)
    again = strip_shared_objects(tmp_path, runner=Runner(), machine=HOST)
    assert again.stripped == () and again.skipped == ((lib, NO_DEBUG),)


def test_vendored_and_non_elf_and_stripped_files_are_skipped(debug_lib, tmp_path):
    dist_libs = _place(debug_lib, tmp_path / "foo.libs" / "libdbg-1a2b3c.so")
    pkg_libs = _place(debug_lib, tmp_path / "bar" / ".libs" / "libdbg.so.1.0")
    ours = _place(debug_lib, tmp_path / "foo" / "_dbg.so")
    (tmp_path / "foo" / "linker_script.so").write_text("INPUT(-lc)\n")
    vendored_bytes = dist_libs.read_bytes()

    outcome = strip_shared_objects(tmp_path, runner=Runner(), machine=HOST)

    assert [p for p, _ in outcome.stripped] == [ours]
    assert outcome.skipped == ((pkg_libs, VENDORED), (dist_libs, VENDORED))
    assert dist_libs.read_bytes() == vendored_bytes

    forced = strip_shared_objects(tmp_path, runner=Runner(), machine=HOST, skip_vendored=False)
    assert sorted(p for p, _ in forced.stripped) == [pkg_libs, dist_libs]
    assert forced.skipped == ((ours, NO_DEBUG),)


def test_many_files_concurrently_sorted_with_progress(debug_lib, tmp_path):
    libs = [_place(debug_lib, tmp_path / f"pkg{i % 3}" / f"_m{i:02d}.so") for i in range(12)]
    calls = []
    outcome = strip_shared_objects(
        tmp_path, runner=Runner(), machine=HOST, workers=4, progress=lambda *a: calls.append(a)
    )
    assert [p for p, _ in outcome.stripped] == sorted(libs)
    assert [done for done, _, _ in calls] == list(range(1, 13))
    assert {total for _, total, _ in calls} == {12}
    assert sorted(p for _, _, p in calls) == sorted(libs)


def test_other_machine_in_layer_is_skipped(debug_lib, tmp_path):
    lib = _place(debug_lib, tmp_path / "_dbg.so")
    other = "aarch64" if HOST == "x86_64" else "x86_64"
    outcome = strip_shared_objects(tmp_path, runner=Runner(), machine=other)
    assert outcome.skipped == ((lib, f"{HOST} object in a {other} layer"),)


# --- find_strip_tool ------------------------------------------------------


def test_find_strip_tool_on_this_host():
    runner = Runner()
    own = find_strip_tool(HOST, runner)
    assert own is not None and shutil.which(own[0])
    assert find_strip_tool("arm64", runner) == find_strip_tool("aarch64", runner)
    assert find_strip_tool("EM_386", runner) is None
    if HOST == "x86_64" and shutil.which("strip"):
        assert own == ["strip"]
        # Debian's x86_64 binutils cannot read aarch64 objects.
        assert find_strip_tool("aarch64", runner) != ["strip"]


def test_find_strip_tool_with_only_llvm_or_nothing():
    runner = Runner()
    only_llvm = {"llvm-strip": "/usr/bin/llvm-strip"}
    assert find_strip_tool("aarch64", runner, which=only_llvm.get) == ["llvm-strip"]
    assert find_strip_tool("x86_64", runner, which=only_llvm.get) == ["llvm-strip"]
    assert find_strip_tool("x86_64", runner, which=lambda name: None) is None
    assert runner.history == []  # nothing found, nothing run


# --- a strip that breaks or fails (fake tool on PATH) ---------------------

FAKE_STRIP = """#!{python}
# Fake strip for tests: answers --info like GNU strip, "strips" each file
# named on the command line in place: it {what}.
import shutil, struct, sys
if "--info" in sys.argv:
    print("elf64-x86-64\\n elf64-littleaarch64")
    sys.exit(0)
for src in [arg for arg in sys.argv[1:] if not arg.startswith("-")]:
    out = src
{body}
"""

CORRUPT = """
data = bytearray(open(src, "rb").read())
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
loads = [phoff + i * phentsize for i in range(phnum) if struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 1]
offset, = struct.unpack_from("<Q", data, loads[-1] + 8)
struct.pack_into("<Q", data, loads[-1] + 8, offset - 0x10)
open(out, "wb").write(bytes(data))
"""

FAIL = """
print("strip: warning: something odd", file=sys.stderr)
print("strip: " + src + ": file format not recognized", file=sys.stderr)
sys.exit(1)
"""


@pytest.fixture
def fake_strip(tmp_path, monkeypatch):
    def install(what: str, body: str) -> Path:
        bindir = tmp_path / "fakebin"
        bindir.mkdir()
        tool = bindir / "strip"
        tool.write_text(FAKE_STRIP.format(python=sys.executable, what=what, body=textwrap.indent(body, "    ")))
        tool.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
        return tool

    return install


def test_broken_result_is_restored_byte_identical(debug_lib, tmp_path, fake_strip):
    if HOST != "x86_64":
        pytest.fail("the fake strip rewrites ELF64 little-endian x86_64 headers")
    fake_strip("corrupts the last PT_LOAD's p_offset", CORRUPT)
    lib = _place(debug_lib, tmp_path / "tree" / "_dbg.so", 0o644)
    original = lib.read_bytes()

    outcome = strip_shared_objects(tmp_path / "tree", runner=Runner(), machine=HOST)

    assert outcome.stripped == ()
    [(path, reason)] = outcome.restored
    assert path == lib
    assert "not congruent modulo" in reason
    assert lib.read_bytes() == original
    assert stat.S_IMODE(lib.stat().st_mode) == 0o644
    assert os.listdir(lib.parent) == ["_dbg.so"]
    _loads(lib)


def test_failing_tool_keeps_original_with_its_last_line(debug_lib, tmp_path, fake_strip):
    fake_strip("fails", FAIL)
    lib = _place(debug_lib, tmp_path / "tree" / "_dbg.so")
    original = lib.read_bytes()

    outcome = strip_shared_objects(tmp_path / "tree", runner=Runner(), machine=HOST)

    [(path, reason)] = outcome.restored
    assert path == lib
    assert reason == f"strip failed: strip: {lib}: file format not recognized"
    assert lib.read_bytes() == original
    assert os.listdir(lib.parent) == ["_dbg.so"]


def test_no_tool_for_machine_is_skipped(debug_lib, tmp_path, monkeypatch):
    lib = _place(debug_lib, tmp_path / "tree" / "_dbg.so")
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    runner = Runner()
    outcome = strip_shared_objects(tmp_path / "tree", runner=runner, machine=HOST)
    assert outcome.skipped == ((lib, f"no strip tool for {HOST}"),)
    assert runner.history == []


# --- the real breakage: patchelf, then strip ------------------------------


PATCHELF_EDITS = {
    "rpath": ["--set-rpath", "$ORIGIN/../foo.libs:/opt/" + "x" * 500],
    "soname": ["--set-soname", "libdbg-8f3a2c1d.so.1"],
    "needed": ["--add-needed", "libz.so.1"],
}


def _patchelf(lib: Path, *edits: str) -> None:
    """Grow the dynamic tables with separate patchelf calls, as auditwheel repair does.

    Each call that grows .dynstr appends a PT_LOAD segment. Measured here
    (patchelf 0.14, binutils 2.40, LLVM 14) over all orders of 1-3 such
    edits: llvm-strip breaks 81 of 85 results, GNU strip 33 (only after 3
    edits, e.g. rpath, soname, needed in that order).
    """
    for edit in edits:
        subprocess.run([PATCHELF, *PATCHELF_EDITS[edit], str(lib)], check=True)


PATCHELF = shutil.which("patchelf")



@pytest.mark.parametrize(
    "tool, edits",
    [("strip", ("rpath", "soname", "needed")), ("llvm-strip", ("needed",))],
)
def test_real_patchelf_then_strip_breakage_is_restored(debug_lib, tmp_path, monkeypatch, tool, edits):
    assert PATCHELF, "patchelf is part of the test machine (.ci/run installs it)"
    real_tool = shutil.which(tool)
    if real_tool is None or (tool == "strip" and HOST != "x86_64"):
        pytest.fail(f"needs {tool} for {HOST}")
    lib = _place(debug_lib, tmp_path / "tree" / "pkg" / "_dbg.so")
    _patchelf(lib, *edits)
    _loads(lib)  # patchelf's output itself is fine
    original = lib.read_bytes()

    # Precondition: the tool alone really breaks this file, as ld.so confirms.
    direct = tmp_path / "direct.so"
    subprocess.run([real_tool, "--strip-unneeded", "-o", str(direct), str(lib)], check=True)
    if load_segments_problem(direct) is None:
        pytest.fail(f"{tool} does not break this patchelf'ed library on this host")
    with pytest.raises(OSError, match="page-aligned|properly aligned"):
        ctypes.CDLL(os.fspath(direct))

    # Only this tool on PATH, so binstrip picks it.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / tool).symlink_to(real_tool)
    monkeypatch.setenv("PATH", str(bindir))
    runner = Runner()
    outcome = strip_shared_objects(tmp_path / "tree", runner=runner, machine=HOST)

    assert {argv[0] for argv in runner.history if "--strip-unneeded" in argv} == {tool}
    [(path, reason)] = outcome.restored
    assert path == lib and "not congruent modulo" in reason
    assert lib.read_bytes() == original
    assert os.listdir(lib.parent) == ["_dbg.so"]
    _loads(lib)


# --- aarch64: a real wheel, stripped by a tool that can read it -----------

NUMPY_WHEEL = "numpy==2.2.6"
AARCH64_MEMBERS = {
    "numpy/random/_sfc64.cpython-311-aarch64-linux-gnu.so",
    "numpy/_core/_rational_tests.cpython-311-aarch64-linux-gnu.so",
    "numpy/linalg/lapack_lite.cpython-311-aarch64-linux-gnu.so",  # llvm-strip breaks it
    "numpy.libs/libgfortran-daac5196-038a5e3c.so.5.0.0",
}


@pytest.fixture(scope="session")
def numpy_aarch64_wheel(request, tmp_path_factory) -> Path:
    """numpy's aarch64 wheel, downloaded once into pytest's cache directory."""
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    where = cache.mkdir("numpy-aarch64-wheel") if cache is not None else tmp_path_factory.mktemp("wheel")
    found = sorted(where.glob("numpy-2.2.6-*aarch64*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--platform", "manylinux2014_aarch64", "--python-version", "3.11",
               "--implementation", "cp", "--abi", "cp311", NUMPY_WHEEL, "-d", str(where)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        found = sorted(where.glob("numpy-2.2.6-*aarch64*.whl"))
        if proc.returncode != 0 or not found:
            pytest.fail(f"cannot download {NUMPY_WHEEL} for aarch64: {proc.stderr.strip()[-300:]}")
    return found[0]


@pytest.fixture
def aarch64_tree(numpy_aarch64_wheel, tmp_path) -> Path:
    tree = tmp_path / "python"
    with zipfile.ZipFile(numpy_aarch64_wheel) as wheel:
        for member in AARCH64_MEMBERS:
            wheel.extract(member, tree)
    return tree


def test_aarch64_objects_are_stripped_by_a_tool_that_reads_them(aarch64_tree, numpy_aarch64_wheel):
    tool = find_strip_tool("aarch64", Runner())
    if tool is None:
        pytest.fail("no strip for aarch64 here (install llvm)")
    if HOST == "x86_64":
        assert tool != ["strip"]
    runner = Runner()

    outcome = strip_shared_objects(aarch64_tree, runner=runner, machine="arm64")

    used = {argv[0] for argv in runner.history if "--strip-unneeded" in argv}
    assert used == {tool[0]}
    sfc64 = aarch64_tree / "numpy/random/_sfc64.cpython-311-aarch64-linux-gnu.so"
    rational = aarch64_tree / "numpy/_core/_rational_tests.cpython-311-aarch64-linux-gnu.so"
    lapack = aarch64_tree / "numpy/linalg/lapack_lite.cpython-311-aarch64-linux-gnu.so"
    gfortran = aarch64_tree / "numpy.libs/libgfortran-daac5196-038a5e3c.so.5.0.0"
    assert {p for p, _ in outcome.stripped} >= {sfc64, rational}
    assert outcome.bytes_saved > 0
    for path, _ in outcome.stripped:
        info = read_elf(path)
        assert info.machine == "aarch64" and not info.has_debug_info
        assert load_segments_problem(path) is None
    assert (gfortran, VENDORED) in outcome.skipped

    with zipfile.ZipFile(numpy_aarch64_wheel) as wheel:
        for path, _ in outcome.restored:
            assert path.read_bytes() == wheel.read(path.relative_to(aarch64_tree).as_posix())
    if tool == ["llvm-strip"]:
        # Reproduces the real breakage: llvm-strip packs the segments patchelf added.
        assert [p for p, _ in outcome.restored] == [lapack]
        assert "not congruent modulo 0x10000" in outcome.restored[0][1]


def test_gnu_strip_of_another_machine_is_never_used(aarch64_tree, monkeypatch, tmp_path):
    if HOST != "x86_64" or not shutil.which("strip"):
        pytest.fail("needs an x86_64 host with GNU strip")
    # Only the host's GNU strip on PATH: aarch64 files must be skipped, not fed to it.
    bindir = tmp_path / "onlystrip"
    bindir.mkdir()
    (bindir / "strip").symlink_to(shutil.which("strip"))
    monkeypatch.setenv("PATH", str(bindir))
    runner = Runner()

    outcome = strip_shared_objects(aarch64_tree, runner=runner, machine="aarch64", skip_vendored=False)

    assert outcome.stripped == () and outcome.restored == ()
    assert {reason for _, reason in outcome.skipped} == {"no strip tool for aarch64", NO_DEBUG}
    assert all("--strip-unneeded" not in argv for argv in runner.history)


def test_outcome_bytes_saved():
    outcome = StripOutcome(stripped=((Path("a"), 10), (Path("b"), 5)), restored=(), skipped=())
    assert outcome.bytes_saved == 15
