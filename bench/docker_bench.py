"""``make bench``: a cold and a warm Docker build of the python3.11 recipe, in one run.

Writes ``bench/results/docker.json``. The states, each measured here:

- cold: nothing present. The base image is obtained first; no registry is
  reachable on this machine, so obtaining it is ``.ci/test-base-image.sh``
  (debootstrap + docker import, under a bench-only tag), standing in for the
  ``docker pull`` of a SAM build image (about 1 GB) that a user's first build
  does. Then no build image, an empty pip cache volume, an empty wheel store.
- cold, base loaded: the base image is loaded from a local ``docker save``
  tar (a pull with an infinitely fast network: extraction only), then as
  cold. A lower bound for a real first build.
- cold, base present: the base image is there; no build image, empty caches.
- warm: build image, pip cache volume and wheel store present (a plain
  ``layers build`` again: pip still asks the index what to install).
- warm, locked: the same with ``--lock`` from the warm build: nothing is
  asked of the index or downloaded.

Every build runs the whole pipeline (install, strip, smoke test in the
container, zip); all of them must produce the same zip.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from bench.results import write_results
from builder.backends.base import Lock
from builder.backends.container import docker_client
from builder.backends.docker import DockerBackend
from builder.build import BuildOptions, build
from builder.recipe import load_recipe
from builder.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "np311"
BASE = "layers-bench-base:bookworm"
VOLUME = "lambda-layer-builder-bench-pip-cache"


def _remove_volume(client) -> None:
    import docker.errors

    try:
        client.volumes.get(VOLUME).remove(force=True)
    except docker.errors.NotFound:
        pass


def _remove_image(client, name: str) -> None:
    import docker.errors

    try:
        client.images.remove(name, force=True)
    except docker.errors.ImageNotFound:
        pass


def _build(recipe, cache: Path, out: Path, lock=None) -> dict:
    backend = DockerBackend(Runner(), cache, base_image=BASE, pip_cache_volume=VOLUME)
    start = time.perf_counter()
    result = build(recipe, "x86_64", backend, BuildOptions(out_dir=out, time_imports=False, lock=lock))
    seconds = time.perf_counter() - start
    report = result.report
    return {
        "build_seconds": round(seconds, 2),
        "build_image_built": report["build_image"]["built_now"],
        "downloaded_files": len(report["downloaded"]),
        "stage_seconds": report["seconds"],
        "sha256": report["zip"]["sha256"],
        "verified": report["verification"]["verified"],
        "_lock": result.lock_path,
    }


def main() -> int:
    client = docker_client()
    recipe = load_recipe(RECIPE, ROOT / "recipes")
    results: dict = {"recipe": RECIPE, "machine": platform.machine(), "cpus": os.cpu_count(), "base_image": BASE,
                     "engine": client.version().get("Version")}
    with tempfile.TemporaryDirectory(prefix="layers-docker-bench-") as scratch:
        work = Path(scratch)

        # Cold: obtain the base image, then build with nothing cached.
        _remove_image(client, BASE)
        _remove_volume(client)
        start = time.perf_counter()
        made = subprocess.run(["bash", str(ROOT / ".ci" / "test-base-image.sh")], capture_output=True, text=True,
                              env={**os.environ, "LAYERS_TEST_BASE_IMAGE": BASE})
        if made.returncode != 0:
            print(made.stdout + made.stderr)
            return 1
        base_seconds = time.perf_counter() - start
        cold = _build(recipe, work / "cache-cold", work / "cold")
        cold["base_image_seconds"] = round(base_seconds, 2)
        cold["total_seconds"] = round(base_seconds + cold["build_seconds"], 2)

        warm = _build(recipe, work / "cache-cold", work / "warm")
        lock = Lock.from_json(json.loads(Path(warm["_lock"]).read_text()))
        warm_locked = _build(recipe, work / "cache-cold", work / "warm-locked", lock=lock)

        # Cold with the base image loaded from a tar: a pull minus the network.
        build_image = f"lambda-layer-builder/build:{_build_tag(client, recipe)}"
        saved = work / "base.tar"
        with saved.open("wb") as tar:
            for chunk in client.images.get(BASE).save(named=True):
                tar.write(chunk)
        _remove_image(client, build_image)
        _remove_image(client, BASE)
        _remove_volume(client)
        start = time.perf_counter()
        with saved.open("rb") as tar:
            client.images.load(tar)
        load_seconds = time.perf_counter() - start
        cold_base_loaded = _build(recipe, work / "cache-loaded", work / "cold-base-loaded")
        cold_base_loaded["base_image_seconds"] = round(load_seconds, 2)
        cold_base_loaded["total_seconds"] = round(load_seconds + cold_base_loaded["build_seconds"], 2)

        # Cold with the base image present: drop the build image and every cache.
        _remove_image(client, build_image)
        _remove_volume(client)
        cold_base_present = _build(recipe, work / "cache-second", work / "cold-base-present")
        cold_base_present["total_seconds"] = cold_base_present["build_seconds"]

        runs = {"cold": cold, "cold_base_loaded": cold_base_loaded, "cold_base_present": cold_base_present,
                "warm": warm, "warm_locked": warm_locked}
        for run in runs.values():
            run.pop("_lock")
        results.update(runs)
        results["same_zip_every_time"] = len({run["sha256"] for run in runs.values()}) == 1
        results["warm_speedup"] = round(cold["total_seconds"] / warm["build_seconds"], 2)
        results["warm_speedup_base_loaded"] = round(cold_base_loaded["total_seconds"] / warm["build_seconds"], 2)
        results["warm_speedup_base_present"] = round(cold_base_present["total_seconds"] / warm["build_seconds"], 2)
        results["warm_locked_speedup"] = round(cold["total_seconds"] / warm_locked["build_seconds"], 2)

        _remove_image(client, f"lambda-layer-builder/build:{_build_tag(client, recipe)}")
        _remove_image(client, BASE)
        _remove_volume(client)
    write_results("docker", results)
    return 0


def _build_tag(client, recipe) -> str:
    from builder.backends.images import dockerfile_for, image_tag

    runtime = recipe.runtime_info
    base_id = client.images.get(BASE).attrs["Id"]
    return image_tag(dockerfile_for(runtime).read_text(), base_id, runtime.python).rsplit(":", 1)[1]


if __name__ == "__main__":
    raise SystemExit(main())
