"""Verify a built tree works on its runtime: ELF glibc needs, then a smoke test.

The ELF check is pure (``elf.glibc_violations``): no shared object may need a
GLIBC symbol version newer than the runtime's OS has. The smoke test runs the
recipe's imports and snippet with an interpreter of the runtime's Python
version, with ``-I -S -B``: no site-packages, no environment, no bytecode
written into the layer; only the layer (its root and its
``lib/pythonX.Y/site-packages``, as Lambda's /opt/python) and the standard
library on ``sys.path``.

Where it runs: with the pip backend, ``verify(..., lambda_sandbox=True)`` runs
it in ``sandbox.LambdaSandbox`` (bubblewrap), which shows only the libraries
Lambda's runtime image has, so a layer needing libGL or loading libmagic with
ctypes fails here as it would there. Without bwrap, or with the Docker backend
(its runner runs in the build container), it sees the libraries of the machine
it runs on, and ``Verification.sandbox``/``how`` say so. Trace pruning
(``strip/trace.py``) calls ``run_workload`` without a sandbox: its tracer writes
its findings to a path on this machine.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import VerifyError
from ..recipe import SmokeTest
from ..runner import Result, Runner
from ..runtimes import MACHINE, Runtime
from .elf import elf_files, glibc_violations, read_elf
from .interpreters import EMULATION, Interpreter, missing_reason
from .output import decisive_line, keep_output
from .sandbox import LAYER_MOUNT, TASK_ROOT, LambdaSandbox, prepare_sandbox, sandbox_available

SMOKE_TIMEOUT = 900

_SMOKE_SCRIPT = """
import importlib, json, sys
layer, spec_path = sys.argv[1], sys.argv[2]
with open(spec_path) as f:
    spec = json.load(f)
sys.path[0:0] = spec.get("paths") or [layer]
homes = [layer]
try:  # a packed layer (pack.py): its modules live where its unpacker puts the archive's tree
    import os
    with open(os.path.join(layer, "layer_runtime", "packed.json")) as f:
        packed = json.load(f)
    homes.append(os.path.join(os.environ.get("LAYER_UNPACK_DIR") or packed["unpack_dir"], packed["id"]))
except (OSError, ValueError, KeyError):
    pass
for name in spec["imports"]:
    importlib.import_module(name)
for name in spec["imports"]:
    module = sys.modules[name]
    origin = getattr(module, "__file__", None) or ""
    if not any(origin.startswith(home) for home in homes):
        raise SystemExit("%s was imported from %s, not from the layer" % (name, origin))
# The snippet sees the imported packages by their top-level names, as after "import x.y".
namespace = {"__name__": "__smoke__"}
for name in spec["imports"]:
    namespace[name.split(".")[0]] = sys.modules[name.split(".")[0]]
exec(compile(spec["code"], "<smoke test>", "exec"), namespace)
print("SMOKE-OK")
"""

_IMPORT_TIMER = """
import sys, time
layer = sys.argv[1]
sys.path.insert(0, layer)
start = time.perf_counter()
for name in sys.argv[2:]:
    __import__(name)
