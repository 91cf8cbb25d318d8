"""The manifest of published layers: ``published/RECIPE.json``.

What teams and their infrastructure code consume: for each published layer
(one per architecture) and region, the version's ARN, number, sha256, the
lock digest it was built from and when. Runs merge into it (a region
published today does not erase the others), and every write goes to a temp
file that is renamed over the old one, so a reader never sees half a file.
"""

from __future__ import annotations

import base64
import json
import re
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UsageError
from ..files import read_json

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Entry:
    layer_name: str
    architecture: str
    region: str
    arn: str
    version: int
    sha256: str          # hex, of the zip
    code_sha256: str     # base64, as Lambda reports it
    lock_digest: str
    published_at: str
    runtimes: tuple[str, ...] = ()
    identity: str = ""   # lockfile.layer_identity of the build
    ssm: tuple[str, ...] = ()  # the SSM parameters publish made name this version (absent from older manifests)

    def to_json(self) -> dict:
        data = asdict(self)
        data["runtimes"] = list(self.runtimes)
        data["ssm"] = list(self.ssm)
        return data


class Manifest:
    def __init__(self, path: Path, recipe: str, entries: dict[tuple[str, str], Entry] | None = None) -> None:
        self.path = path
        self.recipe = recipe
        self.entries = dict(entries or {})  # (layer_name, region) -> Entry
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, recipe: str) -> "Manifest":
        if not path.is_file():
            return cls(path, recipe)
        try:
            data = read_json(path, "manifest", hint="move it aside; the next publish writes a new one",
                             limit=MAX_MANIFEST_BYTES)
            entries = {}
            _expect(isinstance(data, dict) and isinstance(data.get("layers"), dict), "an object with 'layers'")
            _expect(data.get("format") == FORMAT_VERSION and not isinstance(data.get("format"), bool),
                    f"format {FORMAT_VERSION}")
            _expect(data.get("recipe") == recipe, f"the manifest of {recipe!r}")
            for layer_name, layer in data["layers"].items():
                _expect(_LAYER_NAME.fullmatch(layer_name), "Lambda layer names as keys of 'layers'")
                _expect(isinstance(layer, dict) and layer.get("architecture") in ("x86_64", "arm64")
                        and isinstance(layer.get("regions"), dict), f"{layer_name}: an architecture and regions")
                for region, item in layer["regions"].items():
                    entry = _entry(layer_name, layer["architecture"], region, item)
                    entries[(layer_name, region)] = entry
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{path} is not a manifest written by layers publish ({exc})",
                             hint="move it aside; the next publish writes a new one") from None
        return cls(path, recipe, entries)

    def current(self, layer_name: str, region: str) -> Entry | None:
        return self.entries.get((layer_name, region))

    def record(self, entry: Entry) -> None:
        """Add or replace one region's entry and write the file at once (a crash keeps what was done)."""
        with self._lock:
            self.entries[(entry.layer_name, entry.region)] = entry
            self._write()

    def rows(self, region: str | None = None) -> list[Entry]:
        return sorted((e for e in self.entries.values() if region is None or e.region == region),
                      key=lambda e: (e.layer_name, e.region))

    def to_json(self) -> dict:
        layers: dict[str, dict] = {}
        for entry in self.rows():
            layer = layers.setdefault(entry.layer_name, {"architecture": entry.architecture, "regions": {}})
            item = entry.to_json()
            for key in ("layer_name", "architecture", "region"):
                item.pop(key)
            layer["regions"][entry.region] = item
        return {"format": FORMAT_VERSION, "recipe": self.recipe, "layers": layers}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.to_json(), handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


MAX_MANIFEST_BYTES = 4 << 20
_LAYER_NAME = re.compile(r"[a-zA-Z0-9_-]{1,140}")
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION_TEXT = re.compile(r"[1-9]\d{0,9}")
_ARN = re.compile(r"arn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):\d{12}:layer:(?P<name>[a-zA-Z0-9_-]{1,140}):"
                  r"(?P<version>[1-9]\d{0,9})")


def _expect(condition, what: str) -> None:
    if not condition:
        raise ValueError(f"expected {what}")


