"""Run the smoke test where only Lambda's libraries exist: a bubblewrap sandbox.

On this machine the smoke test would see every system library it has
(libGL, libX11, GLib, libmagic...), so a layer needing one of them passes here
and fails on Lambda. ``LambdaSandbox`` builds a ``bwrap`` command that shows
the interpreter a file tree shaped like Lambda's runtime image:

* ``/usr/lib64`` (and ``/lib64``, a symlink to it, as on Amazon Linux): one
  bind per soname that ``runtimes.system_libraries`` lists as present, taken
  from this machine's copy; sonames the table calls absent or does not know
  are not there, nor is this machine's ``/etc/ld.so.cache``. A cache of only
  the shown libraries is made with this machine's (static) ldconfig, so that
  ``ctypes.util.find_library`` finds what Lambda's ``ldconfig -p`` would;
  no gcc, ld or objdump is visible for its other fallbacks.
* ``/var/lang/lib``: the libraries the interpreter itself needs (its binary
  and its stdlib extension modules, DT_NEEDED closure) that the table does not
  list: Lambda keeps Python's own libraries there too.
* the interpreter's binary, stdlib and libpython at their own paths, read-only;
* the layer read-only at ``/opt/python``, the smoke script at ``/var/task``;
* a private tmpfs ``/tmp`` (the only writable place, HOME under it), no
  network, no capabilities, Lambda's environment (``LD_LIBRARY_PATH``,
  ``LAMBDA_TASK_ROOT``...).

For an interpreter of another machine (``Interpreter.root``: Debian's
aarch64 python from an arm64 root, run by QEMU's user-mode emulator through
binfmt), "this machine's copies" are that root's instead: the sonames of the
table's arm64 row come from the root's library directories, the loader is
its ``ld-linux-aarch64.so.1`` at the binary's PT_INTERP, and the binary and
stdlib are the root's, shown at the paths they have inside it.

``smoke.run_workload`` wraps its command with ``LambdaSandbox.command``;
``explain`` turns a "cannot open shared object file" into what the table says
about that library. Only for the pip backend: the Docker backend's runner runs
its commands in a build container, where bwrap would not see these paths.
"""

from __future__ import annotations

import glob
import json
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ..errors import ToolMissing, VerifyError
from ..runner import Runner
from ..runtimes import MACHINE, Runtime, SystemLibraries, layer_python_paths, system_libraries
from .elf import ElfInfo, read_elf
from .interpreters import Interpreter
from .output import decisive_line

BWRAP = "bwrap"
LAYER_MOUNT = "/opt/python"
TASK_ROOT = "/var/task"
LANG_LIB = "/var/lang/lib"
SYSTEM_LIB = "/usr/lib64"
HOME = "/tmp/home"
# Lambda runs functions as sbx_user1051 (uid 993); used when user namespaces work here.
LAMBDA_UID, LAMBDA_GID = "993", "990"
# The rest of the runtime images' environment (aws/aws-lambda-base-images Dockerfiles). LANG: Lambda's
# en_US.UTF-8 needs locale files the sandbox lacks; C.UTF-8 is built into glibc >= 2.35 and decodes the same.
LAMBDA_ENV = {
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LAMBDA_TASK_ROOT": TASK_ROOT,
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
    "LANG": "C.UTF-8",
    "TZ": ":UTC",
}
# Stdlib extension modules whose libraries are not shown, so they fail to import in the sandbox:
# their libraries are ones Lambda's images lack, and showing them at /var/lang/lib would hide
# that a layer needs them too.
HIDDEN_MODULES = {
    "_tkinter": "Tk, Tcl and X11: Lambda's Python has no Tk",
    "_crypt": "libcrypt.so.1, absent on Amazon Linux 2 and 2023 (python3.12+ extensions linking it fail there)",
    "nis": "libnsl.so.2 and libtirpc.so.3: on no Lambda image",
}
_MISSING_RE = re.compile(r"(?<![\w./+-])((?:/[\w.+-]+)*/?[\w.+-]+\.so(?:\.[\w.]+)?): cannot open shared object file")
_NO_MODULE_RE = re.compile(r"No module named '([\w.]+)'")
_PROBE = """
import json, os, sys, sysconfig
paths = sysconfig.get_paths()
print(json.dumps({"executable": os.path.realpath(sys.executable), "stdlib": paths["stdlib"],
                  "platstdlib": paths["platstdlib"], "dynload": sysconfig.get_config_var("DESTSHARED") or ""}))
"""


