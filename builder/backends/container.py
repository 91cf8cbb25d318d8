"""The one Docker wrapper: a build container that is always removed.

``Container`` is a context manager over the Docker SDK. ``__enter__`` starts
a long-lived container (``sleep infinity`` under the engine's init), commands
run in it with ``call``, files move with ``copy_into`` and ``copy_out``, and
``__exit__`` removes it whatever happened: success, an exception, Ctrl-C, or a
failure halfway through ``__enter__``. Every container carries the label
``LABEL`` so tests (and users) can prove none was left behind.

The same class makes the run-only container of the Lambda runtime image
(``runtime_image.py``): a read-only root (``read_only``), only ``tmpfs``
paths writable, a non-root ``user``, no network, the image's ENTRYPOINT
replaced (``entrypoint``; Lambda's images start the runtime interface
emulator), and host directories bind-mounted read-only (``read_only_mounts``:
the layer at /opt).

``check_engine_runs`` proves that the engine runs another machine's
containers (linux/arm64 on an x86_64 engine, through QEMU registered with
binfmt_misc) by starting one, rather than trusting what the engine reports;
a success is remembered per engine and platform for the process.

``ContainerRunner`` is the subprocess seam (``runner.Runner``) pointed into a
container: code that runs tools through a runner (pip, strip, the runtime's
Python) runs them in the container unchanged.
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from ..errors import BuildError, ToolMissing, UsageError
from ..runner import Result, Runner
from ..verify.output import decisive_line, keep_output, shorten

LABEL = "lambda-layer-builder"
# Docker 20.10: the first engine API that takes a platform when creating a
# container (1.41), which arm64 builds on an x86_64 engine need.
MIN_API_VERSION = (1, 41)
MIN_ENGINE = "20.10"
# What a container prints when its binaries are for another machine and no
# binfmt_misc/QEMU handler is registered.
_FOREIGN_BINARY = ("exec format error", "exec user process caused")
# The networks a build container may join: the engine's default bridge, or,
# asked for by name, the host's own (an index or proxy on 127.0.0.1) or none.
NETWORKS = ("bridge", "host", "none")
EMULATION_HINT = ("register QEMU with binfmt_misc, with the F flag (apt-get install qemu-user-static on Debian or "
                  "Ubuntu, or docker run --privileged tonistiigi/binfmt --install arm64), "
                  "or use --backend pip, which cross-installs wheels for the target")


def docker_client():
    """A client for the engine the environment points at, or ToolMissing saying how to get one."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # the SDK raises several kinds; all mean "no engine"
        raise ToolMissing(f"no Docker engine answers ({type(exc).__name__})",
                          hint="start Docker, or use --backend pip") from None
    check_engine_version(client.version())
    return client


def check_engine_version(version: Mapping) -> None:
    """Raise when the engine's API is older than this tool needs (``version``: the engine's /version)."""
    api = str(version.get("ApiVersion", "0.0"))
    try:
        got = tuple(int(part) for part in api.split(".")[:2])
    except ValueError:
        got = (0, 0)
    if got < MIN_API_VERSION:
        raise ToolMissing(
            f"the Docker engine {version.get('Version', '?')} (API {api}) is too old; "
            f"the Docker backend needs {MIN_ENGINE} or newer (API {'.'.join(map(str, MIN_API_VERSION))})",
            hint="upgrade the Docker engine, or use --backend pip")


def check_network(network: str) -> str:
    if network not in NETWORKS:
        raise UsageError(f"unknown container network {network!r}", hint=f"one of: {', '.join(NETWORKS)}")
    return network


