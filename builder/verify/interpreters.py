"""Find an interpreter of a runtime's Python version (``pythonX.Y``) for a machine.

Used to compile bytecode for the target and to smoke-test a layer without
Docker. Candidates are checked by running them: pyenv shims on PATH exist for
every version but answer only for the global one.

For the host's own machine the candidates are this machine's (the
``LAYERS_PYTHON_X_Y`` variable, pyenv, /usr/local/bin, /usr/bin, PATH). For
another machine (aarch64 on an x86_64 host) they come from configured
*roots*: directories holding a Debian system of that machine, each made by
debootstrap (``.ci/test-arm64-roots.sh`` makes bookworm's python3.11 and
trixie's python3.13). The kernel runs their binaries with QEMU's user-mode
emulator, registered in binfmt_misc with the F flag, so it also works inside
namespaces where the emulator's path is not visible. Such an
``Interpreter`` has ``root`` set and its ``path`` is the path inside the
root; ``argv`` runs it under bubblewrap with the root's /usr in place of
this machine's (the rest of the file system as it is, so build trees and
scripts keep their paths), and ``sandbox.prepare_sandbox`` shows the
root's libraries and stdlib instead of this machine's.

Roots: ``LAYERS_ARM64_ROOTS`` (colon-separated directories) when it is set,
even to nothing; else whichever of ``DEFAULT_ARM64_ROOTS`` exist.
``missing_reason`` says in plain words why no interpreter was found, and
``DEBIAN_PYTHONS`` which Debian release would give one.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..errors import ToolMissing
from ..runner import Runner

_PROBE = "import sys, platform; print('%d.%d' % sys.version_info[:2], platform.machine())"
_HOST_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())
HOST_MACHINE = _HOST_MACHINE

ROOTS_ENV = "LAYERS_ARM64_ROOTS"
ROOT_CACHE = Path("/var/cache/layers-test")
# Debian releases whose arm64 python3 is a Lambda runtime's version: suite -> (version, package to include).
DEBIAN_PYTHONS = {"bullseye": ("3.9", "python3"), "bookworm": ("3.11", "python3"), "trixie": ("3.13", "python3"),
                  "sid": ("3.14", "python3.14")}
DEFAULT_ARM64_ROOTS = tuple(ROOT_CACHE / f"arm64-{suite}" for suite in DEBIAN_PYTHONS)
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
EMULATION = "QEMU user mode via binfmt"
_BINFMT_NAME = {"aarch64": "qemu-aarch64", "x86_64": "qemu-x86_64"}


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: str  # "3.6"
    machine: str  # "x86_64" | "aarch64"
    root: Path | None = None  # a system of ``machine`` it lives in (``path`` is inside it); None: this machine's

    @property
    def emulated(self) -> bool:
        """Run by QEMU's user-mode emulator rather than by this machine's CPU."""
        return self.machine != _HOST_MACHINE

    def host_path(self, path: str | os.PathLike) -> Path:
        """Where a path the interpreter sees is on this machine."""
        path = Path(path)
        if self.root is None or not path.is_absolute():
            return path
        return self.root / path.relative_to("/")

    def argv(self, *args: str | os.PathLike) -> list[str]:
        """The command that runs this interpreter with ``args``, on this machine's file system."""
        if self.root is None:
            return [str(self.path), *map(str, args)]
        return [*root_prefix(self.root), str(self.path), *map(str, args)]

    def describe(self) -> str:
        """Which interpreter this is, in words a report can carry."""
        if self.root is None:
            return f"python{self.version} at {self.path} ({self.machine})"
        return (f"an {self.machine} python{self.version} ({self.path} in the root {self.root})"
                + (f" under emulation ({EMULATION})" if self.emulated else ""))


def root_prefix(root: Path) -> list[str]:
    """bwrap arguments that replace this machine's /usr with ``root``'s and keep everything else.

    The root's merged /bin, /lib and /sbin follow its /usr where this
    machine's are symlinks too (Debian and most others); where this machine's
    are directories, the root's are bound over them. The root's ld.so.cache
    replaces this machine's, which lists other-machine libraries. /sys is
    hidden, as in the sandbox: it describes this machine's CPUs, which
    aarch64 code misreads (onnxruntime 1.32's cpuinfo segfaults under QEMU
    when it can read an x86_64 /sys). A path under this machine's /usr is not
    visible to the interpreter.
    """
    args = ["bwrap", "--bind", "/", "/", "--tmpfs", "/sys", "--ro-bind", str(root / "usr"), "/usr"]
    for name in ("bin", "lib", "sbin"):
        if (root / name).is_symlink() and not Path("/", name).is_symlink() and (root / "usr" / name).is_dir():
            args += ["--ro-bind", str(root / "usr" / name), f"/{name}"]
    if (root / "etc" / "ld.so.cache").is_file():
        args += ["--ro-bind", str(root / "etc" / "ld.so.cache"), "/etc/ld.so.cache"]
    return [*args, "--"]


def arm64_roots() -> tuple[Path, ...]:
    """The configured arm64 roots: ``LAYERS_ARM64_ROOTS`` if set, else the default ones that exist."""
    configured = os.environ.get(ROOTS_ENV)
    if configured is not None:
        return tuple(dict.fromkeys(Path(p) for p in configured.split(":") if p))
    return tuple(p for p in DEFAULT_ARM64_ROOTS if p.is_dir())


