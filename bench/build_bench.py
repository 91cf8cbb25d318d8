"""``make bench``: our build of the python3.11 recipe beside the plain way, in one run.

Writes ``bench/results/build.json``:
- build time and sizes: ``layers build np311`` vs ``pip install -t`` + ``zip -r9 -X``
  on the same pins;
- zip time: our writer vs ``zip -r -6 -X`` on the same (our stripped) tree;
- cold import time of the smoke imports (``python -B``: no bytecode cache
  written, as on Lambda's read-only /opt), from our layer under each
  ``bytecode`` choice and from the plain pip tree. The page cache is warm;
  "cold" means Python starts without cached bytecode.
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench.results import write_results
from bench.zip_compare import compare_with_zip_cli
from builder.backends.pip import PipBackend
from builder.backends.select import cache_dir
from builder.build import BuildOptions, build
from builder.recipe import load_recipe
from builder.runner import Runner
from builder.verify.interpreters import find_interpreter
from builder.verify.smoke import time_imports

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "np311"
IMPORT_RUNS = 7


def _tree_bytes(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def _timed(func, *args, **kwargs):
    start = time.perf_counter()
    value = func(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> int:
    runner = Runner()
    recipe = load_recipe(RECIPE, ROOT / "recipes")
    interpreter = find_interpreter(recipe.runtime_info.python, runner)
    if interpreter is None:
        print(f"bench needs python{recipe.runtime_info.python} on this machine", file=sys.stderr)
        return 1
    pins = [pin.text for pin in recipe.requirements]
    results: dict = {"recipe": RECIPE, "pins": pins, "machine": platform.machine(), "cpus": __import__("os").cpu_count(),
                     "python": str(interpreter.path), "import_runs": IMPORT_RUNS}
    with tempfile.TemporaryDirectory(prefix="layers-bench-") as scratch:
        work = Path(scratch)
        backend = PipBackend(runner, cache_dir())
        # Warm pip's cache so both sides time building, not downloading.
        build(recipe, "x86_64", backend, BuildOptions(out_dir=work / "warm", time_imports=False))

        ours = {}
        for mode in ("none", "alongside", "only"):
            variant = recipe.model_copy(update={"bytecode": mode})
            result, seconds = _timed(build, variant, "x86_64", backend,
                                     BuildOptions(out_dir=work / f"ours-{mode}", time_imports=False))
            extracted = work / f"extracted-{mode}"
            with zipfile.ZipFile(result.zip.path) as archive:
                archive.extractall(extracted)
            ours[mode] = {
                "build_seconds": round(seconds, 2),
                "unzipped_bytes": result.zip.unzipped_bytes,
                "zipped_bytes": result.zip.zipped_bytes,
                "cold_import_seconds": round(time_imports(extracted / "python", recipe.smoke.imports, interpreter,
                                                          runner, IMPORT_RUNS), 4),
            }
        results["ours"] = ours

        plain_tree = work / "plain"
        install, install_s = _timed(runner.run, [sys.executable, "-m", "pip", "install", "--quiet", "--target",
                                                 plain_tree, *pins])
        if not install.ok:
            print(install.tail(), file=sys.stderr)
            return 1
        plain_zip = work / "plain.zip"
        zipped, zip_s = _timed(runner.run, ["zip", "-r9", "-X", "-q", plain_zip, "."], cwd=plain_tree)
        results["plain_pip_target_zip9"] = {
            "build_seconds": round(install_s + zip_s, 2),
            "unzipped_bytes": _tree_bytes(plain_tree),
            "zipped_bytes": plain_zip.stat().st_size,
            "cold_import_seconds": round(time_imports(plain_tree, recipe.smoke.imports, interpreter, runner,
                                                      IMPORT_RUNS), 4),
        }

        # Same tree for both zip writers: our stripped layer.
        tree = work / "extracted-none" / "python"
        runs = [compare_with_zip_cli(tree, work / f"zipcmp-{i}", runner) for i in range(3)]
        results["zip_level6_same_tree"] = {
            "tree_bytes": _tree_bytes(tree),
            "ours_seconds_median": round(statistics.median(r["ours_s"] for r in runs), 3),
            "zip_cli_seconds_median": round(statistics.median(r["zip_cli_s"] for r in runs), 3),
            "ours_bytes": runs[0]["ours_bytes"],
            "zip_cli_bytes": runs[0]["zip_cli_bytes"],
        }
    write_results("build", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
