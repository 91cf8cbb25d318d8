"""Strip a built tree: rules as data, each one measured.

A profile is an ordered list of rules (``PROFILES``). Each rule picks paths
to remove from the tree (pure selection over the files on disk) and
``strip_tree`` removes them, recording the files and bytes each rule took, so
the report shows what every rule is worth on this stack. Nothing matching a
recipe ``keep`` glob is ever removed.

Directories named like tests, docs or examples are removed only when no
remaining module imports them (``imports.unimported``): TF 1.8 imports
``tensorflow.python.platform.test``, TF's ``core/example`` holds protos, old
NumPy imports ``numpy.testing``. Debug symbols are stripped by
``binstrip``, which restores any file the strip tool breaks.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.parser import HeaderParser
from functools import cache
from pathlib import Path

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import RecipeError
from ..recipe import StripSettings
from .imports import ImportIndex, unimported

TEST_DIRS = frozenset({"test", "tests", "testing", "_test", "_tests", "unittest", "unittests", "kernel_tests"})
TEST_FILE = re.compile(r"^(test_.*|.*_test|.*_tests|conftest)\.py$")
DOC_DIRS = frozenset({"doc", "docs", "example", "examples", "sample", "samples", "demo", "demos"})
# Needed only to compile against a package or by type checkers, never at run time.
HEADER_SUFFIXES = frozenset({".h", ".hh", ".hpp", ".hxx", ".cuh", ".c", ".cc", ".cpp", ".cxx", ".cu",
                             ".pyx", ".pxd", ".pxi", ".pyi", ".f", ".f90", ".f95"})
# dist-info files that importlib.metadata needs (version(), entry points,
# packages_distributions()) or that carry licence terms.
DIST_INFO_KEEP = re.compile(r"^(METADATA|entry_points\.txt|top_level\.txt|(LICEN[CS]E|COPYING|NOTICE|AUTHORS).*|licenses/.*|LICENSES/.*)$", re.I)

RULES: dict[str, str] = {
    "installer-bytecode": "__pycache__ and .pyc written by the installer (host interpreter; useless to the target)",
    "drop": "distributions the recipe drops, and what only they needed",
    "recipe-remove": "paths matching the recipe's remove globs",
    "tests": "test directories and files that no remaining module imports",
    "scripts": "console scripts in bin/ (their shebang names the build host's Python)",
    "headers": "C/C++ headers and sources, Cython and type stubs, include/ directories",
    "docs-examples": "docs and examples directories that no remaining module imports",
    "debug-symbols": "debug symbols of shared objects (strip --strip-unneeded), broken results restored",
    "dist-info": "installer records (RECORD, WHEEL, INSTALLER) and long descriptions in METADATA",
}
PROFILES: dict[str, tuple[str, ...]] = {
    "none": (),
    "standard": ("installer-bytecode", "drop", "recipe-remove", "tests", "scripts", "headers",
                 "docs-examples", "debug-symbols", "dist-info"),
}
# The trace profile strips like standard, then prunes to what the workload uses (trace.py, run by build.py).
PROFILES["trace"] = PROFILES["standard"]


@dataclass(frozen=True)
class RuleResult:
    rule: str
    description: str
    files: int
    bytes: int
    biggest: tuple[tuple[str, int], ...] = ()  # the largest removed paths (dirs summed)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StripReport:
    profile: str
    rules: tuple[RuleResult, ...]
    binaries: object | None = None  # binstrip.StripOutcome when debug symbols were stripped

    @property
    def bytes_removed(self) -> int:
        return sum(r.bytes for r in self.rules)


@dataclass
class StripContext:
    tree: Path
    settings: StripSettings
    python: str            # runtime's X.Y, for evaluating dependency markers
    machine: str           # x86_64 | aarch64
    roots: tuple[str, ...]  # canonical names the recipe asked for
    runner: object = None  # runs strip: on this machine, or in the build container
    which: Callable[[str], str | None] = shutil.which  # finds tools where ``runner`` runs them
    binaries: object | None = None


# -- glob patterns -----------------------------------------------------------
@cache
def _glob_regex(pattern: str) -> re.Pattern:
    """gitignore-like globs: ``**`` spans directories; a pattern without "/" matches a name at any depth."""
    anchored = "/" in pattern.rstrip("/")
    pattern = pattern.strip("/")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    body = "".join(out)
    # A pattern naming a directory covers everything below it.
    return re.compile(("^" if anchored else r"^(?:.*/)?") + body + "(?:/.*)?$")


def matches_any(relative: str, patterns: Iterable[str]) -> bool:
    return any(_glob_regex(p).match(relative) for p in patterns)


# -- removal with measurement ------------------------------------------------
def _files_under(path: Path) -> list[Path]:
    if path.is_symlink() or path.is_file():
        return [path]
    return [p for p in path.rglob("*") if p.is_file() or p.is_symlink()]


def _remove(ctx: StripContext, paths: Iterable[Path]) -> tuple[int, int, list[tuple[str, int]]]:
    """Delete paths (files or dirs) except kept files; returns (files, bytes, per-path sizes)."""
    files = total = 0
    sizes: list[tuple[str, int]] = []
    for path in sorted(set(paths)):
        if not (path.exists() or path.is_symlink()):
            continue  # already removed with a parent
        removed_here = 0
        for file in _files_under(path):
            relative = file.relative_to(ctx.tree).as_posix()
            if ctx.settings.keep and matches_any(relative, ctx.settings.keep):
                continue
            size = file.lstat().st_size
            file.unlink()
            files += 1
            total += size
            removed_here += size
        if path.is_dir() and not path.is_symlink():
            prune_empty_dirs(path, keep_root=False)
        sizes.append((path.relative_to(ctx.tree).as_posix(), removed_here))
    sizes.sort(key=lambda item: -item[1])
    return files, total, sizes[:10]


def prune_empty_dirs(root: Path, keep_root: bool = True) -> None:
    for directory, _, _ in sorted(os.walk(root), key=lambda item: -len(item[0])):
        path = Path(directory)
        if keep_root and path == root:
            continue
        try:
            path.rmdir()
        except OSError:
            pass  # not empty


# -- the rules: each selects paths (or acts) and returns notes ---------------
def _installer_bytecode(ctx: StripContext) -> tuple[list[Path], list[str]]:
    picked = [p for p in ctx.tree.rglob("__pycache__") if p.is_dir()]
    # A .pyc with no source beside it is a sourceless module: code, keep it.
    picked += [p for p in ctx.tree.rglob("*.py[co]") if p.with_suffix(".py").exists()]
    return picked, []


def _recipe_remove(ctx: StripContext) -> tuple[list[Path], list[str]]:
    if not ctx.settings.remove:
        return [], []
    picked, unmatched = [], set(ctx.settings.remove)
    for path in sorted(ctx.tree.rglob("*")):
        relative = path.relative_to(ctx.tree).as_posix()
        for pattern in ctx.settings.remove:
            if _glob_regex(pattern).match(relative):
                picked.append(path)
                unmatched.discard(pattern)
                break
    notes = [f"remove glob {p!r} matched nothing" for p in sorted(unmatched)]
    return _outermost(picked), notes


def _outermost(paths: list[Path]) -> list[Path]:
    chosen: list[Path] = []
    for path in sorted(paths):
        if not any(c in path.parents for c in chosen):
            chosen.append(path)
    return chosen


def _import_guarded(ctx: StripContext, names: frozenset[str], files: re.Pattern | None) -> tuple[list[Path], list[str]]:
    candidates: list[Path] = []
    for path in ctx.tree.rglob("*"):
        relative = path.relative_to(ctx.tree)
        if path.is_dir() and path.name in names:
            candidates.append(relative)
        elif files is not None and path.is_file() and files.match(path.name):
            candidates.append(relative)
    if not candidates:
        return [], []
    index = ImportIndex.scan(ctx.tree, words={c.stem for c in candidates})
    removable, kept = unimported(candidates, index)
    notes = [f"kept {k.as_posix()}: imported by {by.as_posix()}" for k, by in sorted(kept.items())
             if k.suffix != ".py"]
    return [ctx.tree / p for p in _outermost(sorted(removable))], notes


def _tests(ctx: StripContext) -> tuple[list[Path], list[str]]:
    return _import_guarded(ctx, TEST_DIRS, TEST_FILE)


def _docs_examples(ctx: StripContext) -> tuple[list[Path], list[str]]:
    return _import_guarded(ctx, DOC_DIRS, None)


def _scripts(ctx: StripContext) -> tuple[list[Path], list[str]]:
    bin_dir = ctx.tree / "bin"
    return ([bin_dir] if bin_dir.is_dir() else []), []


def _has_code(directory: Path) -> bool:
    for path in directory.rglob("*"):
        if path.suffix == ".py" or ".so" in path.suffixes:
            return True
    return False


def _headers(ctx: StripContext) -> tuple[list[Path], list[str]]:
    picked = [p for p in ctx.tree.rglob("include") if p.is_dir() and not _has_code(p)]
    picked += [p for p in ctx.tree.rglob("*") if p.suffix.lower() in HEADER_SUFFIXES and p.is_file()]
    return _outermost(picked), []


def _dist_info(ctx: StripContext) -> tuple[list[Path], list[str]]:
    picked = []
    for dist_info in ctx.tree.glob("*.dist-info"):
        for path in dist_info.rglob("*"):
            if path.is_file() and not DIST_INFO_KEEP.match(path.relative_to(dist_info).as_posix()):
                picked.append(path)
    return picked, []


def _trim_metadata(ctx: StripContext) -> int:
    """Keep METADATA's headers, drop its long description: version() reads only headers."""
    saved = 0
    for metadata in ctx.tree.glob("*.dist-info/METADATA"):
        if matches_any(metadata.relative_to(ctx.tree).as_posix(), ctx.settings.keep):
            continue
        text = metadata.read_text(encoding="utf-8", errors="replace")
        headers, sep, body = text.partition("\n\n")
        if body.strip():
            metadata.write_text(headers + "\n", encoding="utf-8")
            saved += len(text.encode()) - len((headers + "\n").encode())
    return saved


