"""The no-Docker backend: cross-platform pip on the host.

pip is told the target exactly (``--platform`` for every manylinux tag up to
the runtime's glibc, ``--python-version``, ``--implementation cp``, ``--abi``)
and ``--only-binary=:all:``, so it picks the newest release that has a wheel
the runtime can load and never a newer-glibc one. A requirement that exists
only as a source distribution is built into a wheel here when it is pure
Python (old gast, termcolor, html5lib); native code cannot be compiled for
another platform on the host, so that is an error pointing to Docker.

The Docker backend reuses this class with a runner that executes in the
build container and ``build_native=True``: the same tag rules, but a native
sdist is compiled there, by the image's compiler against its glibc, into a
``linux_<machine>`` wheel that only that backend accepts.

With a lock (``Lock``), exactly its versions are fetched (``--no-deps``) and
every file is checked against the hash the lock records.

Every wheel fetched from the index is kept in a wheel store (``--find-links``
on later runs, which pip ranks before the index for the same file), so a
rebuild asks the index what to install but downloads no wheel again. It works
where pip's HTTP cache does not: behind proxies that strip Cache-Control.
An index never serves two files under one wheel name, so the name is the key.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from ..errors import ResolveError, UsageError
from ..recipe import Recipe
from ..runner import Result, Runner
from ..runtimes import wheel_min_glibc
from ..verify.interpreters import find_interpreter
from ..verify.output import decisive_line, keep_output
from .base import Lock, LockedWheel, Resolution, Session, Target

# Reproducible wheels from sdists, and no prompts from pip.
_PIP_ENV = {"SOURCE_DATE_EPOCH": "315532800", "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")
_WRONG_PYTHON = re.compile(r"Package '([^']+)' requires a different Python")
_DEPENDS_ON = re.compile(r"^\s*\S+ \S+ depends on (\S+)", re.M)
# A file pip fetched over the network, not from its cache.
_DOWNLOADED = re.compile(r"^\s*Downloading\s+(?:\S*/)?([^/\s]+\.(?:whl|tar\.gz|zip))", re.M)
_FETCHED = re.compile(r"(?:Processing|Downloading|Using cached|File was already downloaded)\s+(?:\S*/)?([^/\s]+\.(?:whl|tar\.gz|zip))")
# Enough for a deep stack; more means pip and we disagree and would loop.
_MAX_SDIST_BUILDS = 25


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_SUBPROCESS_FAILED = ("subprocess-exited-with-error", "metadata-generation-failed")


def _requirements_of(recipe: Recipe) -> str:
    """Where the user changes a pin: "recipes/demo.toml: requirements"."""
    if recipe.source and recipe.source.name != "<recipe>":  # parse_recipe's name for a recipe from no file
        return f"{recipe.source}: requirements"
    return f"the requirements of recipe {recipe.name!r}"


class PipBackend:
    name = "pip"

    def __init__(self, runner: Runner, cache_dir: Path, *, python: str | None = None,
                 build_native: bool = False, wheel_store: Path | None = None, log_dir: Path | None = None) -> None:
        self.runner = runner
        self.python = python or sys.executable
        self.build_native = build_native
        self.built_wheels = cache_dir / "sdist-wheels"
        self.wheel_store = wheel_store or cache_dir / "wheels"
        self.log_dir = log_dir or cache_dir / "logs"  # pip's whole output when it fails; the error has one line
        self.downloaded: list[str] = []

    def environment_id(self, target: Target) -> str:
        """What the build environment contributes to a layer's identity: wheels only, no compiler."""
        return "pip"

    @contextmanager
    def session(self, target: Target, scratch: Path) -> Iterator[Session]:
        """Everything on the host: pip here, the host's strip, a pyenv/system interpreter."""
        interpreter = find_interpreter(target.runtime.python, self.runner, target.machine)
        notes = ()
        if interpreter is not None and interpreter.emulated:
            # Bytecode and the smoke test for arm64 on an x86_64 machine: Debian's aarch64 python from an arm64 root.
            notes = ((f"python{interpreter.version} for {target.arch}: {interpreter.describe()}; bytecode (if the "
                      "recipe asks for it) and the smoke test run with it, and import times are not measured "
                      "(emulated times say nothing of Lambda's)"),)
        yield Session(
            backend=self.name, target=target, runner=self.runner, interpreter=interpreter, which=shutil.which,
            tmp=None, where="this machine", notes=notes,
            resolve=lambda recipe, workdir, lock=None: self.resolve(recipe, target, workdir, lock),
            install=lambda resolution, tree: self.install(resolution, target, tree),
        )

    def _pip(self, *args: str) -> list[str]:
        return [self.python, "-m", "pip", *args]

    def _target_options(self, target: Target) -> list[str]:
        options = ["--only-binary=:all:", "--implementation", "cp", "--python-version", target.runtime.python]
        for tag in target.runtime.platform_tags(target.arch):
            options += ["--platform", tag]
        if self.build_native:
            # Wheels compiled in the build container carry the plain tag; the
            # index never serves such wheels, so this admits only ours.
            options += ["--platform", f"linux_{target.machine}"]
        for abi in target.runtime.abis():
            options += ["--abi", abi]
        return options

    # -- resolve ---------------------------------------------------------
    def _download(self, args: list, workdir: Path) -> Result:
        """``pip download`` that steps over releases whose Requires-Python excludes the target.

        pip filters releases by Requires-Python only when the index says it
        up front; mirrors (devpi, Artifactory, a file:// index) often do not,
        and pip then stops with "requires a different Python" instead of
        trying an older release. Exclude that release and ask again.
        """
        constraints = workdir / "python-constraints.txt"
        excluded = self._excluded
        while True:
            constraints.write_text("".join(f"{line}\n" for line in excluded))
            result = self.runner.run(self._pip("download", "--constraint", constraints, *args), env=_PIP_ENV)
            self.downloaded += _DOWNLOADED.findall(result.stdout)
            _raise_on_certificate_failure(result)
            wrong = _WRONG_PYTHON.search(result.stdout + result.stderr)
            if result.ok or not wrong:
                return result
            name = canonicalize_name(wrong.group(1))
            version = _last_fetched_version(result.stdout + result.stderr, name)
            line = f"{name}!={version}"
            if version is None or line in excluded or len(excluded) >= _MAX_SDIST_BUILDS:
                return result
            excluded.append(line)

    def resolve(self, recipe: Recipe, target: Target, workdir: Path, lock: Lock | None = None) -> Resolution:
        """Fetch one wheel per distribution: the newest the pins allow, or exactly the lock's."""
        wheelhouse = workdir / "wheels"
        wheelhouse.mkdir(parents=True, exist_ok=True)
        self.built_wheels.mkdir(parents=True, exist_ok=True)
        self.wheel_store.mkdir(parents=True, exist_ok=True)
        self.downloaded = []
        sdist_hashes: dict[str, str] = self._known_sdist_hashes()
        if lock is not None:
            _check_lock_target(lock, recipe, target)
            requirements = ["--no-deps", *(f"{w.name}=={w.version}" for w in lock.wheels)]
            if self._copy_from_store(lock, wheelhouse, sdist_hashes):
                requirements = []  # every locked file is here already: no index, no network
        else:
            requirements = [pin.text for pin in recipe.requirements]
        if requirements:
            self._fetch(recipe, target, workdir, wheelhouse, requirements, sdist_hashes)
        wheels = self._lock_entries(wheelhouse, sdist_hashes)
        _check_glibc_tags(wheels, target)
        self._check_pinned_hashes(recipe, wheels)
        if lock is not None:
            _check_against_lock(wheels, lock)
        self._store(wheelhouse, wheels)
        resolved = Lock(recipe=recipe.name, runtime=target.runtime.name, arch=target.arch, wheels=tuple(wheels))
        return Resolution(lock=resolved, wheel_paths=tuple(sorted(wheelhouse / w.filename for w in wheels)),
                          downloaded=tuple(sorted(set(self.downloaded))))

    def _fetch(self, recipe: Recipe, target: Target, workdir: Path, wheelhouse: Path, requirements: list[str],
               sdist_hashes: dict[str, str]) -> None:
        """pip download into ``wheelhouse``, building sdists that have no wheel for the target."""
        self._excluded: list[str] = []
        for _ in range(_MAX_SDIST_BUILDS):
            result = self._download(
                ["--dest", wheelhouse, "--find-links", self.built_wheels, "--find-links", self.wheel_store,
                 "--progress-bar", "off",
                 *self._target_options(target), *requirements],
                workdir,
            )
            if result.ok:
                break
            output = result.stdout + result.stderr
            missing = _NOT_FOUND.search(output) or self._excluded_away(result)
            if not missing:
                raise ResolveError(
                    f"pip could not resolve {recipe.name} for {target.describe()}: {decisive_line(output)}",
                    hint=f"check the pins in {_requirements_of(recipe)}"
                         + keep_output(f"resolve-{recipe.name}-{target.label}", output, self.log_dir),
                )
            sdist_hashes.update(self._build_sdist(missing.group(1), recipe, target, workdir))
        else:
            raise ResolveError(
                f"gave up after building {_MAX_SDIST_BUILDS} source distributions for {recipe.name} "
                f"({target.describe()}): pip kept asking for another",
                hint=f"pin releases that ship wheels for {target.runtime.name} in {_requirements_of(recipe)}, "
                     "or build with --backend docker")

    def _copy_from_store(self, lock: Lock, wheelhouse: Path, sdist_hashes: dict[str, str]) -> bool:
        """Put every locked file into ``wheelhouse`` from the stores, if all are there with the locked hash."""
        found = []
        for wheel in lock.wheels:
            if wheel.origin == "sdist":
                path = self.built_wheels / wheel.filename
                ok = path.is_file() and sdist_hashes.get(wheel.filename) == wheel.source_sha256
            else:
                path = self.wheel_store / wheel.filename
                ok = path.is_file() and _sha256(path) == wheel.sha256
            if not ok:
                return False
            found.append(path)
        for path in found:
            shutil.copyfile(path, wheelhouse / path.name)
        return True

    def _store(self, wheelhouse: Path, wheels: list[LockedWheel]) -> None:
        """Keep the index's wheels for the next build (never ours: those are per build image)."""
        for wheel in wheels:
            kept = self.wheel_store / wheel.filename
            if wheel.origin != "index" or kept.exists():
                continue
            partial = self.wheel_store / f".{wheel.filename}.partial"
            shutil.copyfile(wheelhouse / wheel.filename, partial)
            os.replace(partial, kept)

    def _excluded_away(self, result: Result) -> re.Match | None:
        """A requirement left with no release once a wrong-Python one was excluded."""
        excluded_names = {line.split("!=")[0] for line in self._excluded}
        for match in _DEPENDS_ON.finditer(result.stdout + result.stderr):
            requirement = match.group(1)
            if canonicalize_name(re.split(r"[<>=!~;\[ ]", requirement)[0]) in excluded_names:
                return match
        return None

    def _known_sdist_hashes(self) -> dict[str, str]:
        known = {}
        for marker in self.built_wheels.glob("*.whl.sdist-sha256"):
            known[marker.name.removesuffix(".sdist-sha256")] = marker.read_text().strip()
        return known

    def _build_sdist(self, requirement: str, recipe: Recipe, target: Target, workdir: Path) -> dict[str, str]:
        """Build the sdist of ``requirement`` into a wheel (pure, unless ``build_native``), or explain why not."""
        sdists = workdir / "sdists"
        shutil.rmtree(sdists, ignore_errors=True)
        got = self._download(
            ["--no-deps", "--no-binary", ":all:", "--python-version", target.runtime.python,
             "--dest", sdists, "--progress-bar", "off", requirement],
            workdir,
        )
        files = sorted(sdists.glob("*")) if sdists.is_dir() else []
        output = got.stdout + got.stderr
        if not got.ok and any(marker in output for marker in _SUBPROCESS_FAILED):
            # The source was found; preparing it (setup.py egg_info) failed.
            raise self._source_build_failed(f"the source of {requirement}", requirement, target, output)
        if not got.ok or not files:
            raise ResolveError(
                f"no wheel of {requirement} loads on {target.describe()}, and no source distribution either: "
                + decisive_line(output),
                hint=f"relax the pin of {requirement} in {_requirements_of(recipe)}"
                     + keep_output(f"resolve-{recipe.name}-{target.label}", output, self.log_dir),
            )
        sdist = files[0]
        out = workdir / "built"
        shutil.rmtree(out, ignore_errors=True)
        built = self.runner.run(self._pip("wheel", "--no-deps", "--progress-bar", "off", "--wheel-dir", out, sdist),
                                env=_PIP_ENV)
        wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
        if not built.ok or not wheels:
            raise self._source_build_failed(sdist.name, requirement, target, built.stdout + built.stderr)
        wheel = wheels[0]
        _, _, _, tags = parse_wheel_filename(wheel.name)
        if not self.build_native and not all(tag.platform == "any" and tag.abi == "none" for tag in tags):
            name, version = parse_sdist_filename(sdist.name)
            raise ResolveError(
                f"{name} {version} has no wheel for {target.describe()} and its source has native code",
                hint="build it with --backend docker, which compiles inside a Lambda-like container",
            )
        shutil.copy2(wheel, self.built_wheels / wheel.name)
        source_sha = _sha256(sdist)
        (self.built_wheels / f"{wheel.name}.sdist-sha256").write_text(source_sha + "\n")
        return {wheel.name: source_sha}

    def _source_build_failed(self, what: str, requirement: str, target: Target, output: str) -> ResolveError:
        """The error for a source build that failed: the build tool's decisive line, and what to try."""
        hint = ("it may need a system library's headers or tools: add them to a base image of your own "
                "(--base-image)" if self.build_native else
                "use --backend docker to build it inside a Lambda-like container")
        return ResolveError(
            f"{what} (no wheel for {target.describe()}) failed to build: {decisive_line(output)}",
            hint=hint + keep_output(f"build-{requirement}-{target.label}", output, self.log_dir),
        )

    def _lock_entries(self, wheelhouse: Path, sdist_hashes: dict[str, str]) -> list[LockedWheel]:
        entries = []
        for path in sorted(wheelhouse.glob("*.whl")):
            name, version, _, _ = parse_wheel_filename(path.name)
            source = sdist_hashes.get(path.name, "")
            entries.append(LockedWheel(
                name=str(name), version=str(version), filename=path.name, sha256=_sha256(path),
                origin="sdist" if source else "index", source_sha256=source,
            ))
        names = [e.name for e in entries]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            # A stale wheel in a reused wheelhouse; the workdir is fresh per build, so this is a bug.
            raise ResolveError(f"more than one wheel for {', '.join(sorted(duplicates))} in {wheelhouse}",
                               hint="the build's wheel directory is fresh, so this is a bug: please report it "
                                    "with the output of layers build -v")
        return entries

    @staticmethod
    def _check_pinned_hashes(recipe: Recipe, wheels: list[LockedWheel]) -> None:
        by_name = {canonicalize_name(w.name): w for w in wheels}
        for pin in recipe.requirements:
            if not pin.hashes:
                continue
            wheel = by_name.get(pin.name)
            if wheel is None:
                continue
            digest = f"sha256:{wheel.identity}"
            if digest not in pin.hashes:
                raise ResolveError(
                    f"{wheel.filename} has {digest}, which the recipe does not list for {pin.name}",
                    hint="the pinned hash belongs to another file; update it after checking the new one",
                )

    # -- install ---------------------------------------------------------
    def install(self, resolution: Resolution, target: Target, tree: Path) -> None:
        tree.mkdir(parents=True, exist_ok=True)
        result = self.runner.run(
            self._pip("install", "--target", tree, "--no-deps", "--no-index", "--no-compile",
                      "--progress-bar", "off", *self._target_options(target), *resolution.wheel_paths),
            env={**_PIP_ENV, "PIP_BREAK_SYSTEM_PACKAGES": "1"},  # --target never touches the image's Python
        )
        if not result.ok:
            output = result.stdout + result.stderr
            raise ResolveError(
                f"pip install failed for {target.describe()}: {decisive_line(output)}",
                hint="the resolved wheels did not install; run again with -v to see the pip command"
                     + keep_output(f"install-{target.label}", output, self.log_dir))
        normalise_installed_tree(tree)


