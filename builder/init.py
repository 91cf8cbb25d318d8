"""``layers init``: a recipe from a pip requirements file.

Stages: read the requirements file → check the recipe with guessed imports
(so pip never runs for a recipe ``build`` would refuse) → resolve: pip fetches
each *listed* distribution's wheel for the runtime and every architecture
(``--no-deps``, the pip backend's own target options and download, into a
temporary directory removed afterwards) → read each wheel's top-level import
names → render the recipe as TOML text, parse it back through
``parse_recipe``, and write it atomically.

Wheels come from an index and are untrusted: only bounded amounts of
``top_level.txt`` and ``RECORD`` are read, and a name becomes a smoke import
only if it is a Python identifier that the wheel really holds at its top
level. Offline (``runner=None``), the imports are guessed from the
distribution names, with a table for the common stacks whose import name
differs; that is also the fallback for a wheel that names nothing usable,
and the recipe's comment says which imports were guessed.
"""

from __future__ import annotations

import csv
import io
import json
import keyword
import os
import re
import tempfile
import tomllib
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from .errors import ResolveError, UsageError
from .files import read_text
from .recipe import Pin, Recipe, parse_pin, parse_recipe
from .runner import Result, Runner

# Distribution -> module to import, where they differ (used when guessing).
IMPORT_NAMES = {
    "pillow": "PIL.Image", "scikit-learn": "sklearn", "scikit-image": "skimage", "opencv-python": "cv2",
    "opencv-python-headless": "cv2", "pyyaml": "yaml", "beautifulsoup4": "bs4", "python-dateutil": "dateutil",
    "protobuf": "google.protobuf", "tensorflow-cpu": "tensorflow", "onnxruntime-gpu": "onnxruntime",
    "pymupdf": "fitz", "attrs": "attr", "msgpack-python": "msgpack", "faiss-cpu": "faiss",
}
# Where a wheel's top-level name is too little to test: import this submodule instead, if the
# wheel holds the top-level name it starts with ("PIL" alone loads none of Pillow's C code).
SUBMODULE_IMPORTS = {"pillow": "PIL.Image", "protobuf": "google.protobuf"}

# Bounds on what is read from a downloaded wheel. The largest real RECORDs (tensorflow,
# torch) are a few MB; a top_level.txt is a few lines.
MAX_TOP_LEVEL_BYTES = 64 << 10
MAX_RECORD_BYTES = 32 << 20
# More top-level modules than this per distribution are packaging accidents, not an API.
MAX_IMPORTS_PER_DIST = 4
MAX_IMPORTS = 100  # what a recipe's [smoke] imports may hold
MAX_ERROR_CHARS = 300
# Top-level packages that wheels ship by mistake; imported only if nothing else is there.
_INCIDENTAL = {"test", "tests", "docs", "examples"}
_EXTENSION_SUFFIXES = (".so", ".pyd")
_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")


@dataclass(frozen=True)
class SmokeImports:
    """The recipe's smoke imports, and how they were found."""

    imports: tuple[str, ...]
    resolved: bool                 # read from wheels (True) or guessed from names (False)
    guessed: tuple[str, ...] = ()  # resolved, but these distributions' wheels named nothing usable


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
            raise UsageError(f"{path}:{number}: {exc}",
                             hint="each line is a PEP 508 requirement from the index, e.g. numpy==2.2.6") from None
        lines.append(line)
    if pending.strip():
        # A last line continued with "\\": what it starts must not be dropped silently.
        raise UsageError(f"{path}: the last line ends with '\\' and nothing continues it",
                         hint="remove the trailing backslash")
    if not lines:
        raise UsageError(f"{path} has no requirements",
                         hint="list one requirement per line, e.g. numpy==2.2.6")
    return lines


def guess_import(dist: str) -> str:
    dist = canonicalize_name(dist)
    return IMPORT_NAMES.get(dist, dist.replace("-", "_"))


def guess_imports(requirements: Sequence[str]) -> SmokeImports:
    imports = _distinct(guess_import(parse_pin(line).name) for line in requirements)
    return SmokeImports(imports=imports[:MAX_IMPORTS], resolved=False)


