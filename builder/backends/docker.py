"""The Docker backend: build inside a Lambda-like Amazon Linux container.

A session is one container from the build image (``images.ensure_build_image``:
``dockerfiles/<os>.Dockerfile`` FROM the base image, built once, reused).
The build's scratch directory is bind-mounted at its own path, so pip, strip
and the runtime's Python run in the container on the same paths the host
sees, as the calling user (uid:gid), so every file they write belongs to that
user and never to root. pip's cache is a named volume that outlives the
container; wheels from the index go to the wheel store shared with the pip
backend (read-only here: the host adds to it); wheels compiled from sources
are cached per build image.

The pip logic itself is ``PipBackend`` with a runner that executes in the
container (``container.ContainerRunner``): the same tag rules, so never a
wheel newer than the runtime's glibc, plus native sdists compiled by the
image's compiler.

Another machine's target (arm64 on an x86_64 engine) is built in a container
of that machine's base image, whose programs (pip, the compiler, strip, the
runtime's Python for bytecode and the smoke test) the kernel runs under
QEMU's user-mode emulator (binfmt_misc). ``prepare`` first proves that the
engine runs such a container (``container.check_engine_runs``), so an engine
without the emulator fails there, saying so, before any image is built; the
session's notes and the report say the build ran emulated.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ..errors import BuildError
from ..runner import Runner
from ..recipe import SmokeTest
from ..verify.interpreters import EMULATION, Interpreter
from ..verify.output import decisive_line, shorten
from .base import Session, Target
from .certs import CONTAINER_PATH, container_environment, host_ca_bundle
from .container import Container, ContainerRunner, check_engine_runs, check_network, docker_client, engine_arch
from .images import BASE_IMAGE_HINT, BuildImage, docker_platform, ensure_build_image, present_base
from .pip import PipBackend
from .runtime_image import default_runtime_image, run_in_runtime_image

PIP_CACHE_VOLUME = "lambda-layer-builder-pip-cache"
PIP_CACHE_PATH = "/var/cache/lambda-layer-builder/pip"
# Forwarded from the host so that pip in the container reaches the same
# index through the same proxy (file:// locations exist only on the host).
FORWARDED_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT",
                       "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
_PROBE = "import sys, platform; print('%d.%d' % sys.version_info[:2], platform.machine())"


def forwarded_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The host's index and proxy settings that make sense inside a container."""
    out = {}
    for name in FORWARDED_VARIABLES:
        value = environ.get(name)
        if not value:
            continue
        if name.startswith("PIP_") and "_URL" in name:
            value = " ".join(url for url in value.split() if not url.startswith("file:"))
            if not value:
                continue
        out[name] = value
    return out


def resolve_base_image(template: str | None, arch: str) -> str | None:
    """A recipe's or command's base image; ``{arch}`` stands for x86_64 or arm64."""
    return template.replace("{arch}", arch) if template else None