print(time.perf_counter() - start)
"""


@dataclass(frozen=True)
class Verification:
    elf_files: int
    max_glibc_needed: str | None
    glibc_allowed: str
    smoke: str  # "passed" | "not run"
    how: str
    # "lambda-libraries": in the sandbox, only Lambda's libraries visible; "host": with the libraries of the
    # machine or container it ran in (see how); None: not run.
    sandbox: str | None = None
    sandbox_notes: tuple[str, ...] = ()
    # Who ran the smoke test: "python3.11 (x86_64)", or "python3.11 (aarch64) under emulation (QEMU ...)".
    interpreter: str | None = None

    @property
    def verified(self) -> bool:
        return self.smoke == "passed"

    def to_json(self) -> dict:
        return {
            "verified": self.verified,
            "elf_files": self.elf_files,
            "max_glibc_needed": self.max_glibc_needed,
            "glibc_allowed": self.glibc_allowed,
            "smoke_test": self.smoke,
            "how": self.how,
            "sandbox": self.sandbox,
            "sandbox_notes": list(self.sandbox_notes),
            "interpreter": self.interpreter,
            "emulated": self.interpreter is not None and "under emulation" in self.interpreter,
        }


def check_glibc(tree: Path, allowed: tuple[int, int]) -> tuple[int, str | None]:
    """Raise if any ELF file needs a newer glibc; return (ELF count, highest need)."""
    files = elf_files(tree)
    needs = [n for f in files if (n := read_elf(f).max_glibc)]
    top = max(needs) if needs else None
    if top and top > allowed:
        # Second pass only on failure: it names the offending symbols.
        violations = glibc_violations(tree, allowed)
        first = violations[0]
        others = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise VerifyError(
            f"{first.path.relative_to(tree)} needs GLIBC_{first.needs[0]}.{first.needs[1]}, "
            f"the runtime has {allowed[0]}.{allowed[1]}{others}",
            hint="a wheel built for a newer glibc slipped in; pin an older release of that package",
        )
    return len(files), ("%d.%d" % top if top else None)


def _child_env(home: Path) -> dict[str, str]:
    # A scratch HOME: Keras writes ~/.keras on import.
    return {"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1", "KERAS_BACKEND": "tensorflow",
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_workload(tree: Path, smoke: SmokeTest, interpreter: Interpreter, runner: Runner, tmp: Path | None = None,
                 *, prelude: str = "", epilogue: str = "", env: dict[str, str] | None = None,
                 sandbox: LambdaSandbox | None = None) -> Result:
    """Run the smoke workload (``prelude`` and ``epilogue`` wrap it: the tracer's hooks) and return its result.

    ``tmp``: where to put the script, somewhere ``runner``'s commands can read it. ``sandbox``: run it there,
    the layer at /opt/python and the script at /var/task; ``env`` still reaches the workload, but it can
    write only to the sandbox's own /tmp, so a tracer's output file would not come back.
    """
    with tempfile.TemporaryDirectory(prefix="layers-smoke-", dir=tmp) as scratch:
        scratch_path = Path(scratch)
        task = scratch_path / "task"
        task.mkdir()
        if sandbox is None:
            layer = str(tree.resolve())
            paths = [layer, f"{layer}/lib/python{interpreter.version}/site-packages"]
        else:
            layer, paths = LAYER_MOUNT, list(sandbox.python_paths)
        (task / "smoke.json").write_text(json.dumps({"imports": list(smoke.imports), "code": smoke.code,
                                                     "paths": paths}))
        (task / "smoke.py").write_text(prelude + _SMOKE_SCRIPT + epilogue)
        child_env = {**_child_env(scratch_path), **(env or {})}
        if sandbox is None:
            return runner.run(interpreter.argv("-I", "-S", "-B", task / "smoke.py", layer, task / "smoke.json"),
                              cwd=scratch_path, env=child_env, timeout=SMOKE_TIMEOUT)
        cache = _ld_cache(sandbox, runner, scratch_path)
        argv = [sandbox.executable, "-I", "-S", "-B", f"{TASK_ROOT}/smoke.py", layer, f"{TASK_ROOT}/smoke.json"]
        return runner.run(sandbox.command(argv, tree=tree, task=task, cache=cache, env=child_env),
                          cwd=scratch_path, timeout=SMOKE_TIMEOUT)


def _ld_cache(sandbox: LambdaSandbox, runner: Runner, scratch: Path) -> Path | None:
    """An ld.so.cache of only the sandbox's libraries, or None (then find_library finds nothing at all)."""
    etc = scratch / "etc"
    etc.mkdir()
    command = sandbox.cache_command(etc)
    if command is None or not runner.run(command, cwd=scratch, timeout=60).ok:
        return None
    return etc / "ld.so.cache"


def run_smoke_test(tree: Path, smoke: SmokeTest, interpreter: Interpreter, runner: Runner,
                   tmp: Path | None = None, *, sandbox: LambdaSandbox | None = None) -> None:
    _check_passed(run_workload(tree, smoke, interpreter, runner, tmp, sandbox=sandbox), interpreter, sandbox, tree)


def _smoke_log(interpreter: Interpreter, output: str) -> str:
    """Keep the smoke test's whole output; the hint's clause naming the file."""
    return keep_output(f"smoke-python{interpreter.version}", output)


def _check_passed(result: Result, interpreter: Interpreter, sandbox: LambdaSandbox | None,
                  tree: Path | None = None) -> None:
    if result.ok and "SMOKE-OK" in result.stdout:
        return
    output = result.stdout + "\n" + result.stderr
    where, said = "", decisive_line(output)
    hint = ("a strip rule may have removed something the stack needs: add a keep glob, or build with strip "
            "profile 'none' to compare")
    if sandbox is not None:
        where = f" in the sandbox of {sandbox.libraries.label}'s libraries"
        explained = sandbox.explain(output)
        wrong = sandbox.wrong_machine(output, tree) if tree is not None else ()
        if wrong:
            arch = sandbox.libraries.arch
            said += "; " + "; ".join(wrong[:3]) + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else "")
            hint = (f"the layer holds another architecture's build: build it for {arch} (layers build --arch {arch}), "
                    "whose wheels are that machine's")
        elif explained:
            said += "; " + explained
            hint = ("the layer needs a library Lambda's runtime image may lack: use a wheel that bundles it "
                    "(opencv-python-headless rather than opencv-python for libGL), or drop what needs it")
    raise VerifyError(f"smoke test failed with python{interpreter.version}{where}: {said}",
                      hint=hint + _smoke_log(interpreter, output))


