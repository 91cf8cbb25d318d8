"""builder.verify.loadcheck on real shared objects compiled here with gcc/g++ and edited with patchelf (no mocks).

Each test lays out a tree as Lambda would see it under /opt (``python/``, maybe
``lib/``) and checks it against the runtimes' tables in lambda_os.toml. The
libraries named "absent" or "unknown" are fakes compiled here under that
soname; what counts is only what the table says of the name.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from builder.errors import UsageError, VerifyError
from builder.runtimes import get_runtime, system_libraries
from builder.verify.elf import read_elf
from builder.verify.loadcheck import (
    LoadCheck,
    LoadProblem,
    check_tree,
    check_zips,
    how,
    raise_for,
)

EXT = "_ext.cpython-311-x86_64-linux-gnu.so"

PLAIN_C = "int add(int a, int b) { return a + b; }\n"
GETENV_C = '#include <stdlib.h>\nint flag(void) { return getenv("FLAG") != 0; }  /* GLIBC_2.2.5 */\n'
GL_C = "int glClear(int mask) { return mask; }\n"
USES_GL_C = "int glClear(int);\nint clear_all(void) { return glClear(0x4000); }\n"
USES_BUNDLE_C = "int clear_all(void);\nint ext_clear(void) { return clear_all(); }\n"
# std::filesystem lives in libstdc++ from GCC 9 on: GLIBCXX_3.4.26, above AL2's 3.4.24, within AL2023's 3.4.29.
FILESYSTEM_CPP = """
#include <filesystem>
#include <string>
extern "C" int stem_length(const char *p) { return (int)std::filesystem::path(p).stem().string().size(); }
"""
# GCC 12 gave condition_variable::wait a new default version: GLIBCXX_3.4.30, above even AL2023's 3.4.29.
CONDVAR_CPP = """
#include <condition_variable>
#include <mutex>
static std::mutex m; static std::condition_variable cv; static bool ready;
extern "C" void wait_ready() { std::unique_lock<std::mutex> lock(m); cv.wait(lock, []{ return ready; }); }
"""


def _libs(runtime: str = "python3.11", arch: str = "x86_64"):
    return system_libraries(get_runtime(runtime), arch)


AL2 = _libs("python3.11")
AL2023 = _libs("python3.12")


def _build(source: str, out: Path, *args: str, cxx: bool = False) -> Path:
    src = out.parent / (out.name + (".cpp" if cxx else ".c"))
    src.write_text(source)
    subprocess.run(["g++" if cxx else "gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src), *args], check=True)
    src.unlink()
    return out


@pytest.fixture(scope="session")
def objects(tmp_path_factory) -> dict[str, Path]:
    for tool in ("gcc", "g++", "patchelf"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to build the test shared objects")
    d = tmp_path_factory.mktemp("loadcheck-objects")
    gl = _build(GL_C, d / "libGL.so.1", "-Wl,-soname,libGL.so.1")
    bundle = _build(USES_GL_C, d / "libbundle-1a2b3c4d.so", "-Wl,-soname,libbundle-1a2b3c4d.so", str(gl))
    return {
        "plain": _build(PLAIN_C, d / "libplain.so"),
        "getenv": _build(GETENV_C, d / "libgetenv.so"),
        "gl": gl,
        "bundle": bundle,
        # The extension finds the bundled library through $ORIGIN RPATH, as auditwheel writes it.
        "ext_bundle": _build(USES_BUNDLE_C, d / "ext_bundle.so", str(bundle),
                             "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../pkg.libs"),
        "filesystem": _build(FILESYSTEM_CPP, d / "libfs.so", cxx=True),
        "condvar": _build(CONDVAR_CPP, d / "libcv.so", cxx=True),
    }


def _put(src: Path, dst: Path, *, soname: str | None = None, needed: tuple[str, ...] = (),
         rpath: str | None = None, runpath: str | None = None) -> Path:
    """Copy a compiled object into the tree and edit its dynamic section with patchelf."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    args = []
    if soname:
        args += ["--set-soname", soname]
    for name in needed:
        args += ["--add-needed", name]
    if args:
        subprocess.run(["patchelf", *args, str(dst)], check=True)
    if rpath is not None:
        subprocess.run(["patchelf", "--force-rpath", "--set-rpath", rpath, str(dst)], check=True)
    if runpath is not None:
        subprocess.run(["patchelf", "--set-rpath", runpath, str(dst)], check=True)
    return dst