class Container:
    """A container kept alive by ``sleep infinity``; see the module docstring.

    ``volumes``: docker-py's mapping (host path or volume name -> bind and mode).
    ``read_only_mounts``: container path -> host directory or file, mounted read-only.
    ``tmpfs``: container path -> mount options (``{"/tmp": "rw,exec,size=512m"}``).
    ``user``: who runs the container and, unless ``call`` says otherwise, its commands ("uid:gid").
    ``entrypoint``: None keeps the image's; a sequence replaces it, ``()`` removes it.
    """

    def __init__(self, image: str, *, client=None, platform: str | None = None,
                 volumes: Mapping[str, dict] | None = None, environment: Mapping[str, str] | None = None,
                 echo: Callable[[str], None] | None = None, name_hint: str = "", network: str = "bridge",
                 read_only: bool = False, tmpfs: Mapping[str, str] | None = None, user: str | None = None,
                 entrypoint: Sequence[str] | None = None,
                 read_only_mounts: Mapping[str, Path | str] | None = None) -> None:
        self.image = image
        self.network = check_network(network)
        self.client = client
        self.platform = platform
        self.volumes = dict(volumes or {})
        self.environment = dict(environment or {})
        self.echo = echo
        self.name_hint = name_hint
        self.read_only = read_only
        self.tmpfs = dict(tmpfs or {})
        self.user = user
        self.entrypoint = None if entrypoint is None else tuple(entrypoint)
        self.read_only_mounts = {target: str(source) for target, source in (read_only_mounts or {}).items()}
        self.container = None

    def _create_options(self) -> dict:
        from docker.types import Mount

        options = dict(detach=True, init=True, platform=self.platform, volumes=self.volumes,
                       environment=self.environment, labels={LABEL: "1"}, network_mode=self.network)
        if self.read_only:
            options["read_only"] = True
        if self.tmpfs:
            options["tmpfs"] = self.tmpfs
        if self.user:
            options["user"] = self.user
        if self.entrypoint is not None:
            # [""] is the engine's "no entrypoint" (Docker API, ContainerConfig.Entrypoint).
            options["entrypoint"] = list(self.entrypoint) or [""]
        if self.read_only_mounts:
            # Mounts, not ``volumes``: that mapping is keyed by host path, so one host path could not
            # appear twice, and a missing source is an error here instead of an empty directory.
            options["mounts"] = [Mount(target, source, type="bind", read_only=True)
                                 for target, source in self.read_only_mounts.items()]
        return options

    def __enter__(self) -> "Container":
        self.client = self.client or docker_client()
        try:
            self.container = self.client.containers.create(self.image, ["sleep", "infinity"], **self._create_options())
            self.container.start()
            self._check_running()
        except BaseException:
            self._remove()
            raise
        return self

    def _check_running(self) -> None:
        """A container whose binaries this engine cannot execute dies at once; say why.

        One trivial exec proves it runs: checking the status alone races
        with the init process failing a moment after start.
        """
        import docker.errors

        try:
            code, output = self.container.exec_run(["sleep", "0"])
        except docker.errors.APIError as exc:
            code, output = -1, str(exc).encode()
        if code == 0:
            return
        self.container.reload()
        logs = (self.container.logs() + b"\n" + (output or b"")).decode(errors="replace").strip()
        if any(marker in logs.lower() for marker in _FOREIGN_BINARY):
            machine = self.platform or "this image's platform"
            # The kernel's own words ("exec /bin/sleep: exec format error"), not the engine's reply to the exec.
            said = next((line.strip() for line in logs.splitlines()
                         if any(marker in line.lower() for marker in _FOREIGN_BINARY)), "exec format error")
            raise BuildError(f"this Docker engine cannot run {machine} containers of {self.image}: {shorten(said)}",
                             hint=EMULATION_HINT)
        raise BuildError(f"the container from {self.image} stopped at start ({self.container.status}): "
                         f"{decisive_line(logs)}",
                         hint="the image must provide sh and sleep (see dockerfiles/README.md)"
                              + keep_output(f"container-{self.image}", logs))

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
        """Run a command in the container to completion; never raises on a non-zero exit.

        ``user``: "uid:gid" for this command; None runs it as the container's user.
        """
        if self.container is None:
            raise BuildError("the container is not running",
                             hint="a command ran outside the container's with block: a bug, please report it")
        args = tuple(str(a) for a in argv)
        if self.echo:
            self.echo("+ docker exec " + shlex.join(args))
        code, (stdout, stderr) = self.container.exec_run(
            list(args), workdir=cwd, environment=dict(env or {}), user=user or self.user or "", demux=True)
        stdout_text, stderr_text = (stdout or b"").decode(errors="replace"), (stderr or b"").decode(errors="replace")
        if code in (126, 127) and "executable file not found" in stdout_text + stderr_text:
            raise ToolMissing(f"{args[0]} is not in the image {self.image}",
                              hint="the base image must meet the contract in dockerfiles/README.md")
        return Result(args, code, stdout_text, stderr_text)

    def copy_into(self, source: Path, destination: str) -> None:
        """Copy a host file or directory to ``destination`` (a path that will be created) in the container."""
        target = PurePosixPath(destination)
        self.call(["mkdir", "-p", str(target.parent)])
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(source, arcname=target.name)
        buffer.seek(0)
        if not self.container.put_archive(str(target.parent), buffer.getvalue()):
            raise BuildError(f"could not copy {source} into the container at {destination}",
                             hint=f"check that {PurePosixPath(destination).parent} is writable in the image")

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


