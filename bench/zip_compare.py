"""Time our layer zip writer against Info-ZIP's ``zip -r -6`` on the same tree.

Not a test (timings depend on the machine); run by hand, e.g.::

    python -m bench.zip_compare /path/to/tree /tmp/workdir

Run it twice: the first pass also warms the page cache, which favours
whichever tool reads second.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from builder.archive import write_layer_zip
from builder.errors import BuildError
from builder.runner import Runner


def compare_with_zip_cli(tree: Path, workdir: Path, runner: Runner) -> dict:
    """Wall-clock seconds and output sizes of both writers at level 6."""
    tree, workdir = Path(tree).resolve(), Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ours_zip = workdir / "ours.zip"
    cli_zip = workdir / "zip-cli.zip"
    # zip -r adds to an existing archive instead of replacing it.
    cli_zip.unlink(missing_ok=True)

    start = time.perf_counter()
    ours = write_layer_zip(tree, ours_zip, level=6)
    ours_s = time.perf_counter() - start

    start = time.perf_counter()
    result = runner.run(["zip", "-r", "-6", "-X", "-q", cli_zip, "."], cwd=tree)
    zip_cli_s = time.perf_counter() - start
    if not result.ok:
        raise BuildError(f"zip failed:\n{result.tail()}")

    return {
        "ours_s": round(ours_s, 3),
        "zip_cli_s": round(zip_cli_s, 3),
        "ours_bytes": ours.zipped_bytes,
        "zip_cli_bytes": cli_zip.stat().st_size,
    }


if __name__ == "__main__":
    print(compare_with_zip_cli(Path(sys.argv[1]), Path(sys.argv[2]), Runner()))
