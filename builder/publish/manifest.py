"""The manifest of published layers: ``published/RECIPE.json``.

What teams and their infrastructure code consume: for each published layer
(one per architecture) and region, the version's ARN, number, sha256, the
lock digest it was built from and when. Runs merge into it (a region
published today does not erase the others), and every write goes to a temp
file that is renamed over the old one, so a reader never sees half a file.
"""

from __future__ import annotations

import json
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

    def to_json(self) -> dict:
        data = asdict(self)
        data["runtimes"] = list(self.runtimes)
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
            data = read_json(path, "manifest", hint="move it aside; the next publish writes a new one")
            entries = {}
            for layer_name, layer in data["layers"].items():
                for region, item in layer["regions"].items():
                    entry = Entry(layer_name=layer_name, architecture=layer["architecture"], region=region,
                                  arn=item["arn"], version=int(item["version"]), sha256=item["sha256"],
                                  code_sha256=item["code_sha256"], lock_digest=item["lock_digest"],
                                  published_at=item["published_at"], runtimes=tuple(item.get("runtimes", ())),
                                  identity=item.get("identity", ""))
                    entries[(layer_name, region)] = entry
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{path} is not a manifest written by layers publish ({type(exc).__name__}: {exc})",
                             hint="move it aside; the next publish writes a new one") from None
        return cls(path, data.get("recipe", recipe), entries)

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


def manifest_path(directory: Path, recipe: str) -> Path:
    from ..recipe import check_recipe_name

    check_recipe_name(recipe)  # before the file system is asked: "../x" or 300 characters are no recipe
    return directory / f"{recipe}.json"


def render(entries: list[Entry], fmt: str, recipe: str) -> str:
    """The manifest's rows as json, csv or terraform (table rendering is the CLI's)."""
    if fmt == "json":
        return json.dumps([e.to_json() for e in entries], indent=2)
    if fmt == "csv":
        lines = ["layer_name,architecture,region,version,arn,sha256,lock_digest,published_at"]
        lines += [f"{e.layer_name},{e.architecture},{e.region},{e.version},{e.arn},{e.sha256},{e.lock_digest},"
                  f"{e.published_at}" for e in entries]
        return "\n".join(lines)
    if fmt == "terraform":
        by_layer: dict[str, list[Entry]] = {}
        for entry in entries:
            by_layer.setdefault(entry.layer_name, []).append(entry)
        blocks = []
        for layer_name, rows in sorted(by_layer.items()):
            key = _identifier(f"{layer_name}_layer_arns")
            body = "\n".join(f'    "{e.region}" = "{e.arn}"' for e in rows)
            blocks.append(f"  # {recipe}: {layer_name} ({rows[0].architecture})\n  {key} = {{\n{body}\n  }}")
        return "locals {\n" + "\n".join(blocks) + "\n}"
    raise UsageError(f"unknown format {fmt!r}", hint="table, json, csv or terraform")


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)
