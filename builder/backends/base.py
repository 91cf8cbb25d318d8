"""The seam between the build pipeline and the backends.

A backend opens a ``Session`` for one target: resolve and install the
wheels, plus where the rest of the pipeline runs its target-side tools
(strip, the runtime's Python for bytecode and the smoke test). The pip
backend's session is this machine; the Docker backend's is a build
container, reached through a runner that executes inside it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from ..runner import Runner
from ..runtimes import MACHINE, Runtime
from ..verify.interpreters import Interpreter


@dataclass(frozen=True)
class Target:
    """What a layer is built for: a Lambda runtime on one architecture."""

    runtime: Runtime
    arch: str

    @property
    def machine(self) -> str:
        return MACHINE[self.arch]

    @property
    def label(self) -> str:
        return f"{self.runtime.name}-{self.arch}"

    def describe(self) -> str:
        r = self.runtime
        return f"{r.name} on {r.os_title} (glibc {r.glibc_text}), {self.arch}"


@dataclass(frozen=True)
class LockedWheel:
    name: str
    version: str
    filename: str
    sha256: str
    # "index": downloaded as a wheel; "sdist": built here from the source
    # distribution whose hash is ``source_sha256`` (wheel builds are not
    # byte-reproducible, so the identity of such a wheel is its sdist).
    origin: str = "index"
    source_sha256: str = ""

    @property
    def identity(self) -> str:
        return self.source_sha256 if self.origin == "sdist" else self.sha256


@dataclass(frozen=True)
class Lock:
    recipe: str
    runtime: str
    arch: str
    wheels: tuple[LockedWheel, ...]

    @property
    def digest(self) -> str:
        """Stable across rebuilds: names, versions and upstream hashes only."""
        basis = [(w.name, w.version, w.identity) for w in sorted(self.wheels, key=lambda w: w.name)]
        return hashlib.sha256(json.dumps([self.runtime, self.arch, basis]).encode()).hexdigest()

    def versions(self) -> dict[str, str]:
        return {w.name: w.version for w in self.wheels}

    def to_json(self) -> dict:
        return {
            "recipe": self.recipe,
            "runtime": self.runtime,
            "architecture": self.arch,
            "digest": self.digest,
            "wheels": [asdict(w) for w in sorted(self.wheels, key=lambda w: w.name)],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Lock":
        return cls(
            recipe=data["recipe"],
            runtime=data["runtime"],
            arch=data["architecture"],
            wheels=tuple(LockedWheel(**w) for w in data["wheels"]),
        )


@dataclass(frozen=True)
class Resolution:
    lock: Lock
    wheel_paths: tuple[Path, ...]
    downloaded: tuple[str, ...] = ()  # files fetched over the network (not from a cache)


@dataclass(frozen=True)
class Session:
    """One target's build environment, open for the length of a build."""

    backend: str
    target: Target
    runner: Runner                            # runs target-side tools: strip, the runtime's Python
    interpreter: Interpreter | None           # the runtime's Python, where one can run
    which: Callable[[str], str | None]        # finds a tool where ``runner`` runs
    tmp: Path | None                          # scratch for scripts handed to ``runner`` (None: the system's)
    where: str                                # for the report: "this machine", "container from IMAGE"
    resolve: Callable[..., Resolution]        # (recipe, workdir, lock=None)
    install: Callable[[Resolution, Path], None]  # (resolution, tree)
    notes: tuple[str, ...] = ()
    # (layer root, smoke test) -> (how it ran, None) or (None, why it could not), where the smoke test runs
    # somewhere of its own (the Docker backend: Lambda's runtime image). None: run it with ``runner``.
    run_smoke: Callable[..., tuple[str | None, str | None]] | None = None


class Backend(Protocol):
    name: str

    def session(self, target: Target, scratch: Path) -> AbstractContextManager[Session]:
        """Open the build environment for ``target``; ``scratch`` is the build's working directory."""

    def environment_id(self, target: Target) -> str:
        """The build environment's part of a layer's identity ("pip", "docker:<base image ID>")."""
