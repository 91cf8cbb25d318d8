"""Which modules of a tree are imported by other modules of the same tree.

Stripping decides "is this test/docs/examples directory code?" by what is
imported, not by its name: TF 1.8 imports ``tensorflow.python.platform.test``
and old NumPy ``numpy.testing``. Imports are read with ``ast`` (a regular
expression where a file does not parse under the host's Python); string
literals naming a module count too, since TF loads modules lazily by name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_MODULE_LITERAL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_IMPORT_LINE = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+import\s+\(?([\w\s,.*]+)|import\s+([\w\s,.]+))", re.M)


def module_name(relative: Path) -> tuple[str, bool]:
    """``a/b/c.py`` -> (``a.b.c``, False); ``a/b/__init__.py`` -> (``a.b``, True)."""
    parts = list(relative.with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if module else []
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imported_by_source(source: str, module: str, is_package: bool) -> set[str]:
    """Dotted names a module's source imports (or names in string literals)."""
    names: set[str] = set()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return _imported_by_regex(source, module, is_package)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            names.add(base)
            for alias in node.names:
                if alias.name != "*":
                    names.add(f"{base}.{alias.name}" if base else alias.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_LITERAL.match(node.value):
            names.add(node.value)
    return names


def _imported_by_regex(source: str, module: str, is_package: bool) -> set[str]:
    names: set[str] = set()
    for m in _IMPORT_LINE.finditer(source):
        if m.group(3):
            names.update(part.split(" as ")[0].strip() for part in m.group(3).split(","))
            continue
        raw = m.group(1)
        level = len(raw) - len(raw.lstrip("."))
        base = _resolve_relative(module, is_package, level, raw.lstrip(".") or None) if level else raw
        names.add(base)
        for part in m.group(2).split(","):
            item = part.split(" as ")[0].strip()
            if item and item != "*":
                names.add(f"{base}.{item}" if base else item)
    return {n for n in names if n}


@dataclass
class ImportIndex:
    """For each .py file of a tree (relative path), the dotted names it imports."""

    imports: dict[Path, set[str]]

    @classmethod
    def scan(cls, tree: Path, words: Iterable[str] | None = None) -> "ImportIndex":
        """Read every .py file; with ``words``, parse only files that mention one.

        A module cannot import ``numpy.testing`` without the text "testing",
        so a cheap substring test skips most of a large tree.
        """
        wanted = tuple(set(words)) if words is not None else None
        imports: dict[Path, set[str]] = {}
        for path in tree.rglob("*.py"):
            if not path.is_file():
                continue
            relative = path.relative_to(tree)
            source = path.read_text(encoding="utf-8", errors="replace")
            if wanted is not None and not any(w in source for w in wanted):
                imports[relative] = set()
                continue
            module, is_package = module_name(relative)
            imports[relative] = imported_by_source(source, module, is_package)
        return cls(imports)

    def importers_of(self, module: str, among: Iterable[Path]) -> list[Path]:
        prefix = module + "."
        return [p for p in among if any(n == module or n.startswith(prefix) for n in self.imports.get(p, ()))]


def unimported(candidates: Iterable[Path], index: ImportIndex) -> tuple[set[Path], dict[Path, Path]]:
    """Split candidates (dirs or .py files, relative) into removable and kept.

    A candidate is kept when a file that stays imports it. Files inside a
    removable candidate do not count, so test suites importing each other go
    together; iterate until nothing changes, since keeping one candidate can
    make its imports count. Returns (removable, {kept: the importer that kept it}).
    """
    candidates = sorted(set(candidates))
    module_of = {c: module_name(c)[0] if c.suffix == ".py" else ".".join(c.parts) for c in candidates}
    removable = set(candidates)
    kept: dict[Path, Path] = {}

    def inside_removable(path: Path) -> bool:
        return any(path == c or c in path.parents for c in removable)

    changed = True
    while changed:
        changed = False
        staying = [p for p in index.imports if not inside_removable(p)]
        for candidate in sorted(removable):
            importers = [
                p for p in index.importers_of(module_of[candidate], staying)
                if not (p == candidate or candidate in p.parents)
            ]
            if importers:
                removable.discard(candidate)
                kept[candidate] = importers[0]
                changed = True
    return removable, kept
