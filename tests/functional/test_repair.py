"""builder.verify.repair on real objects: gcc-built Python extensions and libraries, this host's libbz2, patchelf.

The graft is proven by running it: python3.11 imports the repaired extension inside ``unshare -m`` with the
host's libbz2 hidden under a bind-mounted /dev/null, which the unrepaired extension cannot survive. The
refusals use small libraries compiled here: one that needs glibc 2.27 (``memfd_create``, above Amazon Linux 2's
2.26), one that needs a library the build environment does not have.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from builder.errors import VerifyError
from builder.runner import Runner
from builder.runtimes import get_runtime, system_libraries
from builder.verify.elf import load_segments_problem, read_elf
from builder.verify.interpreters import find_interpreter
from builder.verify.repair import (
    Fetched,
    RepairReport,
    container_fetch,
    fetch_located,
    hashed_name,
    host_fetch,
    host_locate,
    ldconfig_candidates,
    needs_from_problems,
    repair,
)

pytestmark = pytest.mark.functional

MACHINE = os.uname().machine
ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}[MACHINE]
AL2 = system_libraries(get_runtime("python3.11"), ARCH)

EXT_C = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
extern const char *BZ2_bzlibVersion(void);
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__ext(void) {
    PyObject *m = PyModule_Create(&mod);
    if (m && PyModule_AddStringConstant(m, "bz2_version", BZ2_bzlibVersion()) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
"""
NEW_GLIBC_C = """
#define _GNU_SOURCE
#include <sys/mman.h>
int new_fd(void) { return memfd_create("x", 0); }
"""
INNER_C = "int inner(void) { return 41; }\n"
OUTER_C = "int inner(void);\nint outer(void) { return inner() + 1; }\n"
USER_C = "int {fn}(void);\nint use(void) {{ return {fn}(); }}\n"


def _gcc(out: Path, source: str, *flags: str) -> Path:
    src = out.with_name(out.name + ".c")
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src), *flags], check=True)
    src.unlink()
    return out


@pytest.fixture(scope="session")
def python311():
    interpreter = find_interpreter("3.11", Runner())
    if interpreter is None:
        pytest.fail("python3.11 is needed (pyenv install 3.11)")
    return interpreter.path


@pytest.fixture(scope="session")
def host_bz2() -> Path:
    found = host_locate(Runner(), MACHINE)("libbz2.so.1.0")
    if found is None:
        pytest.fail("this host's libbz2.so.1.0 is needed (apt-get install libbz2-1.0)")
    return Path(os.path.realpath(found))


@pytest.fixture(scope="session")
def built(tmp_path_factory, python311) -> dict[str, Path]:
    if shutil.which("gcc") is None or shutil.which("patchelf") is None:
        pytest.fail("gcc and patchelf are needed")
    d = tmp_path_factory.mktemp("repair-src")
    query = 'import sysconfig; print(sysconfig.get_paths()["include"]); print(sysconfig.get_config_var("EXT_SUFFIX"))'
    include, suffix = subprocess.run([python311, "-c", query], check=True, capture_output=True,
                                     text=True).stdout.split()
    out = {"suffix": Path(suffix)}
    out["ext"] = _gcc(d / f"_ext{suffix}", EXT_C, f"-I{include}", "-l:libbz2.so.1.0")
    out["new"] = _gcc(d / "libnew.so.1", NEW_GLIBC_C, "-Wl,-soname,libnew.so.1")
    out["inner"] = _gcc(d / "libinner.so.1", INNER_C, "-Wl,-soname,libinner.so.1")
    out["outer"] = _gcc(d / "libouter.so.1", OUTER_C, "-Wl,-soname,libouter.so.1", f"-L{d}", "-l:libinner.so.1")
    out["lonely"] = _gcc(d / "liblonely.so.1", OUTER_C, "-Wl,-soname,liblonely.so.1", f"-L{d}",
                         "-l:libinner.so.1")
    for name, lib, fn in (("uses_new", "libnew.so.1", "new_fd"), ("uses_outer", "libouter.so.1", "outer"),
                          ("uses_lonely", "liblonely.so.1", "outer")):
        out[name] = _gcc(d / f"{name}.so", USER_C.format(fn=fn), f"-L{d}", f"-l:{lib}")
    return out


def _layer(tmp_path: Path, files: dict[str, Path]) -> Path:
    root = tmp_path / "opt"
    for rel, source in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        dest.chmod(0o755)
        init = dest.parent / "__init__.py"
        if dest.parent.name != "python" and not init.exists():
            init.write_text("from ._ext import bz2_version\n" if "bzext" in rel else "")
    return root


