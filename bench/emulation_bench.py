"""``make bench``: what smoke-testing an arm64 layer under QEMU emulation costs, beside the native x86_64 one.

Builds np311 (python3.11: Debian bookworm's aarch64 interpreter) and onnx313
(python3.13: trixie's) for both architectures with the pip backend, from the
cache after the first run, then writes ``bench/results/emulation.json``: per
recipe and architecture, the build's own ``verify`` seconds, and the median
of five runs on the extracted layer of

- the whole smoke test as the build runs it (``verify``: the sandbox of
  Lambda's libraries worked out, its ld.so.cache made, the workload run);
- the workload alone in a sandbox prepared once (``run_workload``);
- an empty interpreter start (``python -I -S -c pass``), the emulator's
  fixed cost.

Needs the arm64 roots (``.ci/test-arm64-roots.sh``).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench.results import write_results
from builder.backends.pip import PipBackend
from builder.backends.select import cache_dir
from builder.build import BuildOptions, build
from builder.recipe import load_recipe
from builder.runner import Runner
from builder.runtimes import MACHINE
from builder.verify.interpreters import find_interpreter, missing_reason
from builder.verify.sandbox import prepare_sandbox
from builder.verify.smoke import run_workload, verify

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("np311", "onnx313")
ARCHES = ("x86_64", "arm64")
RUNS = 5


def _median(func) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples), 3)


def _measure(name: str, arch: str, work: Path) -> dict:
    recipe = load_recipe(name, ROOT / "recipes")
    runner = Runner()
    runtime = recipe.runtime_info
    interpreter = find_interpreter(runtime.python, runner, MACHINE[arch])
    if interpreter is None:
        raise SystemExit(f"{name} {arch}: {missing_reason(runtime.python, MACHINE[arch])}; run .ci/test-arm64-roots.sh")
    result = build(recipe, arch, PipBackend(runner, cache_dir()),
                   BuildOptions(out_dir=work / "dist", time_imports=False))
    verification = result.report["verification"]
    assert verification["verified"] and verification["sandbox"] == "lambda-libraries", verification["how"]
    opt = work / f"{name}-{arch}"
    with zipfile.ZipFile(result.zip.path) as archive:
        archive.extractall(opt)
    tree = opt / "python"

    def smoke() -> None:
        verify(tree, recipe.smoke, runtime.glibc, interpreter, runner, runtime.python, runtime=runtime, arch=arch,
               lambda_sandbox=True)

    box = prepare_sandbox(interpreter, runtime, arch, runner)

    def workload() -> None:
        done = run_workload(tree, recipe.smoke, interpreter, runner, sandbox=box)
        assert done.ok and "SMOKE-OK" in done.stdout, done.tail()

    def start() -> None:
        assert runner.run(interpreter.argv("-I", "-S", "-c", "pass"), timeout=120).ok

    return {"interpreter": verification["interpreter"], "emulated": interpreter.emulated,
            "root": str(interpreter.root) if interpreter.root else None,
            "build_verify_seconds": result.report["seconds"]["verify"],
            "build_seconds": round(sum(result.report["seconds"].values()), 3),
            "smoke_test_seconds_median": _median(smoke), "workload_seconds_median": _median(workload),
            "interpreter_start_seconds_median": _median(start)}


def main() -> int:
    results: dict = {"runs": RUNS, "how": "median of 5; the layer extracted from its zip; the sandbox of Lambda's "
                                         "libraries (bwrap); arm64 by Debian's aarch64 python under QEMU user mode "
                                         "(binfmt), on this x86_64 machine", "recipes": {}}
    with tempfile.TemporaryDirectory(prefix="layers-bench-emulation-") as scratch:
        for name in RECIPES:
            per_arch = {arch: _measure(name, arch, Path(scratch) / arch) for arch in ARCHES}
            native, emulated = per_arch["x86_64"], per_arch["arm64"]
            per_arch["emulated_over_native"] = {
                key: round(emulated[key] / native[key], 1) for key in
                ("smoke_test_seconds_median", "workload_seconds_median", "interpreter_start_seconds_median")}
            results["recipes"][name] = per_arch
    write_results("emulation", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
