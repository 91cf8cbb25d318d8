"""``layers doctor``: what this machine can prove about each runtime's layers, and how to prove more.

For every runtime in ``runtimes.toml`` and each of its architectures, the pip
backend either smoke-tests a layer (with which interpreter: this machine's,
or an emulated one from an arm64 root; in the sandbox of Lambda's libraries
or with this machine's) or only checks its ELF files. Where something is
missing, the steps that would add it: packages to install, the debootstrap
line, the script.

Two parts, so the logic is tested without the machine: ``survey`` looks
(runs each candidate interpreter, bwrap, reads binfmt_misc) and returns
``Facts``; ``diagnose`` is pure: ``Facts`` and the runtimes in, frozen
``Capability`` rows out. The CLI (``builder/cli/doctor.py``) only prints them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..runner import Runner
from ..runtimes import MACHINE, Runtime
from .interpreters import (
    DEBIAN_PYTHONS,
    DEFAULT_ARM64_ROOTS,
    EMULATION,
    HOST_MACHINE,
    ROOT_CACHE,
    ROOTS_ENV,
    Interpreter,
    arm64_roots,
    binfmt_problem,
    debian_suites,
    find_interpreter,
    no_debian_python,
    root_pythons,
)
from .sandbox import sandbox_available

SCRIPT = ".ci/test-arm64-roots.sh"
SCRIPT_SUITES = ("bookworm", "trixie")  # the roots the script makes
MIRROR = "http://deb.debian.org/debian"
Smoke = Literal["native", "emulated", "none"]
_PACKAGES = {"qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap", "bwrap": "bubblewrap"}


@dataclass(frozen=True)
class Facts:
    """What ``survey`` found on this machine; built by hand in tests."""

    host_machine: str
    interpreters: Mapping[tuple[str, str], Interpreter | None]  # (python "3.11", machine) -> found or None
    sandbox: str | None                 # None: bwrap makes the sandbox here; else why not
    binfmt: Mapping[str, str | None]    # machine -> None if its binaries run here (F flag), else why not
    roots: Mapping[Path, tuple[str, ...]]  # each configured arm64 root -> the pythonX.Y binaries it holds
    roots_from_env: bool                # LAYERS_ARM64_ROOTS is set (it replaces the default roots)
    tools: Mapping[str, bool] = field(default_factory=dict)  # qemu-aarch64-static, debootstrap, bwrap -> installed


@dataclass(frozen=True)
class Capability:
    """One runtime on one architecture: what the pip backend proves of its layers here."""

    runtime: str
    arch: str
    python: str
    smoke: Smoke
    interpreter: str | None     # who runs the smoke test, in words
    location: str | None        # where it is: its path on this machine, or the root it runs from
    sandbox: bool               # the smoke test sees only Lambda's libraries
    summary: str                # one line: what a build here proves
    enable: tuple[str, ...]     # steps that would prove more, in order; empty: nothing is missing

    def to_json(self) -> dict:
        return {"runtime": self.runtime, "architecture": self.arch, "python": self.python, "smoke_test": self.smoke,
                "interpreter": self.interpreter, "location": self.location, "lambda_libraries_sandbox": self.sandbox,
                "summary": self.summary, "enable": list(self.enable)}


def survey(runtimes: Iterable[Runtime], runner: Runner) -> Facts:
    """Look at this machine: every runtime's interpreter on each of its machines, bwrap, binfmt, the roots."""
    found: dict[tuple[str, str], Interpreter | None] = {}
    for runtime in runtimes:
        for arch in runtime.architectures:
            key = (runtime.python, MACHINE[arch])
            if key not in found:
                found[key] = find_interpreter(runtime.python, runner, MACHINE[arch])
    roots = {root: root_pythons(root) for root in arm64_roots()}
    return Facts(
        host_machine=HOST_MACHINE, interpreters=found, sandbox=sandbox_available(runner),
        binfmt={"aarch64": binfmt_problem("aarch64")}, roots=roots, roots_from_env=os.environ.get(ROOTS_ENV) is not None,
        tools={tool: shutil.which(tool) is not None for tool in _PACKAGES},
    )