def _one(check: LoadCheck) -> LoadProblem:
    assert len(check.problems) == 1, [p.describe() for p in check.problems]
    return check.problems[0]


def _opt(tree: Path, path: Path) -> str:
    return "/opt/" + path.relative_to(tree).as_posix()


# --- sonames: present, absent, unknown ---------------------------------------------


def test_plain_c_extension_needing_old_glibc_passes_everywhere(objects, tmp_path):
    _put(objects["getenv"], tmp_path / "python" / "pkg" / EXT)
    assert read_elf(tmp_path / "python" / "pkg" / EXT).max_glibc <= (2, 17)
    for runtime in ("python3.7", "python3.8", "python3.11", "python3.12", "python3.13"):
        check = check_tree(tmp_path, _libs(runtime))
        assert check.problems == () and check.ok, runtime
        assert check.elf_files == 1
        raise_for(check)  # nothing to raise


def test_library_present_on_al2_passes(objects, tmp_path):
    _put(objects["plain"], tmp_path / "python" / EXT, needed=("libz.so.1", "libstdc++.so.6", "ld-linux-x86-64.so.2"))
    assert AL2.status("libz.so.1") == "present"
    assert check_tree(tmp_path, AL2).problems == ()


def test_absent_libgl_fails_naming_the_chain(objects, tmp_path):
    ext = _put(objects["ext_bundle"], tmp_path / "python" / "pkg" / EXT)
    bundle = _put(objects["bundle"], tmp_path / "python" / "pkg.libs" / "libbundle-1a2b3c4d.so")
    assert "libGL.so.1" in read_elf(bundle).needed and read_elf(ext).rpath == ("$ORIGIN/../pkg.libs",)

    check = check_tree(tmp_path, AL2)
    problem = _one(check)
    assert problem == LoadProblem(
        file=_opt(tmp_path, bundle), kind="missing", soname="libGL.so.1", version=None,
        chain=(_opt(tmp_path, ext), _opt(tmp_path, bundle)), severity="error",
        detail="absent from Amazon Linux 2 x86_64")
    assert not check.ok and check.errors == (problem,) and check.warnings == ()
    with pytest.raises(VerifyError) as caught:
        raise_for(check)
    message = caught.value.message
    assert caught.value.exit_code == 4 and "\n" not in message
    for part in ("libGL.so.1", "/opt/python/pkg/" + EXT, "/opt/python/pkg.libs/libbundle-1a2b3c4d.so"):
        assert part in message
    assert f"/opt/python/pkg/{EXT} -> /opt/python/pkg.libs/libbundle-1a2b3c4d.so" in message
    assert "opencv-python-headless" in caught.value.hint and "layers build --image" in caught.value.hint
    # AL2023 lacks it too; AL1 had mesa-libGL.
    assert _one(check_tree(tmp_path, AL2023)).severity == "error"
    assert check_tree(tmp_path, _libs("python3.7")).problems == ()


def test_unknown_soname_on_al2023_warns_and_passes(objects, tmp_path):
    _put(objects["plain"], tmp_path / "python" / EXT, needed=("libfrobnicate.so.3",))
    assert AL2023.status("libfrobnicate.so.3") == "unknown"
    check = check_tree(tmp_path, AL2023)
    problem = _one(check)
    assert (problem.kind, problem.soname, problem.severity) == ("missing", "libfrobnicate.so.3", "warning")
    assert check.ok and check.warnings == (problem,)
    raise_for(check)  # a warning never fails
    assert "table partial" in check.how and not check.complete
    # AL2's table is complete: a name it does not list is absent.
    assert _one(check_tree(tmp_path, AL2)).severity == "error"


def test_libpython_is_the_interpreters(objects, tmp_path):
    _put(objects["plain"], tmp_path / "python" / EXT, needed=("libpython3.11.so.1.0",))
    assert check_tree(tmp_path, AL2).problems == ()


