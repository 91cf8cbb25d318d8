"""Build images: ``dockerfiles/<os>.Dockerfile`` FROM a base image, tagged by content.

The tag is a hash of the Dockerfile, the base image's ID and the Python version,
so ``ensure_build_image`` builds once and reuses the image until one of them
changes. A base image that is not present locally is pulled; where that fails
(no registry reachable, a typo), the error names it and suggests
``--base-image``. A base image built for another architecture than the
target is refused before anything runs in it.

The Dockerfile's RUN line checks the base-image contract; when it fails,
``contract_failure`` names what the image lacks in one line and the whole
build log goes to the cache's logs/ (the hint names the file).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildError, UsageError
from ..runtimes import Runtime
from ..verify.output import decisive_line, keep_output, shorten
from .container import EMULATION_HINT

DOCKERFILES = Path(__file__).resolve().parents[2] / "dockerfiles"
REPOSITORY = "lambda-layer-builder/build"
# Lambda's architecture names -> Docker's.
DOCKER_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
BASE_IMAGE_HINT = "pass --base-image with an image this engine has (see dockerfiles/README.md)"


def docker_platform(arch: str) -> str:
    return f"linux/{DOCKER_ARCH[arch]}"


@dataclass(frozen=True)
class BuildImage:
    tag: str
    base: str
    built: bool  # False: reused
    base_id: str = ""


def dockerfile_for(runtime: Runtime) -> Path:
    path = DOCKERFILES / f"{runtime.os}.Dockerfile"
    if not path.is_file():
        raise UsageError(f"no Dockerfile for {runtime.os_title} ({path})",
                         hint=f"{runtime.name} has no build image here; use --backend pip, or add {path.name}")
    return path


def image_tag(dockerfile_text: str, base_image_id: str, python: str) -> str:
    digest = hashlib.sha256("\0".join([dockerfile_text, base_image_id, python]).encode()).hexdigest()[:16]
    return f"{REPOSITORY}:{digest}"


def _have(client, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def check_architecture(image_attrs: dict, name: str, arch: str) -> None:
    """Refuse a base image built for another machine than the target's."""
    have = image_attrs.get("Architecture")
    if have and have != DOCKER_ARCH[arch]:
        raise BuildError(f"the base image {name} is built for {have}, the target is {arch} ({DOCKER_ARCH[arch]})",
                         hint=f"pass --base-image with a {DOCKER_ARCH[arch]} image, or use --backend pip")


def present_base(client, base: str, arch: str, on_step: Callable[[str], None], *, what: str, hint: str) -> dict:
    """Pull ``base`` if this engine lacks it; refuse one for another architecture. Returns its attributes."""
    import docker.errors

    if not _have(client, base):
        on_step(f"pull {what} {base} (first use; AWS's images are about 1 GB)")
        try:
            client.images.pull(base, platform=docker_platform(arch))
        except docker.errors.APIError as exc:
            raise BuildError(f"cannot pull {what} {base}: {shorten(str(exc.explanation or exc))}", hint=hint) from None
    attrs = client.images.get(base).attrs
    check_architecture(attrs, base, arch)
    return attrs


def build_log_text(build_log) -> str:
    """docker-py's build log (stream fragments, then the error record) as the text ``docker build`` prints."""
    parts = []
    for item in build_log or ():
        if "stream" in item:
            parts.append(str(item["stream"]))
        elif "error" in item:
            parts.append(f"\n{item['error']}\n")
    return "".join(parts)


def contract_failure(log: str, python: str) -> str:
    """What the base image lacks, in one line, from the log of the Dockerfile's contract check.

    The RUN line checks, in order: ``pythonX.Y -m pip``, ``strip``, ``cc``,
    ``Python.h``, ``timeout``; the first that fails stops it. Anything else:
    the log's decisive line.
    """
    name = f"python{python}"
    missing = r"(?:command )?not found"
    if re.search(rf"\b{re.escape(name)}: {missing}", log):
        return f"the image has no {name}: the contract needs the runtime's Python on PATH"
    if re.search(r"No module named pip\b", log):
        return f"the image's {name} has no pip: the contract needs {name} -m pip"
    if re.search(rf"\bstrip: {missing}", log):
        return "the image has no strip: the contract needs binutils strip"
    if re.search(rf"\bcc: {missing}", log):
        return "the image has no cc: the contract needs a C compiler as cc"
    if headers := re.search(r"no (\S*Python\.h): the contract needs the Python headers", log):
        return f"the image has no Python.h ({headers.group(1)}): the contract needs the Python headers"
    if re.search(r"^pip \S+ from ", log, re.MULTILINE) and "returned a non-zero code" in log:
        # Every check before it printed nothing or passed: the last one, ``command -v timeout``, says nothing.
        return "the image has no timeout: the contract needs coreutils timeout"
    return decisive_line(log)