def sandbox_available(runner: Runner) -> str | None:
    """None if bwrap can make the sandbox here, else why not, in plain words."""
    probe = [BWRAP, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL",
             "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "true"]
    try:
        result = runner.run(probe, timeout=30)
    except ToolMissing:
        return "bwrap is not installed; Debian/Ubuntu: apt-get install bubblewrap"
    if not result.ok:
        said = decisive_line(result.tail()) if result.tail() else f"exit {result.returncode}"
        return f"bwrap cannot create namespaces on this machine: {said}"
    return None


@dataclass(frozen=True)
class LambdaSandbox:
    """One runtime's sandbox for one interpreter: what is shown where, and the bwrap command."""

    interpreter: Interpreter
    libraries: SystemLibraries
    python_paths: tuple[str, ...]            # sys.path entries for the layer, as on Lambda
    system: Mapping[str, Path]               # soname -> this machine's copy, shown in /usr/lib64
    lang: Mapping[str, Path]                 # the interpreter's own needs and what the copies need: /var/lang/lib
    not_here: tuple[str, ...]                # present on Lambda, no copy on this machine: not shown
    support: Mapping[str, tuple[str, ...]]   # soname only this machine's copies need -> which copies
    own_files: tuple[Path, ...]              # the interpreter's binary, stdlib and libpython (its own paths)
    loader_path: str | None                  # the binary's PT_INTERP, if outside /lib64 and /usr/lib64
    user_namespace: bool
    ldconfig: Path | None
    hidden_modules: tuple[str, ...] = field(default=())

    @property
    def executable(self) -> Path:
        """The interpreter's binary, its links resolved: the path it has inside the sandbox too."""
        return self.own_files[0]

    @property
    def partial(self) -> bool:
        return not self.libraries.complete

    def _mounts(self) -> list[str]:
        args = ["--unshare-net", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if self.user_namespace:
            args += ["--unshare-user", "--uid", LAMBDA_UID, "--gid", LAMBDA_GID]
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL",
                 "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", HOME,
                 "--dir", SYSTEM_LIB, "--symlink", SYSTEM_LIB.lstrip("/"), "/lib64", "--dir", LANG_LIB]
        for soname, host in sorted(self.system.items()):
            args += ["--ro-bind", str(host), f"{SYSTEM_LIB}/{soname}"]
        for soname, host in sorted(self.lang.items()):
            args += ["--ro-bind", str(host), f"{LANG_LIB}/{soname}"]
        if self.loader_path:
            args += ["--ro-bind", str(self.system[self.libraries.loader]), self.loader_path]
        for path in self.own_files:
            args += ["--ro-bind", str(self.interpreter.host_path(path)), str(path)]
        if self.ldconfig:
            args += ["--ro-bind", str(self.ldconfig), "/usr/sbin/ldconfig", "--symlink", "usr/sbin", "/sbin"]
        return args

    def _env(self, env: Mapping[str, str]) -> list[str]:
        merged = {**env, **LAMBDA_ENV, "HOME": HOME, "LD_LIBRARY_PATH": ":".join(self.libraries.ld_library_path),
                  "AWS_EXECUTION_ENV": f"AWS_Lambda_python{self.interpreter.version}"}
        args = ["--clearenv"]
        for key, value in sorted(merged.items()):
            args += ["--setenv", key, value]
        return args

    def cache_command(self, etc: Path) -> list[str] | None:
        """ldconfig in the sandbox, writing an ld.so.cache of the shown libraries into ``etc`` (host path)."""
        if not self.ldconfig:
            return None
        (etc / "ld.so.conf").write_text("".join(d + "\n" for d in self.libraries.system_dirs))
        return [BWRAP, *self._mounts(), "--bind", str(etc), "/etc", "--remount-ro", "/", "--clearenv",
                "/sbin/ldconfig", "-X"]

    def command(self, argv: Sequence[str | os.PathLike], *, tree: Path, task: Path, cache: Path | None = None,
                env: Mapping[str, str] | None = None) -> list[str]:
        """``argv`` (sandbox paths) wrapped in bwrap; ``tree`` shows at /opt/python, ``task`` at /var/task."""
        args = [BWRAP, *self._mounts(), "--ro-bind", str(tree.resolve()), LAYER_MOUNT,
                "--ro-bind", str(task.resolve()), TASK_ROOT]
        if cache is not None and cache.is_file():
            args += ["--ro-bind", str(cache), "/etc/ld.so.cache"]
        # Not recursive: /tmp stays writable, everything else (the root, /dev) becomes read-only.
        args += ["--remount-ro", "/", "--remount-ro", "/dev", *self._env(env or {}), "--chdir", "/tmp", "--"]
        return args + [str(a) for a in argv]

    def notes(self) -> tuple[str, ...]:
        """What the report must say about how far the sandbox stands for Lambda."""
        out = []
        label, copies = self.libraries.label, self._copies()
        if self.partial:
            out.append(f"the table of {label}'s libraries is partial: only {len(self.libraries.present)} sonames are "
                       "known to be there, and any other was hidden, although Lambda may have it")
        if self.not_here:
            out.append(f"{len(self.not_here)} libraries of {label} have none among {copies} and were not shown: "
                       + ", ".join(self.not_here))
        own = sorted(set(self.lang) - set(self.support))
        if own:
            out.append(f"the interpreter's own libraries were shown at {LANG_LIB}, as on Lambda: " + ", ".join(own))
        shown = [f"{s} (for {', '.join(n)})" for s, n in self.support.items() if s in self.lang]
        if shown:
            out.append(f"libraries {copies} need, shown at {LANG_LIB}: " + ", ".join(shown))
        hidden = [f"{s} (for {', '.join(n)})" for s, n in self.support.items() if s not in self.lang]
        if hidden:
            out.append(f"libraries {copies} need but Lambda lacks, not shown: " + ", ".join(hidden))
        if self.hidden_modules:
            out.append("stdlib modules not loadable in the sandbox (their libraries are not on Lambda): "
                       + ", ".join(self.hidden_modules))
        out.append(f"the libraries shown are {copies}, newer than Lambda's: a need for too new a "
                   "symbol version (GLIBC_, GLIBCXX_) passes in the sandbox; the ELF checks are what catch it")
        if self.interpreter.root is not None:
            out.append(f"the interpreter is {self.interpreter.describe()}: Debian's build of python"
                       f"{self.interpreter.version}, not AWS's, with the same version and ABI")
        return tuple(out)

    def _copies(self) -> str:
        root = self.interpreter.root
        return "this machine's copies" if root is None else f"the {self.interpreter.machine} copies in {root}"

    def describe(self) -> str:
        return (f"in a sandbox showing only the {len(self.system)} system libraries of {self.libraries.label} "
                f"({'a partial table' if self.partial else 'the whole /lib64'}) from {self._copies()}, "
                f"the layer read-only at {LAYER_MOUNT}, /tmp the only writable path, no network")

    def explain(self, output: str) -> str | None:
        """What the table says about each library the sandboxed run could not open, or None."""
        lines = []
        for named in dict.fromkeys(_MISSING_RE.findall(output)):
            if named.startswith(LAYER_MOUNT + "/"):
                continue  # a layer file opened by its path (an extension module): wrong_machine tells why
            soname = named.rsplit("/", 1)[-1]
            label = self.libraries.label
            if soname in self.system or soname in self.lang:
                continue  # shown: the loader failed for another reason, which the output says
            if soname in self.support:
                lines.append(f"{soname} is needed by this machine's copy of {', '.join(self.support[soname])}, "
                             f"which Lambda's {label} has, but {label} lacks {soname}: this may be the sandbox's "
                             "failure, not the layer's")
            elif soname in self.not_here:
                lines.append(f"{soname} is on Lambda's {label} image, but {self._copies()} hold none to show: "
                             "this may be the sandbox's failure, not the layer's")
            elif self.libraries.status(soname) == "unknown":
                lines.append(f"{soname}: the table of {label} is partial and does not list it, so the sandbox hid "
                             "it; Lambda may or may not have it")
            else:
                lines.append(f"{soname} is not on Lambda's {label} image: the layer must bring it (a wheel "
                             "repaired by auditwheel bundles it), or the package must not need it")
        return "; ".join(lines) or None


    def wrong_machine(self, output: str, tree: Path) -> tuple[str, ...]:
        """The layer's files the failed run could not load because they are another machine's, in words.

        ld.so says only "cannot open shared object file" of a file of another
        machine, and Python looks only for its own platform's extension
        suffix, so a module built for x86_64 is "No module named" on aarch64:
        both are what Lambda would say, and neither says why.
        """
        want, label = MACHINE[self.libraries.arch], self.libraries.label
        found: dict[Path, str] = {}
        for named in _MISSING_RE.findall(output):
            if named.startswith(LAYER_MOUNT + "/"):
                found.setdefault(tree / named[len(LAYER_MOUNT) + 1:], named)
        for module in _NO_MODULE_RE.findall(output):
            parts = module.split(".")
            for base in (tree, *(tree / p.lstrip("/").removeprefix("opt/python/") for p in self.python_paths[1:])):
                for candidate in sorted(base.joinpath(*parts[:-1]).glob(f"{parts[-1]}.*.so")):
                    found.setdefault(candidate, f"{LAYER_MOUNT}/{candidate.relative_to(tree).as_posix()}")
        lines = []
        for path, shown in found.items():
            info = _elf(path)
            if info is not None and info.machine != want:
                lines.append(f"{shown} is built for {info.machine}, and {label} runs {want} code")
        return tuple(lines)


def prepare_sandbox(interpreter: Interpreter, runtime: Runtime, arch: str, runner: Runner) -> LambdaSandbox:
    """Work out what the sandbox shows for ``interpreter`` as ``runtime`` on ``arch`` (reads ELF files only).

    Raises VerifyError if the interpreter cannot be asked where its stdlib is.
    """
    libraries = system_libraries(runtime, arch)
    machine = MACHINE[arch]
    result = runner.run(interpreter.argv("-I", "-S", "-c", _PROBE), timeout=60)
    if not result.ok:
        raise VerifyError(f"python{interpreter.version} at {interpreter.path} did not say where its stdlib is: "
                          f"{decisive_line(result.stdout + result.stderr)}",
                          hint=(f"check the root {interpreter.root} (.ci/test-arm64-roots.sh remakes it)"
                                if interpreter.root else
                                f"point LAYERS_PYTHON_{interpreter.version.replace('.', '_')} at a working "
                                f"python{interpreter.version}") + ", or build with --backend docker")
    where = json.loads(result.stdout.strip().splitlines()[-1])
    executable = Path(where["executable"])
    stdlib_dirs = list(dict.fromkeys(Path(where[key]) for key in ("stdlib", "platstdlib")))
    dynload = Path(where["dynload"]) if where["dynload"] else None

    root, host = interpreter.root, interpreter.host_path
    search = _host_library_dirs(machine, root)
    system: dict[str, Path] = {}
    not_here = []
    for soname in sorted(libraries.present):
        copy = _find(soname, search, (), machine)
        if copy:
            system[soname] = copy
        else:
            not_here.append(soname)

    own_files = [executable, *stdlib_dirs]
    if dynload and not any(_inside(dynload, d) for d in stdlib_dirs):
        own_files.append(dynload)
    roots = [host(executable)]
    held_back = []
    if dynload and host(dynload).is_dir():
        for module in sorted(host(dynload).glob("*.so")):
            (held_back if module.name.split(".")[0] in HIDDEN_MODULES else roots).append(module)
    lang: dict[str, Path] = {}
    for soname, path in _closure(roots, search, machine, root).items():
        if soname in system or any(_inside(path, host(d)) for d in own_files):
            continue
        if soname.startswith("libpython"):
            # Shown at its own path (inside the root, for a root's interpreter), where the binary's RUNPATH finds it.
            own_files.append(path if root is None else Path("/", path.relative_to(root)))
            continue
        lang[soname] = path

    # What this machine's copies need beyond the table (its libselinux needs libpcre2-8, Amazon Linux's
    # libpcre): Lambda's own copies have their own dependencies, so these are shown too, at /var/lang/lib,
    # unless the table says Lambda lacks them.
    support: dict[str, list[str]] = {}
    for soname, path in _closure(system.values(), search, machine, root).items():
        if soname in system or soname in lang:
            continue
        for needer, needer_path in [*system.items(), *lang.items()]:
            if soname in _needed(needer_path):
                support.setdefault(soname, []).append(needer)
        if soname not in libraries.absent:
            lang[soname] = path

    # A held-back module still loads where the table shows its libraries (libcrypt.so.1 on Amazon Linux 1).
    hidden = [m.name.split(".")[0] for m in held_back
              if any(n not in system and n not in lang and not n.startswith("libpython") for n in _needed(m))]

    loader_path = _interp(host(executable))
    if loader_path and (Path(loader_path).parent.as_posix() in ("/lib64", SYSTEM_LIB)
                        or libraries.loader not in system):
        loader_path = None
    return LambdaSandbox(
        interpreter=interpreter, libraries=libraries, python_paths=layer_python_paths(runtime),
        system=system, lang=lang, not_here=tuple(not_here),
        support={k: tuple(v) for k, v in sorted(support.items())}, own_files=tuple(own_files),
        loader_path=loader_path, user_namespace=_user_namespace_works(runner), ldconfig=_static_ldconfig(root),
        hidden_modules=tuple(sorted(set(hidden))),
    )


def _user_namespace_works(runner: Runner) -> bool:
    # Lambda does not run functions as root; a user namespace lets the sandbox do the same.
    result = runner.run([BWRAP, "--unshare-user", "--uid", LAMBDA_UID, "--gid", LAMBDA_GID,
                         "--ro-bind", "/", "/", "true"], timeout=30)
    return result.ok


def _static_ldconfig(root: Path | None = None) -> Path | None:
    # Only a static ldconfig runs in the sandbox without libraries of its own (glibc's always is). A root's
    # is its machine's, which writes a cache its loader reads (this machine's would skip other-machine files).
    base = root or Path("/")
    for candidate in (base / "usr/sbin/ldconfig", base / "sbin/ldconfig"):
        info = _elf(candidate)
        if info is not None and not info.needed:
            return candidate.resolve()
    return None


def _host_library_dirs(machine: str, root: Path | None = None) -> list[Path]:
    """Where this machine's (or ``root``'s) ld.so finds libraries: the system directories, then ld.so.conf's."""
    triplet = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}[machine]
    dirs = [Path(p) for p in (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/lib", "/usr/lib")]
    dirs += _conf_dirs(_rooted(Path("/etc/ld.so.conf"), root), set(), root)
    return [d for d in dict.fromkeys(_rooted(d, root) for d in dirs) if d.is_dir()]


def _rooted(path: Path, root: Path | None) -> Path:
    """An absolute path as seen from inside ``root``, as a path on this machine (a root-relative one stays)."""
    if root is None or not path.is_absolute() or _inside(path, root):
        return path
    return root / path.relative_to("/")


def _conf_dirs(conf: Path, seen: set[Path], root: Path | None = None) -> list[Path]:
    if conf in seen or not conf.is_file():
        return []
    seen.add(conf)
    out: list[Path] = []
    for line in conf.read_text(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("include "):
            for pattern in line.split()[1:]:
                base = str(_rooted(Path(pattern), root)) if pattern.startswith("/") else str(conf.parent / pattern)
                for included in sorted(glob.glob(base)):
                    out += _conf_dirs(Path(included), seen, root)
        elif line.startswith("/"):
            out.append(Path(line))
    return out


@cache
def _elf(path: Path) -> ElfInfo | None:
    # Cached: the same few hundred system libraries are read for every sandbox of every build.
    try:
        return read_elf(path) if path.is_file() else None
    except VerifyError:
        return None


def _find(soname: str, search: Iterable[Path], own: Iterable[Path], machine: str) -> Path | None:
    """This machine's copy of ``soname`` for ``machine``: the needer's own RPATH/RUNPATH first, as ld.so does."""
    for directory in (*own, *search):
        candidate = directory / soname
        info = _elf(candidate)
        if info is not None and info.machine == machine:
            return candidate
    return None


def _needed(path: Path) -> tuple[str, ...]:
    info = _elf(path)
    return info.needed if info else ()


def _closure(roots: Iterable[Path], search: list[Path], machine: str, root: Path | None = None) -> dict[str, Path]:
    """soname -> host path of every library ``roots`` need, transitively (what ld.so would map)."""
    found: dict[str, Path] = {}
    todo = list(roots)
    done: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in done:
            continue
        done.add(path)
        info = _elf(path)
        if info is None:
            continue
        origin = path.resolve().parent
        own = [_rooted(Path(p.replace("$ORIGIN", str(origin)).replace("${ORIGIN}", str(origin))), root)
               for entry in info.search_paths for p in entry.split(":") if p]
        for soname in info.needed:
            if soname in found:
                continue
            copy = _find(soname, search, own, machine)
            if copy:
                found[soname] = copy
                todo.append(copy)
    return found


def _interp(executable: Path) -> str | None:
    try:
        with open(executable, "rb") as f:
            for segment in ELFFile(f).iter_segments():
                if segment["p_type"] == "PT_INTERP":
                    return segment.get_interp_name()
    except (OSError, ELFError, ValueError, struct.error):  # an unreadable binary has already failed the probe
        return None
    return None


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents
