"""The smoke test in Lambda's *runtime* image, which holds far fewer system libraries than the build image.

The build container (SAM's build image, or any base image) has compilers,
headers and a full set of system libraries, so a layer can pass its smoke
test there and still fail on Lambda with ``libexpat.so.1: cannot open shared
object file``. This module runs the same smoke workload (``verify.smoke``'s
script, unchanged) in the runtime image instead, set up as Lambda runs a
function:

- the image: ``public.ecr.aws/lambda/python:X.Y`` (``:X.Y-arm64`` for arm64;
  ``Runtime.function_image``), pulled when missing (``images.present_base``),
  or any image given with ``--runtime-image``;
- the layer root (the directory holding ``python/``) read-only at /opt, the
  smoke script and its spec read-only at /var/task (``LAMBDA_TASK_ROOT``);
- Lambda's environment: its ``LD_LIBRARY_PATH`` (from ``lambda_os.toml``),
  ``LAMBDA_TASK_ROOT``, ``LAMBDA_RUNTIME_DIR``, and the layer's two Python
  directories (``runtimes.layer_python_paths``) first on ``sys.path``;
- a read-only root file system with only /tmp writable (a tmpfs), a non-root
  user (uid 993, as Lambda runs container images), no network, and the
  image's entrypoint (Lambda's runtime interface emulator) replaced by
  ``sleep infinity``, so commands run with ``exec`` through ``container.py``.

The interpreter is ``pythonX.Y`` on the image's PATH, else
``/var/lang/bin/pythonX.Y`` (where Lambda's images keep it). An image of
another machine than the engine's (``:X.Y-arm64`` on an x86_64 engine) runs
under QEMU's user-mode emulator, registered with binfmt_misc; the result says
so (``emulated``). The result's ``how`` is the sentence the build report
carries. A failing smoke test raises
``VerifyError`` (exit 4) with the output's tail and, where ld.so named one,
the missing library; an image that cannot be had raises ``BuildError`` naming
it (exit 3).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildError, UsageError, VerifyError
from ..recipe import SmokeTest
from ..runner import Result
from ..runtimes import MACHINE, Runtime, layer_python_paths, system_libraries
from ..verify.interpreters import EMULATION, Interpreter
from ..verify.output import decisive_line, keep_output, shorten
from ..verify.smoke import _SMOKE_SCRIPT, SMOKE_TIMEOUT, _child_env
from .container import Container, ContainerRunner, engine_arch
from .images import DOCKER_ARCH, docker_platform, present_base

# uid 993 is sbx_user1051, the user Lambda runs functions from container images as (R, public
# Dockerfiles written for Lambda); no source gives its gid (990: I).
LAMBDA_USER = "993:990"
LAMBDA_TASK_ROOT = "/var/task"
LAMBDA_RUNTIME_DIR = "/var/runtime"
# Lambda's /tmp: 512 MB by default; programs may be run from it.
TMPFS = {"/tmp": "rw,exec,nosuid,nodev,size=512m,mode=1777"}
RUNTIME_IMAGE_HINT = ("pass --runtime-image with a Lambda Python runtime image this engine has "
                      "(public.ecr.aws/lambda/python:X.Y, or a mirror of it)")
_PROBE = "import sys, platform; print('%d.%d' % sys.version_info[:2], platform.machine())"
_FIND = 'command -v "$1" || { test -x "/var/lang/bin/$1" && echo "/var/lang/bin/$1"; }'
_MISSING_LIBRARY = re.compile(r"([\w.+-]+\.so[\w.]*): cannot open shared object file")
_MISSING_VERSION = re.compile(r"version `([\w.]+)' not found \(required by ([^)]+)\)")


def default_runtime_image(runtime: Runtime, arch: str) -> str:
    """AWS's runtime image of ``runtime`` for ``arch``: ``public.ecr.aws/lambda/python:3.11`` or ``:3.11-arm64``."""
    return runtime.function_image(arch)