# --- where ld.so looks --------------------------------------------------------------


@pytest.mark.parametrize("origin", ["$ORIGIN", "${ORIGIN}"])
def test_bundled_via_origin_rpath_resolves_in_the_layer(objects, tmp_path, origin):
    _put(objects["plain"], tmp_path / "python" / "pkg" / EXT, needed=("libfoo-9f8e7d6c.so.1",),
         rpath=f"{origin}/../pkg.libs")
    _put(objects["plain"], tmp_path / "python" / "pkg.libs" / "libfoo-9f8e7d6c.so.1", needed=("libm.so.6",))
    assert check_tree(tmp_path, AL2).problems == ()


def test_bundled_library_without_a_path_to_it_is_missing(objects, tmp_path):
    _put(objects["plain"], tmp_path / "python" / "pkg" / EXT, needed=("libfoo-9f8e7d6c.so.1",))
    _put(objects["plain"], tmp_path / "python" / "pkg.libs" / "libfoo-9f8e7d6c.so.1")
    problem = _one(check_tree(tmp_path, AL2))
    assert (problem.file, problem.soname, problem.severity) == ("/opt/python/pkg/" + EXT, "libfoo-9f8e7d6c.so.1", "error")


def test_opt_lib_is_on_ld_library_path(objects, tmp_path):
    _put(objects["plain"], tmp_path / "python" / EXT, needed=("libfoo.so.1", "libGL.so.1"))
    _put(objects["plain"], tmp_path / "lib" / "libfoo.so.1.2.3", soname="libfoo.so.1")
    (tmp_path / "lib" / "libfoo.so.1").symlink_to("libfoo.so.1.2.3")
    # A copy in /opt/lib satisfies a soname the image lacks.
    _put(objects["gl"], tmp_path / "lib" / "libGL.so.1")
    check = check_tree(tmp_path, AL2)
    assert check.problems == () and check.elf_files == 3


def test_opt_lib_cannot_override_a_system_library_but_rpath_can(objects, tmp_path):
    """/lib64 comes before /opt/lib on LD_LIBRARY_PATH: the system libstdc++ (GLIBCXX_3.4.24) is the one loaded."""
    ext = _put(objects["filesystem"], tmp_path / "python" / EXT)
    _put(objects["plain"], tmp_path / "lib" / "libstdc++.so.6", soname="libstdc++.so.6")
    problem = _one(check_tree(tmp_path, AL2))
    assert (problem.kind, problem.soname, problem.version) == ("version", "libstdc++.so.6", "GLIBCXX_3.4.26")
    # Through DT_RPATH the layer's copy comes first, and versions needed from a bundled library are its own business.
    subprocess.run(["patchelf", "--force-rpath", "--set-rpath", "$ORIGIN/../lib", str(ext)], check=True)
    assert check_tree(tmp_path, AL2).problems == ()


def _two_copies(objects, tree: Path) -> None:
    """libfoo.so.1 twice: a good one in python/good/, one needing libGL.so.1 in /opt/lib."""
    _put(objects["plain"], tree / "python" / "good" / "libfoo.so.1", soname="libfoo.so.1")
    _put(objects["plain"], tree / "lib" / "libfoo.so.1", soname="libfoo.so.1", needed=("libGL.so.1",))


def test_rpath_comes_before_ld_library_path(objects, tmp_path):
    _two_copies(objects, tmp_path)
    _put(objects["plain"], tmp_path / "python" / EXT, needed=("libfoo.so.1",), rpath="$ORIGIN/good")
    # The extension gets the good copy; the one in /opt/lib, which nothing loads, is still checked on its own.
    problem = _one(check_tree(tmp_path, AL2))
    assert (problem.soname, problem.chain) == ("libGL.so.1", ("/opt/lib/libfoo.so.1",))


