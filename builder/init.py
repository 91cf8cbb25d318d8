"""``layers init``: a recipe from a pip requirements file.

The recipe is rendered as TOML text, parsed back through ``parse_recipe``
(so an init never writes a recipe that ``build`` would refuse), then written
atomically. Smoke-test imports are guessed from distribution names, with a
table for the common stacks whose import name differs.
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from pathlib import Path

from packaging.utils import canonicalize_name

from .errors import UsageError
from .files import read_text
from .recipe import parse_pin, parse_recipe

# Distribution -> module to import, where they differ.
IMPORT_NAMES = {
    "pillow": "PIL.Image", "scikit-learn": "sklearn", "scikit-image": "skimage", "opencv-python": "cv2",
    "opencv-python-headless": "cv2", "pyyaml": "yaml", "beautifulsoup4": "bs4", "python-dateutil": "dateutil",
    "protobuf": "google.protobuf", "tensorflow-cpu": "tensorflow", "onnxruntime-gpu": "onnxruntime",
    "pymupdf": "fitz", "attrs": "attr", "msgpack-python": "msgpack", "faiss-cpu": "faiss",
}


def read_requirements(path: Path) -> list[str]:
    text = read_text(path, "requirements file", limit=1 << 20, hint="save it as UTF-8 text (pip's own format)")
    lines, pending = [], ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.split(" #", 1)[0].strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("-") and not line.startswith("--hash"):
            raise UsageError(f"{path}:{number}: pip option {line.split()[0]!r} is not supported in a recipe",
                             hint="keep only requirement lines (with optional --hash=sha256:...)")
        try:
            parse_pin(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: {exc}") from None
        lines.append(line)
    if pending.strip():
        # A last line continued with "\\": what it starts must not be dropped silently.
        raise UsageError(f"{path}: the last line ends with '\\' and nothing continues it",
                         hint="remove the trailing backslash")
    if not lines:
        raise UsageError(f"{path} has no requirements")
    return lines


def render_recipe(name: str, requirements: list[str], runtime: str, architectures: tuple[str, ...]) -> str:
    imports = []
    for line in requirements:
        dist = canonicalize_name(parse_pin(line).name)
        imports.append(IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    q = json.dumps  # TOML basic strings share JSON's escaping
    return "\n".join([
        f"name = {q(name)}",
        f"description = {q('Made by layers init from a requirements file')}",
        f"runtime = {q(runtime)}",
        f"architectures = [{', '.join(q(a) for a in architectures)}]",
        "requirements = [",
        *[f"    {q(line)}," for line in requirements],
        "]",
        "",
        "[smoke]",
        "# Imports guessed from the distribution names: check them, and add a snippet",
        "# that exercises the stack the way your function does.",
        f"imports = [{', '.join(q(i) for i in imports)}]",
        'code = ""',
        "",
    ])


def write_recipe(name: str, requirements_file: Path, runtime: str, architectures: tuple[str, ...],
                 recipes_dir: Path, force: bool = False) -> Path:
    path = recipes_dir / f"{name}.toml"
    if path.exists() and not force:
        raise UsageError(f"{path} exists", hint="pass --force to overwrite it")
    text = render_recipe(name, read_requirements(requirements_file), runtime, architectures)
    parse_recipe(tomllib.loads(text), path)  # refuse now what build would refuse later
    recipes_dir.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=recipes_dir, prefix=f".{name}.", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
