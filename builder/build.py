"""``layers build``: a recipe becomes a verified, measured, reproducible zip.

Stages, in order (each a module or package of its own):
resolve + install (backends/) -> strip (strip/rules.py, strip/symbols.py) ->
bytecode (strip/bytecode.py) -> verify: the static load check against
Lambda's runtime image (verify/loadcheck.py), grafting what it lacks where
that is safe (verify/repair.py) and checking again, then the smoke test
(verify/smoke.py) -> measure (measure.py) -> zip (archive.py) -> write the
zip, its SBOM (sbom.py: licences read right after install, before strip
trims METADATA), its report and its lock into ``dist/RECIPE/``.

The backend's session decides where the target-side stages run: resolve,
install, strip, bytecode and the smoke test run on this machine (pip backend)
or in the build container (Docker backend); measuring and zipping always
run here.

Everything is built in a scratch directory; ``dist/`` receives finished
files only, each by rename, so a failure at any stage leaves it as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .archive import ZipResult, write_layer_zip
from .backends.base import Backend, Lock, Resolution, Session, Target
from .compare import compare_zips
from .errors import BudgetError, BuildError, UsageError, VerifyError
from .events import Reporter, Silent
from .lockfile import check_drop_names, layer_identity
from .measure import Budget, Inventory, human, package_table, record_owners, take_inventory
from .pack import PackResult, pack_tree
from .picture import layer_page, strip_ledger
from .plan import EPHEMERAL_DEFAULT, MIB, ephemeral_for
from .recipe import IMAGE_LIMIT, PackSettings, Recipe
from .runner import Runner
from .runtimes import system_libraries
from .sbom import Subject, declarations, distributions_in, write_sbom
from .strip.bytecode import LAYER_ROOT, BytecodeResult, compile_tree
from .strip.rules import StripContext, StripReport, installed_distributions, strip_tree
from .strip.trace import Pruner, PruneReport
from .verify.interpreters import EMULATION, Interpreter
from .verify.loadcheck import LoadCheck, check_tree, raise_for
from .verify.output import decisive_line
from .verify.loadcheck import how as load_check_how
from .verify.repair import RepairReport, container_fetch, host_fetch, needs_from_problems, repair
from .verify.smoke import Verification, check_glibc, time_cold_start, time_imports, verify


@dataclass(frozen=True)
class BuildOptions:
    out_dir: Path = Path("dist")
    work_dir: Path | None = None       # scratch space; a fresh temp dir by default
    time_imports: bool = True          # median cold import time of the smoke imports
    import_runs: int = 3
    lock: Lock | None = None           # install exactly this lock (hashes enforced)
    compare_to: Path | None = None     # another build's zip: list the differences in the report
    image: bool = False                # a Lambda container image instead of a layer zip (Docker backend)
    function_base: str | None = None   # the image's base; default: AWS's Lambda base image for the runtime


@dataclass(frozen=True)
class BuildResult:
    recipe: str
    target: Target
    zip: ZipResult | None              # None for --image builds
    report_path: Path
    lock_path: Path
    report: dict
    sbom_path: Path | None = None      # the CycloneDX SBOM beside the zip (None for --image builds)


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name, func, *args, **kwargs):
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)


def output_stem(recipe: Recipe, target: Target) -> str:
    return f"{recipe.name}-{target.runtime.name}-{target.arch}"


def output_names(recipe: Recipe, arch: str, image: bool = False) -> tuple[str, ...]:
    """The files a build delivers into OUT/RECIPE/, in the order they are put in place (the lock last)."""
    stem = output_stem(recipe, Target(recipe.runtime_info, arch))
    if image:
        # No SBOM: most of an image is its base's (OS packages, the runtime), which this tool does not inventory;
        # a list of /opt/python alone would pass for the whole image. An image scanner sees all of it.
        return (f"{stem}.image.json", f"{stem}.lock.json")
    return (f"{stem}.zip", f"{stem}.cdx.json", f"{stem}.report.json", f"{stem}.html", f"{stem}.lock.json")


def check_outputs(recipe: Recipe, archs: tuple[str, ...] | list[str], options: BuildOptions) -> None:
    """Refuse, before any work, a build whose outputs could not all be delivered, or whose --compare-to is no zip.

    A build takes minutes; finding then that ``--out`` is a file or
    ``/dev/null``, or that a report's place is a directory, would waste them
    and could leave some outputs delivered and others not.
    """
    destination = options.out_dir / recipe.name
    for directory in (options.out_dir, destination):
        if directory.exists() and not directory.is_dir():
            raise UsageError(f"--out: {directory} exists and is not a directory",
                             hint="give --out a directory (it is created when missing)")
    existing = next((p for p in (destination, *destination.parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out: {existing} is not writable, so {destination} cannot be made or written",
                         hint="give --out a directory you can write")
    for arch in archs:
        for name in output_names(recipe, arch, options.image):
            path = destination / name
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise UsageError(f"--out: {path} exists and is not a regular file, so the build could not replace it",
                                 hint="remove it, or give another --out")
    if options.compare_to is not None:
        from .archive import verify_layer_zip

        verify_layer_zip(options.compare_to)  # refuses a missing, damaged or hostile zip now, not after the build


def build(recipe: Recipe, arch: str, backend: Backend,
          options: BuildOptions = BuildOptions(), reporter: Reporter | None = None) -> BuildResult:
    reporter = reporter or Silent()
    if arch not in recipe.architectures:
        raise UsageError(f"{recipe.name} is built for {', '.join(recipe.architectures)}, not {arch}",
                         hint=f"add {arch!r} to the recipe's architectures")
    check_outputs(recipe, (arch,), options)
    if options.lock is not None:
        check_drop_names(recipe, options.lock)
    target = Target(recipe.runtime_info, arch)
    if options.image and backend.name != "docker":
        raise UsageError("--image builds need the Docker backend",
                         hint="start a Docker engine (--backend docker shows why it is not used)")
    lifecycle = target.runtime.lifecycle_notice()
    if lifecycle:
        reporter.notice(lifecycle)
    scratch_parent = options.work_dir
    if scratch_parent:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"layers-{recipe.name}-", dir=scratch_parent) as scratch:
        # Resolved: the Docker backend mounts it at this path (macOS's /var is a symlink).
        return _build_in(Path(scratch).resolve(), recipe, target, backend, options, reporter)


@dataclass(frozen=True)
class _TargetStages:
    """What the target-side stages produced, inside the backend's session."""

    resolution: Resolution
    installed: Inventory
    owners: dict
    stripped: StripReport
    bytecode: BytecodeResult | None
    verification: Verification
    import_seconds: float | None
    interpreter: Interpreter | None
    where: str
    notes: tuple[str, ...]
    pruned: PruneReport | None = None
    load_check: LoadCheck | None = None
    repaired: RepairReport | None = None
    packed: "_Packed | None" = None
    declared: dict = field(default_factory=dict)  # sbom.declarations: the licences, read before strip trims METADATA
    ledger: _StripLedger | None = None