@dataclass(frozen=True)
class RuntimeImageResult:
    image: str
    interpreter: str  # its path in the image
    user: str
    seconds: float    # the smoke test alone
    total_seconds: float  # with the container's start and removal
    output: str       # the smoke test's last lines
    machine: str = ""  # the interpreter's: "x86_64", "aarch64"
    emulated: bool = False  # run under QEMU: the image is another machine's than the engine's

    @property
    def uid(self) -> str:
        return self.user.split(":")[0]

    @property
    def how(self) -> str:
        who = f"{self.interpreter}, {self.machine} under emulation ({EMULATION})" if self.emulated else self.interpreter
        return (f"smoke test in the Lambda runtime image {self.image} ({who}; read-only /opt, "
                f"only /tmp writable, uid {self.uid}, no network)")


@dataclass(frozen=True)
class RuntimeBox:
    """A running container of the runtime image, set up as Lambda runs a function."""

    box: Container
    runner: ContainerRunner
    interpreter: Interpreter
    image: str
    task_root: Path  # the host directory mounted read-only at /var/task
    emulated: bool = False  # the image is another machine's than the engine's: QEMU runs it


def lambda_environment(runtime: Runtime, arch: str) -> dict[str, str]:
    return {
        "LD_LIBRARY_PATH": ":".join(system_libraries(runtime, arch).ld_library_path),
        "LAMBDA_TASK_ROOT": LAMBDA_TASK_ROOT,
        "LAMBDA_RUNTIME_DIR": LAMBDA_RUNTIME_DIR,
    }