def ensure_build_image(client, runtime: Runtime, arch: str, base_image: str | None = None,
                       on_step: Callable[[str], None] = lambda title: None, *,
                       log_dir: Path | None = None) -> BuildImage:
    """The build image for ``runtime`` on ``arch``, built from ``base_image`` unless present.

    ``log_dir``: where a failed build's whole log goes (default: the cache's logs/).
    """
    import docker.errors

    base = base_image or runtime.build_image(arch)
    text = dockerfile_for(runtime).read_text()
    base_attrs = present_base(client, base, arch, on_step, what="the base image", hint=BASE_IMAGE_HINT)
    # The base's image ID, not its name: a re-pulled ``latest`` is a new base.
    tag = image_tag(text, base_attrs["Id"], runtime.python)
    if _have(client, tag):
        return BuildImage(tag, base, built=False, base_id=base_attrs["Id"])
    on_step(f"build the image {tag} from {base} ({dockerfile_for(runtime).name})")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        data = text.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    try:
        client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                            buildargs={"BASE_IMAGE": base, "PYTHON": runtime.python}, pull=False,
                            platform=docker_platform(arch))
    except docker.errors.BuildError as exc:
        log = build_log_text(exc.build_log) or str(exc.msg)
        if "exec format error" in log.lower():
            raise BuildError(f"this Docker engine cannot run {docker_platform(arch)} programs, needed to build on {base}",
                             hint=EMULATION_HINT) from None
        kept = keep_output(f"build-image-{tag.rsplit(':', 1)[1]}", log, log_dir)
        raise BuildError(f"the build image from {base} fails the base-image contract: "
                         f"{contract_failure(log, runtime.python)}",
                         hint="pass --base-image with an image that meets the contract in dockerfiles/README.md, "
                              f"or use --backend pip{kept}") from None
    return BuildImage(tag, base, built=True, base_id=base_attrs["Id"])


FUNCTION_DOCKERFILE = """\
# Written by lambda-layer-builder: the recipe's stripped, verified tree as a
# Lambda container image (10 GB limit instead of a layer's 250 MB). Build
# your function FROM this image and COPY your handler to ${LAMBDA_TASK_ROOT}.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY python/ /opt/python/
ENV PYTHONPATH=/opt/python
"""


@dataclass(frozen=True)
class FunctionImage:
    tag: str
    image_id: str
    base: str
    size: int


def build_function_image(client, tree: Path, base: str, tag: str, arch: str,
                         on_step: Callable[[str], None] = lambda title: None, *,
                         log_dir: Path | None = None) -> FunctionImage:
    """An image FROM ``base`` holding ``tree`` at /opt/python (where Lambda's Python looks for layers)."""
    import tempfile

    import docker.errors

    present_base(client, base, arch, on_step, what="the function base image",
                 hint="pass --function-base with a Lambda Python base image this engine has")
    on_step(f"build the function image {tag} from {base}")
    with tempfile.TemporaryFile() as context:  # on disk: a stack too big for a layer is big
        with tarfile.open(fileobj=context, mode="w") as archive:
            data = FUNCTION_DOCKERFILE.encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            archive.add(tree, arcname="python")
        context.seek(0)
        try:
            image, _ = client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                                           buildargs={"BASE_IMAGE": base}, pull=False, platform=docker_platform(arch))
        except docker.errors.BuildError as exc:
            log = build_log_text(exc.build_log) or str(exc.msg)
            raise BuildError(f"the function image {tag} from {base} failed to build: {decisive_line(log)}",
                             hint="pass --function-base with a Lambda Python base image "
                                  "(public.ecr.aws/lambda/python:X.Y)"
                                  + keep_output(f"function-image-{tag}", log, log_dir)) from None
    return FunctionImage(tag, image.id, base, int(image.attrs.get("Size", 0)))
