"""Choose a backend for one target: ``pip``, ``docker``, or ``auto``.

``auto`` is Docker where an engine answers and the build image can be had
(present, built from a base image that is present or pulled, runnable on
this engine's platform); otherwise pip, with a one-line notice saying why.
``docker`` asked for by name fails with that reason instead.

"Runnable" is proven, not assumed: for another machine's target (arm64 on an
x86_64 engine), ``DockerBackend.prepare`` starts a container of the base image
(``container.check_engine_runs``, remembered per engine), which runs only
where QEMU is registered with binfmt_misc. So ``auto`` builds arm64 layers in
Docker, emulated, where it can, and on pip, which cross-installs the target's
wheels, where it cannot.
"""

from __future__ import annotations

from ..errors import BuildError, ToolMissing, UsageError
from ..events import Reporter
from ..runner import Runner
from ..verify.output import cache_dir
from .base import Target
from .docker import DockerBackend
from .pip import PipBackend

BACKENDS = ("auto", "pip", "docker")
__all__ = ["BACKENDS", "cache_dir", "choose_backend"]


def _ready_docker(target: Target, runner: Runner, reporter: Reporter, base_image: str | None,
                  runtime_image: str | None) -> DockerBackend:
    """A Docker backend whose build image exists and runs here, or the typed error saying why not."""
    backend = DockerBackend(runner, cache_dir(), base_image=base_image, runtime_image=runtime_image)
    backend.prepare(target, reporter.step)  # proves an emulated platform runs before building on it
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