def test_runpath_comes_after_ld_library_path(objects, tmp_path):
    _two_copies(objects, tmp_path)
    ext = _put(objects["plain"], tmp_path / "python" / EXT, needed=("libfoo.so.1",), runpath="$ORIGIN/good")
    assert read_elf(ext).runpath == ("$ORIGIN/good",) and read_elf(ext).rpath == ()
    problem = _one(check_tree(tmp_path, AL2))
    assert problem.soname == "libGL.so.1"
    assert problem.chain == ("/opt/python/" + EXT, "/opt/lib/libfoo.so.1")


def test_a_loaders_rpath_serves_its_dependencies_unless_they_have_runpath(objects, tmp_path):
    """glibc walks DT_RPATH up the loader chain for an object without DT_RUNPATH."""
    _put(objects["plain"], tmp_path / "python" / "pkg" / EXT, needed=("liba.so",), rpath="$ORIGIN/../pkg.libs")
    liba = _put(objects["plain"], tmp_path / "python" / "pkg.libs" / "liba.so", soname="liba.so", needed=("libb.so",))
    _put(objects["plain"], tmp_path / "python" / "pkg.libs" / "libb.so", soname="libb.so")
    assert check_tree(tmp_path, AL2).problems == ()
    subprocess.run(["patchelf", "--set-rpath", "/nonexistent", str(liba)], check=True)  # a DT_RUNPATH
    problem = _one(check_tree(tmp_path, AL2))
    assert (problem.file, problem.soname) == ("/opt/python/pkg.libs/liba.so", "libb.so")
    assert problem.chain == ("/opt/python/pkg/" + EXT, "/opt/python/pkg.libs/liba.so")


def test_a_cycle_of_bundled_libraries_is_still_checked(objects, tmp_path):
    _put(objects["plain"], tmp_path / "lib" / "liba.so", soname="liba.so", needed=("libb.so",))
    _put(objects["plain"], tmp_path / "lib" / "libb.so", soname="libb.so", needed=("liba.so", "libGL.so.1"))
    problem = _one(check_tree(tmp_path, AL2))
    assert (problem.file, problem.soname) == ("/opt/lib/libb.so", "libGL.so.1")


# --- symbol versions ------------------------------------------------------------------


def test_glibcxx_above_al2_ceiling(objects, tmp_path):
    _put(objects["filesystem"], tmp_path / "python" / EXT)
    needs = read_elf(tmp_path / "python" / EXT).versions_needed_from("libstdc++.so.6")
    newest = max(tuple(map(int, v.split("_")[1].split("."))) for v in needs if v.startswith("GLIBCXX_"))
    assert (3, 4, 24) < newest <= (3, 4, 29), needs

    problem = _one(check_tree(tmp_path, AL2))
    assert (problem.kind, problem.soname, problem.severity) == ("version", "libstdc++.so.6", "error")
    assert problem.version == "GLIBCXX_" + ".".join(map(str, newest))
    assert "GLIBCXX_3.4.24" in problem.detail
    with pytest.raises(VerifyError, match=r"GLIBCXX_3\.4\.2[5-9]") as caught:
        raise_for(check_tree(tmp_path, AL2))
    assert "layers build" in caught.value.hint
    # Within AL2023's ceiling (GCC 11's libstdc++).
    assert check_tree(tmp_path, AL2023).problems == ()


def test_glibcxx_above_al2023_ceiling(objects, tmp_path):
    _put(objects["condvar"], tmp_path / "python" / EXT)
    assert "GLIBCXX_3.4.30" in read_elf(tmp_path / "python" / EXT).versions_needed_from("libstdc++.so.6")
    for libs in (AL2, AL2023):
        problem = _one(check_tree(tmp_path, libs))
        assert (problem.version, problem.severity) == ("GLIBCXX_3.4.30", "error")
    assert "GLIBCXX_3.4.29" in _one(check_tree(tmp_path, AL2023)).detail


def test_bundled_librarys_own_needs_are_checked_with_its_chain(objects, tmp_path):
    _put(objects["plain"], tmp_path / "python" / "pkg" / EXT, needed=("libfs-0a1b.so",), rpath="$ORIGIN/../pkg.libs")
    _put(objects["filesystem"], tmp_path / "python" / "pkg.libs" / "libfs-0a1b.so", soname="libfs-0a1b.so")
    problem = _one(check_tree(tmp_path, AL2))
    assert problem.file == "/opt/python/pkg.libs/libfs-0a1b.so" and problem.kind == "version"
    assert problem.chain == ("/opt/python/pkg/" + EXT, "/opt/python/pkg.libs/libfs-0a1b.so")


