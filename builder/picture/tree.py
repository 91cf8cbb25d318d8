"""Trees of a layer's files: what a zip holds, what a packed archive unpacks to, what a build installed.

A ``Node`` is a directory or a file with its bytes, its file count and a
colour key: the file's kind (shared object, bytecode, source, data,
metadata), the strip rule that removed it, or how it changed between two
zips. Trees come from

- a layer zip (``zip_items``): every member but directories, its size the
  one the zip declares, so the tree's total is what Lambda unpacks;
- a packed layer's archive inside its zip (``packed_items``), read as a
  stream: names and sizes only, nothing is extracted;
- the build report's ``tree_before`` (``before_items``): every installed
  file's fate, which ``strip_ledger`` wrote at build time, grouped per
  directory so that the report stays bounded.

``condense`` makes a tree small enough to draw and to embed in a page:
small files merge, per directory and colour key, into one box, and small
directories are drawn whole; it says what it merged, for the page to show.
All names come from untrusted archives and reports: they are kept as data
here and escaped where they are written.
"""

from __future__ import annotations

import gzip
import re
import tarfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..archive import MAX_DECLARED_BYTES, MAX_LAYER_MEMBERS, open_layer_zip
from ..errors import UsageError
from ..measure import human

KINDS = ("shared object", "bytecode", "source", "data", "metadata")
KEPT = "kept"
# The strip rules, and what removes installed files after them (build.py names these fates).
LATER_FATES = {"bytecode": "sources replaced by their bytecode (bytecode = \"only\")",
               "trace-prune": "files the traced workload never used (strip profile \"trace\")",
               "later": "removed after stripping"}
PACKED_ARCHIVES = ("python/layer_runtime/packed.tar.zst", "python/layer_runtime/packed.tar.gz")

_SHARED_OBJECT = re.compile(r"\.(so(\.\d+)*|dylib|pyd)$")
_SOURCE = (".py", ".pyi", ".pyx", ".pxd", ".pxi", ".h", ".hh", ".hpp", ".c", ".cc", ".cpp", ".cxx", ".cu", ".f",
           ".f90")
_METADATA_DIR = (".dist-info", ".egg-info")
# Deeper paths are cut: the rest of the name is one leaf (a zip name may have thousands of parts).
MAX_PATH_DEPTH = 24
MAX_NODES = 3000         # boxes a condensed tree keeps, at most
MAX_CHILDREN = 250       # boxes one directory shows; the smallest of the rest merge
MAX_DRAW_DEPTH = 10      # directories deeper than this are drawn whole
LEDGER_ENTRIES = 1500    # rows of a report's tree_before, at most


def kind_of(path: str) -> str:
    parts = path.split("/")
    name = parts[-1]
    if any(part.endswith(_METADATA_DIR) for part in parts):
        return "metadata"
    if name.endswith((".pyc", ".pyo")):
        return "bytecode"
    if _SHARED_OBJECT.search(name):
        return "shared object"
    if name.endswith(_SOURCE):
        return "source"
    return "data"


@dataclass(frozen=True)
class Item:
    """One file (or, from a report, a group of files) to put in a tree."""

    path: str
    bytes: int
    key: str
    files: int = 1
    group: bool = False   # stands for ``files`` files directly under ``path`` (a directory)
    detail: str = ""      # shown on hover: why it changed, what a part is


@dataclass
class Node:
    name: str
    bytes: int = 0
    files: int = 0
    key: str = ""                              # colour key of a leaf; the dominant one of a directory
    children: dict[str, Node] | None = None    # None: a leaf (a file, or boxes merged into one)
    keys: dict[str, int] = field(default_factory=dict)  # bytes per colour key inside
    note: str = ""                             # what a merged box stands for
    detail: str = ""
    split: bool = False                        # one file, drawn as its parts (kept, and what each rule took)
    merged: bool = False                       # files or a directory drawn as one box by ``condense``

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    def count(self) -> int:
        return 1 + sum(child.count() for child in (self.children or {}).values())

    def walk(self) -> Iterator[Node]:
        yield self
        for child in (self.children or {}).values():
            yield from child.walk()


