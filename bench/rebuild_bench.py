"""``make bench``: two ``layers rebuild --all`` of the shipped recipes in a row.

Writes ``bench/results/rebuild.json``. The recipes (and their committed
locks) are copied to a scratch directory, so the repository is not touched,
and the builds go to a scratch ``dist/``. The first rebuild builds every
target. The second finds every identity equal to the last build's, so it
builds nothing: the target is under 10 seconds for all shipped recipes.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import write_results

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 10.0


def _rebuild(work: Path) -> tuple[float, list[dict]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "builder", "rebuild", "--all", "--recipes", "recipes",
                             "--out", "dist", "--json"], cwd=work, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"rebuild failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, json.loads(result.stdout)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="layers-rebuild-bench-") as scratch:
        work = Path(scratch)
        shutil.copytree(ROOT / "recipes", work / "recipes")
        first_seconds, first = _rebuild(work)
        second_seconds, second = _rebuild(work)
    results = {
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "targets": [f"{o['recipe']}-{o['architecture']}" for o in first],
        "first": {"seconds": round(first_seconds, 2), "statuses": {f"{o['recipe']}-{o['architecture']}": o["status"]
                                                                   for o in first}},
        "second": {"seconds": round(second_seconds, 2),
                   "statuses": {f"{o['recipe']}-{o['architecture']}": o["status"] for o in second}},
        "second_built_nothing": all(o["status"] == "unchanged" for o in second),
        "second_under_target": second_seconds < TARGET_SECONDS,
        "target_seconds": TARGET_SECONDS,
    }
    write_results("rebuild", results)
    return 0 if results["second_built_nothing"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
