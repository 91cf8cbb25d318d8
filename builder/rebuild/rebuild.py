"""``layers rebuild``: new upstream releases become new layers, and nothing else does.

For each recipe (several at once, bounded by the machine's cores) and each
of its architectures:

1. resolve the requirements afresh, honouring the recipe's pins and the
   runtime's limits (only wheels the runtime can load);
2. compute the layer's identity (``lockfile.layer_identity``);
3. compare it with what was built last (the report in ``dist/``) and, when
   publishing, with what every asked region's newest version says it is
   (its description carries the identity). Equal: nothing is built,
   uploaded or published;
4. otherwise build from exactly that resolution, verify, update
   ``recipes/RECIPE.lock`` and, when asked, publish.

Each target's outcome says what moved (``numpy 1.26.3 → 1.26.4``), how the
size changed, and which newer upstream releases were not picked because the
runtime cannot load them. A failing recipe does not stop the others.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..backends.base import Lock, Target
from ..backends.select import choose_backend
from ..build import BuildOptions, build
from ..errors import LayerError
from ..lockfile import LockFile, layer_identity, load_lockfile, requirements_digest, save_lockfile, version_changes
from ..publish.artifact import built_zip, load_artifact, published_name
from ..publish.executor import Executor, read_latest
from ..publish.manifest import Manifest, manifest_path
from ..publish.plan import PublishRequest, check_request, identity_marker, make_plan
from ..recipe import Recipe
from ..runner import Runner

_INDEX_VERSIONS = re.compile(r"Available versions:\s*(.+)")


@dataclass(frozen=True)
class TargetOutcome:
    recipe: str
    arch: str
    status: str                    # "unchanged" | "rebuilt" | "published" | "failed"
    changes: tuple[str, ...] = ()
    size_before: int | None = None
    size_after: int | None = None
    notes: tuple[str, ...] = ()
    message: str = ""
    regions_failed: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_json(self) -> dict:
        return {"recipe": self.recipe, "architecture": self.arch, "status": self.status,
                "changes": list(self.changes), "size_before": self.size_before, "size_after": self.size_after,
                "notes": list(self.notes), "message": self.message, "regions_failed": list(self.regions_failed)}


@dataclass
class RebuildOptions:
    out_dir: Path = Path("dist")
    manifests: Path = Path("published")
    publish: PublishRequest | None = None
    base_image: str | None = None
    jobs: int = 0                  # 0: the machine's cores
    time_imports: bool = False


class _Prefixed:
    """A reporter for one recipe among several running at once: lines are prefixed, bars are off."""

    def __init__(self, inner, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def step(self, title: str) -> None:
        self.inner.step(f"[{self.prefix}] {title}")

    def notice(self, text: str) -> None:
        self.inner.notice(f"[{self.prefix}] {text}")

    @contextmanager
    def progress(self, title: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None


@dataclass
class Rebuilder:
    runner: Runner
    reporter: object
    options: RebuildOptions
    aws_factory: Callable[[], object] | None = None
    _aws: object = field(default=None, init=False)
    _aws_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def run(self, recipes: list[Recipe], arch: str | None = None) -> list[TargetOutcome]:
        jobs = self.options.jobs or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(recipes)))) as pool:
            futures = [pool.submit(self._recipe, recipe, arch) for recipe in recipes]
            outcomes = [outcome for future in futures for outcome in future.result()]
        return outcomes

    def aws(self):
        with self._aws_lock:  # one client, one rate limiter, for every recipe
            if self._aws is None:
                self._aws = self.aws_factory()
            return self._aws

    # -- one recipe ---------------------------------------------------------
    def _recipe(self, recipe: Recipe, only_arch: str | None) -> list[TargetOutcome]:
        reporter = _Prefixed(self.reporter, recipe.name)
        lockfile = self._lockfile(recipe)
        outcomes = []
        for arch in recipe.architectures:
            if only_arch and arch != only_arch:
                continue
            try:
                outcome, lock = self._target(recipe, arch, reporter, lockfile)
                if lock is not None and (arch not in lockfile.targets or lockfile.targets[arch].digest != lock.digest):
                    lockfile.targets[arch] = lock
                    lockfile.requirements_digest = requirements_digest(recipe)
                    lockfile.runtime = recipe.runtime
                    save_lockfile(recipe, lockfile)
            except LayerError as error:
                outcome = TargetOutcome(recipe.name, arch, "failed", message=error.message)
            outcomes.append(outcome)
        return outcomes

    @staticmethod
    def _lockfile(recipe: Recipe) -> LockFile:
        try:
            existing = load_lockfile(recipe)
        except LayerError:
            existing = None  # a damaged lock is replaced by the fresh resolution
        return existing or LockFile(recipe.name, recipe.runtime, requirements_digest(recipe))

    def _target(self, recipe: Recipe, arch: str, reporter, lockfile: LockFile) -> tuple[TargetOutcome, Lock | None]:
        target = Target(recipe.runtime_info, arch)
        backend = choose_backend("auto", target, self.runner, reporter,
                                 self.options.base_image or recipe.base_image or None, recipe.runtime_image or None)
        previous = _previous_build(self.options.out_dir, recipe, arch)
        before = previous.report.get("versions", {}) if previous else \
            (lockfile.targets[arch].versions() if arch in lockfile.targets else {})

        reporter.step(f"resolve {arch} afresh")
        lock = resolve_afresh(backend, recipe, target)
        identity = layer_identity(recipe, lock.digest, backend.environment_id(target))
        changes = tuple(version_changes(before, lock.versions()))
        notes = tuple(upstream_notes(recipe, lock, target, self.runner))
        size_before = previous.unzipped_bytes if previous else None

        built_current = previous is not None and previous.identity == identity
        latest = None
        if self.options.publish is not None:
            regions = self.options.publish.regions or tuple(self.aws().enabled_regions())
            latest = read_latest(self.aws(), published_name(recipe.layer_name, arch), regions)
            if all(v is not None and identity_marker(identity) in v.description for v in latest.values()):
                return TargetOutcome(recipe.name, arch, "unchanged", changes, size_before, size_before, notes), lock
        elif built_current:
            return TargetOutcome(recipe.name, arch, "unchanged", changes, size_before, size_before, notes), lock

        if built_current:
            artifact = previous
            status = "published"
        else:
            reporter.step(f"build {arch}" + (f": {', '.join(changes)}" if changes else ""))
            result = build(recipe, arch, backend, BuildOptions(out_dir=self.options.out_dir, lock=lock,
                                                               time_imports=self.options.time_imports), reporter)
            artifact = load_artifact(result.zip.path)
            status = "rebuilt"
        failed_regions: tuple[str, ...] = ()
        if self.options.publish is not None:
            failed_regions = self._publish(artifact, latest)
            status = "failed" if failed_regions else "published"
        message = f"publishing failed in {', '.join(failed_regions)}" if failed_regions else ""
        return TargetOutcome(recipe.name, arch, status, changes, size_before, artifact.unzipped_bytes, notes,
                             message, failed_regions), lock

    def _publish(self, artifact, latest) -> tuple[str, ...]:
        request = self.options.publish
        check_request(artifact, request)
        aws = self.aws()
        regions = tuple(latest)
        plan = make_plan(artifact, request, regions, aws.account_id(), latest)
        manifest = Manifest.load(manifest_path(self.options.manifests, artifact.recipe), artifact.recipe)
        outcomes = Executor(aws, manifest).run(plan)
        return tuple(o.region for o in outcomes if o.failed)


def resolve_afresh(backend, recipe: Recipe, target: Target) -> Lock:
    """The newest resolution the recipe's pins and the target allow (no lock), in the backend's environment."""
    with tempfile.TemporaryDirectory(prefix=f"layers-resolve-{recipe.name}-") as scratch:
        work = Path(scratch).resolve()
        with backend.session(target, work) as session:
            return session.resolve(recipe, work).lock


def _previous_build(out_dir: Path, recipe: Recipe, arch: str):
    path = built_zip(out_dir, recipe.name, recipe.runtime, arch)
    if not path.is_file():
        return None
    try:
        return load_artifact(path)
    except LayerError:
        return None  # damaged or hand-edited: treat as never built


# -- upstream ------------------------------------------------------------------
def upstream_notes(recipe: Recipe, lock: Lock, target: Target, runner: Runner) -> list[str]:
    """Newer releases the pins allow that the resolution did not pick: the runtime cannot load them."""
    picked = {name.lower(): version for name, version in lock.versions().items()}
    open_pins = [pin for pin in recipe.requirements if not pin.exact_version and pin.name in picked]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(open_pins)))) as pool:
        newest = dict(zip([p.name for p in open_pins], pool.map(lambda p: newest_release(p, runner), open_pins)))
    notes = []
    for pin in open_pins:
        latest = newest.get(pin.name)
        try:
            if latest and Version(latest) > Version(picked[pin.name]):
                notes.append(f"{pin.name} {latest} is out but not picked: it has no wheel {target.runtime.name} "
                             f"{target.arch} can load (glibc {target.runtime.glibc_text}), or needs another Python")
        except InvalidVersion:
            continue
    return notes


def newest_release(pin, runner: Runner) -> str | None:
    """The newest release on the index that the pin's specifier allows (any platform)."""
    result = runner.run([sys.executable, "-m", "pip", "index", "versions", pin.name, "--disable-pip-version-check"],
                        timeout=120)
    match = _INDEX_VERSIONS.search(result.stdout)
    if not result.ok or not match:
        return None
    allowed = []
    for text in match.group(1).split(","):
        try:
            version = Version(text.strip())
        except InvalidVersion:
            continue
        if not version.is_prerelease and pin.requirement.specifier.contains(version, prereleases=False):
            allowed.append(version)
    return str(max(allowed)) if allowed else None