@dataclass(frozen=True)
class _Packed:
    """A packed layer (recipe ``[pack] mode = "tmp"``): its python/, and what was proven and measured of it."""

    python: Path                       # the packed layer's python/: stubs, unpacker, decoder, archive
    result: PackResult
    settings: PackSettings
    verification: Verification         # the smoke test through the layer's own unpacker, from a read-only /opt
    unpack_seconds: float | None       # median, one core: archive read, checked and unpacked
    cold_start_seconds: float | None   # median, one core: unpacking plus the smoke imports

    def to_json(self, counted: int) -> dict:
        r, s = self.result, self.settings
        return {"mode": "tmp", "compression": s.compression, "level": s.level, "id": r.id, "sha256": r.sha256,
                "archive": r.archive.name, "archive_bytes": r.archive_bytes, "unpacked_bytes": r.unpacked_bytes,
                "files": r.files, "stubs": r.stubs, "top_level": list(r.top_level), "unpack_dir": s.unpack_dir,
                "counted_bytes": counted, "pack_seconds": round(r.seconds, 3),
                "unpack_seconds": _rounded(self.unpack_seconds), "cold_start_seconds": _rounded(self.cold_start_seconds),
                "timing": "median of 5 runs on one core, each from an empty unpack directory in this machine's "
                          "temporary directory, whose file system's speed counts (make bench unpacks into a new "
                          "ext4, as Lambda's /tmp is)",
                "ephemeral_storage_mb": ephemeral_for(r.unpacked_bytes) // MIB,
                "snapstart_keeps_tmp": ephemeral_for(r.unpacked_bytes) <= EPHEMERAL_DEFAULT,
                "verification": self.verification.to_json()}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _run_target_stages(session: Session, scratch: Path, tree: Path, recipe: Recipe, options: BuildOptions,
                       reporter: Reporter, timer: _Timer) -> _TargetStages:
    target = session.target
    for note in session.notes:
        reporter.notice(note)
    reporter.step(f"resolve {recipe.name} for {target.describe()} ({session.backend} backend, in {session.where})"
                  + (" from the lock" if options.lock else ""))
    resolution = timer.run("resolve", session.resolve, recipe, scratch, options.lock)
    check_drop_names(recipe, resolution.lock)
    reporter.step(f"install {len(resolution.lock.wheels)} wheels"
                  + (f" ({len(resolution.downloaded)} downloaded)" if resolution.downloaded else " (all from cache)"))
    timer.run("install", session.install, resolution, tree)
    distributions = installed_distributions(tree, target.runtime.python)
    owners = record_owners(tree, distributions)
    declared = declarations(distributions)
    installed = take_inventory(tree, owners)

    reporter.step(f"strip (profile {recipe.strip.profile})")
    context = StripContext(tree=tree, settings=recipe.strip, python=target.runtime.python, machine=target.machine,
                           roots=tuple(p.name for p in recipe.requirements), runner=session.runner,
                           which=session.which)
    ledger = _StripLedger(tree)

    def before_rule(rule: str) -> None:
        ledger.before(rule)
        reporter.step(f"strip: {rule}")

    stripped: StripReport = timer.run("strip", strip_tree, context, before_rule)
    ledger.after()
    if recipe.include.model_loader:
        reporter.step("include layer_runtime.model_loader")
        include_runtime_modules(tree, ("model_loader",))

    interpreter = session.interpreter
    pruned: PruneReport | None = None
    if recipe.strip.profile == "trace":
        if interpreter is None:
            pruned = PruneReport(status=f"not run: no python{target.runtime.python} for {target.arch} here")
            reporter.notice(f"trace pruning {pruned.status}; the layer is stripped the standard way")
        else:
            reporter.step("trace the workload; keep what it uses; experiment with optional drops")
            pruned = timer.run("trace_prune", Pruner(tree, recipe.smoke, interpreter, session.runner, session.tmp,
                                                     scratch / "pruned-aside").run)
            if pruned.status != "pruned":
                reporter.notice(f"trace pruning {pruned.status}")
    bytecode: BytecodeResult | None = None
    if recipe.bytecode != "none":
        if interpreter is None:
            reporter.notice(f"bytecode = {recipe.bytecode!r} needs python{target.runtime.python} on this machine; "
                            "none found, so the layer ships sources only")
        else:
            reporter.step(f"compile bytecode with python{interpreter.version} ({recipe.bytecode}"
                          + (", docstrings emptied)" if recipe.strip.docstrings == "empty" else ")"))
            bytecode = timer.run("bytecode", compile_tree, tree, recipe.bytecode, interpreter, session.runner,
                                 session.tmp, recipe.strip.docstrings)

    load_check, repaired = _check_loads(session, tree.parent, reporter, timer)
    verification: Verification = _smoke(session, tree, recipe, interpreter, reporter, timer)
    if not verification.verified:
        reporter.notice(f"NOT smoke-tested: {verification.how}")
    elif verification.sandbox == "host":
        reporter.notice(f"the smoke test saw more libraries than Lambda has: {verification.how}")
    import_seconds = None
    if interpreter and options.time_imports and not interpreter.emulated:  # emulated times say nothing of Lambda's
        reporter.step("time cold imports (python -B)")
        import_seconds = timer.run("import_timing", time_imports, tree, recipe.smoke.imports, interpreter,
                                   session.runner, options.import_runs, session.tmp)
    packed = None
    if recipe.pack.mode == "tmp" and not options.image:
        packed = _pack(session, scratch, tree, recipe, interpreter, options, reporter, timer)
    return _TargetStages(resolution, installed, owners, stripped, bytecode, verification, import_seconds,
                         interpreter, session.where, session.notes, pruned, load_check, repaired, packed,
                         declared=declared, ledger=ledger)