def readable_as_in_the_zip(root: Path) -> None:
    """Give everything under ``root`` the read (and, where the owner has it, execute) bits for all.

    On Lambda the layer is the zip extracted, with the zip's modes (0644 or
    0755, ``archive.py``), so uid 993 reads every file. A tree in a
    ``mkdtemp`` directory (0700) would fail for that reason alone. Bits are only
    added, never removed; the zip normalises modes anyway.
    """
    for path in (root, *root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        want = info.st_mode | 0o444
        if stat.S_ISDIR(info.st_mode) or info.st_mode & 0o100:
            want |= 0o111
        if want != info.st_mode:
            os.chmod(path, stat.S_IMODE(want))


def _find_interpreter(runner: ContainerRunner, image: str, runtime: Runtime, arch: str) -> Interpreter:
    name = f"python{runtime.python}"
    found = runner.run(["sh", "-c", _FIND, "sh", name], timeout=60)
    # Lambda's PATH has "/usr/bin/": command -v answers "/usr/bin//python3.11".
    path = posixpath.normpath(found.stdout.strip().splitlines()[-1]) if found.ok and found.stdout.strip() else ""
    probe = runner.run([path, "-I", "-S", "-c", _PROBE], timeout=60) if path else None
    if probe is None or not probe.ok or probe.stdout.split() != [runtime.python, MACHINE[arch]]:
        if probe is None:
            got = "none"
        else:
            got = shorten(probe.stdout) if probe.ok else decisive_line(probe.stdout + probe.stderr)
        raise BuildError(f"the runtime image {image} has no working {name} for {MACHINE[arch]} "
                         f"(on PATH or in /var/lang/bin; found: {got})", hint=RUNTIME_IMAGE_HINT)
    return Interpreter(Path(path), runtime.python, MACHINE[arch])


@contextmanager
def runtime_container(client, image: str, layer_root: Path, runtime: Runtime, arch: str, *,
                      echo: Callable[[str], None] | None = None, scratch: Path | None = None,
                      on_step: Callable[[str], None] = lambda title: None) -> Iterator[RuntimeBox]:
    """A container of ``image`` with ``layer_root`` at /opt, as Lambda runs functions; removed on exit.

    ``scratch``: where the /var/task directory is made on this machine (the engine must see it).
    """
    layer_root = layer_root.resolve()
    if not (layer_root / "python").is_dir():
        raise UsageError(f"{layer_root} has no python/ directory: pass the layer's root, the directory holding python/",
                         hint=f"pass the directory that holds python/ (for an unzipped layer, the folder it was "
                              f"unzipped into), not {layer_root.name}/ itself")
    present_base(client, image, arch, on_step, what="the Lambda runtime image", hint=RUNTIME_IMAGE_HINT)
    readable_as_in_the_zip(layer_root)
    with tempfile.TemporaryDirectory(prefix="layers-task-", dir=scratch) as task:
        task_root = Path(task)
        task_root.chmod(0o755)
        with Container(image, client=client, platform=docker_platform(arch),
                       environment=lambda_environment(runtime, arch), network="none", read_only=True,
                       tmpfs=TMPFS, user=LAMBDA_USER, entrypoint=(),
                       read_only_mounts={"/opt": layer_root, LAMBDA_TASK_ROOT: task_root}) as box:
            runner = ContainerRunner(box, user=LAMBDA_USER, base_env={}, verbose=echo is not None,
                                     echo=echo or (lambda line: None))
            interpreter = _find_interpreter(runner, image, runtime, arch)
            yield RuntimeBox(box, runner, interpreter, image, task_root,
                             emulated=engine_arch(client) != DOCKER_ARCH[arch])


def smoke_script(runtime: Runtime) -> str:
    """``verify.smoke``'s script, with the layer's second directory (site-packages) on ``sys.path`` too.

    The script puts its first argument (/opt/python) first; the prelude puts the
    others after it, in Lambda's order.
    """
    _, *rest = layer_python_paths(runtime)
    prelude = f"import sys\nsys.path[0:0] = {rest!r}\n" if rest else ""
    return prelude + _SMOKE_SCRIPT


def run_smoke_in(runtime_box: RuntimeBox, smoke: SmokeTest, runtime: Runtime,
                 timeout: int = SMOKE_TIMEOUT) -> Result:
    """Run the smoke workload in an open ``runtime_container``; returns its result, whatever it is."""
    task = runtime_box.task_root
    (task / "smoke.py").write_text(smoke_script(runtime))
    (task / "smoke.json").write_text(json.dumps({"imports": list(smoke.imports), "code": smoke.code}))
    for name in ("smoke.py", "smoke.json"):
        (task / name).chmod(0o644)
    home = Path("/tmp")  # the only writable place; Keras and friends write under $HOME on import
    return runtime_box.runner.run(
        [runtime_box.interpreter.path, "-I", "-S", "-B", f"{LAMBDA_TASK_ROOT}/smoke.py", layer_python_paths(runtime)[0],
         f"{LAMBDA_TASK_ROOT}/smoke.json"],
        cwd=LAMBDA_TASK_ROOT, env=_child_env(home), timeout=timeout)


def failure_summary(output: str) -> str:
    """What ld.so said was missing, if it did: "libexpat.so.1 is not in the image"."""
    if match := _MISSING_LIBRARY.search(output):
        return f"{match.group(1)} is not in the image"
    if match := _MISSING_VERSION.search(output):
        return f"{Path(match.group(2)).name} needs {match.group(1)}, which the image's libraries do not define"
    return ""


def run_in_runtime_image(client, image: str, layer_root: Path, smoke: SmokeTest, runtime: Runtime, arch: str, *,
                         echo: Callable[[str], None] | None = None, scratch: Path | None = None,
                         on_step: Callable[[str], None] = lambda title: None,
                         timeout: int = SMOKE_TIMEOUT) -> RuntimeImageResult:
    """Run ``smoke`` against the layer at ``layer_root`` in ``image``; raise VerifyError if it fails."""
    started = time.perf_counter()
    with runtime_container(client, image, layer_root, runtime, arch, echo=echo, scratch=scratch,
                           on_step=on_step) as runtime_box:
        smoke_started = time.perf_counter()
        result = run_smoke_in(runtime_box, smoke, runtime, timeout)
        seconds = time.perf_counter() - smoke_started
        interpreter, emulated = str(runtime_box.interpreter.path), runtime_box.emulated
    if not result.ok or "SMOKE-OK" not in result.stdout:
        output = result.stdout + "\n" + result.stderr
        summary, said = failure_summary(output), decisive_line(output)
        kept = keep_output(f"smoke-{runtime.name}-{arch}-runtime-image", output)
        if summary:
            raise VerifyError(
                f"smoke test failed in the Lambda runtime image {image}: {summary} ({said})",
                hint="the layer needs something Lambda's runtime image lacks: use a wheel that bundles the library "
                     "(auditwheel repair), or ship it in the layer's lib/ (/opt/lib is on Lambda's LD_LIBRARY_PATH)"
                     + kept)
        raise VerifyError(f"smoke test failed in the Lambda runtime image {image}: {said}",
                          hint="fix the recipe's [smoke] imports or code, or the strip rule that removed what it "
                               "needs (keep globs; strip profile 'none' to compare)" + kept)
    return RuntimeImageResult(image, interpreter, LAMBDA_USER, seconds, time.perf_counter() - started,
                              result.tail(5), MACHINE[arch], emulated)