def root_pythons(root: Path) -> tuple[str, ...]:
    """The ``pythonX.Y`` versions a root's /usr/bin holds ("3.11"); none where it cannot be read."""
    try:
        names = [p.name for p in (root / "usr" / "bin").glob("python3.*") if p.is_file()]
    except OSError:
        return ()
    return tuple(sorted(n.removeprefix("python") for n in names if n.removeprefix("python3.").isdigit()))


def binfmt_problem(machine: str) -> str | None:
    """None if the kernel runs ``machine``'s binaries with an F-flag handler (namespaces too), else why not."""
    name = _BINFMT_NAME.get(machine)
    if name is None:
        return f"no emulator is known for {machine}"
    if not (BINFMT_DIR / "register").exists():
        return f"binfmt_misc is not mounted at {BINFMT_DIR}"
    entry = BINFMT_DIR / name
    try:
        lines = entry.read_text().splitlines()
    except OSError:
        return f"no binfmt handler for {machine} ({entry} is missing): qemu-user-static is not registered"
    if "enabled" not in lines:
        return f"the binfmt handler {name} is disabled"
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if "F" not in flags:
        return (f"the binfmt handler {name} lacks the F flag, so the emulator cannot be found inside the "
                "sandbox's namespaces")
    return None


def _candidates(version: str) -> list[Path]:
    found: list[Path] = []
    env_key = "LAYERS_PYTHON_" + version.replace(".", "_")
    if os.environ.get(env_key):
        found.append(Path(os.environ[env_key]))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv_root.is_dir():
        def patch_level(p: Path) -> Version:
            try:
                return Version(p.name)
            except InvalidVersion:
                return Version("0")
        matching = [p for p in pyenv_root.iterdir() if p.name.startswith(version + ".")]
        for root in sorted(matching, key=patch_level, reverse=True):
            found.append(root / "bin" / f"python{version}")
    for directory in ("/usr/local/bin", "/usr/bin"):
        found.append(Path(directory) / f"python{version}")
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(Path(on_path))
    return found


def find_interpreter(version: str, runner: Runner, machine: str | None = None) -> Interpreter | None:
    """The first working ``pythonX.Y`` for ``machine`` (default: the host's): this machine's, or a root's."""
    want_machine = machine or _HOST_MACHINE
    if want_machine != _HOST_MACHINE:
        return _find_in_roots(version, runner, want_machine)
    seen: set[Path] = set()
    for candidate in _candidates(version):
        if candidate in seen or not candidate.is_file():
            continue
        seen.add(candidate)
        result = runner.run([candidate, "-I", "-S", "-c", _PROBE], timeout=30)
        if result.ok and result.stdout.split() == [version, want_machine]:
            return Interpreter(candidate, version, want_machine)
    return None


def _find_in_roots(version: str, runner: Runner, machine: str) -> Interpreter | None:
    if machine != "aarch64" or binfmt_problem(machine):
        return None
    for root in arm64_roots():
        inside = Path("/usr/bin") / f"python{version}"
        if version not in root_pythons(root):
            continue
        candidate = Interpreter(inside, version, machine, root=root.resolve())
        try:
            result = runner.run(candidate.argv("-I", "-S", "-c", _PROBE), timeout=60)
        except ToolMissing:
            return None  # no bwrap: missing_reason says so
        if result.ok and result.stdout.split() == [version, machine]:
            return candidate
    return None


def debian_suites(version: str) -> list[str]:
    """The Debian releases whose arm64 packages hold python``version``."""
    return [suite for suite, (held, _) in DEBIAN_PYTHONS.items() if held == version]


def no_debian_python(version: str) -> str:
    """Why no aarch64 python``version`` can be had, when no Debian release has it."""
    have = [f"{held} in {suite}" for suite, (held, _) in DEBIAN_PYTHONS.items() if suite != "sid"]
    return (f"no aarch64 python{version} can be had here: Debian has {', '.join(have[:-1])} and {have[-1]}, "
            f"and python{version} in none of its releases")


def missing_reason(version: str, machine: str | None = None) -> str:
    """Why ``find_interpreter(version, runner, machine)`` found nothing, in one plain sentence."""
    want = machine or _HOST_MACHINE
    if want == _HOST_MACHINE:
        return (f"no python{version} for {want} on this machine (pyenv, /usr/bin, PATH or "
                f"LAYERS_PYTHON_{version.replace('.', '_')})")
    if want != "aarch64":
        return f"no python{version} for {want}: only aarch64 can be emulated here"
    suites = debian_suites(version)
    if not suites:
        return no_debian_python(version) + f" (an arm64 root of another system holding one can be named in {ROOTS_ENV})"
    problem = binfmt_problem(want)
    if problem:
        return f"no aarch64 python{version} can run here: {problem} (run .ci/test-arm64-roots.sh as root)"
    if shutil.which("bwrap") is None:
        return f"no aarch64 python{version} can run here: bwrap is not installed (apt-get install bubblewrap)"
    roots = arm64_roots()
    if not roots:
        where = (f"{ROOTS_ENV} names none" if os.environ.get(ROOTS_ENV) is not None
                 else f"none of {', '.join(map(str, DEFAULT_ARM64_ROOTS))} exists")
        return f"no arm64 root holds an aarch64 python{version}: {where} (make one with .ci/test-arm64-roots.sh)"
    absent = [str(root) for root in roots if not root.is_dir()]
    if absent:
        return (f"{ROOTS_ENV} names {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} no directory, "
                f"and no other root holds an aarch64 python{version}")
    return (f"none of the arm64 roots ({', '.join(map(str, roots))}) holds a working aarch64 python{version}: "
            f"Debian {suites[0]} has it (`layers doctor` says how to make its root)")