def _pack(session: Session, scratch: Path, tree: Path, recipe: Recipe, interpreter: Interpreter | None,
          options: BuildOptions, reporter: Reporter, timer: _Timer) -> _Packed:
    """python/ as one archive behind stubs and the unpacker; then the smoke test again, through them.

    The second smoke test is the layer as Lambda will run it: /opt read-only,
    nothing unpacked yet, every import going through a stub to the unpacker
    and on to the unpacked tree in the sandbox's own /tmp.
    """
    target = session.target
    python = scratch / "packed" / "python"
    python.mkdir(parents=True)
    settings = recipe.pack
    reporter.step(f"pack python/ as one {settings.compression} archive (level {settings.level})")
    result = timer.run("pack", pack_tree, tree, python, settings,
                       python_version=tuple(int(p) for p in target.runtime.python.split(".")),
                       runtime_dir=RUNTIME_MODULES)
    reporter.step(f"packed {human(result.unpacked_bytes)} in {result.files:,} files into {human(result.archive_bytes)}"
                  f" behind {result.stubs} stubs")
    if recipe.bytecode != "none" and interpreter is not None:
        # The unpacker runs from read-only /opt at every cold start, where Python cannot cache its bytecode:
        # compiled here it saves 13 ms each time (_unpack.py on 3.6). Its source stays, for tracebacks.
        timer.run("pack_bytecode", compile_tree, python / "layer_runtime", "alongside", interpreter, session.runner,
                  session.tmp, ddir=f"{LAYER_ROOT}/layer_runtime")
    ephemeral = ephemeral_for(result.unpacked_bytes)
    if ephemeral > EPHEMERAL_DEFAULT:
        reporter.notice(f"the packed layer unpacks to {human(result.unpacked_bytes)} in /tmp: give the function "
                        f"EphemeralStorage of at least {ephemeral // MIB} MB (SnapStart keeps /tmp only at the "
                        "512 MB default, so it would unpack at every restore)")
    verification = _smoke(session, python, recipe, interpreter, reporter, timer)
    if not verification.verified:
        reporter.notice(f"the packed layer is NOT smoke-tested: {verification.how}")
    unpack = cold = None
    if interpreter and options.time_imports and not interpreter.emulated:
        reporter.step("time the cold start: unpack, then the smoke imports (one core, from an empty /tmp)")
        taskset = session.which("taskset")
        unpack = timer.run("unpack_timing", time_cold_start, python, ("layer_runtime.unpack",), interpreter,
                           session.runner, 5, session.tmp, taskset=taskset)
        cold = timer.run("cold_start_timing", time_cold_start, python, recipe.smoke.imports, interpreter,
                         session.runner, 5, session.tmp, taskset=taskset)
    return _Packed(python, result, settings, verification, unpack, cold)