def test_unknown_ceiling_warns(objects, tmp_path):
    _put(objects["filesystem"], tmp_path / "python" / EXT)
    assert any(v.startswith("GCC_") for v in read_elf(tmp_path / "python" / EXT).versions_needed_from("libgcc_s.so.1"))
    libs = dataclasses.replace(AL2023, ceilings={**AL2023.ceilings, "GCC": None})
    problem = _one(check_tree(tmp_path, libs))
    assert (problem.kind, problem.soname, problem.severity) == ("version", "libgcc_s.so.1", "warning")
    assert problem.version.startswith("GCC_") and "ceiling" in problem.detail


def test_glibc_above_the_runtimes(objects, tmp_path):
    # arc4random is GLIBC_2.36 (this host's glibc): above every runtime's.
    _build('#include <stdlib.h>\nunsigned roll(void) { return arc4random(); }\n', tmp_path / "libroll.so")
    _put(tmp_path / "libroll.so", tmp_path / "opt" / "python" / EXT)
    for runtime, ceiling in (("python3.7", "2.17"), ("python3.11", "2.26"), ("python3.13", "2.34")):
        problem = _one(check_tree(tmp_path / "opt", _libs(runtime)))
        assert (problem.version, problem.soname) == ("GLIBC_2.36", "libc.so.6")
        assert f"GLIBC_{ceiling}" in problem.detail


# --- machines and damaged files -----------------------------------------------------


def test_wrong_machine_fails(objects, tmp_path):
    so = _put(objects["plain"], tmp_path / "python" / EXT)
    data = bytearray(so.read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # e_machine = EM_AARCH64
    so.write_bytes(bytes(data))
    problem = _one(check_tree(tmp_path, AL2))
    assert (problem.kind, problem.file, problem.severity) == ("machine", "/opt/python/" + EXT, "error")
    assert "aarch64" in problem.detail
    with pytest.raises(VerifyError, match="aarch64") as caught:
        raise_for(check_tree(tmp_path, AL2))
    assert "--arch" in caught.value.hint
    # The same file is right for arm64.
    assert check_tree(tmp_path, _libs("python3.11", "arm64")).problems == ()


def test_x86_64_layer_checked_for_arm64_fails(objects, tmp_path):
    _put(objects["plain"], tmp_path / "python" / EXT)
    check = check_tree(tmp_path, _libs("python3.12", "arm64"))
    assert [p.kind for p in check.problems] == ["machine"]
    assert check.how == "static load check against Amazon Linux 2023 arm64 (table partial: sonames it does not list are warnings)"


def test_damaged_elf_is_an_error_not_a_crash(objects, tmp_path):
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / EXT).write_bytes(objects["plain"].read_bytes()[:200])
    problem = _one(check_tree(tmp_path, AL2))
    assert problem.kind == "unreadable" and problem.severity == "error"


def test_non_elf_and_object_files_are_not_loaded(objects, tmp_path):
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "libc.so").write_text("GROUP ( libc.so.6 )\n")
    src = tmp_path / "x.c"
    src.write_text(PLAIN_C)
    subprocess.run(["gcc", "-c", "-o", str(tmp_path / "python" / "x.o"), str(src)], check=True)
    check = check_tree(tmp_path, AL2)
    assert check.problems == () and check.elf_files == 1


def test_how_and_json(objects, tmp_path):
    _put(objects["plain"], tmp_path / "python" / EXT, needed=("libGL.so.1",))
    check = check_tree(tmp_path, AL2)
    assert check.how == how(AL2) == "static load check against Amazon Linux 2 x86_64 (table complete)"
    data = check.to_json()
    assert data["ok"] is False and data["errors"] == 1 and data["warnings"] == 0 and data["elf_files"] == 1
    assert data["problems"] == [{"file": "/opt/python/" + EXT, "kind": "missing", "soname": "libGL.so.1",
                                 "version": None, "chain": ["/opt/python/" + EXT], "severity": "error",
                                 "detail": "absent from Amazon Linux 2 x86_64"}]
    with pytest.raises(dataclasses.FrozenInstanceError):
        check.problems[0].file = "x"  # type: ignore[misc]


