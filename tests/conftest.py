"""Shared fixtures. Tiers live in folders: unit/ (fast, no network),
functional/ (real pip, zip, ELF), integration/ (Docker engine, moto server)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
