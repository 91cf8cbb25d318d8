"""The one Docker wrapper: a build container that is always removed.

``Container`` is a context manager over the Docker SDK. ``__enter__`` starts
a long-lived container (``sleep infinity`` under the engine's init), commands
run in it with ``call``, files move with ``copy_into`` and ``copy_out``, and
``__exit__`` removes it whatever happened: success, an exception, Ctrl-C, or a
failure halfway through ``__enter__``. Every container carries the label
``LABEL`` so tests (and users) can prove none was left behind.
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from .errors import BuildError, ToolMissing
from .runner import Result

LABEL = "lambda-layer-builder"


def docker_client():
    """A client for the engine the environment points at, or ToolMissing saying how to get one."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception as exc:  # the SDK raises several kinds; all mean "no engine"
        raise ToolMissing(f"no Docker engine answers ({type(exc).__name__})",
                          hint="start Docker, or use --backend pip") from None


class Container:
    def __init__(self, image: str, *, client=None, platform: str | None = None,
                 volumes: Mapping[str, dict] | None = None, environment: Mapping[str, str] | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.image = image
        self.client = client
        self.platform = platform
        self.volumes = dict(volumes or {})
        self.environment = dict(environment or {})
        self.echo = echo
        self.container = None

    def __enter__(self) -> "Container":
        self.client = self.client or docker_client()
        try:
            self.container = self.client.containers.create(
                self.image, ["sleep", "infinity"], detach=True, init=True, platform=self.platform,
                volumes=self.volumes, environment=self.environment, labels={LABEL: "1"}, network_mode="bridge",
            )
            self.container.start()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._remove()

    def _remove(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True, v=True)
            finally:
                self.container = None

    def call(self, argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
             user: str | None = None) -> Result:
        """Run a command in the container to completion; never raises on a non-zero exit."""
        if self.container is None:
            raise BuildError("the container is not running")
        args = tuple(str(a) for a in argv)
        if self.echo:
            self.echo("+ docker exec " + shlex.join(args))
        code, (stdout, stderr) = self.container.exec_run(
            list(args), workdir=cwd, environment=dict(env or {}), user=user or "", demux=True)
        return Result(args, code, (stdout or b"").decode(errors="replace"), (stderr or b"").decode(errors="replace"))

    def copy_into(self, source: Path, destination: str) -> None:
        """Copy a host file or directory to ``destination`` (a path that will be created) in the container."""
        target = PurePosixPath(destination)
        self.call(["mkdir", "-p", str(target.parent)])
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(source, arcname=target.name)
        buffer.seek(0)
        if not self.container.put_archive(str(target.parent), buffer.getvalue()):
            raise BuildError(f"could not copy {source} into the container at {destination}")

    def copy_out(self, source: str, destination: Path) -> None:
        """Copy ``source`` out of the container to ``destination``, owned by the calling user, not root."""
        stream, _ = self.container.get_archive(source)
        spool = io.BytesIO(b"".join(stream))
        uid, gid = os.getuid(), os.getgid()

        def as_caller(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
            member = tarfile.data_filter(member, path)
            return member.replace(uid=uid, gid=gid, uname="", gname="")

        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = destination.parent / f".{destination.name}.copying"
        with tarfile.open(fileobj=spool) as archive:
            archive.extractall(staging, filter=as_caller)
        extracted = staging / PurePosixPath(source).name
        os.replace(extracted, destination)
        staging.rmdir()
