"""Build images: ``dockerfiles/<os>.Dockerfile`` FROM a base image, tagged by content.

The tag is a hash of the Dockerfile, the base image's ID and the Python version,
so ``ensure_build_image`` builds once and reuses the image until one of them
changes. A base image that is not present locally is pulled; where that fails
(no registry reachable, a typo), the error names it and suggests
``--base-image``. A base image built for another architecture than the
target is refused before anything runs in it.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildError, UsageError
from ..runtimes import Runtime
from .container import EMULATION_HINT

DOCKERFILES = Path(__file__).resolve().parents[2] / "dockerfiles"
REPOSITORY = "lambda-layer-builder/build"
# Lambda's architecture names -> Docker's.
DOCKER_ARCH = {"x86_64": "amd64", "arm64": "arm64"}


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
        raise UsageError(f"no Dockerfile for {runtime.os_title} ({path})")
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
            raise BuildError(f"cannot pull {what} {base}: {exc.explanation or exc}", hint=hint) from None
    attrs = client.images.get(base).attrs
    check_architecture(attrs, base, arch)
    return attrs


def ensure_build_image(client, runtime: Runtime, arch: str, base_image: str | None = None,
                       on_step: Callable[[str], None] = lambda title: None) -> BuildImage:
    import docker.errors

    base = base_image or runtime.build_image(arch)
    text = dockerfile_for(runtime).read_text()
    base_attrs = present_base(client, base, arch, on_step, what="the base image",
                              hint="pass --base-image with an image this engine has (see dockerfiles/README.md)")
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
        lines = [str(item.get("stream", item.get("error", ""))).rstrip() for item in exc.build_log]
        tail = "\n".join(line for line in lines if line)[-1500:]
        if "exec format error" in tail.lower():
            raise BuildError(f"this Docker engine cannot run {docker_platform(arch)} programs, needed to build on {base}",
                             hint=EMULATION_HINT) from None
        raise BuildError(f"the build image from {base} failed (does it meet the base-image contract?):\n{tail}",
                         hint="see dockerfiles/README.md for what a base image needs") from None
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
                         on_step: Callable[[str], None] = lambda title: None) -> FunctionImage:
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
            lines = [str(item.get("stream", item.get("error", ""))).rstrip() for item in exc.build_log]
            raise BuildError("the function image failed to build:\n" + "\n".join(l for l in lines if l)[-1500:]) from None
    return FunctionImage(tag, image.id, base, int(image.attrs.get("Size", 0)))
