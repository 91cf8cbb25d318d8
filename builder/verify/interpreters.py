"""Find a host interpreter of a runtime's Python version (``pythonX.Y``).

Used to compile bytecode for the target and to smoke-test a layer without
Docker. Candidates are checked by running them: pyenv shims on PATH exist for
every version but answer only for the global one.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..runner import Runner

_PROBE = "import sys, platform; print('%d.%d' % sys.version_info[:2], platform.machine())"
_HOST_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: str  # "3.6"
    machine: str  # "x86_64" | "aarch64"


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
    """The first working ``pythonX.Y`` on this host for ``machine`` (default: the host's)."""
    want_machine = machine or _HOST_MACHINE
    if want_machine != _HOST_MACHINE:
        return None
    seen: set[Path] = set()
    for candidate in _candidates(version):
        if candidate in seen or not candidate.is_file():
            continue
        seen.add(candidate)
        result = runner.run([candidate, "-I", "-S", "-c", _PROBE], timeout=30)
        if result.ok and result.stdout.split() == [version, want_machine]:
            return Interpreter(candidate, version, want_machine)
    return None