# -- drop: distributions and their orphans ----------------------------------
@dataclass(frozen=True)
class Distribution:
    name: str
    dist_info: Path
    requires: tuple[str, ...]
    files: tuple[Path, ...]


def installed_distributions(tree: Path, python: str) -> dict[str, Distribution]:
    environment = {
        "python_version": python, "python_full_version": f"{python}.0", "implementation_name": "cpython",
        "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
        "os_name": "posix", "extra": "",
    }
    dists = {}
    for dist_info in sorted(tree.glob("*.dist-info")):
        headers = HeaderParser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8", errors="replace"))
        name = canonicalize_name(headers.get("Name", dist_info.name.split("-")[0]))
        requires = []
        for line in headers.get_all("Requires-Dist") or []:
            try:
                requirement = Requirement(line)
                if requirement.marker is None or requirement.marker.evaluate(environment):
                    requires.append(canonicalize_name(requirement.name))
            except (InvalidRequirement, InvalidMarker):
                continue
        files = []
        record = dist_info / "RECORD"
        if record.exists():
            for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
                relative = line.rsplit(",", 2)[0]
                path = (tree / relative).resolve()
                if relative and tree.resolve() in path.parents:
                    files.append(tree / path.relative_to(tree.resolve()))
        dists[name] = Distribution(name, dist_info, tuple(requires), tuple(files))
    return dists