def _smoke(session: Session, tree: Path, recipe: Recipe, interpreter: Interpreter | None, reporter: Reporter,
           timer: _Timer) -> Verification:
    """The smoke test where only Lambda's libraries exist: the backend's own place, else a sandbox here.

    The Docker backend runs it in Lambda's runtime image; the pip backend in a
    bubblewrap sandbox holding only the runtime table's libraries. Where
    neither can be had, it runs with the build environment's libraries and
    the report says so in plain words.
    """
    target = session.target
    if session.run_smoke is not None and interpreter is not None:
        reporter.step("verify: smoke test in Lambda's runtime image")
        count, top = check_glibc(tree, target.runtime.glibc)
        how, problem = timer.run("verify", session.run_smoke, tree.parent, recipe.smoke)
        if how is not None:
            # Who ran it, as verify() records it: the runtime image's pythonX.Y of the target's machine.
            who = f"python{interpreter.version} ({interpreter.machine})" + (
                f" under emulation ({EMULATION})" if interpreter.emulated else "")
            return Verification(count, top, target.runtime.glibc_text, "passed", f"{how}; ELF glibc check",
                                sandbox="lambda-runtime-image", interpreter=who)
        reporter.notice(f"smoke test in the build container instead of Lambda's runtime image: {problem}")
        verification = timer.run(
            "verify", verify, tree, recipe.smoke, target.runtime.glibc, interpreter, session.runner,
            target.runtime.python, session.where, session.tmp)
        return dataclasses.replace(verification, sandbox="host", how=(
            f"{verification.how}; in the build container, whose libraries are more than Lambda's, because Lambda's "
            f"runtime image could not be had ({problem}; --runtime-image names another)"))
    reporter.step("verify: ELF glibc needs" + (", smoke test" if interpreter else ""))
    return timer.run("verify", verify, tree, recipe.smoke, target.runtime.glibc, interpreter, session.runner,
                     target.runtime.python, session.where, session.tmp,
                     runtime=target.runtime, arch=target.arch, lambda_sandbox=session.backend == "pip")