def _entry(layer_name: str, architecture: str, region: str, item: object) -> Entry:
    """One region's entry, each field checked: prune deletes by these names, regions and versions."""
    where = f"{layer_name} in {region}"
    _expect(_REGION.fullmatch(region), f"AWS region names as keys of {layer_name}'s regions")
    _expect(isinstance(item, dict), f"{where}: an object")
    version = item.get("version")
    _expect(isinstance(version, int) and not isinstance(version, bool) and 0 < version < 10**10,
            f"{where}: a version from 1")
    arn = _ARN.fullmatch(item.get("arn") if isinstance(item.get("arn"), str) else "")
    _expect(arn and (arn["region"], arn["name"], int(arn["version"])) == (region, layer_name, version),
            f"{where}: the ARN of that layer version")
    _expect(isinstance(item.get("sha256"), str) and _HEX64.fullmatch(item["sha256"]), f"{where}: a sha256")
    _expect(isinstance(item.get("lock_digest"), str) and _HEX64.fullmatch(item["lock_digest"]),
            f"{where}: a lock digest")
    code = item.get("code_sha256")
    _expect(isinstance(code, str) and len(code) == 44, f"{where}: a CodeSha256 (base64 of 32 bytes)")
    base64.b64decode(code, validate=True)
    _expect(isinstance(item.get("published_at"), str) and len(item["published_at"]) <= 64, f"{where}: a time")
    runtimes = item.get("runtimes", [])
    _expect(isinstance(runtimes, list) and len(runtimes) <= 15
            and all(isinstance(r, str) and len(r) <= 32 for r in runtimes), f"{where}: a list of runtimes")
    identity = item.get("identity", "")
    _expect(isinstance(identity, str) and (identity == "" or _HEX64.fullmatch(identity)), f"{where}: an identity")
    ssm = item.get("ssm", [])
    _expect(isinstance(ssm, list) and len(ssm) <= 2 and len(set(map(str, ssm))) == len(ssm)
            and all(_ssm_name(name, layer_name, architecture) for name in ssm),
            f"{where}: SSM parameter names of that layer")
    return Entry(layer_name=layer_name, architecture=architecture, region=region, arn=arn.group(0), version=version,
                 sha256=item["sha256"], code_sha256=code, lock_digest=item["lock_digest"],
                 published_at=item["published_at"], runtimes=tuple(runtimes), identity=identity, ssm=tuple(ssm))


def _ssm_name(name: object, layer_name: str, architecture: str) -> bool:
    """``name`` is ``{prefix}/{layer}/{arch}/latest`` or ``.../{version}`` under a prefix publish accepts.

    Not tied to the entry's version: a team may edit the version to pin an older one, keeping the rest.
    """
    from .plan import check_ssm_prefix

    if not isinstance(name, str) or len(name) > 1011:
        return False
    prefix, slash, which = name.rpartition(f"/{layer_name}/{architecture}/")
    if not slash or not (which == "latest" or _VERSION_TEXT.fullmatch(which)):
        return False
    try:
        check_ssm_prefix(prefix)
    except UsageError:
        return False
    return True


def manifest_path(directory: Path, recipe: str) -> Path:
    from ..recipe import check_recipe_name

    check_recipe_name(recipe)  # before the file system is asked: "../x" or 300 characters are no recipe
    return directory / f"{recipe}.json"


# -- every manifest of a directory (``layers arns --all``) ----------------------------------
def load_all(directory: Path) -> list[Manifest]:
    """Every ``*.json`` in ``directory``, each loaded and validated, by recipe name.

    Nothing is skipped: a file whose name is no recipe's, one that is not a regular file, or
    one that does not validate is an error naming it, so an index never quietly lacks a recipe.
    """
    from ..errors import LayerError
    from ..files import check_directory_option, kind_of
    from ..recipe import check_recipe_name

    check_directory_option(directory, "--manifests", must_exist=True)
    hint = f"move it out of {directory}, or publish again to rewrite it"
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(".json"))
    except OSError as exc:
        raise UsageError(f"cannot list {directory}: {exc.strerror or exc}", hint="check --manifests") from None
    if not paths:
        raise UsageError(f"no manifests in {directory} (no *.json files)",
                         hint="layers publish RECIPE --regions ... writes published/RECIPE.json")
    manifests = []
    for path in paths:
        recipe = path.name[:-len(".json")]
        try:
            check_recipe_name(recipe)
        except LayerError:
            raise UsageError(f"{path} is not named for a recipe (RECIPE.json, RECIPE in lowercase letters, "
                             "digits, '.', '_', '-')", hint=hint) from None
        kind = kind_of(path, "manifest", hint=hint)
        if kind != "file":
            raise UsageError(f"the manifest {path} is a {kind}, not a file", hint=hint)
        manifests.append(Manifest.load(path, recipe))
    return manifests
