"""Choose a backend for one target: ``pip``, ``docker``, or ``auto``.

``auto`` is Docker where an engine answers and the build image can be had
(present, built from a base image that is present or pulled, runnable on
this engine's platform); otherwise pip, with a one-line notice saying why.
``docker`` asked for by name fails with that reason instead.
"""

from __future__ import annotations

from ..errors import BuildError, ToolMissing, UsageError
from ..events import Reporter
from ..runner import Runner
from ..verify.output import cache_dir
from .base import Target
from .container import Container
from .docker import DockerBackend
from .images import DOCKER_ARCH, docker_platform
from .pip import PipBackend

BACKENDS = ("auto", "pip", "docker")
__all__ = ["BACKENDS", "cache_dir", "choose_backend"]


def _ready_docker(target: Target, runner: Runner, reporter: Reporter, base_image: str | None,
                  runtime_image: str | None) -> DockerBackend:
    """A Docker backend whose build image exists and runs here, or the typed error saying why not."""
    backend = DockerBackend(runner, cache_dir(), base_image=base_image, runtime_image=runtime_image)
    image = backend.prepare(target, reporter.step)
    if backend.client.version().get("Arch") != DOCKER_ARCH[target.arch]:
        # Another machine's image: prove this engine can run it (binfmt/QEMU).
        with Container(image.tag, client=backend.client, platform=docker_platform(target.arch)):
            pass
    return backend


def choose_backend(name: str, target: Target, runner: Runner, reporter: Reporter,
                   base_image: str | None = None, runtime_image: str | None = None):
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}", hint=f"one of: {', '.join(BACKENDS)}")
    if name == "pip":
        return PipBackend(runner, cache_dir())
    if name == "docker":
        return _ready_docker(target, runner, reporter, base_image, runtime_image)
    try:
        return _ready_docker(target, runner, reporter, base_image, runtime_image)
    except (ToolMissing, BuildError) as unavailable:
        reporter.notice(f"using the pip backend for {target.label}: {unavailable.message}")
    return PipBackend(runner, cache_dir())