def _check_loads(session: Session, layer_root: Path, reporter: Reporter,
                 timer: _Timer) -> tuple[LoadCheck, RepairReport | None]:
    """The static load check against Lambda's runtime image; graft what it lacks where safe, then check again.

    Raises VerifyError (exit 4) when a file would still not load; the graft's
    refusals say why a library could not be brought along.
    """
    target = session.target
    libs = system_libraries(target.runtime, target.arch)
    reporter.step(f"verify: {load_check_how(libs)}")
    check = timer.run("load_check", check_tree, layer_root, libs)
    repaired = None
    needs = needs_from_problems(check.problems)
    if needs:
        reporter.step(f"repair: graft {', '.join(sorted({s for names in needs.values() for s in names}))} "
                      "from the build environment where its own needs fit the runtime")
        # patchelf runs here, on the bind-mounted tree; the libraries come from where the build ran.
        host = Runner(verbose=session.runner.verbose, echo=session.runner.echo)
        fetch = container_fetch(session.runner, target.machine) if session.backend == "docker" \
            else host_fetch(host, target.machine)
        repaired = timer.run("repair", repair, layer_root, needs, libs, fetch, host, staging=session.tmp)
        for graft in repaired.grafted:
            reporter.notice(f"grafted {graft.soname} as {graft.path} (from {graft.origin}, {human(graft.size)})")
        check = timer.run("load_check_again", check_tree, layer_root, libs)
    for warning in check.warnings:
        reporter.notice(f"load check: {warning.describe()}")
    if not check.ok:
        try:
            raise_for(check)
        except VerifyError as error:
            if repaired and repaired.refused:  # why the graft could not help, for the first library; the report has all
                first = repaired.refused[0]
                others = f" ({len(repaired.refused) - 1} more refused)" if len(repaired.refused) > 1 else ""
                raise VerifyError(error.message, hint=f"{first.soname} could not be grafted: {first.reason}{others}; "
                                                      f"{error.hint}") from None
            raise
    return check, repaired