def _bz_layer(tmp_path: Path, built) -> tuple[Path, str]:
    rel = f"python/bzext/_ext{built['suffix']}"
    return _layer(tmp_path, {rel: built["ext"]}), rel


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _import_without_host_bz2(python: Path, root: Path, bz2: Path) -> subprocess.CompletedProcess:
    """Import bzext with the host's libbz2 replaced by an empty file, in a mount namespace of its own."""
    script = f"import sys; sys.path.insert(0, {str(root / 'python')!r}); import bzext; print(bzext.bz2_version)"
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "LD_LIBRARY_PATH")}
    return subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind /dev/null "$1" && shift && exec "$@"', "sh",
                           str(bz2), str(python), "-I", "-S", "-c", script],
                          check=False, capture_output=True, text=True, env=env)


@pytest.fixture(scope="session")
def can_unshare() -> None:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /dev/null /dev/null"], check=False,
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("needs unshare -m and mount (root with CAP_SYS_ADMIN)")


def test_grafts_the_hosts_libbz2_and_the_extension_imports_without_it(tmp_path, built, python311, host_bz2,
                                                                       can_unshare):
    root, rel = _bz_layer(tmp_path, built)
    before = _import_without_host_bz2(python311, root, host_bz2)
    assert before.returncode != 0 and "libbz2" in before.stderr  # the test really hides the host's copy

    report = repair(root, {rel: ["libbz2.so.1.0"]}, AL2, host_fetch(Runner(), MACHINE), Runner())

    digest = hashlib.sha256(host_bz2.read_bytes()).hexdigest()
    name = f"libbz2-{digest[:8]}.so.1.0"
    assert not report.refused and report.error() is None
    (graft,) = report.grafted
    assert (graft.soname, graft.name, str(graft.path)) == ("libbz2.so.1.0", name, f"python/bzext.libs/{name}")
    assert graft.origin == str(host_bz2) and graft.sha256 == digest
    assert [str(p) for p in graft.patched] == [rel] and report.patched == graft.patched
    assert graft.size == (root / graft.path).stat().st_size
    lib = read_elf(root / graft.path)
    assert lib.soname == name
    ext = read_elf(root / rel)
    assert "libbz2.so.1.0" not in ext.needed and name in ext.needed
    assert ext.search_paths == ("$ORIGIN/../bzext.libs",)
    assert load_segments_problem(root / rel) is None and load_segments_problem(root / graft.path) is None
    assert not [p for p in root.rglob("*") if ".repair" in p.name]  # no staging left in the layer
    assert report.to_dict()["grafted"][0]["name"] == name

    after = _import_without_host_bz2(python311, root, host_bz2)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip().startswith("1.0")


def test_a_second_repair_does_nothing_and_the_name_is_stable(tmp_path, built, host_bz2):
    root, rel = _bz_layer(tmp_path, built)
    fetch = host_fetch(Runner(), MACHINE)
    first = repair(root, {rel: ["libbz2.so.1.0"]}, AL2, fetch, Runner())
    snapshot = _tree_bytes(root)

    runner = Runner()
    second = repair(root, {rel: ["libbz2.so.1.0"]}, AL2, fetch, runner)
    assert not second.grafted and not second.refused and not second.changed
    assert second.skipped == (f"{rel}: libbz2.so.1.0",)
    assert _tree_bytes(root) == snapshot and runner.history == []

    # Another layer with the same library: the same hashed name.
    other = repair(_bz_layer(tmp_path / "again", built)[0], {rel: ["libbz2.so.1.0"]}, AL2, fetch, Runner())
    assert other.grafted[0].name == first.grafted[0].name == hashed_name("libbz2.so.1.0", first.grafted[0].sha256)


def test_a_graft_already_in_the_tree_is_reused_for_a_new_referrer(tmp_path, built):
    root, rel = _bz_layer(tmp_path, built)
    fetch = host_fetch(Runner(), MACHINE)
    first = repair(root, {rel: ["libbz2.so.1.0"]}, AL2, fetch, Runner())
    later = f"python/bzext/sub/_ext2{built['suffix']}"
    (root / later).parent.mkdir()
    shutil.copyfile(built["ext"], root / later)
    second = repair(root, {root / later: ["libbz2.so.1.0"]}, AL2, fetch, Runner())
    (graft,) = second.grafted
    assert graft.reused and graft.path == first.grafted[0].path and [str(p) for p in graft.patched] == [later]
    assert read_elf(root / later).search_paths == ("$ORIGIN/../../bzext.libs",)
    assert len(list(root.rglob("libbz2-*"))) == 1


