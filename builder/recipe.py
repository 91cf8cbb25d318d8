"""Recipes: one TOML file per stack, parsed once into a frozen ``Recipe``.

``load_recipe`` merges ``recipe_defaults.toml`` under the file's keys,
validates the result with pydantic (unknown keys rejected with a "did you
mean"), then checks what pydantic cannot: the runtime exists, the
architectures are ones it runs on, requirements parse. Every problem becomes
one ``RecipeError`` naming the file and the key.
"""

from __future__ import annotations

import difflib
import posixpath
import re
import stat
import tomllib
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .errors import RecipeError
from .runtimes import Runtime, get_runtime

# Lambda's limit for the function and all its layers, unzipped: 250 MiB.
UNZIPPED_LIMIT = 262_144_000
# Above this a zip cannot be uploaded directly; it goes through S3.
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024
# A Lambda container image: 10 GB, uncompressed.
IMAGE_LIMIT = 10 * (1 << 30)

# Sizes are read as Lambda writes them: its "250 MB" is 262,144,000 bytes, its
# "512 MB" of /tmp is 512 MiB and its "10 GB" image limit is 10 GiB, so MB means
# MiB here too; otherwise "--ephemeral 512MB" would be under Lambda's own minimum.
_UNITS = {"": 1, "b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "kib": 2**10, "mib": 2**20, "gib": 2**30}
# ASCII digits only ("５MB" is no size), and bounded: nothing on Lambda is bigger than a 10 GB image.
_SIZE = re.compile(r"^\s*([0-9]{1,15}(?:\.[0-9]{1,6})?)\s*([a-z]*)\s*$", re.I | re.ASCII)
MAX_SIZE = 1 << 40
MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_DEPTH = 8
_RECIPE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$", re.ASCII)
_HASH_OPTION = re.compile(r"\s--hash=(sha256):([0-9a-f]{64})\b")


def parse_size(value: Any) -> int:
    """``20MB``, ``5MiB``, ``1024`` -> bytes; MB and MiB are the same, as in Lambda's limits."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 5MiB or a number of bytes")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)) and m[2].lower() in _UNITS:
        size = int(Decimal(m[1]) * _UNITS[m[2].lower()])  # Decimal: no float overflow or rounding
    else:
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
        raise ValueError(f"expected a size such as 5MiB or a number of bytes, got {shown!r}")
    if size < 0:
        raise ValueError("a size cannot be negative")
    if size > MAX_SIZE:
        raise ValueError(f"{size} bytes is more than any Lambda limit (at most {MAX_SIZE} bytes)")
    return size


Size = Annotated[int, BeforeValidator(parse_size)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Pin(_Frozen):
    """One requirement line: a PEP 508 requirement, optionally with wheel hashes."""

    text: str
    name: str
    hashes: tuple[str, ...] = ()

    @property
    def requirement(self) -> Requirement:
        return Requirement(self.text)

    @property
    def exact_version(self) -> str | None:
        specs = list(self.requirement.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            return specs[0].version
        return None


def parse_pin(line: str) -> Pin:
    hashes = tuple(f"{algo}:{digest}" for algo, digest in _HASH_OPTION.findall(line))
    text = _HASH_OPTION.sub("", line).strip()
    if "--" in text:
        raise ValueError(f"{line!r}: only --hash=sha256:<hex> options are understood")
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(f"{line!r} is not a valid requirement ({str(exc).splitlines()[0]})") from None
    if req.url:
        raise ValueError(f"{line!r}: direct URLs are not supported; pin a version from the index")
    return Pin(text=text, name=canonicalize_name(req.name), hashes=hashes)


# What a distribution name and an importable module path may look like (PEP 508 names; dotted identifiers).
_DIST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$", re.ASCII)
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}(\.[A-Za-z_][A-Za-z0-9_]{0,99}){0,15}$", re.ASCII)


def _distinct(values: tuple, what: str) -> tuple:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice in {what}")
        seen.add(value)
    return values


class StripSettings(_Frozen):
    # "trace": standard, then keep only what the smoke workload uses (trace.py).
    profile: Literal["none", "standard", "trace"]
    remove: tuple[str, ...]
    keep: tuple[str, ...]
    # Distributions removed whole (their files, as listed in their RECORD).
    drop: tuple[str, ...]
    # "empty": compile docstrings as "" (needs bytecode = "only"; see bytecode.py).
    docstrings: Literal["keep", "empty"]

    @field_validator("drop")
    @classmethod
    def _drop_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _DIST_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a distribution name (such as 'scipy' or 'tensorboard')")
        return _distinct(tuple(canonicalize_name(n) for n in value), "strip.drop")


class IncludeSettings(_Frozen):
    # builder/runtime/model_loader.py, shipped as layer_runtime.model_loader.
    model_loader: bool


# The levels each compression of a packed layer knows; a recipe that picks gzip and no level gets GZIP_LEVEL.
PACK_LEVELS = {"zstd": (1, 22), "gzip": (1, 9)}
GZIP_LEVEL = 6
_UNPACK_DIR = re.compile(r"[A-Za-z0-9._/-]{1,100}", re.ASCII)  # fullmatch: "$" would let a final "\n" by


class PackSettings(_Frozen):
    # "tmp": python/ ships as one archive that unpacks under unpack_dir at first import (pack.py).
    mode: Literal["none", "tmp"]
    compression: Literal["zstd", "gzip"]
    level: int
    unpack_dir: str

    @field_validator("level")
    @classmethod
    def _level_of_the_compression(cls, value: int, info: ValidationInfo) -> int:
        compression = info.data.get("compression")
        if compression in PACK_LEVELS:  # else compression itself was wrong, and is reported
            low, high = PACK_LEVELS[compression]
            if not low <= value <= high:
                raise ValueError(f"{value} is not a {compression} level: {compression} levels are {low} to {high}")
        return value

    @field_validator("unpack_dir")
    @classmethod
    def _under_tmp(cls, value: str) -> str:
        shown = value if len(value) <= 40 else value[:40] + "..."
        if not _UNPACK_DIR.fullmatch(value):
            raise ValueError(f"{shown!r} must be 1 to 100 of the characters A-Z a-z 0-9 . _ - /")
        if not value.startswith("/"):
            raise ValueError(f"{shown!r} is relative: give an absolute path under /tmp")
        if posixpath.normpath(value) != value:
            raise ValueError(f"{shown!r} is not a normalised path (no '..', '.', '//' or trailing '/')")
        if not value.startswith("/tmp/"):
            raise ValueError(f"{shown!r} is not a directory below /tmp, the only place Lambda lets a function write")
        return value


class SmokeTest(_Frozen):
    imports: tuple[str, ...] = Field(min_length=1, max_length=100)
    code: str = Field(max_length=100_000)

    @field_validator("imports")
    @classmethod
    def _module_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _MODULE.fullmatch(name):
                raise ValueError(f"{name!r} is not a module name (dotted identifiers, such as 'PIL.Image')")
        return _distinct(value, "smoke.imports")

    @field_validator("code")
    @classmethod
    def _compiles(cls, value: str) -> str:
        # Checked here, not minutes later after resolving; the runtime's Python compiles it again.
        try:
            compile(value, "<smoke test>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
            raise ValueError(f"not valid Python{line}: {getattr(exc, 'msg', exc)}") from None
        return value


class Recipe(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    description: str = Field(max_length=4096)
    license: str = Field(max_length=512)
    runtime: str
    architectures: tuple[Literal["x86_64", "arm64"], ...] = Field(min_length=1)
    requirements: tuple[Pin, ...] = Field(min_length=1)
    layer_name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,140}$")
    reserve: Size
    bytecode: Literal["none", "alongside", "only"]
    compression: int = Field(ge=0, le=9)
    base_image: str
    runtime_image: str
    strip: StripSettings
    include: IncludeSettings
    pack: PackSettings
    smoke: SmokeTest
    source: Path | None = None

    @field_validator("architectures")
    @classmethod
    def _one_of_each(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _distinct(value, "architectures")

    @field_validator("requirements", mode="before")
    @classmethod
    def _parse_requirements(cls, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a list of requirement strings such as 'numpy==2.2.6'")
        pins = [parse_pin(v) for v in value]
        seen: set[str] = set()
        for pin in pins:
            if pin.name in seen:
                raise ValueError(f"{pin.name} is listed twice")
            seen.add(pin.name)
        return tuple(pins)

    @property
    def runtime_info(self) -> Runtime:
        return get_runtime(self.runtime)

    @property
    def unzipped_budget(self) -> int:
        return UNZIPPED_LIMIT - self.reserve


@cache
def _defaults() -> dict:
    return tomllib.loads(resources.files(__package__).joinpath("recipe_defaults.toml").read_text())


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _fields_at(loc: tuple) -> list[str]:
    """The keys allowed at a location of the recipe, for "did you mean"."""
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [f for f in model.model_fields if f != "source"]


# What each key looks like, for the hint of an error about it.
EXAMPLES = {
    "name": 'name = "np311" (lowercase letters, digits, ".", "_", "-"; the file\'s name)',
    "description": 'description = "NumPy 2.2 for Python 3.11" (at most 4,096 characters)',
    "license": 'license = "BSD-3-Clause" (an SPDX expression, at most 512 characters)',
    "runtime": 'runtime = "python3.12" (a Lambda Python runtime)',
    "architectures": 'architectures = ["x86_64", "arm64"] (each once)',
    "requirements": 'requirements = ["numpy==2.2.6"] (PEP 508 lines from the index, each distribution once)',
    "layer_name": 'layer_name = "numpy-py311" (letters, digits, "-" and "_", at most 140)',
    "reserve": 'reserve = "10MiB" (a size: a number of bytes, or with KB/MB/GB)',
    "bytecode": 'bytecode = "none" (or "alongside", "only")',
    "compression": "compression = 6 (an integer from 0 to 9)",
    "base_image": 'base_image = "" (the default) or an image reference',
    "runtime_image": 'runtime_image = "" (the default) or an image reference',
    "strip": '[strip] table with profile, remove, keep, drop, docstrings',
    "strip.profile": 'profile = "standard" (or "none", "trace")',
    "strip.remove": 'remove = ["tensorflow/contrib/**"] (globs inside the layer\'s python/)',
    "strip.keep": 'keep = ["scipy/special/**"] (globs inside the layer\'s python/)',
    "strip.drop": 'drop = ["tensorboard"] (distribution names, each once)',
    "strip.docstrings": 'docstrings = "keep" (or "empty", with bytecode = "only")',
    "include": "[include] table with model_loader",
    "include.model_loader": "model_loader = true (or false)",
    "pack": "[pack] table with mode, compression, level, unpack_dir",
    "pack.mode": 'mode = "none" (or "tmp": python/ as one archive, unpacked under /tmp at first import)',
    "pack.compression": 'compression = "zstd" (or "gzip")',
    "pack.level": "level = 19 (zstd: an integer from 1 to 22; gzip: from 1 to 9)",
    "pack.unpack_dir": 'unpack_dir = "/tmp/layers" (an absolute path under /tmp of A-Z a-z 0-9 . _ - /, '
                       "at most 100 characters)",
    "smoke": '[smoke] table with imports and code',
    "smoke.imports": 'imports = ["numpy", "PIL.Image"] (1 to 100 module names, each once)',
    "smoke.code": 'code = """import numpy; assert numpy.ones(3).sum() == 3""" (Python source)',
}


def _describe(error: dict) -> tuple[str, str, str]:
    loc = tuple(p for p in error["loc"] if not isinstance(p, int))  # "architectures", not "architectures.0"
    key = ".".join(str(p) for p in loc) or "(top level)"
    example = EXAMPLES.get(key)
    if error["type"] == "extra_forbidden":
        allowed = _fields_at(loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return key, "unknown key", (f"did you mean {close[0]!r}?" if close
                                    else f"remove it; the keys here are {', '.join(allowed)}")
    if error["type"] == "missing":
        return key, "required key is missing", f"add it, e.g. {example}" if example else "add it"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "literal_error":
        message = "must be " + message.removeprefix("Input should be ")
    return key, message, f"for example: {example}" if example else "see recipes/np311.toml for the shape"


def parse_recipe(data: dict, source: Path | str = "<recipe>") -> Recipe:
    source = Path(source)
    pack = data.get("pack")
    if isinstance(pack, dict) and pack.get("compression") == "gzip" and "level" not in pack:
        data = {**data, "pack": {**pack, "level": GZIP_LEVEL}}  # the default level is zstd's
    merged = _merge(_defaults(), data)
    merged.setdefault("layer_name", merged.get("name"))
    merged["source"] = source
    try:
        recipe = Recipe.model_validate(_lists_to_tuples(merged), strict=True)
    except ValidationError as exc:
        key, message, hint = _describe(exc.errors()[0])
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        raise RecipeError(f"{source}: {key}: {message}{suffix}", hint=hint) from None
    try:
        runtime = recipe.runtime_info
    except RecipeError as exc:
        raise RecipeError(f"{source}: runtime: {exc.message}", hint=exc.hint) from None
    for arch in recipe.architectures:
        if arch not in runtime.architectures:
            raise RecipeError(
                f"{source}: architectures: {runtime.name} runs only on {', '.join(runtime.architectures)}, not {arch}",
                hint=f"remove {arch!r}, or choose a runtime from python3.8 on for arm64",
            )
    if (recipe.pack.mode == "tmp" and recipe.pack.compression == "zstd" and tuple(map(int, runtime.python.split("."))) < (3, 14)
            and "zstandard" not in {pin.name for pin in recipe.requirements}):
        # The layer unpacks itself with the zstandard wheel for the runtime's Python (3.14 has compression.zstd).
        raise RecipeError(f"{source}: pack.compression: zstd on {runtime.name} needs the decoder in the layer",
                          hint='add "zstandard" to requirements, or set pack.compression = "gzip" (stdlib only)')
    if recipe.pack.mode == "tmp" and recipe.bytecode == "none":
        # /tmp is writable: without bytecode in the archive, every cold start would compile the stack into it.
        raise RecipeError(f"{source}: bytecode: a packed layer carries its bytecode in the archive, not 'none'",
                          hint='set bytecode = "only" (smallest) or "alongside" (keeps the sources for tracebacks)')
    if recipe.strip.docstrings == "empty" and recipe.bytecode != "only":
        raise RecipeError(f"{source}: strip.docstrings: 'empty' needs bytecode = 'only' (not {recipe.bytecode!r}): "
                          "docstrings are emptied in the compiled modules, and other modes ship the sources",
                          hint="set bytecode = \"only\", or remove strip.docstrings")
    if recipe.reserve >= UNZIPPED_LIMIT:
        raise RecipeError(f"{source}: reserve: {recipe.reserve} bytes leaves no room for the layer (limit {UNZIPPED_LIMIT})",
                          hint="the reserve is the room kept for the function's own code: e.g. reserve = \"10MiB\"")
    return recipe


def _lists_to_tuples(value: Any) -> Any:
    # TOML arrays arrive as lists; the frozen models hold tuples. Requirements
    # stay a list: their validator parses the raw strings.
    if isinstance(value, dict):
        return {k: (v if k == "requirements" else _lists_to_tuples(v)) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_lists_to_tuples(v) for v in value)
    return value


def load_recipe(name_or_path: str | Path, recipes_dir: Path | None = None) -> Recipe:
    """A recipe by name (``tf18`` -> ``recipes/tf18.toml``) or by path."""
    path = resolve_recipe_path(name_or_path, recipes_dir)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RECIPE_BYTES + 1)
        if len(raw) > MAX_RECIPE_BYTES:
            raise RecipeError(f"{path}: over {MAX_RECIPE_BYTES // 1024} KiB: not a recipe",
                              hint="a recipe is a short TOML file; see recipes/np311.toml")
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}", hint="see recipes/np311.toml for the shape") from None
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply to be a recipe", hint="see recipes/np311.toml") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start})", hint="save the recipe as UTF-8") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc.strerror or exc}", hint="check the file's path and permissions") from None
    if _depth(data) > MAX_RECIPE_DEPTH:
        raise RecipeError(f"{path}: nested more than {MAX_RECIPE_DEPTH} levels deep: not a recipe",
                          hint="see recipes/np311.toml for the shape")
    recipe = parse_recipe(data, path)
    if recipe.name != path.stem:
        raise RecipeError(f"{path}: name: {recipe.name!r} differs from the file's name {path.stem!r}",
                          hint=f"set name = {path.stem!r} or rename the file")
    return recipe


def _depth(value: Any) -> int:
    """How deeply ``value``'s tables and arrays nest, found without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level <= MAX_RECIPE_DEPTH:  # deeper than that is refused anyway
                stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _file_kind(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    return "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"


def default_recipes_dir() -> Path:
    return Path.cwd() / "recipes"


def check_recipe_name(name: str) -> None:
    if not _RECIPE_NAME.fullmatch(name):
        shown = name if len(name) <= 70 else name[:70] + "..."
        raise RecipeError(f"{shown!r} is not a recipe name",
                          hint="recipe names are 1-64 lowercase letters, digits, '.', '_' and '-'")


def resolve_recipe_path(name_or_path: str | Path, recipes_dir: Path | None = None) -> Path:
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
    elif not _RECIPE_NAME.fullmatch(text):
        # Checked before the file system is asked: a 300-character name would be "File name too long".
        shown = text if len(text) <= 70 else text[:70] + "..."
        raise RecipeError(f"{shown!r} is not a recipe name",
                          hint="recipe names are 1-64 lowercase letters, digits, '.', '_' and '-'; or give a .toml path")
    else:
        if recipes_dir is not None:
            from .files import check_directory_option

            check_directory_option(recipes_dir, "--recipes")
        path = (recipes_dir or default_recipes_dir()) / f"{text}.toml"
    try:
        kind = _file_kind(path)
    except OSError as exc:
        raise RecipeError(f"{text}: cannot read: {exc.strerror or exc}", hint="check the recipe's path") from None
    if kind not in ("file", "missing"):
        raise RecipeError(f"{path} is {kind}, not a recipe file", hint="give a recipe's .toml file")
    if kind == "missing":
        known = sorted(p.stem for p in path.parent.glob("*.toml") if p.is_file()) if path.parent.is_dir() else []
        close = difflib.get_close_matches(path.stem, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else (f"known recipes: {', '.join(known)}" if known
                                                            else f"there are no recipes in {path.parent}; "
                                                                 "make one with: layers init NAME -r requirements.txt")
        raise RecipeError(f"no recipe {path}", hint=hint)
    return path