def _build_in(scratch: Path, recipe: Recipe, target: Target, backend: Backend,
              options: BuildOptions, reporter: Reporter) -> BuildResult:
    timer = _Timer()
    # The layer root becomes /opt on Lambda: python/ (the tree) and nothing else of the scratch.
    tree = scratch / "layer" / "python"
    start = time.perf_counter()
    with backend.session(target, scratch) as session:
        timer.seconds["session_start"] = round(time.perf_counter() - start, 3)
        stages = _run_target_stages(session, scratch, tree, recipe, options, reporter, timer)
    lock = stages.resolution.lock
    final = take_inventory(tree, stages.owners)
    if options.image:
        return _finish_image(scratch, tree, recipe, target, backend, options, reporter, timer, stages, final)
    # What Lambda counts: the tree itself, or for a packed layer its stubs, unpacker, decoder and archive.
    shipped = stages.packed.python if stages.packed else tree
    counted = take_inventory(shipped) if stages.packed else final
    budget_before_zip = Budget(counted.total, recipe.unzipped_budget, recipe.reserve, 0)
    if not budget_before_zip.fits:
        raise BudgetError(_over_budget_message(recipe, counted, budget_before_zip),
                          hint="drop unneeded distributions (strip.drop), add remove globs, move models to S3, "
                               f"or build a container image (10 GB): layers build {recipe.name} --image")

    stem = output_stem(recipe, target)
    staging = scratch / "out"
    staging.mkdir()
    reporter.step("zip")
    with reporter.progress("zip", counted.total) as advance:
        zipped: ZipResult = timer.run("zip", write_layer_zip, shipped, staging / f"{stem}.zip",
                                      level=recipe.compression, progress=advance)
    budget = Budget(counted.total, recipe.unzipped_budget, recipe.reserve, zipped.zipped_bytes)
    if not budget.direct_upload:
        reporter.notice(f"{human(zipped.zipped_bytes)} zipped is over the 50 MB direct-upload limit: "
                        "publishing goes through S3")

    report = _report(recipe, target, backend, final, stages, budget, zipped, timer)
    if stages.ledger is not None:
        later = "trace-prune" if stages.pruned and stages.pruned.status == "pruned" else "later"
        report["tree_before"] = strip_ledger(stages.installed.sizes, stages.ledger.taken(final.sizes, later))
    if stages.packed:
        report["pack"] = stages.packed.to_json(counted.total)
        if not stages.packed.verification.verified:  # what is published is the packed layer: it must be proven too
            report["verification"]["verified"] = False
            report["verification"]["how"] += f"; the packed layer was NOT smoke-tested: {stages.packed.verification.how}"
    report["identity"] = layer_identity(recipe, lock.digest, backend.environment_id(target))
    if options.compare_to is not None:
        reporter.step(f"compare with {options.compare_to}")
        report["comparison"] = compare_zips(zipped.path, options.compare_to).to_json()
    reporter.step("sbom (CycloneDX)")
    subject = Subject(recipe.layer_name, stem, zipped.sha256_hex, target.runtime.name, target.arch, lock.digest,
                      report["identity"], backend.environment_id(target), __version__, recipe.description)
    report["sbom"] = timer.run("sbom", write_sbom, staging / f"{stem}.cdx.json", subject, lock, stages.declared,
                               distributions_in(tree), (report["grafted"] or {}).get("grafted", ()))
    _write_json(staging / f"{stem}.report.json", report)
    reporter.step("picture (HTML treemap)")
    (staging / f"{stem}.html").write_text(timer.run("picture", layer_page, zipped.path, report), encoding="utf-8")
    _write_json(staging / f"{stem}.lock.json", lock.to_json())
    destination = _deliver(staging, options.out_dir / recipe.name, output_names(recipe, target.arch))
    final_zip = dataclasses.replace(zipped, path=destination / f"{stem}.zip")
    return BuildResult(recipe.name, target, final_zip, destination / f"{stem}.report.json",
                       destination / f"{stem}.lock.json", report, destination / f"{stem}.cdx.json")


_IMAGE_IMPORT_CHECK = """
import importlib, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    if not (getattr(module, "__file__", "") or "").startswith("/opt/python/"):
        raise SystemExit("%s came from %s, not /opt/python" % (name, module.__file__))
print("IMAGE-OK")
"""


def _finish_image(scratch: Path, tree: Path, recipe: Recipe, target: Target, backend: Backend,
                  options: BuildOptions, reporter: Reporter, timer: _Timer, stages: _TargetStages,
                  final: Inventory) -> BuildResult:
    """The stripped, verified tree as a Lambda container image; its imports checked in the image itself."""
    from .backends.container import Container
    from .backends.images import build_function_image, docker_platform
    from .errors import VerifyError

    if final.total > IMAGE_LIMIT:
        raise BudgetError(f"{recipe.name} is {human(final.total)} unzipped, over the 10 GB of a container image",
                          hint="drop distributions (strip.drop) or remove files (strip.remove) the function never uses")
    identity = layer_identity(recipe, stages.resolution.lock.digest, backend.environment_id(target))
    base = options.function_base or target.runtime.function_image(target.arch)
    tag = f"lambda-layer-builder/function-{recipe.name}:{identity[:16]}"
    image = timer.run("image", build_function_image, backend.client, tree, base, tag, target.arch, reporter.step)
    reporter.step("verify: import the smoke imports in the image")
    with Container(image.tag, client=backend.client, platform=docker_platform(target.arch)) as box:
        checked = box.call([f"python{target.runtime.python}", "-c", _IMAGE_IMPORT_CHECK, *recipe.smoke.imports],
                           env={"PYTHONPATH": "/opt/python"})
    if not checked.ok or "IMAGE-OK" not in checked.stdout:
        why = decisive_line(checked.stdout + checked.stderr)
        raise VerifyError(f"the image {image.tag} cannot import its stack: {why}",
                          hint="the stack imports in the layer's smoke test but not over the function base image: "
                               "check --function-base")
    report = {
        "recipe": recipe.name, "runtime": target.runtime.name, "architecture": target.arch,
        "backend": backend.name, "builder_version": __version__, "identity": identity,
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "lock_digest": stages.resolution.lock.digest, "versions": stages.resolution.lock.versions(),
        "image": {"tag": image.tag, "id": image.image_id, "base": image.base, "size_bytes": image.size,
                  "limit_bytes": IMAGE_LIMIT},
        "sizes": {"installed_bytes": stages.installed.total, "layer_bytes": final.total},
        "over_layer_budget": final.total > recipe.unzipped_budget,
        "verification": stages.verification.to_json() | {"image_imports": "passed"},
        "seconds": timer.seconds,
    }
    stem = output_stem(recipe, target)
    staging = scratch / "out"
    staging.mkdir()
    _write_json(staging / f"{stem}.image.json", report)
    _write_json(staging / f"{stem}.lock.json", stages.resolution.lock.to_json())
    destination = _deliver(staging, options.out_dir / recipe.name, output_names(recipe, target.arch, image=True))
    return BuildResult(recipe.name, target, None, destination / f"{stem}.image.json",
                       destination / f"{stem}.lock.json", report)


