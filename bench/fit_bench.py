"""``make bench``: how small tf18 gets, step by step, and whether a 100 MB model then fits.

Writes ``bench/results/fit.json``: for the standard ``tf18`` layer, the
trace-pruned ``tf18-lean`` with sources, and ``tf18-lean`` as shipped
(sourceless bytecode, docstrings emptied): unzipped and zipped bytes, cold
import time with Python 3.6 (``-B``, as on Lambda's read-only /opt), build
time, and what ``plan_budget`` recommends for a 100 MB model beside it.
Target (issue 6): the shipped ``tf18-lean`` at most 150 MB in Lambda's units
(157,286,400 bytes), so that the model fits in the package.
"""

from __future__ import annotations

import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench.results import write_results
from builder.backends.pip import PipBackend
from builder.backends.select import cache_dir
from builder.build import BuildOptions, build
from builder.plan import Item, plan_budget
from builder.recipe import load_recipe, parse_size
from builder.runner import Runner
from builder.verify.interpreters import find_interpreter
from builder.verify.smoke import time_imports

ROOT = Path(__file__).resolve().parents[1]
IMPORT_RUNS = 5
MODEL = parse_size("100MB")
TARGET = parse_size("150MB")


def main() -> int:
    runner = Runner()
    standard = load_recipe("tf18", ROOT / "recipes")
    lean = load_recipe("tf18-lean", ROOT / "recipes")
    interpreter = find_interpreter(lean.runtime_info.python, runner)
    if interpreter is None:
        print(f"bench needs python{lean.runtime_info.python} on this machine", file=sys.stderr)
        return 1
    sources = lean.model_copy(update={"bytecode": "none",
                                      "strip": lean.strip.model_copy(update={"docstrings": "keep"})})
    variants = {"tf18 standard": standard, "tf18-lean sources": sources, "tf18-lean shipped": lean}
    backend = PipBackend(runner, cache_dir())
    results: dict = {"model_bytes": MODEL, "target_bytes": TARGET, "python": str(interpreter.path), "layers": {}}
    with tempfile.TemporaryDirectory(prefix="layers-fit-bench-") as scratch:
        work = Path(scratch)
        for index, (label, recipe) in enumerate(variants.items()):
            start = time.perf_counter()
            result = build(recipe, "x86_64", backend, BuildOptions(out_dir=work / str(index), time_imports=False))
            seconds = time.perf_counter() - start
            extracted = work / f"extracted-{index}"
            with zipfile.ZipFile(result.zip.path) as archive:
                archive.extractall(extracted)
            plan = plan_budget(0, [Item(label, result.zip.unzipped_bytes, "build")], [Item("model", MODEL, "given")])
            results["layers"][label] = {
                "build_seconds": round(seconds, 1),
                "unzipped_bytes": result.zip.unzipped_bytes,
                "zipped_bytes": result.zip.zipped_bytes,
                "sha256": result.zip.sha256_hex,
                "cold_import_seconds": round(time_imports(extracted / "python", recipe.smoke.imports, interpreter,
                                                          runner, IMPORT_RUNS), 3),
                "model_100mb_goes_to": plan.recommended.name if plan.recommended else None,
            }
    shipped = results["layers"]["tf18-lean shipped"]
    results["target_met"] = shipped["unzipped_bytes"] <= TARGET and shipped["model_100mb_goes_to"] == "package"
    write_results("fit", results)
    return 0 if results["target_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