def build_tree(items: Iterable[Item], name: str = "") -> Node:
    """Directories from the items' paths; sizes, counts and colour keys summed upwards."""
    root = Node(name, children={})
    for item in items:
        parts = [p for p in item.path.split("/") if p]
        if len(parts) > MAX_PATH_DEPTH:
            parts = parts[:MAX_PATH_DEPTH - 1] + ["/".join(parts[MAX_PATH_DEPTH - 1:])]
        leaf_name = None if item.group else (parts.pop() if parts else "(unnamed)")
        node = root
        for part in parts:
            # Directories and files live apart ("a/" and "a"): a zip may hold both a file and a directory "a".
            node = node.children.setdefault(part + "/", Node(part, children={}))
        if item.group:
            key = f"\0{item.key}"
            leaf = node.children.setdefault(key, Node("", key=item.key))
            leaf.bytes += item.bytes
            leaf.files += item.files
            leaf.name = f"{leaf.files:,} files" if leaf.files else "parts of files"
            leaf.note = ("small files directly in this directory (or parts of them: what a rule took of a file "
                         "counts where the file does), grouped in the build report")
            continue
        existing = node.children.get(leaf_name)
        if existing is None:
            node.children[leaf_name] = Node(leaf_name, item.bytes, item.files, item.key, detail=item.detail)
        elif existing.is_dir:  # a file already in parts: one more part
            _add_part(existing, item)
        elif existing.key == item.key:
            existing.bytes += item.bytes
        else:  # one file, two fates (debug symbols stripped, the rest kept): a box of its parts
            first = Node(_part_name(existing.key), existing.bytes, 0, existing.key, detail=existing.detail)
            split = Node(leaf_name, children={existing.key: first}, split=True,
                         note="one file, in parts: what stayed and what each step took")
            node.children[leaf_name] = split
            _add_part(split, item)
    _sum(root)
    return root


def _part_name(key: str) -> str:
    return "kept part" if key == KEPT else f"removed by {key}"


def _add_part(split: Node, item: Item) -> None:
    part = split.children.setdefault(item.key, Node(_part_name(item.key), 0, 0, item.key, detail=item.detail))
    part.bytes += item.bytes


def _sum(node: Node) -> None:
    if not node.is_dir:
        node.keys = {node.key: node.bytes}
        return
    node.bytes, node.keys = 0, defaultdict(int)
    files = 0
    for child in node.children.values():
        _sum(child)
        node.bytes += child.bytes
        files += child.files
        for key, size in child.keys.items():
            node.keys[key] += size
    node.files = 1 if node.split else files
    node.keys = dict(node.keys)
    node.key = _dominant(node.keys)


def _dominant(keys: dict[str, int]) -> str:
    return max(sorted(keys), key=lambda k: keys[k]) if keys else ""


# --- condensing ---------------------------------------------------------------