RUNTIME_MODULES = Path(__file__).resolve().parent / "runtime"


def include_runtime_modules(tree: Path, modules: tuple[str, ...]) -> None:
    """Copy run-time helpers into the layer as the package ``layer_runtime``."""
    package = tree / "layer_runtime"
    package.mkdir(exist_ok=True)
    for name in ("__init__", *modules):
        shutil.copyfile(RUNTIME_MODULES / f"{name}.py", package / f"{name}.py")


def _deliver(staging: Path, destination: Path, names: tuple[str, ...]) -> Path:
    """Put finished files into ``destination`` (dist/RECIPE/): all of them, or none.

    First every file goes beside its place under a hidden ``.partial`` name
    (the slow part: a copy when scratch is on another filesystem); any failure
    there removes the partials and leaves the directory as it was. Then each
    is renamed into place, in ``names``' order, which cannot fail short of
    the disk going away: a lock or report never describes a zip that was not
    delivered.
    """
    partials: list[tuple[Path, Path]] = []
    delivered: list[str] = []
    try:
        destination.mkdir(parents=True, exist_ok=True)
        for name in names:
            partial = destination / f".{name}.partial"
            partials.append((partial, destination / name))
            try:
                os.replace(staging / name, partial)
            except OSError:
                shutil.copyfile(staging / name, partial)
        for partial, final in partials:
            os.replace(partial, final)
            delivered.append(final.name)
    except OSError as exc:
        for partial, _ in partials:
            partial.unlink(missing_ok=True)
        done = f"only {', '.join(delivered)} was replaced" if delivered else "nothing was delivered"
        raise BuildError(f"could not write the build's outputs into {destination}: {exc.strerror or exc}",
                         hint=f"check the --out directory's space and permissions ({done})") from None
    return destination


class _StripLedger:
    """Which strip rule took which bytes of each file: the tree's sizes before every rule and after the last.

    ``strip_tree`` reports each rule's totals and its biggest paths; the
    report's ``tree_before`` (what ``layers report --html`` draws beside the
    layer) needs every file's fate. A snapshot is one ``lstat`` per file
    (a sixth of ``take_inventory``'s time: 0.14 s for 20,000 files), so the
    ten of a build add about a second to tf18's strip.
    """

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.snapshots: list[tuple[str, dict[str, int]]] = []
        self.stripped: dict[str, int] = {}

    def before(self, rule: str) -> None:
        self.snapshots.append((rule, self._sizes()))

    def after(self) -> None:
        self.stripped = self._sizes()

    def _sizes(self) -> dict[str, int]:
        """What ``take_inventory`` measures (regular files, not symlinks), by path relative to the tree."""
        sizes = {}
        cut = len(str(self.tree)) + 1
        for directory, _, files in os.walk(self.tree):
            for name in files:
                path = os.path.join(directory, name)
                status = os.lstat(path)
                if stat.S_ISREG(status.st_mode):
                    sizes[path[cut:].replace(os.sep, "/")] = status.st_size
        return sizes

    def taken(self, final: dict[str, int], later: str) -> dict[str, list[tuple[str, int]]]:
        """path -> [(rule or step, bytes it removed)]; what the stages after strip removed is ``later``'s, or
        bytecode's where a source gave way to its .pyc."""
        taken: dict[str, list[tuple[str, int]]] = {}
        steps = self.snapshots + [("", self.stripped)]
        for (rule, sizes), (_, following) in itertools.pairwise(steps):
            for path, size in sizes.items():
                now = following.get(path, 0)
                if now < size:
                    taken.setdefault(path, []).append((rule, size - now))
        for path, size in self.stripped.items():
            if path not in final:
                fate = "bytecode" if path.endswith(".py") and f"{path}c" in final else later
                taken.setdefault(path, []).append((fate, size))
        return taken


