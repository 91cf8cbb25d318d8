"""Choose a backend: ``pip``, ``docker``, or ``auto`` (Docker where it can run, else pip, saying why)."""

from __future__ import annotations

import os
from pathlib import Path

from ..container import docker_client
from ..errors import ToolMissing, UsageError
from ..events import Reporter
from ..runner import Runner
from .pip import PipBackend

BACKENDS = ("auto", "pip", "docker")


def cache_dir() -> Path:
    if os.environ.get("LAYERS_CACHE_DIR"):
        return Path(os.environ["LAYERS_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "lambda-layer-builder"


def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers; else why not, in a few words."""
    try:
        docker_client().close()
    except ToolMissing as missing:
        return missing.message
    return None


def choose_backend(name: str, runner: Runner, reporter: Reporter):
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}", hint=f"one of: {', '.join(BACKENDS)}")
    if name == "docker":
        raise UsageError("the Docker backend is not part of this version yet",
                         hint="use --backend pip (cross-installs wheels for the runtime's platform)")
    if name == "auto":
        reason = docker_unavailable_reason() or "the Docker backend is not part of this version yet"
        reporter.notice(f"using the pip backend: {reason}")
    return PipBackend(runner, cache_dir())