def _raise_on_certificate_failure(result: Result) -> None:
    if "CERTIFICATE_VERIFY_FAILED" in result.stdout + result.stderr:
        raise ResolveError(
            "pip could not verify the package index's TLS certificate (CERTIFICATE_VERIFY_FAILED)",
            hint="behind a TLS-intercepting proxy, point SSL_CERT_FILE, REQUESTS_CA_BUNDLE or PIP_CERT at a bundle "
                 "holding its CA (the Docker backend passes those into the build container)")


def _check_lock_target(lock: Lock, recipe: Recipe, target: Target) -> None:
    if (lock.runtime, lock.arch) != (target.runtime.name, target.arch):
        raise UsageError(f"the lock is for {lock.runtime} {lock.arch}, this build is for {target.label}",
                         hint="use the lock written for this runtime and architecture")
    if lock.recipe != recipe.name:
        raise UsageError(f"the lock is for recipe {lock.recipe!r}, not {recipe.name!r}",
                         hint=f"use the lock written for {recipe.name} (dist/{recipe.name}/*.lock.json)")


def _check_against_lock(wheels: list[LockedWheel], lock: Lock) -> None:
    """Every fetched file must be the one the lock records (by its upstream hash)."""
    locked = {canonicalize_name(w.name): w for w in lock.wheels}
    for wheel in wheels:
        expected = locked.get(canonicalize_name(wheel.name))
        if expected is None or expected.version != wheel.version:
            raise ResolveError(f"{wheel.filename} is not in the lock", hint="the lock is incomplete; re-create it")
        if expected.identity != wheel.identity:
            kind = "source distribution" if wheel.origin == "sdist" else "wheel"
            raise ResolveError(
                f"the {kind} fetched for {wheel.name} {wheel.version} has sha256 {wheel.identity[:16]}..., "
                f"the lock records {expected.identity[:16]}...",
                hint="the index serves another file than when the lock was made; check it, then re-lock")