def plan_drop(dists: dict[str, Distribution], roots: Iterable[str], drop: Iterable[str]) -> list[str]:
    """Names to remove: the dropped ones, and every one only they needed."""
    dropped = {canonicalize_name(d) for d in drop}
    needed: set[str] = set()
    stack = [canonicalize_name(r) for r in roots if canonicalize_name(r) not in dropped]
    while stack:
        name = stack.pop()
        if name in needed or name not in dists:
            continue
        needed.add(name)
        stack.extend(r for r in dists[name].requires if r not in dropped)
    return sorted(name for name in dists if name not in needed and (name in dropped or _reachable_from(dists, dropped, name)))


def _reachable_from(dists: dict[str, Distribution], starts: set[str], target: str) -> bool:
    seen, stack = set(), list(starts)
    while stack:
        name = stack.pop()
        if name == target:
            return True
        if name in seen or name not in dists:
            continue
        seen.add(name)
        stack.extend(dists[name].requires)
    return False


def _drop(ctx: StripContext) -> tuple[list[Path], list[str]]:
    if not ctx.settings.drop:
        return [], []
    dists = installed_distributions(ctx.tree, ctx.python)
    missing = [d for d in ctx.settings.drop if canonicalize_name(d) not in dists]
    if missing:
        raise RecipeError(
            f"strip.drop: {', '.join(missing)} is not installed in this layer",
            hint=f"installed: {', '.join(sorted(dists))}",
        )
    names = plan_drop(dists, ctx.roots, ctx.settings.drop)
    asked = {canonicalize_name(d) for d in ctx.settings.drop}
    paths: list[Path] = []
    for name in names:
        paths.extend(dists[name].files)
        paths.append(dists[name].dist_info)
    orphans = [n for n in names if n not in asked]
    notes = [f"dropped {', '.join(sorted(asked))}" + (f"; and what only they needed: {', '.join(orphans)}" if orphans else "")]
    return paths, notes