def _raise_if_only_lambda_lacks_it(failed: VerifyError, output: str, tree: Path, smoke: SmokeTest,
                                   interpreter: Interpreter, runner: Runner, tmp: Path | None) -> None:
    """Tell a library Lambda lacks from a broken stack: run once more with this machine's libraries.

    Passing there means the layer loads something at run time (ctypes, dlopen)
    that this machine has and Lambda's runtime image does not: no ELF header
    shows it, which is why the static load check let it through.
    """
    host = run_workload(tree, smoke, interpreter, runner, tmp)
    if host.ok and "SMOKE-OK" in host.stdout:
        raise VerifyError(
            f"{failed.message}; with this machine's libraries the same smoke test passes: the stack loads a library "
            "at run time (ctypes or dlopen) that this machine has and Lambda's runtime image lacks",
            hint="use a wheel that bundles the library or a pure-Python alternative, ship the library in the layer's "
                 "lib/ (/opt/lib is on Lambda's LD_LIBRARY_PATH), or build a container image (layers build --image)"
                 + _smoke_log(interpreter, output))


def _sandbox_failed(result: Result) -> str | None:
    """bwrap's own complaint if it could not set the sandbox up (the workload never ran), else None."""
    first = result.stderr.strip().splitlines()[:1]
    return first[0] if not result.ok and first and first[0].startswith("bwrap:") else None


