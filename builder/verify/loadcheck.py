"""Static load check: would every ELF file of a layer load in Lambda's runtime image?

A layer is extracted under /opt (``python/`` becomes /opt/python, ``lib/``
/opt/lib). For every loadable ELF file of the tree, each DT_NEEDED is resolved
the way Lambda's ld.so would, against the layer itself and the runtime image's
system libraries as data (``runtimes.SystemLibraries``, from
``lambda_os.toml``); no file is run, so any architecture can be checked on any
host. The parts:

* ``_Layer`` parses each ELF file's headers once (``elf.read_elf``) and maps
  a path as Lambda sees it (/opt/...) to the file in the tree.
* ``_search_dirs`` gives ld.so's order for one needing object: DT_RPATH (only
  when the object has no DT_RUNPATH), the object's own first and then its
  loaders' up the chain (as glibc's ``_dl_map_object`` walks ``l_loader``; a
  loader that has DT_RUNPATH contributes no DT_RPATH), then Lambda's
  LD_LIBRARY_PATH, then DT_RUNPATH, then the system directories. ``$ORIGIN``
  is the object's directory under /opt. Where ld.so finds a name is decided
  directory by directory: a layer directory must hold a loadable file of that
  name, a system directory (/lib64, /usr/lib64) holds exactly the sonames the
  table says are present; the other system directories (/var/lang/lib,
  /var/task, ...) are not known and never satisfy a need.
* ``_Walk`` follows the needs from every root (an ELF file no other layer
  file pulls in: extension modules, executables, ctypes-loaded libraries)
  through bundled libraries, so each problem carries its chain. A soname
  found nowhere is a failure if the table says Lambda lacks it (or the table
  is complete) and a warning if the table does not know it. For a library
  that resolves to the system, every GLIBC_/GLIBCXX_/CXXABI_/GCC_ version the
  file needs from it (``.gnu.version_r``) must be at most the table's ceiling;
  an unknown ceiling warns. Versions needed from a bundled library are that
  library's business, checked as its own file.
* ``check_zips`` extracts several layers in order into one temporary /opt
  (later layers overwrite earlier files, as Lambda does), only the ELF files
  and symlinks, after checking every member stays inside.

Speed: each ELF file's headers are read once and every lookup is cached:
0.17 s for tf18's tree (107 ELF files, 217 MB), 0.4 s for tensorflow-cpu
2.21's (77, 1.27 GB); from the zip, with extraction, tf18 takes 0.9 s.

Not modelled: ld.so matches a name against objects already loaded before it
searches, so at run time load order can hide or satisfy a need; this check
resolves each chain as if it were loaded first. The interpreter's own RPATH
and libraries loaded with dlopen by name are not seen (the smoke test in the
runtime image is what catches those).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..archive import DAMAGED_ZIP_HINT, open_layer_zip, verify_layer_zip
from ..errors import UsageError, VerifyError
from ..runtimes import MACHINE, VERSION_FAMILIES, SystemLibraries, all_runtimes
from .elf import ELF_MAGIC, ElfInfo, elf_files, read_elf

Kind = Literal["missing", "version", "machine", "unreadable"]
Severity = Literal["error", "warning"]

# "GLIBCXX_3.4.26" -> family, version; GLIBC_PRIVATE, CXXABI_TM_1 and the like carry no comparable number.
_VERSION_RE = re.compile(r"^(" + "|".join(VERSION_FAMILIES) + r")_(\d+(?:\.\d+)*)$")
# ld.so's dynamic string tokens, bare ($ORIGIN, ended by a non-identifier character) or braced.
_TOKEN_RE = re.compile(r"\$(?:\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")
# An extension module that lists libpython gets the interpreter's own copy: ld.so
# matches it by soname among the objects already loaded, before any search.
_LIBPYTHON_RE = re.compile(r"^libpython\d+\.\d+[a-z]*\.so(\.|$)")
_LOADABLE = ("ET_DYN", "ET_EXEC")  # object files (ET_REL) and cores are never mapped by ld.so
_LINK_HINT = "a layer's symlinks must stay inside /opt: make the link relative to the layer, or drop it, and zip again"


@dataclass(frozen=True)
class LoadProblem:
    file: str  # the file that needs it, as Lambda sees it ("/opt/python/pkg/_ext.so")
    kind: Kind
    soname: str | None  # the library not found, or the one a version is needed from; None for machine/unreadable
    version: str | None  # the highest version needed above the ceiling ("GLIBCXX_3.4.30"), for kind "version"
    chain: tuple[str, ...]  # from the root that pulls it in, through bundled libraries, to file (inclusive)
    severity: Severity
    detail: str  # why, in a few words: "absent from Amazon Linux 2 x86_64", "ceiling GLIBC_2.26"

    def describe(self) -> str:
        """One line: what, which file, through which chain."""
        via = f" (loaded via {' -> '.join(self.chain)})" if len(self.chain) > 1 else ""
        if self.kind == "missing":
            what = f"needs {self.soname}, not found: {self.detail}"
        elif self.kind == "version":
            what = f"needs {self.version} from {self.soname}: {self.detail}"
        else:
            what = self.detail
        return f"{self.file} {what}{via}"

    def to_json(self) -> dict:
        return {"file": self.file, "kind": self.kind, "soname": self.soname, "version": self.version,
                "chain": list(self.chain), "severity": self.severity, "detail": self.detail}


@dataclass(frozen=True)
class LoadCheck:
    problems: tuple[LoadProblem, ...]  # errors first, then warnings; each sorted by file
    elf_files: int  # ELF files in the tree (loadable or not)
    complete: bool  # the table lists the image's every soname: nothing was unknown by construction
    how: str  # "static load check against Amazon Linux 2 x86_64 (table complete)"
    os: str
    arch: str

    @property
    def errors(self) -> tuple[LoadProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[LoadProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict:
        return {"how": self.how, "os": self.os, "arch": self.arch, "complete": self.complete,
                "elf_files": self.elf_files, "ok": self.ok, "errors": len(self.errors),
                "warnings": len(self.warnings), "problems": [p.to_json() for p in self.problems]}


def check_tree(layer_root: Path, libs: SystemLibraries) -> LoadCheck:
    """Check every ELF file under ``layer_root`` (the directory that becomes /opt) against ``libs``."""
    layer = _Layer(Path(layer_root), libs)
    walk = _Walk(layer, libs)
    walk.run()
    order = {"error": 0, "warning": 1}
    problems = sorted([*layer.problems, *walk.problems.values()],
                      key=lambda p: (order[p.severity], p.file, p.kind, p.soname or "", p.version or ""))
    return LoadCheck(problems=tuple(problems), elf_files=len(layer.files), complete=libs.complete,
                     how=how(libs), os=libs.os, arch=libs.arch)


def how(libs: SystemLibraries) -> str:
    """The one line saying what the check compared against."""
    table = "table complete" if libs.complete else "table partial: sonames it does not list are warnings"
    return f"static load check against {_os_title(libs)} {libs.arch} ({table})"


def raise_for(check: LoadCheck) -> None:
    """Raise VerifyError (exit 4) naming the first failure, its chain and what to do; warnings pass."""
    errors = check.errors
    if not errors:
        return
    first = errors[0]
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    raise VerifyError(f"would not load on Lambda: {first.describe()}{more}", hint=_hint(first, check.arch))


def _hint(problem: LoadProblem, arch: str) -> str:
    if problem.kind == "missing":
        return ("use a variant of the package without that system dependency (opencv-python-headless instead of "
                "opencv-python, for one), a recipe strip.drop entry for the package that needs it (or strip.keep "
                "if a strip rule removed the bundled copy), or `layers build --image`, whose image can install it")
    if problem.kind == "version":
        return ("build with `layers build` (it picks wheels tagged for the runtime's glibc and compiles sdists in the "
                "runtime's build image), target a runtime on a newer Amazon Linux, or `layers build --image`")
    if problem.kind == "machine":
        return f"build the layer for {arch} (`layers build --arch {arch}`), or check it with the --arch it was built for"
    return "rebuild the layer: the file is damaged"


def _os_title(libs: SystemLibraries) -> str:
    for runtime in all_runtimes().values():
        if runtime.os == libs.os:
            return runtime.os_title
    return libs.os


# --- the tree as Lambda sees it ------------------------------------------------


class _Layer:
    """Every ELF file of the tree parsed once, and /opt paths mapped to them."""

    def __init__(self, root: Path, libs: SystemLibraries) -> None:
        self.root = root.resolve()
        self.prefix = libs.layer_root.rstrip("/") or "/"
        self.files = elf_files(self.root)
        self.infos: dict[Path, ElfInfo] = {}  # loadable files of the runtime's machine
        self.problems: list[LoadProblem] = []
        self._found: dict[str, Path | None] = {}
        machine = MACHINE.get(libs.arch, libs.arch)
        title = f"{_os_title(libs)} {libs.arch}"
        for path in self.files:
            try:
                info = read_elf(path)
            except VerifyError as exc:
                self.problems.append(self._problem(path, "unreadable", exc.message.split(": ", 1)[-1]))
                continue
            if info.elf_type not in _LOADABLE:
                continue
            if info.machine != machine:
                self.problems.append(self._problem(path, "machine", f"is a {info.machine} file, {title} is {machine}"))
                continue
            self.infos[path] = info

    def _problem(self, path: Path, kind: Kind, detail: str) -> LoadProblem:
        where = self.virtual(path)
        return LoadProblem(where, kind, None, None, (where,), "error", detail)

    def virtual(self, path: Path) -> str:
        """The path of a tree file under /opt."""
        return posixpath.join(self.prefix, path.relative_to(self.root).as_posix())

    def inside(self, directory: str) -> bool:
        return directory == self.prefix or directory.startswith(self.prefix.rstrip("/") + "/")

    def find(self, where: str) -> Path | None:
        """The loadable file at /opt path ``where``, following symlinks that stay in the tree, else None.

        A file of another machine, class or type is passed over, as ld.so
        passes over it while searching.
        """
        if where in self._found:
            return self._found[where]
        found = None
        relative = where[len(self.prefix):].lstrip("/")
        if relative:
            real = Path(os.path.realpath(self.root / relative))
            if real in self.infos and real.is_relative_to(self.root):
                found = real
        self._found[where] = found
        return found


def _expand(entries: Iterable[str], origin: str, machine: str) -> tuple[str, ...]:
    """RPATH/RUNPATH entries as absolute, normalised paths; relative ones (to /var/task, the
    working directory) are dropped, nothing being known there."""
    values = {"ORIGIN": origin, "LIB": "lib64", "PLATFORM": machine}
    out = []
    for entry in entries:
        path = _TOKEN_RE.sub(lambda m: values[m[1] or m[2]], entry)
        if path.startswith("/"):
            out.append(posixpath.normpath(path))
    return tuple(out)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# --- following the needs -------------------------------------------------------


class _Walk:
    """Resolve needs from every root; problems keyed so each is reported once, with the first chain found."""

    def __init__(self, layer: _Layer, libs: SystemLibraries) -> None:
        self.layer = layer
        self.libs = libs
        self.machine = MACHINE.get(libs.arch, libs.arch)
        self.title = f"{_os_title(libs)} {libs.arch}"
        self.system_dirs = frozenset(libs.system_dirs)
        self.problems: dict[tuple, LoadProblem] = {}
        # (file, inherited RPATH dirs) -> [(needed name, "layer" | "system" | "interpreter" | "none", file)]
        self._resolved: dict[tuple[Path, tuple[str, ...]], list[tuple[str, str, Path | None]]] = {}

    def run(self) -> None:
        files = sorted(self.layer.infos)
        # Pass 1: which files some other file pulls in (from any context); the rest are roots.
        pulled: set[Path] = set()
        seen: set[tuple[Path, tuple[str, ...]]] = set()
        for path in files:
            self._reach(path, (), pulled, seen)
        # Pass 2: problems, with chains from the roots; then whatever only a cycle reaches.
        seen.clear()
        visited: set[Path] = set()
        roots = [p for p in files if p not in pulled]
        for path in roots + [p for p in files if p in pulled]:
            if path in visited and path in pulled:
                continue
            self._visit(path, (), (self.layer.virtual(path),), seen, visited)

    def _reach(self, path: Path, inherited: tuple[str, ...], pulled: set[Path], seen: set) -> None:
        stack = [(path, inherited)]
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            child_inherited = self._child_inherited(*state)
            for _name, where, target in self._resolve(*state):
                if where == "layer" and target != state[0]:
                    pulled.add(target)
                    stack.append((target, child_inherited))

    def _visit(self, path: Path, inherited: tuple[str, ...], chain: tuple[str, ...], seen: set,
               visited: set[Path]) -> None:
        state = (path, inherited)
        if state in seen:
            return
        seen.add(state)
        visited.add(path)
        info = self.layer.infos[path]
        child_inherited = self._child_inherited(path, inherited)
        for name, where, target in self._resolve(path, inherited):
            if where == "layer":
                virtual = self.layer.virtual(target)
                if virtual not in chain:
                    self._visit(target, child_inherited, chain + (virtual,), seen, visited)
            elif where == "system":
                self._check_versions(info, name, chain)
            elif where == "none":
                self._missing(name, chain)

    def _missing(self, name: str, chain: tuple[str, ...]) -> None:
        status = self.libs.status(posixpath.basename(name))
        if status == "absent":
            severity, detail = "error", f"absent from {self.title}"
        elif status == "unknown":
            severity, detail = "warning", f"not in {self.title}'s table (partial), nor in the layer"
        else:  # present, but named by a path outside the system directories
            severity, detail = "error", f"no such path in {self.title} or the layer"
        self._add(LoadProblem(chain[-1], "missing", name, None, chain, severity, detail))

    def _check_versions(self, info: ElfInfo, soname: str, chain: tuple[str, ...]) -> None:
        highest: dict[str, tuple[tuple[int, ...], str]] = {}
        for name in info.versions_needed_from(soname):
            match = _VERSION_RE.match(name)
            if match:
                number = tuple(int(part) for part in match[2].split("."))
                if match[1] not in highest or number > highest[match[1]][0]:
                    highest[match[1]] = (number, name)
        for family, (number, name) in sorted(highest.items()):
            ceiling = self.libs.ceiling(family)
            if ceiling is None:
                self._add(LoadProblem(chain[-1], "version", soname, name, chain, "warning",
                                      f"no source gives {self.title}'s {family} ceiling"))
            elif number > ceiling:
                top = f"{family}_{'.'.join(map(str, ceiling))}"
                self._add(LoadProblem(chain[-1], "version", soname, name, chain, "error",
                                      f"{self.title} has up to {top}"))

    def _add(self, problem: LoadProblem) -> None:
        self.problems.setdefault((problem.file, problem.kind, problem.soname, problem.version), problem)

    def _own_rpath(self, path: Path) -> tuple[str, ...]:
        info = self.layer.infos[path]
        if info.runpath:  # glibc drops DT_RPATH of an object that has DT_RUNPATH
            return ()
        return _expand(info.rpath, posixpath.dirname(self.layer.virtual(path)), self.machine)

    def _child_inherited(self, path: Path, inherited: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(self._own_rpath(path) + inherited)

    def _search_dirs(self, path: Path, inherited: tuple[str, ...]) -> tuple[str, ...]:
        info = self.layer.infos[path]
        origin = posixpath.dirname(self.layer.virtual(path))
        rpath = () if info.runpath else self._own_rpath(path) + inherited
        runpath = _expand(info.runpath, origin, self.machine)
        return _unique(rpath + self.libs.ld_library_path + runpath + self.libs.system_dirs)

    def _resolve(self, path: Path, inherited: tuple[str, ...]) -> list[tuple[str, str, Path | None]]:
        key = (path, inherited)
        if key not in self._resolved:
            dirs = self._search_dirs(path, inherited)
            self._resolved[key] = [(name, *self._locate(name, dirs)) for name in self.layer.infos[path].needed]
        return self._resolved[key]

    def _locate(self, name: str, dirs: tuple[str, ...]) -> tuple[str, Path | None]:
        if "/" in name:  # ld.so opens a name with a slash as a path, without searching
            path = posixpath.normpath(name)
            if self.layer.inside(path):
                found = self.layer.find(path)
                return ("layer", found) if found else ("none", None)
            if posixpath.dirname(path) in self.system_dirs and self.libs.status(posixpath.basename(path)) == "present":
                return "system", None
            return "none", None
        if _LIBPYTHON_RE.match(name):
            return "interpreter", None
        present = self.libs.status(name) == "present"
        for directory in dirs:
            if self.layer.inside(directory):
                found = self.layer.find(posixpath.join(directory, name))
                if found is not None:
                    return "layer", found
            elif present and directory in self.system_dirs:
                return "system", None
        return "none", None


# --- several layer zips as one /opt ----------------------------------------------


def check_zips(zips: list[Path], libs: SystemLibraries, *, read_through: bool = True) -> LoadCheck:
    """Extract the layers in order into one temporary /opt (later files win) and check it.

    Only ELF files and symlinks are written: nothing else can satisfy a need.
    Raises UsageError for a file that is not a zip or a member that would
    land outside /opt (an absolute name, a ``..``, a symlink leading out),
    and for a damaged one (a bad CRC or size, in any member, ELF or not).
    """
    # read_through=False: the caller has read every member already (publish's load_artifact did).
    for path in zips if read_through else ():
        verify_layer_zip(path)
    with tempfile.TemporaryDirectory(prefix="layers-check-") as temp, ExitStack() as stack:
        root = Path(temp).resolve()
        opened: dict[Path, zipfile.ZipFile] = {}
        links = []
        for name, (zip_path, info, link) in _final_members(zips).items():
            if zip_path not in opened:
                opened[zip_path] = stack.enter_context(open_layer_zip(zip_path))
            try:
                if _extract(root, name, opened[zip_path], info, link):
                    links.append((zip_path, name, link))
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error) as exc:
                # A bad CRC shows only once the member is read through.
                raise UsageError(f"{zip_path}: member {name!r} cannot be read: {exc}", hint=DAMAGED_ZIP_HINT) from None
        for zip_path, name, link in links:
            # A chain of links can leave the tree although each one, read alone, stays inside.
            if not Path(os.path.realpath(root / name)).is_relative_to(root):
                raise UsageError(f"{zip_path}: symlink {name} -> {link} points outside /opt", hint=_LINK_HINT)
        return check_tree(root, libs)


def _final_members(zips: list[Path]) -> dict[str, tuple[Path, zipfile.ZipInfo, str | None]]:
    """Every file member's name -> (zip, member, symlink target or None), the last layer's copy winning."""
    final: dict[str, tuple[Path, zipfile.ZipInfo, str | None]] = {}
    for path in zips:
        try:
            with open_layer_zip(path) as archive:
                for info in archive.infolist():
                    name = _safe_name(path, info.filename)
                    if info.is_dir() or name is None:
                        continue
                    link = None
                    if stat.S_ISLNK(info.external_attr >> 16):
                        link = _safe_link(path, name, archive.read(info).decode("utf-8", "surrogateescape"))
                    final.pop(name, None)  # re-inserted last: extraction follows the layers' order
                    final[name] = (path, info, link)
        except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            raise UsageError(f"cannot read {path} as a zip: {exc}", hint="give a layer zip") from None
    return final


def _safe_name(zip_path: Path, name: str) -> str | None:
    """The member's normalised relative name; UsageError if it would leave /opt. None for the root itself."""
    parts = name.split("/")
    if name.startswith("/") or "\0" in name or ".." in parts:
        raise UsageError(f"{zip_path}: member {name!r} would be extracted outside /opt",
                         hint="a layer zip holds relative paths (python/..., lib/...) only")
    normal = posixpath.normpath(name)
    return None if normal == "." else normal