# --- several zips as one /opt -------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes | Path], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data.read_bytes() if isinstance(data, Path) else data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, target)
    return path


def test_zips_merge_in_order(objects, tmp_path):
    ext = _put(objects["plain"], tmp_path / "b" / EXT, needed=("libfoo.so.1",))
    good = _put(objects["plain"], tmp_path / "b" / "good.so", soname="libfoo.so.1")
    bad = _put(objects["plain"], tmp_path / "b" / "bad.so", soname="libfoo.so.1", needed=("libGL.so.1",))
    first = _zip(tmp_path / "first.zip", {"python/" + EXT: ext, "lib/libfoo.so.1": bad, "python/README": b"hi"})
    second = _zip(tmp_path / "second.zip", {"lib/libfoo.so.1": good})
    assert check_zips([first, second], AL2).problems == ()
    problem = _one(check_zips([second, first], AL2))
    assert problem.chain == ("/opt/python/" + EXT, "/opt/lib/libfoo.so.1")
    # A later non-ELF file of that name hides the earlier library.
    text = _zip(tmp_path / "text.zip", {"lib/libfoo.so.1": b"not a library"})
    assert _one(check_zips([first, second, text], AL2)).soname == "libfoo.so.1"


def test_zip_symlinks_inside_the_layer_resolve(objects, tmp_path):
    ext = _put(objects["plain"], tmp_path / "b" / EXT, needed=("libfoo.so.1",))
    lib = _put(objects["plain"], tmp_path / "b" / "libfoo.so.1.0", soname="libfoo.so.1")
    layer = _zip(tmp_path / "l.zip", {"python/" + EXT: ext, "lib/libfoo.so.1.0": lib},
                 links={"lib/libfoo.so.1": "libfoo.so.1.0"})
    assert check_zips([layer], AL2).problems == ()
    absolute = _zip(tmp_path / "a.zip", {"python/" + EXT: ext, "lib/libfoo.so.1.0": lib},
                    links={"lib/libfoo.so.1": "/opt/lib/libfoo.so.1.0"})
    assert check_zips([absolute], AL2).problems == ()


@pytest.mark.parametrize("members,links", [
    ({"../evil.so": b"x"}, {}),
    ({"/etc/evil.so": b"x"}, {}),
    ({"python/../../evil.so": b"x"}, {}),
    ({}, {"python/x.so": "../../etc/passwd"}),
    ({}, {"lib/libc.so.6": "/lib64/libc.so.6"}),
    ({}, {"python/up": "..", "python/up2": "up/.."}),  # each inside alone, outside together
], ids=["dotdot", "absolute", "nested-dotdot", "link-out", "absolute-link-out", "link-chain-out"])
def test_zip_members_must_stay_inside_opt(tmp_path, members, links):
    layer = _zip(tmp_path / "evil.zip", members, links)
    with pytest.raises(UsageError, match="outside /opt"):
        check_zips([layer], AL2)
    assert not (tmp_path.parent / "evil.so").exists()


def test_not_a_zip_is_a_usage_error(tmp_path):
    (tmp_path / "x.zip").write_text("no")
    with pytest.raises(UsageError, match="as a zip"):
        check_zips([tmp_path / "x.zip"], AL2)


def test_zip_check_extracts_only_elf_files(objects, tmp_path, monkeypatch):
    """Performance: a zip of many small non-ELF files costs a 4-byte read each, nothing written."""
    members = {f"python/pkg/m{i}.py": b"x = 1\n" * 50 for i in range(2000)}
    members["python/" + EXT] = objects["getenv"]
    layer = _zip(tmp_path / "many.zip", members)
    written = []
    real_open = open

    def counting_open(file, mode="r", *args, **kwargs):
        if "w" in mode:
            written.append(os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    check = check_zips([layer], AL2)
    assert check.problems == () and check.elf_files == 1
    assert [Path(w).name for w in written] == [EXT]