def _check_glibc_tags(wheels: list[LockedWheel], target: Target) -> None:
    """pip was asked for the runtime's tags only; make sure that is what came back.

    Wheels compiled here from sources carry ``linux_<machine>``, which
    promises nothing; the ELF check in verify reads what their code needs.
    """
    for wheel in wheels:
        if wheel.origin == "sdist":
            continue
        needs = wheel_min_glibc(wheel.filename)
        if needs is not None and needs > target.runtime.glibc:
            raise ResolveError(f"{wheel.filename} needs glibc {needs[0]}.{needs[1]}, "
                               f"{target.runtime.name} has {target.runtime.glibc_text}",
                               hint=f"pin a release of {wheel.name} with a wheel for glibc "
                                    f"{target.runtime.glibc_text} (manylinux2014 or older), or check the index")


def _last_fetched_version(output: str, name: str) -> str | None:
    """The version of ``name`` pip fetched last (the one it then rejected)."""
    version = None
    for filename in _FETCHED.findall(output):
        try:
            if filename.endswith(".whl"):
                got_name, got_version, _, _ = parse_wheel_filename(filename)
            else:
                got_name, got_version = parse_sdist_filename(filename)
        except ValueError:
            continue
        if got_name == name:
            version = str(got_version)
    return version


def normalise_installed_tree(tree: Path) -> None:
    """Remove what an installer writes about *this* install (paths, "requested").

    direct_url.json holds the local wheel's path and REQUESTED marks the
    command line: both differ between builds of the same inputs.
    """
    for dist_info in tree.glob("*.dist-info"):
        dropped = []
        for name in ("direct_url.json", "REQUESTED"):
            if (dist_info / name).exists():
                (dist_info / name).unlink()
                dropped.append(f"{dist_info.name}/{name}")
        record = dist_info / "RECORD"
        if dropped and record.exists():
            lines = [l for l in record.read_text().splitlines() if l.split(",", 1)[0] not in dropped]
            record.write_text("\n".join(lines) + "\n")