def diagnose(facts: Facts, runtimes: Iterable[Runtime]) -> tuple[Capability, ...]:
    """One row per runtime and architecture, in the table's order (pure)."""
    return tuple(_row(facts, runtime, arch) for runtime in runtimes for arch in runtime.architectures)


def _row(facts: Facts, runtime: Runtime, arch: str) -> Capability:
    machine = MACHINE[arch]
    found = facts.interpreters.get((runtime.python, machine))
    if found is None:
        steps = (_enable_native(runtime.python) if machine == facts.host_machine
                 else _enable_emulated(facts, runtime.python, machine))
        if facts.sandbox is not None and not any("bubblewrap" in step for step in steps):
            steps.append(f"then, for the sandbox of Lambda's libraries: {facts.sandbox}")
        return Capability(runtime.name, arch, runtime.python, "none", None, None, False,
                          f"ELF checks only: {_why_none(facts, runtime.python, machine)}", tuple(steps))
    emulated = machine != facts.host_machine
    who = f"python{found.version} ({found.machine}, " + (f"under emulation: {EMULATION}" if emulated else "native") + ")"
    if found.root is not None:
        who += f" from {found.root}"
    sandbox = facts.sandbox is None
    where = "in the sandbox of Lambda's libraries" if sandbox else "with this machine's libraries, not only Lambda's"
    steps = [] if sandbox else [f"for the sandbox of Lambda's libraries: {facts.sandbox}"]
    location = str(found.root if found.root is not None else found.path)
    return Capability(runtime.name, arch, runtime.python, "emulated" if emulated else "native", who, location,
                      sandbox, f"smoke test by {who}, {where}", tuple(steps))


def _why_none(facts: Facts, python: str, machine: str) -> str:
    if machine == facts.host_machine:
        return f"no python{python} on this machine"
    if machine != "aarch64":
        return f"no {machine} python{python}: only aarch64 roots are emulated here"
    if not debian_suites(python):
        return no_debian_python(python)
    problem = facts.binfmt.get(machine)
    if problem:
        return f"no aarch64 python{python} can run here: {problem}"
    holding = [root for root, versions in facts.roots.items() if python in versions]
    if holding:
        return f"python{python} in {holding[0]} did not answer"
    return f"no arm64 root holds python{python}"


def _enable_native(python: str) -> list[str]:
    return [(f"install python{python}: pyenv install {python} (or point LAYERS_PYTHON_{python.replace('.', '_')} "
            "at one)")]


def _enable_emulated(facts: Facts, python: str, machine: str) -> list[str]:
    if machine != "aarch64":
        return [f"build {machine} layers on an {machine} machine, or with --backend docker"]
    suites = debian_suites(python)
    if not suites:
        return [(f"name an arm64 root of another system that holds python{python} in {ROOTS_ENV}, or build on an "
                "arm64 machine, or with --backend docker")]
    steps = []
    packages = [package for tool, package in _PACKAGES.items() if not facts.tools.get(tool, True)]
    if packages:
        steps.append("apt-get install " + " ".join(packages))
    if facts.binfmt.get(machine):
        steps.append("register the emulator (as root): mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; "
                     f"update-binfmts --enable qemu-aarch64 ({SCRIPT} does it, and checks the F flag)")
    holding = [root for root, versions in facts.roots.items() if python in versions]
    if holding:
        if not facts.binfmt.get(machine):
            steps.append(f"python{python} in {holding[0]} did not answer: remove the root and make it again "
                         f"({SCRIPT})")
        return steps
    suite = suites[0]
    root = ROOT_CACHE / f"arm64-{suite}"
    by_script = f" (or run {SCRIPT}, which makes both bookworm's and trixie's)" if suite in SCRIPT_SUITES else ""
    steps.append(f"make an arm64 root of Debian {suite} (a few minutes, as root): debootstrap --arch=arm64 "
                 f"--variant=minbase --include={DEBIAN_PYTHONS[suite][1]} {suite} {root} {MIRROR}{by_script}")
    if facts.roots_from_env:
        steps.append(f"add {root} to {ROOTS_ENV} (it replaces the default roots)")
    elif root not in DEFAULT_ARM64_ROOTS:
        steps.append(f"name {root} in {ROOTS_ENV}")
    return steps