def _image_json(image) -> dict | None:
    return None if image is None else {"tag": image.tag, "base": image.base, "built_now": image.built}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _over_budget_message(recipe: Recipe, final: Inventory, budget: Budget) -> str:
    packages = sorted(final.by_package().items(), key=lambda item: -item[1])[:5]
    files = final.biggest(3)
    return (
        f"{recipe.name} is {human(budget.unzipped)} unzipped, over its budget of {human(budget.unzipped_limit)} "
        f"(Lambda's 250 MB minus a reserve of {human(budget.reserve)}); biggest packages: "
        + ", ".join(f"{name} {human(size)}" for name, size in packages)
        + "; biggest files: " + ", ".join(f"{path} {human(size)}" for path, size in files)
    )


def _load_check_json(check: LoadCheck | None) -> dict | None:
    if check is None:
        return None
    return {"status": "passed" if check.ok else "failed", **check.to_json()}


def _report(recipe, target, backend, final: Inventory, stages: _TargetStages,
            budget: Budget, zipped: ZipResult, timer: _Timer) -> dict:
    resolution, installed = stages.resolution, stages.installed
    lock: Lock = resolution.lock
    stripped, bytecode, interpreter = stages.stripped, stages.bytecode, stages.interpreter
    verification, import_seconds = stages.verification, stages.import_seconds
    return {
        "recipe": recipe.name,
        "layer_name": recipe.layer_name,
        "description": recipe.description,
        "license": recipe.license,
        "runtime": target.runtime.name,
        "architecture": target.arch,
        "os": target.runtime.os_title,
        "backend": backend.name,
        "built_in": stages.where,
        "build_image": _image_json(getattr(backend, "image", None)),
        "environment_notes": list(stages.notes),
        "builder_version": __version__,
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "lock_digest": lock.digest,
        "versions": lock.versions(),
        "downloaded": list(resolution.downloaded),
        "zip": {"file": zipped.path.name, "sha256": zipped.sha256_hex, "code_sha256": zipped.code_sha256,
                "zipped_bytes": zipped.zipped_bytes, "unzipped_bytes": zipped.unzipped_bytes,
                "entries": zipped.entries, "compression_level": recipe.compression},
        "budget": budget.to_json(),
        "verification": {**verification.to_json(),
                         "load_check": _load_check_json(stages.load_check)},
        "grafted": stages.repaired.to_dict() if stages.repaired else None,
        "sizes": {"installed_bytes": installed.total, "layer_bytes": final.total,
                  "installed_files": len(installed.sizes), "layer_files": len(final.sizes)},
        "strip": {
            "profile": stripped.profile,
            "bytes_removed": stripped.bytes_removed,
            "rules": [{"rule": r.rule, "description": r.description, "files": r.files, "bytes": r.bytes,
                       "biggest": [{"path": p, "bytes": n} for p, n in r.biggest], "notes": list(r.notes)}
                      for r in stripped.rules],
        },
        "trace_prune": stages.pruned.to_json() if stages.pruned else None,
        "bytecode": {
            "mode": recipe.bytecode,
            "docstrings": bytecode.docstrings if bytecode else "keep",
            "compiled_by": f"python{interpreter.version}" if bytecode and interpreter else None,
            "compiled": bytecode.compiled if bytecode else 0,
            "not_compiled": list(bytecode.not_compiled[:50]) if bytecode else [],
        },
        "cold_import_seconds": round(import_seconds, 4) if import_seconds is not None else None,
        "packages": package_table(installed, final),
        "biggest_files": [{"path": p, "bytes": n} for p, n in final.biggest(15)],
        "seconds": timer.seconds,
    }
