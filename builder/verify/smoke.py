"""Verify a built tree works on its runtime: ELF glibc needs, then a smoke test.

The ELF check is pure (``elf.glibc_violations``): no shared object may need a
GLIBC symbol version newer than the runtime's OS has. The smoke test runs the
recipe's imports and snippet with an interpreter of the runtime's Python
version, with ``-I -S -B``: no site-packages, no environment, no bytecode
written into the layer; only the layer and the standard library on
``sys.path``, as on Lambda where the layer is /opt/python.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import VerifyError
from ..recipe import SmokeTest
from ..runner import Result, Runner
from .elf import elf_files, glibc_violations, read_elf
from .interpreters import Interpreter

SMOKE_TIMEOUT = 900

_SMOKE_SCRIPT = """
import importlib, json, sys
layer, spec_path = sys.argv[1], sys.argv[2]
with open(spec_path) as f:
    spec = json.load(f)
sys.path.insert(0, layer)
for name in spec["imports"]:
    importlib.import_module(name)
for name in spec["imports"]:
    module = sys.modules[name]
    origin = getattr(module, "__file__", None) or ""
    if not origin.startswith(layer):
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
                 *, prelude: str = "", epilogue: str = "", env: dict[str, str] | None = None) -> Result:
    """Run the smoke workload (``prelude`` and ``epilogue`` wrap it: the tracer's hooks) and return its result.

    ``tmp``: where to put the script, somewhere ``runner``'s commands can read it.
    """
    with tempfile.TemporaryDirectory(prefix="layers-smoke-", dir=tmp) as scratch:
        scratch_path = Path(scratch)
        spec = scratch_path / "smoke.json"
        spec.write_text(json.dumps({"imports": list(smoke.imports), "code": smoke.code}))
        script = scratch_path / "smoke.py"
        script.write_text(prelude + _SMOKE_SCRIPT + epilogue)
        return runner.run(
            [interpreter.path, "-I", "-S", "-B", script, str(tree.resolve()), spec],
            cwd=scratch_path, env={**_child_env(scratch_path), **(env or {})}, timeout=SMOKE_TIMEOUT,
        )


def run_smoke_test(tree: Path, smoke: SmokeTest, interpreter: Interpreter, runner: Runner,
                   tmp: Path | None = None) -> None:
    result = run_workload(tree, smoke, interpreter, runner, tmp)
    if not result.ok or "SMOKE-OK" not in result.stdout:
        raise VerifyError(
            f"smoke test failed with python{interpreter.version}:\n{result.tail(12)}",
            hint="a strip rule may have removed something the stack needs: add a keep glob, or build with strip profile 'none' to compare",
        )


def time_imports(tree: Path, modules: tuple[str, ...], interpreter: Interpreter, runner: Runner, runs: int = 5,
                 tmp: Path | None = None) -> float:
    """Median seconds to import ``modules`` with ``-B``: no bytecode cache written, as on read-only /opt."""
    samples = []
    with tempfile.TemporaryDirectory(prefix="layers-import-", dir=tmp) as scratch:
        script = Path(scratch) / "timer.py"
        script.write_text(_IMPORT_TIMER)
        for _ in range(runs):
            result = runner.run([interpreter.path, "-I", "-S", "-B", script, str(tree.resolve()), *modules],
                                cwd=scratch, env=_child_env(Path(scratch)), timeout=SMOKE_TIMEOUT)
            if not result.ok:
                raise VerifyError(f"importing {', '.join(modules)} failed:\n{result.tail(8)}")
            samples.append(float(result.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def verify(tree: Path, smoke: SmokeTest, glibc: tuple[int, int], interpreter: Interpreter | None,
           runner: Runner, python: str, where: str = "this machine", tmp: Path | None = None) -> Verification:
    count, top = check_glibc(tree, glibc)
    allowed = "%d.%d" % glibc
    if interpreter is None:
        return Verification(count, top, allowed, "not run",
                            f"no python{python} for this architecture on this machine; ELF glibc check only")
    run_smoke_test(tree, smoke, interpreter, runner, tmp)
    return Verification(count, top, allowed, "passed",
                        f"python{interpreter.version} at {interpreter.path} ({interpreter.machine}) in {where}, "
                        "layer alone on sys.path (-I -S -B); ELF glibc check")