def condense(root: Node, max_nodes: int = MAX_NODES) -> tuple[Node, str]:
    """A copy of ``root`` of at most ``max_nodes`` boxes, and a sentence saying what was merged."""
    small = max(1, root.bytes // 20_000)
    while True:
        tree = _condense(root, small, 0)
        if tree.count() <= max_nodes or small > root.bytes:
            break
        small *= 2
    boxes = [node for node in tree.walk() if node.merged]
    merged = (sum(node.files for node in boxes), len(boxes))
    if not merged[0]:
        return tree, "every file has a box of its own"
    return tree, (f"files under {human(small)} are merged per directory (and kind), and directories under "
                  f"{human(small)} or more than {MAX_DRAW_DEPTH} levels deep are drawn whole: {merged[0]:,} files "
                  f"in {merged[1]:,} boxes, to keep the page small; hover a box for its exact bytes")


def _condense(node: Node, small: int, depth: int) -> Node:
    if not node.is_dir:
        return node
    if depth and (node.bytes < small or depth > MAX_DRAW_DEPTH) and not node.split:
        return Node(node.name + "/", node.bytes, node.files, node.key, None, dict(node.keys),
                    note=f"a directory of {node.files:,} files, drawn whole", merged=True)
    children = [_condense(child, small, depth + 1) for child in node.children.values()]
    kept: list[Node] = []
    pools: dict[str, list[Node]] = defaultdict(list)
    for child in children:
        if not child.is_dir and child.bytes < small and not node.split:
            pools[child.key].append(child)
        else:
            kept.append(child)
    for key, pool in sorted(pools.items()):
        kept.append(pool[0] if len(pool) == 1 else _merge(pool, key, "small files"))
    if len(kept) > MAX_CHILDREN:  # too many boxes side by side: the smallest merge into one
        kept.sort(key=lambda child: -child.bytes)
        rest = kept[MAX_CHILDREN - 1:]
        kept = kept[:MAX_CHILDREN - 1] + [_merge(rest, _dominant(_keys_of(rest)), "smaller entries")]
    return Node(node.name, node.bytes, node.files, node.key, {str(i): c for i, c in enumerate(kept)},
                dict(node.keys), node.note, node.detail, node.split)


def _keys_of(nodes: list[Node]) -> dict[str, int]:
    keys: dict[str, int] = defaultdict(int)
    for node in nodes:
        for key, size in node.keys.items():
            keys[key] += size
    return dict(keys)


def _merge(pool: list[Node], key: str, what: str) -> Node:
    files = sum(n.files for n in pool)
    size = sum(n.bytes for n in pool)
    return Node(f"{files:,} {what}", size, files, key, None, _keys_of(pool),
                note=f"{files:,} files of {len(pool):,} entries here, merged into one box", merged=True)


# --- where trees come from ----------------------------------------------------


def strip_prefix(names: Iterable[str]) -> bool:
    """Whether paths leave out the ``python/`` every Python layer holds: when every member is under it."""
    names = list(names)
    return bool(names) and all(name.startswith("python/") for name in names)


def zip_members(zip_path: Path) -> list[tuple[str, int]]:
    """Every member of a layer zip but directories, with the size it declares (what Lambda unpacks)."""
    with open_layer_zip(zip_path) as archive:
        return [(info.filename, info.file_size) for info in archive.infolist() if not info.is_dir()]


def zip_items(zip_path: Path) -> list[Item]:
    """A layer zip's files, coloured by kind; the top level is the packages (``python/`` left out)."""
    members = zip_members(zip_path)
    strip = strip_prefix(name for name, _ in members)
    return [Item(name[len("python/"):] if strip else name, size, kind_of(name)) for name, size in members]


def packed_archive(zip_path: Path) -> str | None:
    """The name of the packed layer's archive in the zip, if it holds one."""
    with open_layer_zip(zip_path) as archive:
        names = set(archive.namelist())
    return next((name for name in PACKED_ARCHIVES if name in names), None)


def packed_items(zip_path: Path, member: str) -> list[Item]:
    """The regular files of a packed layer's archive (``python/layer_runtime/packed.tar.*``), as it unpacks.

    Read as a stream, names and sizes only; a damaged archive, or one
    declaring more files or bytes than any layer, is refused.
    """
    items: list[Item] = []
    total = 0
    hint = "rebuild the layer with 'layers build': its archive is not the one the build wrote"
    try:
        with open_layer_zip(zip_path) as archive, archive.open(member) as raw:
            if member.endswith(".zst"):
                import zstandard

                stream = zstandard.ZstdDecompressor().stream_reader(raw)
            else:
                stream = gzip.GzipFile(fileobj=raw, mode="rb")
            with stream, tarfile.open(fileobj=stream, mode="r|") as tar:
                for info in tar:
                    if len(items) >= MAX_LAYER_MEMBERS:
                        raise UsageError(f"{zip_path}: {member} holds more than {MAX_LAYER_MEMBERS:,} files",
                                         hint=hint)
                    if not info.isfile():
                        continue
                    total += info.size
                    if total > MAX_DECLARED_BYTES:
                        raise UsageError(f"{zip_path}: {member} unpacks to more than any Lambda limit", hint=hint)
                    items.append(Item(info.name, info.size, kind_of(info.name)))
    except UsageError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError, RuntimeError) as exc:
        raise UsageError(f"{zip_path}: cannot read its packed archive {member}: {exc}", hint=hint) from None
    except Exception as exc:  # zstandard.ZstdError, which only exists once zstandard is imported
        if type(exc).__name__ != "ZstdError":
            raise
        raise UsageError(f"{zip_path}: cannot read its packed archive {member}: {exc}", hint=hint) from None
    return items