def test_a_library_needed_by_two_packages_goes_to_the_shared_libs_dir(tmp_path, built):
    suffix = built["suffix"]
    root = _layer(tmp_path, {f"python/bzext/_ext{suffix}": built["ext"],
                             f"python/lib/python3.11/site-packages/other/_ext{suffix}": built["ext"]})
    needs = [(f"python/bzext/_ext{suffix}", ["libbz2.so.1.0"]),
             (root / f"python/lib/python3.11/site-packages/other/_ext{suffix}", ["libbz2.so.1.0"])]
    report = repair(root, needs, AL2, host_fetch(Runner(), MACHINE), Runner())
    (graft,) = report.grafted
    assert graft.path.parent.as_posix() == "python/lambda_layer.libs" and len(graft.patched) == 2
    assert read_elf(root / needs[0][0]).search_paths == ("$ORIGIN/../lambda_layer.libs",)
    assert read_elf(needs[1][0]).search_paths == ("$ORIGIN/../../../../lambda_layer.libs",)


def _fetch_from(libs: dict[str, Path]):
    return fetch_located(lambda soname: libs.get(soname))


def test_grafts_a_library_with_its_own_missing_dependency_and_it_loads(tmp_path, built):
    root = _layer(tmp_path, {"python/pkg/uses_outer.so": built["uses_outer"]})
    # Keep an existing rpath entry: it must survive the patch.
    subprocess.run(["patchelf", "--set-rpath", "/nonexistent/keep", str(root / "python/pkg/uses_outer.so")],
                   check=True)
    report = repair(root, {"python/pkg/uses_outer.so": ["libouter.so.1"]}, AL2,
                    _fetch_from({"libouter.so.1": built["outer"], "libinner.so.1": built["inner"]}), Runner())
    assert not report.refused
    by_soname = {g.soname: g for g in report.grafted}
    assert set(by_soname) == {"libouter.so.1", "libinner.so.1"}
    outer, inner = by_soname["libouter.so.1"], by_soname["libinner.so.1"]
    assert outer.path.parent.as_posix() == inner.path.parent.as_posix() == "python/pkg.libs"
    assert [str(p) for p in inner.patched] == [str(outer.path)]
    outer_elf = read_elf(root / outer.path)
    assert inner.name in outer_elf.needed and outer_elf.search_paths == ("$ORIGIN",)
    user = read_elf(root / "python/pkg/uses_outer.so")
    assert user.search_paths == ("/nonexistent/keep", "$ORIGIN/../pkg.libs")
    # ld.so finds both through the rpaths alone (nothing of them is on any search path of this process).
    lib = ctypes.CDLL(os.fspath(root / "python/pkg/uses_outer.so"))
    assert lib.use() == 42


def test_a_library_needing_a_newer_glibc_than_lambdas_is_refused(tmp_path, built):
    root = _layer(tmp_path, {"python/pkg/uses_new.so": built["uses_new"]})
    snapshot = _tree_bytes(root)
    report = repair(root, {"python/pkg/uses_new.so": ["libnew.so.1"]}, AL2, _fetch_from({"libnew.so.1": built["new"]}),
                    Runner())
    assert not report.grafted
    (refusal,) = report.refused
    assert refusal.soname == "libnew.so.1" and [str(p) for p in refusal.needed_by] == ["python/pkg/uses_new.so"]
    assert "GLIBC_2.27" in refusal.reason and "GLIBC 2.26" in refusal.reason
    assert "--backend docker" in refusal.hint
    assert _tree_bytes(root) == snapshot
    with pytest.raises(VerifyError) as caught:
        report.raise_if_refused()
    assert caught.value.exit_code == 4 and "libnew.so.1" in caught.value.message and caught.value.hint


def test_a_library_needing_something_the_build_environment_lacks_is_refused(tmp_path, built):
    root = _layer(tmp_path, {"python/pkg/uses_lonely.so": built["uses_lonely"]})
    report = repair(root, {"python/pkg/uses_lonely.so": ["liblonely.so.1"]}, AL2,
                    _fetch_from({"liblonely.so.1": built["lonely"]}), Runner())
    assert not report.grafted  # not even liblonely: it would not load without libinner
    (refusal,) = report.refused
    assert "libinner.so.1" in refusal.reason and "not found in the build environment" in refusal.reason
    assert not list(root.rglob("*.libs"))