# -- resolve ---------------------------------------------------------------
def resolve_imports(recipe: Recipe, runner: Runner) -> SmokeImports:
    """Fetch each listed distribution's wheel for every target of ``recipe``; import what the wheels hold.

    Dependencies are not fetched (``--no-deps``): they are not smoke-tested
    by name, and a build resolves them anyway. A requirement whose marker
    excludes every target has no wheel and no import.
    """
    from .backends.base import Target
    from .backends.pip import PipBackend

    names: dict[str, list[str]] = {pin.name: [] for pin in recipe.requirements}
    found: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="layers-init-") as scratch:
        # The scratch folder is also the backend's cache: init leaves nothing in the user's cache.
        backend = PipBackend(runner, Path(scratch))
        for arch in recipe.architectures:
            target = Target(recipe.runtime_info, arch)
            workdir = Path(scratch) / arch
            dest = workdir / "wheels"
            dest.mkdir(parents=True)
            # The backend's own download (its target options, Requires-Python stepping, TLS check), not a
            # second pip command line; it keeps the releases it steps over on the instance, which _fetch resets.
            backend._excluded = []
            result = backend._download(
                ["--no-deps", "--dest", dest, "--progress-bar", "off", *backend._target_options(target),
                 *(pin.text for pin in recipe.requirements)],
                workdir,
            )
            if not result.ok:
                raise _resolve_failure(result, recipe.requirements, target.describe())
            for wheel in sorted(dest.glob("*.whl")):
                try:
                    dist = canonicalize_name(parse_wheel_filename(wheel.name)[0])
                except InvalidWheelFilename:
                    continue  # pip saved it, so this does not happen; nothing to import from it anyway
                if dist not in names:
                    continue
                found.add(dist)
                for name in wheel_imports(wheel, dist):
                    if name not in names[dist]:
                        names[dist].append(name)
    imports, guessed = [], []
    for pin in recipe.requirements:
        if pin.name not in found:
            continue
        chosen = names[pin.name][:MAX_IMPORTS_PER_DIST]
        if not chosen:
            # The wheel names nothing importable: the build's smoke test will tell whether the guess holds.
            chosen = [guess_import(pin.name)]
            guessed.append(pin.name)
        imports += chosen
    if not imports:
        raise ResolveError(f"no requirement of {recipe.name} applies to {recipe.runtime}: "
                           "their environment markers exclude every architecture",
                           hint="check the markers in the requirements file")
    return SmokeImports(imports=_distinct(imports)[:MAX_IMPORTS], resolved=True, guessed=tuple(guessed))


def _resolve_failure(result: Result, pins: Sequence[Pin], where: str) -> ResolveError:
    """One line: the requirement that failed and pip's last meaningful ERROR line, not pip's whole output."""
    output = result.stdout + "\n" + result.stderr
    errors = [line.strip().removeprefix("ERROR:").strip() for line in output.splitlines()
              if line.strip().startswith("ERROR:")]
    # "ERROR: Exception:" and the like only introduce what follows.
    meaningful = [line for line in errors if line and not line.endswith(":")]
    reason = meaningful[-1] if meaningful else result.tail(1).strip() or f"pip exited with {result.returncode}"
    reason = " ".join(reason.split())
    if len(reason) > MAX_ERROR_CHARS:
        reason = reason[:MAX_ERROR_CHARS] + "..."
    failed = _failed_pin(output, reason, pins)
    what = failed.text if failed else "the requirements (" + ", ".join(p.text for p in pins) + ")"
    return ResolveError(
        f"cannot resolve {what} for {where}: {reason}",
        hint="check the name and version on the index pip uses (PIP_INDEX_URL, pip.conf); init reads wheels only: "
             "for a distribution published only as source, or without network, pass --guess",
    )


