"""Shared fixtures. Tiers live in folders: unit/ (fast, no network),
functional/ (real pip, zip, ELF), integration/ (Docker engine, moto server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def own_cache_dir(tmp_path_factory):
    """Every build in the run, in-process or a ``layers`` subprocess, caches under the run's own folder.

    Without this, tests that leave the cache to the builder's default used
    ~/.cache/lambda-layer-builder: a second run started from what the first
    left there, and the user's own cache was written by the tests.
    """
    cache = tmp_path_factory.mktemp("layers-cache")
    saved = os.environ.get("LAYERS_CACHE_DIR")
    os.environ["LAYERS_CACHE_DIR"] = str(cache)
    yield cache
    if saved is None:
        os.environ.pop("LAYERS_CACHE_DIR", None)
    else:
        os.environ["LAYERS_CACHE_DIR"] = saved


@pytest.fixture
def recipes_dir() -> Path:
    return ROOT / "recipes"


VALID_RECIPE = """
name = "{name}"
runtime = "python3.11"
requirements = ["six==1.17.0"]

[smoke]
imports = ["six"]
code = "assert six.PY3 if False else True"
"""


@pytest.fixture
def write_recipe(tmp_path):
    def write(text: str, name: str = "demo") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(text.format(name=name) if "{name}" in text else text)
        return path
    return write
