"""Recipe locks (``recipes/RECIPE.lock``) and the identity of a layer.

A lock pins a recipe's whole stack, per architecture, to exact versions and
file hashes (a ``backends.base.Lock`` for each). It is meant to be
committed: ``layers build`` installs exactly it, hashes enforced, as long as
it was made from the recipe's current requirements; ``layers lock
--upgrade`` and ``layers rebuild`` move it.

A layer's identity is what decides whether a rebuild would make a different
layer: the lock's digest, every recipe setting that changes the built tree
(strip, bytecode, compression, runtime, layer name), the build environment
(the pip backend, or the Docker base image's ID) and the builder's version.
Builds record it in their report and in the published version's description.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .backends.base import Lock
from .errors import UsageError
from .files import read_json
from .recipe import Recipe

FORMAT_VERSION = 1


def requirements_digest(recipe: Recipe) -> str:
    """What the lock was resolved from: the requirement lines (with hashes) and the runtime."""
    basis = [recipe.runtime, sorted(p.text + "".join(f" --hash={h}" for h in p.hashes) for p in recipe.requirements)]
    return hashlib.sha256(json.dumps(basis).encode()).hexdigest()


def layer_identity(recipe: Recipe, lock_digest: str, environment: str) -> str:
    basis = {
        "lock": lock_digest,
        "strip": recipe.strip.model_dump(mode="json"),
        "bytecode": recipe.bytecode,
        "compression": recipe.compression,
        "include": recipe.include.model_dump(mode="json"),
        # A traced layer keeps what its workload uses: another workload, another tree.
        "workload": recipe.smoke.model_dump(mode="json") if recipe.strip.profile == "trace" else None,
        "runtime": recipe.runtime,
        "layer_name": recipe.layer_name,
        "environment": environment,
        "builder": __version__,
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


@dataclass
class LockFile:
    recipe: str
    runtime: str
    requirements_digest: str
    targets: dict[str, Lock] = field(default_factory=dict)  # architecture -> lock

    def fresh_for(self, recipe: Recipe) -> bool:
        return self.runtime == recipe.runtime and self.requirements_digest == requirements_digest(recipe)

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "recipe": self.recipe, "runtime": self.runtime,
                "requirements_digest": self.requirements_digest, "builder_version": __version__,
                "targets": {arch: lock.to_json() for arch, lock in sorted(self.targets.items())}}


def lock_path(recipe: Recipe) -> Path:
    if recipe.source is None:
        raise UsageError(f"recipe {recipe.name} has no file, so it has no lock file")
    return recipe.source.with_suffix(".lock")


def load_lockfile(recipe: Recipe) -> LockFile | None:
    path = lock_path(recipe)
    if not path.is_file():
        return None
    try:
        data = read_json(path, "lock", hint=f"delete it and run: layers lock {recipe.name}")
        return LockFile(recipe=data["recipe"], runtime=data["runtime"],
                        requirements_digest=data["requirements_digest"],
                        targets={arch: Lock.from_json(lock) for arch, lock in data["targets"].items()})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path} is not a lock written by layers lock ({type(exc).__name__}: {exc})",
                         hint=f"delete it and run: layers lock {recipe.name}") from None


def save_lockfile(recipe: Recipe, lockfile: LockFile) -> Path:
    path = lock_path(recipe)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(lockfile.to_json(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def committed_lock(recipe: Recipe, arch: str, notice=lambda text: None) -> Lock | None:
    """The recipe's lock for ``arch`` when it was made from the current requirements; else None, saying why."""
    if recipe.source is None:
        return None
    lockfile = load_lockfile(recipe)
    if lockfile is None:
        return None
    if not lockfile.fresh_for(recipe):
        notice(f"{lock_path(recipe).name} was made from other requirements than the recipe's: resolving afresh "
               f"(run 'layers lock {recipe.name}' to update it)")
        return None
    lock = lockfile.targets.get(arch)
    if lock is None:
        notice(f"{lock_path(recipe).name} has no {arch} entry: resolving afresh")
    return lock


def version_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """``numpy 1.26.3 → 1.26.4``, ``+ idna 3.10``, ``- chardet 5.2.0``: what moved between two resolutions."""
    changes = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            changes.append(f"+ {name} {new}")
        elif new is None:
            changes.append(f"- {name} {old}")
        else:
            changes.append(f"{name} {old} → {new}")
    return changes