def _failed_pin(output: str, reason: str, pins: Sequence[Pin]) -> Pin | None:
    by_name = {pin.name: pin for pin in pins}
    missing = _NOT_FOUND.search(output)
    if missing:
        name = canonicalize_name(re.split(r"[<>=!~;\[( ]", missing.group(1))[0])
        if name in by_name:
            return by_name[name]
    words = {canonicalize_name(word) for word in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", reason)}
    named = [pin for pin in pins if pin.name in words]
    if len(named) == 1:
        return named[0]
    return pins[0] if len(pins) == 1 else None


# -- read wheels -----------------------------------------------------------
def wheel_imports(wheel: Path, dist: str) -> tuple[str, ...]:
    """The modules a wheel of ``dist`` lets one import, best first (possibly none).

    ``top_level.txt`` when it names modules the wheel holds, else the
    top-level packages and modules its ``RECORD`` lists (only those really
    in the zip). Private names (``_cffi_backend``) and stray test or docs
    packages count only when nothing else is there.
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = set(zf.namelist())
            dist_info = _dist_info_dir(members, dist)
            top_level = _read_member(zf, f"{dist_info}/top_level.txt", MAX_TOP_LEVEL_BYTES) if dist_info else None
            names = _checked_top_level(top_level, members) if top_level is not None else []
            if not names:
                record = _read_member(zf, f"{dist_info}/RECORD", MAX_RECORD_BYTES) if dist_info else None
                names = _record_top_level(record, members) if record is not None else []
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, RuntimeError,
            NotImplementedError, ValueError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method.
        raise ResolveError(f"{wheel.name} from the index is not a readable wheel ({exc})",
                           hint="the index serves a damaged file; check it") from None
    return _preferred(names, dist)


def _dist_info_dir(members: set[str], dist: str) -> str | None:
    dirs = {m.split("/", 1)[0] for m in members if "/" in m and m.split("/", 1)[0].endswith(".dist-info")}
    own = [d for d in sorted(dirs) if canonicalize_name(d.removesuffix(".dist-info").rsplit("-", 1)[0]) == dist]
    return own[0] if own else (next(iter(dirs)) if len(dirs) == 1 else None)


def _read_member(zf: zipfile.ZipFile, name: str, limit: int) -> str | None:
    """A member's text, or None when it is missing, larger than ``limit`` or not UTF-8."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit:
        return None
    with zf.open(info) as f:
        data = f.read(limit + 1)  # the header's size is the wheel's claim; count what comes out
    if len(data) > limit:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_module_name(name: str) -> bool:
    return 0 < len(name) <= 100 and name.isascii() and name.isidentifier() and not keyword.iskeyword(name)


def _top_components(members: set[str]) -> set[str]:
    """Names importable at the top of the zip: directories and module files (``x.py``, ``x.cpython-312-....so``)."""
    tops = set()
    for member in members:
        first, sep, _ = member.partition("/")
        if first == "__pycache__":
            continue
        if sep:
            tops.add(first)
        elif first.endswith((".py", *_EXTENSION_SUFFIXES)):
            tops.add(first.split(".", 1)[0])
    return tops


def _checked_top_level(text: str, members: set[str]) -> list[str]:
    # A name counts only if the wheel holds it: "os" in a top_level.txt is a valid identifier too.
    tops = _top_components(members)
    return [name for name in (line.strip() for line in text.splitlines()) if _is_module_name(name) and name in tops]


def _record_top_level(text: str, members: set[str]) -> list[str]:
    paths = set()
    for row in csv.reader(io.StringIO(text)):
        if row and row[0] in members:  # what RECORD claims and the zip does not hold is never installed
            paths.add(row[0])
    names = []
    for path in sorted(paths):
        parts = path.split("/")
        if parts[0].endswith((".dist-info", ".data")) or parts[0] == "__pycache__":
            continue
        if len(parts) == 1 and parts[0].endswith((".py", *_EXTENSION_SUFFIXES)):
            candidate = [parts[0].split(".", 1)[0]]
        elif len(parts) == 2 and parts[1] == "__init__.py":
            candidate = parts[:1]
        elif len(parts) == 3 and parts[2] == "__init__.py" and f"{parts[0]}/__init__.py" not in paths:
            candidate = parts[:2]  # a namespace package (google/protobuf): import the package inside
        else:
            continue
        if all(_is_module_name(part) for part in candidate):
            names.append(".".join(candidate))
    return names


def _preferred(names: Sequence[str], dist: str) -> tuple[str, ...]:
    unique = _distinct(names)
    public = [n for n in unique if not n.startswith("_") and n.split(".")[0] not in _INCIDENTAL]
    kept = public or [n for n in unique if not n.startswith("_")] or list(unique)
    own = dist.replace("-", "_").lower()
    kept.sort(key=lambda n: (n.split(".")[0].lower() != own, n))
    submodule = SUBMODULE_IMPORTS.get(dist)
    if submodule and submodule.split(".")[0] in {n.split(".")[0] for n in kept}:
        kept = [submodule, *(n for n in kept if n.split(".")[0] != submodule.split(".")[0])]
    return tuple(kept)


def _distinct(names) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


# -- write -----------------------------------------------------------------
def render_recipe(name: str, requirements: list[str], runtime: str, architectures: tuple[str, ...],
                  smoke: SmokeImports | None = None) -> str:
    smoke = smoke or guess_imports(requirements)
    q = json.dumps  # TOML basic strings share JSON's escaping
    if smoke.resolved:
        about = ["# Imports read from the wheels' top-level modules: add a snippet that exercises",
                 "# the stack the way your function does."]
        if smoke.guessed:
            about.append(f"# Guessed (their wheels name no module): {', '.join(smoke.guessed)}; check them.")
    else:
        about = ["# Imports guessed from the distribution names: check them, and add a snippet",
                 "# that exercises the stack the way your function does."]
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
        *about,
        f"imports = [{', '.join(q(i) for i in smoke.imports)}]",
        'code = ""',
        "",
    ])


def write_recipe(name: str, requirements_file: Path, runtime: str, architectures: tuple[str, ...],
                 recipes_dir: Path, force: bool = False, *, runner: Runner | None = None) -> Path:
    """Write ``recipes_dir/NAME.toml``, its smoke imports read from the wheels pip fetches with ``runner``.

    ``runner=None`` guesses the imports from the names instead and needs no network.
    """
    from .files import check_directory_option
    from .recipe import check_recipe_name

    check_recipe_name(name)
    check_directory_option(recipes_dir, "--recipes")
    path = recipes_dir / f"{name}.toml"
    if path.exists() and not force:
        raise UsageError(f"{path} exists", hint="pass --force to overwrite it")
    requirements = read_requirements(requirements_file)
    text = render_recipe(name, requirements, runtime, architectures)
    recipe = parse_recipe(tomllib.loads(text), path)  # refuse now what build would refuse later (and before pip)
    if runner is not None:
        text = render_recipe(name, requirements, runtime, architectures, resolve_imports(recipe, runner))
        parse_recipe(tomllib.loads(text), path)
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