def test_never_grafts_glibc_what_lambda_has_or_opengl(tmp_path, built):
    root = _layer(tmp_path, {"python/pkg/uses_outer.so": built["uses_outer"]})
    asked = []

    def fetch(soname: str, dest: Path) -> Fetched | None:
        asked.append(soname)
        return None

    # The needs must really be in the file to be considered: pretend via patchelf --add-needed.
    target = root / "python/pkg/uses_outer.so"
    for soname in ("libm.so.6", "libz.so.1", "libGL.so.1", "libX11.so.6"):
        subprocess.run(["patchelf", "--add-needed", soname, str(target)], check=True)
    report = repair(root, {target: ["libm.so.6", "libz.so.1", "libGL.so.1", "libX11.so.6"]}, AL2, fetch, Runner())
    reasons = {r.soname: r for r in report.refused}
    assert "glibc" in reasons["libm.so.6"].reason
    assert "Lambda (amazonlinux2/" in reasons["libz.so.1"].reason
    assert "dlopen" in reasons["libGL.so.1"].reason and "opencv-python-headless" in reasons["libGL.so.1"].hint
    assert "not found" in reasons["libX11.so.6"].reason and "headless" in reasons["libX11.so.6"].hint
    assert asked == ["libX11.so.6"]  # nothing refused on principle was even looked for


def test_depth_bound_refuses_a_long_chain(tmp_path, built):
    root = _layer(tmp_path, {"python/pkg/uses_outer.so": built["uses_outer"]})
    report = repair(root, {"python/pkg/uses_outer.so": ["libouter.so.1"]}, AL2,
                    _fetch_from({"libouter.so.1": built["outer"], "libinner.so.1": built["inner"]}), Runner(),
                    max_depth=0)
    (refusal,) = report.refused
    assert "levels deep" in refusal.reason and not report.grafted


def test_ldconfig_lines_are_read_per_machine():
    text = textwrap.dedent("""\
        3 libs found in cache `/etc/ld.so.cache'
        \tlibbz2.so.1.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libbz2.so.1.0
        \tlibbz2.so.1.0 (libc6,AArch64) => /usr/lib/aarch64-linux-gnu/libbz2.so.1.0
        \tlibbz2.so.1.0 (libc6) => /usr/lib/i386-linux-gnu/libbz2.so.1.0
        """)
    assert ldconfig_candidates(text, "libbz2.so.1.0", "x86_64") == ["/lib/x86_64-linux-gnu/libbz2.so.1.0"]
    assert ldconfig_candidates(text, "libbz2.so.1.0", "aarch64") == ["/usr/lib/aarch64-linux-gnu/libbz2.so.1.0"]
    assert ldconfig_candidates(text, "libbz2.so.1", "x86_64") == []
    assert hashed_name("libfoo.so", "ab" * 32) == "libfoo-abababab.so"
    assert isinstance(RepairReport("x").to_dict(), dict)


def test_container_fetch_runs_ldconfig_and_cp_through_the_runner(tmp_path, host_bz2):
    # The host's own Runner stands in for a ContainerRunner: the same sh commands, run here.
    runner = Runner()
    fetched = container_fetch(runner, MACHINE)("libbz2.so.1.0", tmp_path)
    assert fetched is not None and fetched.origin == str(host_bz2)
    assert fetched.path == tmp_path / "libbz2.so.1.0" and fetched.path.read_bytes() == host_bz2.read_bytes()
    assert all(argv[:2] == ("sh", "-c") for argv in runner.history)
    assert container_fetch(runner, MACHINE)("libnot-there.so.9", tmp_path) is None


class _TruncatingPatchelf(Runner):
    """Real patchelf, then the file cut in half: what a broken patchelf leaves."""

    def run(self, args, **kwargs):
        result = super().run(args, **kwargs)
        if args[0] == "patchelf" and "--set-rpath" in args:
            target = Path(args[-1])
            target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        return result


def test_a_patch_that_breaks_the_load_segments_fails_and_leaves_the_layer_as_it_was(tmp_path, built):
    root, rel = _bz_layer(tmp_path, built)
    snapshot = _tree_bytes(root)
    with pytest.raises(VerifyError) as caught:
        repair(root, {rel: ["libbz2.so.1.0"]}, AL2, host_fetch(Runner(), MACHINE), _TruncatingPatchelf())
    assert caught.value.exit_code == 4 and "patchelf broke" in caught.value.message and caught.value.hint
    assert _tree_bytes(root) == snapshot
    assert sorted(p.name for p in root.rglob("*")) == sorted(Path(p).name for p in [*snapshot, "python", "bzext"])


def test_needs_come_from_the_load_checks_problems_with_lambda_paths(tmp_path, built, host_bz2):
    from builder.verify.loadcheck import check_tree

    root, rel = _bz_layer(tmp_path, built)
    check = check_tree(root, AL2)
    needs = needs_from_problems(check.problems)
    assert needs == {f"/opt/{rel}": ["libbz2.so.1.0"]}
    report = repair(root, needs, AL2, host_fetch(Runner(), MACHINE), Runner())
    assert [str(p) for p in report.patched] == [rel]
    assert not [p for p in check_tree(root, AL2).problems if p.severity == "error"]