def _safe_link(zip_path: Path, name: str, target: str) -> str:
    """A symlink member's target made relative to its directory; UsageError if it leads outside /opt."""
    if target.startswith("/"):  # an absolute link is fine when it points into /opt itself
        if not (target == "/opt" or target.startswith("/opt/")):
            raise UsageError(f"{zip_path}: symlink {name} -> {target} points outside /opt", hint=_LINK_HINT)
        target = posixpath.relpath(target, posixpath.join("/opt", posixpath.dirname(name)))
    landing = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if landing == ".." or landing.startswith("../") or "\0" in target or not target:
        raise UsageError(f"{zip_path}: symlink {name} -> {target} points outside /opt", hint=_LINK_HINT)
    return target


def _extract(root: Path, name: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, link: str | None) -> bool:
    """Write one member if it can matter (an ELF file or a symlink); True if it was a symlink."""
    dest = root / name
    if link is None:
        with archive.open(info) as source:
            head = source.read(4)
            if head != ELF_MAGIC:
                _remove(dest)  # cannot satisfy a need, but hides an earlier layer's ELF file of that name
                return False
            _make_parents(root, dest.parent)
            _remove(dest)
            with open(dest, "wb") as target:
                target.write(head)
                shutil.copyfileobj(source, target, 1 << 20)
        return False
    _make_parents(root, dest.parent)
    _remove(dest)
    dest.symlink_to(link)
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)  # a later layer's file replaces an earlier one's directory
    else:
        path.unlink(missing_ok=True)


def _make_parents(root: Path, directory: Path) -> None:
    """Create ``directory`` of real directories: an earlier layer's file or symlink in the way is replaced,
    so nothing is ever written through a link."""
    current = root
    for part in directory.relative_to(root).parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            current.unlink()
        current.mkdir(exist_ok=True)
