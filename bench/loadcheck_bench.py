"""``make bench``: what the static load check costs on the biggest shipped layer, tf18.

Builds tf18 with the pip backend (from the cache after the first run), then
writes ``bench/results/loadcheck.json``: the build's own ``load_check``
seconds (the check on the stripped tree, inside the build), and the median of
five runs of the check on the extracted zip and on the zip itself (as
``layers check`` and ``layers publish`` do), with the number of ELF files and
problems. The target: under 2 s added to the tf18 build.
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
from builder.runtimes import system_libraries
from builder.verify.loadcheck import check_tree, check_zips

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "tf18"
RUNS = 5
TARGET_SECONDS = 2.0


def _median_seconds(func, *args) -> tuple[float, object]:
    samples, value = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        value = func(*args)
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples), 3), value


def main() -> int:
    recipe = load_recipe(RECIPE, ROOT / "recipes")
    libs = system_libraries(recipe.runtime_info, "x86_64")
    with tempfile.TemporaryDirectory(prefix="layers-bench-") as scratch:
        work = Path(scratch)
        result = build(recipe, "x86_64", PipBackend(Runner(), cache_dir()),
                       BuildOptions(out_dir=work / "dist", time_imports=False))
        with zipfile.ZipFile(result.zip.path) as archive:
            archive.extractall(work / "opt")
        on_tree, check = _median_seconds(check_tree, work / "opt", libs)
        on_zip, _ = _median_seconds(check_zips, [result.zip.path], libs)
    in_build = result.report["seconds"].get("load_check")
    results = {
        "recipe": RECIPE, "runtime": recipe.runtime, "table": check.how,
        "unzipped_bytes": result.zip.unzipped_bytes, "elf_files": check.elf_files,
        "errors": len(check.errors), "warnings": len(check.warnings),
        "in_build_seconds": in_build, "tree_seconds_median": on_tree, "zip_seconds_median": on_zip, "runs": RUNS,
        "target_seconds": TARGET_SECONDS, "meets_target": in_build is not None and in_build < TARGET_SECONDS,
    }
    write_results("loadcheck", results)
    return 0 if results["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