def _debug_symbols(ctx: StripContext) -> tuple[list[Path], list[str]]:
    from .symbols import strip_shared_objects

    outcome = strip_shared_objects(ctx.tree, runner=ctx.runner, machine=ctx.machine, which=ctx.which)
    ctx.binaries = outcome
    notes = [f"restored {p.relative_to(ctx.tree).as_posix()}: {why}" for p, why in outcome.restored]
    skipped: dict[str, int] = {}
    for _, why in outcome.skipped:
        skipped[why] = skipped.get(why, 0) + 1
    notes += [f"skipped {n} file(s): {why}" for why, n in sorted(skipped.items())]
    return [], notes


_SELECTORS = {
    "installer-bytecode": _installer_bytecode,
    "drop": _drop,
    "recipe-remove": _recipe_remove,
    "tests": _tests,
    "scripts": _scripts,
    "headers": _headers,
    "docs-examples": _docs_examples,
    "debug-symbols": _debug_symbols,
    "dist-info": _dist_info,
}


def strip_tree(ctx: StripContext, on_rule: Callable[[str], None] | None = None) -> StripReport:
    results = []
    for rule in PROFILES[ctx.settings.profile]:
        if on_rule:
            on_rule(rule)
        picked, notes = _SELECTORS[rule](ctx)
        files, removed, biggest = _remove(ctx, picked)
        if rule == "dist-info":
            removed += _trim_metadata(ctx)
        if rule == "debug-symbols" and ctx.binaries is not None:
            files = len(ctx.binaries.stripped)
            removed = ctx.binaries.bytes_saved
            biggest = sorted(((p.relative_to(ctx.tree).as_posix(), n) for p, n in ctx.binaries.stripped),
                             key=lambda item: -item[1])[:10]
        results.append(RuleResult(rule, RULES[rule], files, removed, tuple(biggest), tuple(notes)))
    prune_empty_dirs(ctx.tree)
    return StripReport(ctx.settings.profile, tuple(results), ctx.binaries)