# (engine ID, platform) pairs proven to run: a failure is not kept, since it may be the probed
# image's own (tests/integration/test_arm64.py's image holds a binary no emulator accepts).
_RUNS: set[tuple[str, str]] = set()


def engine_arch(client) -> str:
    """The engine's own architecture in Docker's names ("amd64", "arm64")."""
    return str(client.version().get("Arch", ""))


def check_engine_runs(client, image: str, platform: str) -> None:
    """Raise BuildError (with ``EMULATION_HINT``) unless a ``platform`` container of ``image`` runs here.

    The probe is a container of ``image`` (whose sh and sleep the contract
    asks for) started and run once; for an arm64 image on an x86_64 engine
    that takes QEMU's binfmt handler with the F flag, which a running
    container is the only sure test of (the handler may lack F, the engine
    may run in a VM of its own, a remote engine is another machine).
    """
    key = (_engine_id(client), platform)
    if key in _RUNS:
        return
    with Container(image, client=client, platform=platform, entrypoint=(), network="none"):
        pass
    _RUNS.add(key)


def _engine_id(client) -> str:
    info = client.info()
    return str(info.get("ID") or info.get("Name") or client.api.base_url)


class ContainerRunner(Runner):
    """A ``Runner`` whose commands run in ``box``, as ``user``, with ``base_env`` set.

    Paths are the same inside and out: the build's scratch directory is
    bind-mounted at its host path, so arguments need no translation.
    Timeouts go through coreutils ``timeout`` in the container (``exec`` has
    none of its own).
    """

    def __init__(self, box: Container, *, user: str, base_env: Mapping[str, str],
                 verbose: bool = False, echo: Callable[[str], None] = lambda line: None) -> None:
        super().__init__(verbose=verbose, echo=echo)
        self.box = box
        self.user = user
        self.base_env = dict(base_env)

    def run(self, args, *, cwd=None, env=None, timeout=None, input=None) -> Result:
        if input is not None:
            raise BuildError("feeding standard input to a command in the build container is not supported",
                             hint="a bug in the caller: pass the input as a file under the session's tmp instead")
        argv = tuple(str(a) for a in args)
        self.history.append(argv)
        if self.verbose:
            self.echo("+ [container] " + shlex.join(argv))
        command = ("timeout", "--kill-after=10", str(int(timeout)), *argv) if timeout else argv
        result = self.box.call(command, cwd=str(cwd) if cwd else None, env={**self.base_env, **(env or {})},
                               user=self.user)
        return Result(argv, result.returncode, result.stdout, result.stderr)

    def which(self, name: str) -> str | None:
        found = self.box.call(["sh", "-c", 'command -v "$1"', "sh", name], user=self.user)
        path = found.stdout.strip()
        return path if found.ok and path else None