def before_items(report: dict) -> list[Item] | None:
    """The installed tree of a build, each file with its fate, from the report's ``tree_before``.

    None when the report has none (a build before it was recorded). A
    malformed one is refused: the report is untrusted input.
    """
    ledger = report.get("tree_before")
    if ledger is None:
        return None
    bad = UsageError("the build report's tree_before is not one layers build writes",
                     hint="rebuild with 'layers build'")
    if not isinstance(ledger, dict) or not isinstance(ledger.get("entries"), list):
        raise bad
    if len(ledger["entries"]) > 10 * LEDGER_ENTRIES:
        raise bad
    items = []
    for entry in ledger["entries"]:
        if (not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[0], str)
                or not isinstance(entry[1], str) or any(type(v) is not int or v < 0 for v in entry[2:])):
            raise bad
        path, fate, size, files = entry
        if size > MAX_DECLARED_BYTES or files > MAX_LAYER_MEMBERS:
            raise bad
        items.append(Item(path, size, fate, files, group=path.endswith("/") or not path))
    return items


# --- the build's record of what each step removed ----------------------------


def strip_ledger(installed: dict[str, int], taken: dict[str, list[tuple[str, int]]],
                 limit: int = LEDGER_ENTRIES) -> dict:
    """The report's ``tree_before``: every installed file and what became of its bytes, in at most ``limit`` rows.

    ``installed``: path -> bytes right after install; ``taken``: path ->
    [(rule or step, bytes it removed)], in order; what is left of a file is
    ``kept``. Rows are ``[path, fate, bytes, files]``: a file's row, or,
    with a path ending in "/", the files of one fate directly in that
    directory that are too small for a row of their own. Big files keep
    their own rows; small ones group in directories as deep as the limit
    allows.
    """
    rows: list[tuple[str, str, int, int]] = []  # path, fate, bytes, 1 on a file's first row (a file counts once)
    for path, size in installed.items():
        removed = taken.get(path, [])
        rest = size
        first = len(rows)
        for fate, amount in removed:
            amount = max(0, min(amount, rest))
            rest -= amount
            rows.append((path, fate, amount, int(len(rows) == first)))
        if rest or not removed:
            rows.append((path, KEPT, rest, int(len(rows) == first)))
    total = sum(size for size in installed.values())
    if len(rows) <= limit:
        entries = sorted(list(row) for row in rows)
        return {"installed_bytes": total, "installed_files": len(installed), "rows": "one row per file",
                "entries": entries}
    big = max(1, total // limit)
    singles = [list(row) for row in rows if row[2] >= big]
    smalls = [row for row in rows if row[2] < big]
    depth = max((row[0].count("/") for row in smalls), default=0)
    while True:
        groups: dict[tuple[str, str], list] = {}
        for path, fate, size, files in smalls:
            parent = "/".join(path.split("/")[:-1][:depth])
            group = groups.setdefault((parent, fate), [0, 0, path, 0])
            group[0] += size
            group[1] += files
            group[3] += 1
        if len(singles) + len(groups) <= limit or depth == 0:
            break
        depth -= 1
    # A group of one row is that file's own row.
    entries = singles + [[path if rows_in == 1 else f"{parent}/", fate, size, files]
                         for (parent, fate), (size, files, path, rows_in) in groups.items()]
    entries.sort()
    return {"installed_bytes": total, "installed_files": len(installed), "entries": entries,
            "rows": f"files under {human(big)} grouped per directory and fate, directories at most {depth} deep"}