class DockerBackend:
    name = "docker"

    def __init__(self, runner: Runner, cache_dir: Path, *, base_image: str | None = None, client=None,
                 pip_cache_volume: str = PIP_CACHE_VOLUME, user: tuple[int, int] | None = None,
                 environ: Mapping[str, str] | None = None, trust_host_cas: bool = True,
                 network: str = "bridge", runtime_image: str | None = None) -> None:
        self.runner = runner  # for its verbosity and echo; commands run in the container
        self.cache_dir = cache_dir
        self.base_image = base_image
        # Where the smoke test runs: Lambda's runtime image (None: AWS's for the runtime).
        self.runtime_image = runtime_image
        self.client = client
        self.pip_cache_volume = pip_cache_volume
        self.user = user or (os.getuid(), os.getgid())
        self.environ = dict(os.environ if environ is None else environ)
        self.trust_host_cas = trust_host_cas
        self.network = check_network(network)  # "host" only when asked: it widens what the build reaches
        self.image: BuildImage | None = None
        self._prepared_for: Target | None = None

    def prepare(self, target: Target, on_step: Callable[[str], None] = lambda title: None) -> BuildImage:
        """Build or reuse the build image for ``target`` (pulling its base if needed)."""
        self.client = self.client or docker_client()
        base = resolve_base_image(self.base_image, target.arch) or target.runtime.build_image(target.arch)
        attrs = present_base(self.client, base, target.arch, on_step, what="the base image", hint=BASE_IMAGE_HINT)
        if attrs.get("Architecture") != engine_arch(self.client):
            # Another machine's image: prove this engine runs it (QEMU via binfmt) before building on it.
            check_engine_runs(self.client, base, docker_platform(target.arch))
        self.image = ensure_build_image(self.client, target.runtime, target.arch, base, on_step,
                                        log_dir=self.cache_dir / "logs")
        self._prepared_for = target
        return self.image

    def _image_for(self, target: Target) -> BuildImage:
        return self.image if self._prepared_for == target else self.prepare(target)

    def environment_id(self, target: Target) -> str:
        """What the build environment contributes to a layer's identity: the base image, by ID."""
        return f"docker:{self._image_for(target).base_id}"

    @contextmanager
    def session(self, target: Target, scratch: Path) -> Iterator[Session]:
        image = self._image_for(target)
        scratch = scratch.resolve()
        home, tmp = scratch / "home", scratch / "tmp"
        # Wheels compiled here link against this image's libraries: cached per image.
        wheel_cache = self.cache_dir / "docker" / image.tag.rsplit(":", 1)[1]
        wheel_cache.mkdir(parents=True, exist_ok=True)
        wheel_store = self.cache_dir / "wheels"
        wheel_store.mkdir(parents=True, exist_ok=True)
        volumes = {
            str(scratch): {"bind": str(scratch), "mode": "rw"},
            str(wheel_cache): {"bind": str(wheel_cache), "mode": "rw"},
            str(wheel_store): {"bind": str(wheel_store), "mode": "ro"},
            self.pip_cache_volume: {"bind": PIP_CACHE_PATH, "mode": "rw"},
        }
        environment = {"HOME": str(home), "PIP_CACHE_DIR": PIP_CACHE_PATH, "PIP_NO_INPUT": "1",
                       "PIP_DISABLE_PIP_VERSION_CHECK": "1", **forwarded_environment(self.environ)}
        notes = []
        with tempfile.TemporaryDirectory(prefix="layers-ca-") as ca_dir:
            bundle, sources = host_ca_bundle(self.environ) if self.trust_host_cas else ("", [])
            if bundle:
                ca_file = Path(ca_dir) / "ca-bundle.pem"
                ca_file.write_text(bundle)
                ca_file.chmod(0o644)
                Path(ca_dir).chmod(0o755)
                volumes[str(ca_file)] = {"bind": CONTAINER_PATH, "mode": "ro"}
                environment.update(container_environment())
                notes.append(f"trusts the host's CA certificates ({bundle.count('BEGIN CERTIFICATE')} from "
                             f"{len(sources)} file(s))")
            with Container(image.tag, client=self.client, platform=docker_platform(target.arch),
                           volumes=volumes, environment=environment, network=self.network) as box:
                user = "%d:%d" % self.user
                self._prepare(box, user, home, tmp)
                runner = ContainerRunner(box, user=user, base_env={},
                                         verbose=self.runner.verbose, echo=self.runner.echo)
                interpreter = self._interpreter(runner, target)
                if interpreter.emulated:
                    notes.append(f"the build container is {docker_platform(target.arch)}, run under emulation "
                                 f"({EMULATION}): pip, the compiler, strip and its {interpreter.machine} "
                                 f"python{interpreter.version} run slower than natively (a C extension compiled from "
                                 "source: about ten times), and import times are not measured (emulated times say "
                                 "nothing of Lambda's)")
                pip = PipBackend(runner, wheel_cache, python=str(interpreter.path), build_native=True,
                                 wheel_store=wheel_store, log_dir=self.cache_dir / "logs")
                yield Session(
                    backend=self.name, target=target, runner=runner, interpreter=interpreter, which=runner.which,
                    tmp=tmp, where=f"a container of {image.tag} (from {image.base})",
                    resolve=lambda recipe, workdir, lock=None: pip.resolve(recipe, target, workdir, lock),
                    install=lambda resolution, tree: pip.install(resolution, target, tree),
                    notes=tuple(notes),
                    run_smoke=lambda layer_root, smoke: self._smoke_in_runtime_image(target, layer_root, smoke, tmp),
                )

    def _smoke_in_runtime_image(self, target: Target, layer_root: Path, smoke: SmokeTest,
                                tmp: Path) -> tuple[str | None, str | None]:
        """The smoke test in Lambda's runtime image: (how, None), or (None, why) when the default image cannot be had.

        An image the user named (recipe or --runtime-image) that cannot be had is an error instead.
        """
        named = resolve_base_image(self.runtime_image, target.arch)
        image = named or default_runtime_image(target.runtime, target.arch)
        echo = self.runner.echo if self.runner.verbose else None
        try:
            return run_in_runtime_image(self.client, image, layer_root, smoke, target.runtime, target.arch,
                                        echo=echo, scratch=tmp).how, None
        except BuildError as unavailable:
            if named:
                raise
            return None, unavailable.message

    @staticmethod
    def _prepare(box: Container, user: str, home: Path, tmp: Path) -> None:
        # A new named volume belongs to root; builds run as the caller, who
        # also owns the scratch directories made here.
        steps = (["chmod", "1777", PIP_CACHE_PATH], "0"), (["mkdir", "-p", str(home), str(tmp)], user)
        for argv, as_user in steps:
            made = box.call(argv, user=as_user)
            if not made.ok:
                raise BuildError(
                    f"cannot prepare the build container ({' '.join(argv)}): {decisive_line(made.tail())}",
                    hint="the base image must provide chmod and mkdir (dockerfiles/README.md); see --base-image")

    @staticmethod
    def _interpreter(runner: ContainerRunner, target: Target) -> Interpreter:
        name = f"python{target.runtime.python}"
        path = runner.which(name)
        probe = runner.run([path or name, "-I", "-S", "-c", _PROBE], timeout=60) if path else None
        if probe is None or not probe.ok or probe.stdout.split() != [target.runtime.python, target.machine]:
            got = shorten(probe.stdout) if probe is not None and probe.ok else "none"
            raise BuildError(
                f"the build image has no working {name} for {target.machine} (found: {got})",
                hint="the base image must meet the contract in dockerfiles/README.md; see --base-image")
        return Interpreter(Path(path), target.runtime.python, target.machine)