def time_imports(tree: Path, modules: tuple[str, ...], interpreter: Interpreter, runner: Runner, runs: int = 5,
                 tmp: Path | None = None) -> float:
    """Median seconds to import ``modules`` with ``-B``: no bytecode cache written, as on read-only /opt."""
    samples = []
    with tempfile.TemporaryDirectory(prefix="layers-import-", dir=tmp) as scratch:
        script = Path(scratch) / "timer.py"
        script.write_text(_IMPORT_TIMER)
        for _ in range(runs):
            result = runner.run(interpreter.argv("-I", "-S", "-B", script, str(tree.resolve()), *modules),
                                cwd=scratch, env=_child_env(Path(scratch)), timeout=SMOKE_TIMEOUT)
            if not result.ok:
                output = result.stdout + result.stderr
                raise VerifyError(f"importing {', '.join(modules)} failed: {decisive_line(output)}",
                                  hint="the smoke test passed, so this is the timing run's environment: build with "
                                       "--no-import-timing to skip it" + _smoke_log(interpreter, output))
            samples.append(float(result.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def time_cold_start(layer_python: Path, modules: tuple[str, ...], interpreter: Interpreter, runner: Runner,
                    runs: int = 5, tmp: Path | None = None, *, taskset: str | None = None) -> float:
    """Median seconds from nothing unpacked to ``modules`` imported, for a packed layer (``pack.py``).

    Each run starts with an empty unpack directory (``LAYER_UNPACK_DIR``), so
    it pays the whole cold start: the archive read, checked and unpacked, then
    the imports from the unpacked tree. ``("layer_runtime.unpack",)`` times the
    unpacking alone. ``taskset`` (its path) pins the run to one core, as a
    small Lambda function has.
    """
    samples = []
    with tempfile.TemporaryDirectory(prefix="layers-unpack-", dir=tmp) as scratch:
        script = Path(scratch) / "timer.py"
        script.write_text(_IMPORT_TIMER)
        for run in range(runs):
            unpack_dir = Path(scratch) / f"unpacked-{run}"
            argv = interpreter.argv("-I", "-S", "-B", script, str(layer_python.resolve()), *modules)
            result = runner.run([taskset, "-c", "0", *argv] if taskset else argv, cwd=scratch,
                                env=_child_env(Path(scratch)) | {"LAYER_UNPACK_DIR": str(unpack_dir)},
                                timeout=SMOKE_TIMEOUT)
            if not result.ok:
                output = result.stdout + result.stderr
                raise VerifyError(f"the packed layer's cold start failed: {decisive_line(output)}",
                                  hint="the smoke test passed through the same unpacker, so this is the timing "
                                       "run's environment: build with --no-import-timing to skip it"
                                       + _smoke_log(interpreter, output))
            samples.append(float(result.stdout.strip().splitlines()[-1]))
            shutil.rmtree(unpack_dir, ignore_errors=True)
    return statistics.median(samples)


def verify(tree: Path, smoke: SmokeTest, glibc: tuple[int, int], interpreter: Interpreter | None,
           runner: Runner, python: str, where: str = "this machine", tmp: Path | None = None, *,
           runtime: Runtime | None = None, arch: str | None = None, lambda_sandbox: bool = False) -> Verification:
    """The ELF glibc check, then the smoke test.

    ``lambda_sandbox`` (pip backend: ``runner`` runs on this machine): run the smoke test in the sandbox of
    ``runtime``'s libraries on ``arch`` (default: the interpreter's machine) when bwrap works here; if not,
    run it with this machine's libraries and say so in ``how``.
    """
    count, top = check_glibc(tree, glibc)
    allowed = "%d.%d" % glibc
    if interpreter is None:
        return Verification(count, top, allowed, "not run",
                            f"{missing_reason(python, MACHINE[arch] if arch else None)}; ELF glibc check only")
    ran = f"python{interpreter.version} at {interpreter.path} ({interpreter.machine}) in {where}"
    who = f"python{interpreter.version} ({interpreter.machine})" + (
        f" under emulation ({EMULATION})" if interpreter.emulated else "")
    if interpreter.emulated:
        ran = _emulated(interpreter, where, "")
    if lambda_sandbox:
        reason = sandbox_available(runner) if runtime is not None else "no runtime was given to take its libraries"
        if reason is None:
            box = prepare_sandbox(interpreter, runtime, arch or _lambda_arch(interpreter.machine), runner)
            result = run_workload(tree, smoke, interpreter, runner, tmp, sandbox=box)
            reason = _sandbox_failed(result)
            if reason is None:
                try:
                    _check_passed(result, interpreter, box, tree)
                except VerifyError as failed:
                    said = result.stdout + "\n" + result.stderr
                    if box.explain(said) is None and not box.wrong_machine(said, tree):  # ld.so named no library
                        _raise_if_only_lambda_lacks_it(failed, said, tree, smoke, interpreter, runner, tmp)
                    raise
                if interpreter.emulated:
                    ran = _emulated(interpreter, where, ", with Lambda's libraries only")
                return Verification(count, top, allowed, "passed",
                                    f"{ran}, {box.describe()}; layer alone on sys.path (-I -S -B); ELF glibc check",
                                    sandbox="lambda-libraries", sandbox_notes=box.notes(), interpreter=who)
        run_smoke_test(tree, smoke, interpreter, runner, tmp)
        return Verification(count, top, allowed, "passed",
                            f"{ran}, with this machine's libraries, not only Lambda's ({reason}), so a library "
                            "Lambda lacks would have gone unnoticed; layer alone on sys.path (-I -S -B); "
                            "ELF glibc check", sandbox="host", sandbox_notes=(f"no sandbox: {reason}",),
                            interpreter=who)
    run_smoke_test(tree, smoke, interpreter, runner, tmp)
    return Verification(count, top, allowed, "passed",
                        f"{ran}, layer alone on sys.path (-I -S -B); ELF glibc check", sandbox="host", interpreter=who)


def _emulated(interpreter: Interpreter, where: str, libraries: str) -> str:
    """The opening of ``how`` for an emulated interpreter: what ran the smoke test, said first and plainly
    (the CLI prints "smoke test passed " before it)."""
    at = (f"Debian's {interpreter.path} in the root {interpreter.root}, on {where}" if interpreter.root is not None
          else f"{interpreter.path} in {where}")  # the Docker backend's: an emulated build container's own
    return f"by an {interpreter.machine} python{interpreter.version} under emulation ({EMULATION}){libraries}: {at}"


def _lambda_arch(machine: str) -> str:
    return {"aarch64": "arm64"}.get(machine, machine)
