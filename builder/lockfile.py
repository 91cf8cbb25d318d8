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

import difflib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from . import __version__
from .backends.base import Lock, LockedWheel
from .errors import RecipeError, UsageError
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
    if recipe.pack.mode != "none":  # only packed layers say so: unpacked ones keep the identity they had
        basis["pack"] = recipe.pack.model_dump(mode="json")
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


_SHA256 = re.compile(r"[0-9a-f]{64}")
_LOCK_KEYS = {"recipe", "runtime", "architecture", "digest", "wheels"}
_WHEEL_KEYS = {"name", "version", "filename", "sha256", "origin", "source_sha256"}
_MAX_WHEELS = 2000


def parse_lock(data: object) -> Lock:
    """One architecture's lock from untrusted JSON (a lock arrives in pull requests).

    Every file name must be a plain wheel file name of the distribution it is
    recorded for: it is joined to the wheel store's path, so ``../../x`` or
    ``/etc/passwd`` would otherwise read a file from outside the store into the layer.
    Raises ValueError, saying which entry and key is wrong.
    """
    if not isinstance(data, dict) or set(data) - _LOCK_KEYS or not {"recipe", "runtime", "architecture",
                                                                     "wheels"} <= set(data):
        raise ValueError(f"a lock is an object with the keys {', '.join(sorted(_LOCK_KEYS))}")
    for key in ("recipe", "runtime", "architecture"):
        if not isinstance(data[key], str) or not 0 < len(data[key]) <= 64:
            raise ValueError(f"{key!r} must be a short string")
    if data["architecture"] not in ("x86_64", "arm64"):
        raise ValueError(f"'architecture' must be x86_64 or arm64, not {data['architecture']!r}")
    wheels = data["wheels"]
    if not isinstance(wheels, list) or not 0 < len(wheels) <= _MAX_WHEELS:
        raise ValueError(f"'wheels' must be a list of 1 to {_MAX_WHEELS} entries")
    parsed = []
    for index, entry in enumerate(wheels):
        where = f"wheels[{index}]"
        if not isinstance(entry, dict) or set(entry) - _WHEEL_KEYS or not {"name", "version", "filename",
                                                                           "sha256"} <= set(entry):
            raise ValueError(f"{where} must be an object with the keys {', '.join(sorted(_WHEEL_KEYS))}")
        if not all(isinstance(value, str) and len(value) <= 256 for value in entry.values()):
            raise ValueError(f"{where}: every value must be a string of at most 256 characters")
        wheel = LockedWheel(**entry)
        _check_locked_file(wheel, where)
        parsed.append(wheel)
    return Lock(recipe=data["recipe"], runtime=data["runtime"], arch=data["architecture"], wheels=tuple(parsed))


def _check_locked_file(wheel: LockedWheel, where: str) -> None:
    name = wheel.filename
    if Path(name).name != name or name in ("", ".", "..") or "\\" in name or "\x00" in name:
        raise ValueError(f"{where}: filename {name!r} is not a plain file name (it must stay in the wheel store)")
    try:
        dist, version, _, _ = parse_wheel_filename(name)
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise ValueError(f"{where}: filename {name!r} is not a wheel file name ({exc})") from None
    if dist != canonicalize_name(wheel.name) or str(version) != wheel.version:
        raise ValueError(f"{where}: filename {name!r} is not {wheel.name} {wheel.version}")
    if not _SHA256.fullmatch(wheel.sha256):
        raise ValueError(f"{where}: sha256 must be 64 lowercase hex digits")
    if wheel.origin not in ("index", "sdist"):
        raise ValueError(f"{where}: origin must be 'index' or 'sdist', not {wheel.origin!r}")
    if wheel.origin == "sdist" and not _SHA256.fullmatch(wheel.source_sha256):
        raise ValueError(f"{where}: a wheel built from an sdist needs the sdist's sha256 (source_sha256)")
    if wheel.origin == "index" and wheel.source_sha256:
        raise ValueError(f"{where}: source_sha256 is for wheels built from an sdist (origin 'sdist')")


def lock_path(recipe: Recipe) -> Path:
    if recipe.source is None:
        raise UsageError(f"recipe {recipe.name} has no file, so it has no lock file",
                         hint="load the recipe from its .toml file")
    return recipe.source.with_suffix(".lock")


def load_lockfile(recipe: Recipe) -> LockFile | None:
    path = lock_path(recipe)
    if not path.is_file():
        return None
    try:
        data = read_json(path, "lock", hint=f"delete it and run: layers lock {recipe.name}")
        if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
            raise ValueError("a lock file is an object whose 'targets' maps architectures to locks")
        for key in ("recipe", "runtime", "requirements_digest"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"{key!r} must be a string")
        targets = {}
        for arch, lock in data["targets"].items():
            targets[arch] = parse_lock(lock)
            if targets[arch].arch != arch:
                raise ValueError(f"targets[{arch!r}] is a lock for {targets[arch].arch}")
        return LockFile(recipe=data["recipe"], runtime=data["runtime"],
                        requirements_digest=data["requirements_digest"], targets=targets)
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


def check_drop_names(recipe: Recipe, lock: Lock) -> None:
    """Refuse strip.drop names the locked stack does not hold: a typo would otherwise drop nothing, silently.

    Called at load with a committed lock, else right after resolving, before
    anything is downloaded or installed.
    """
    held = {canonicalize_name(wheel.name) for wheel in lock.wheels}
    missing = [name for name in recipe.strip.drop if name not in held]
    if missing:
        close = {name: difflib.get_close_matches(name, sorted(held), n=1) for name in missing}
        guesses = [f"{name!r} → {close[name][0]!r}" for name in missing if close[name]]
        raise RecipeError(f"{recipe.source or recipe.name}: strip.drop: {', '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not in the {lock.arch} stack "
                          f"({len(held)} distributions)",
                          hint=f"did you mean {', '.join(guesses)}?" if guesses
                          else "remove the name, or add the distribution to requirements")


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
