"""Trace-guided pruning (strip profile ``trace``): keep what the workload uses.

After the standard strip, the recipe's smoke workload runs once under a
tracer, with the runtime's Python (on this machine or in the build
container). The tracer records every file the process opens (audit hooks
from Python 3.8; on 3.6 and 3.7, ``open`` and ``os.open`` are wrapped), every
module's file in ``sys.modules``, and every file mapped into the process
(``/proc/self/maps``: the shared objects the loader pulled in). The keep set
is those files, their ELF DT_NEEDED closure inside the layer, every ``.py``
of each package (directory) the workload touched, so that a module imported
lazily by its siblings stays, and all dist-info metadata.
Everything else is moved aside; the workload then runs again on the result.
If it fails, everything is put back and the build keeps the unpruned tree.

Then experiments, biggest first: a loaded directory or large file that the
workload may import only optionally (Keras 2.2.4 imports parts of SciPy
inside try/except) is moved aside, the workload runs again, and the drop is
kept only if it still passes; the trace is then taken again, so whatever only
the dropped code loaded goes too. A library that another kept shared object
needs (DT_NEEDED) is never a candidate: without it the loader fails for sure.
The report lists every removal and experiment, so that users can judge
whether their workload was representative.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LayerError, VerifyError
from ..recipe import SmokeTest
from ..runner import Runner
from ..verify.elf import ElfInfo, elf_files, read_elf
from ..verify.interpreters import Interpreter
from ..verify.output import decisive_line, keep_output
from ..verify.smoke import run_smoke_test, run_workload
from .rules import prune_empty_dirs

MIB = 1 << 20
# Experiments: only what is at least this big is worth a workload run each.
EXPERIMENT_MIN_BYTES = MIB // 2
MAX_EXPERIMENTS = 30
# Build and test scaffolding beside a package's modules (numpy.distutils
# configurations, pytest fixtures): kept only if the workload loads them.
BUILD_SCRIPTS = frozenset({"setup.py", "conftest.py"})

# Wrapped around the smoke workload (verify.run_workload): the prelude hooks
# file opens before anything is imported, the epilogue adds module files and
# mapped files, and writes what lies inside the layer to $LAYERS_TRACE_OUT.
_TRACE_PRELUDE = r'''
import builtins, io, os, sys
_seen = set()

def _note(path):
    try:
        if isinstance(path, bytes):
            path = path.decode()
        if isinstance(path, str):
            _seen.add(os.path.realpath(path))
    except Exception:
        pass

if hasattr(sys, "addaudithook"):
    def _hook(event, args):
        if event in ("open", "os.open") and args:
            _note(args[0])
    sys.addaudithook(_hook)
else:  # Python 3.6 and 3.7: no audit hooks; wrap the Python-level openers
    _real_open, _real_os_open = builtins.open, os.open
    def _traced_open(file, *args, **kwargs):
        _note(file)
        return _real_open(file, *args, **kwargs)
    def _traced_os_open(path, *args, **kwargs):
        _note(path)
        return _real_os_open(path, *args, **kwargs)
    builtins.open = io.open = _traced_open
    os.open = _traced_os_open
'''

_TRACE_EPILOGUE = r'''
for _module in list(sys.modules.values()):
    _note(getattr(_module, "__file__", None))
with open("/proc/self/maps") as _maps:
    for _line in _maps:
        _parts = _line.split(None, 5)
        if len(_parts) == 6 and _parts[5].startswith("/"):
            _note(_parts[5].strip())
_root = os.path.realpath(layer) + os.sep
with open(os.environ["LAYERS_TRACE_OUT"], "w") as _out:
    json.dump(sorted(p[len(_root):] for p in _seen if p.startswith(_root)), _out)
print("TRACE-OK")
'''


@dataclass
class PruneReport:
    status: str = "not run"            # "pruned" | "kept unpruned: ..." | "not run: ..."
    loaded_files: int = 0
    loaded_bytes: int = 0
    removed_files: int = 0
    removed_bytes: int = 0
    removed_by_package: list[tuple[str, int]] = field(default_factory=list)
    experiments: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"status": self.status, "loaded_files": self.loaded_files, "loaded_bytes": self.loaded_bytes,
                "removed_files": self.removed_files, "removed_bytes": self.removed_bytes,
                "removed_by_package": [{"package": p, "bytes": b} for p, b in self.removed_by_package],
                "experiments": self.experiments}


def _files(tree: Path) -> dict[str, int]:
    out = {}
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink():
            out[path.relative_to(tree).as_posix()] = path.stat().st_size
    return out


def needs_in_tree(tree: Path, parsed: dict[str, ElfInfo | None] | None = None) -> dict[str, set[str]]:
    """Each shared object of the layer -> the layer's files it names in DT_NEEDED.

    A name held by several files (NumPy's and SciPy's bundled
    ``libgfortran-ed201abd.so.3.0.0``) resolves as the loader would find it:
    in the object's own RPATH/RUNPATH, else beside it (where its parent's
    ``$ORIGIN/../.libs`` found it); only if neither holds it, to all of them.
    ``parsed``: headers already read, by path (filled in here); pruning only
    removes files, so a path's headers never change.
    """
    parsed = {} if parsed is None else parsed
    elves = {p.relative_to(tree).as_posix() for p in elf_files(tree)}
    by_name: dict[str, list[str]] = {}
    for rel in elves:
        by_name.setdefault(Path(rel).name, []).append(rel)
    needs: dict[str, set[str]] = {}
    for rel in elves:
        if rel not in parsed:
            try:
                parsed[rel] = read_elf(tree / rel)
            except LayerError:
                parsed[rel] = None
        info = parsed[rel]
        if info is None:
            needs[rel] = set()
            continue
        origin = posixpath.dirname(rel)
        folders = [posixpath.normpath(posixpath.join(origin, p.replace("${ORIGIN}", ".").replace("$ORIGIN", ".")))
                   for p in info.search_paths if p.startswith(("$ORIGIN", "${ORIGIN}"))] + [origin]
        needs[rel] = {found for name in info.needed for found in _as_loaded(by_name.get(name, []), folders)}
    return needs


def _as_loaded(candidates: list[str], folders: list[str]) -> list[str]:
    """The copies in the first folder searched that holds one; all of them if none does."""
    for folder in folders:
        here = [c for c in candidates if posixpath.dirname(c) == folder]
        if here:
            return here
    return candidates


def needed_closure(needs: dict[str, set[str]], start: set[str]) -> set[str]:
    """``start`` plus every shared object inside the layer that they need (DT_NEEDED), transitively."""
    keep, todo = set(start), [r for r in start if r in needs]
    while todo:
        for candidate in needs[todo.pop()]:
            if candidate not in keep:
                keep.add(candidate)
                todo.append(candidate)
    return keep


def keep_set(files: dict[str, int], loaded: set[str], closure: set[str]) -> set[str]:
    """What stays: loaded files and their libraries, every .py of a touched package, all dist-info.

    A package is a directory: ``numpy/core`` touched keeps every module in
    it (but its ``setup.py``), not those of ``numpy/distutils``. Top-level
    modules are each their own.
    """
    touched = {rel.rsplit("/", 1)[0] for rel in loaded if "/" in rel}
    keep = set(loaded) | closure
    for rel in files:
        if rel.split("/", 1)[0].endswith(".dist-info"):
            keep.add(rel)
        elif rel.endswith(".py") and "/" in rel:
            folder, name = rel.rsplit("/", 1)
            if folder in touched and name not in BUILD_SCRIPTS:
                keep.add(rel)
    return keep


class Pruner:
    def __init__(self, tree: Path, smoke: SmokeTest, interpreter: Interpreter, runner: Runner,
                 tmp: Path | None, aside: Path, experiment_min_bytes: int = EXPERIMENT_MIN_BYTES) -> None:
        self.tree, self.smoke, self.interpreter, self.runner, self.tmp = tree, smoke, interpreter, runner, tmp
        self.aside = aside
        self.experiment_min_bytes = experiment_min_bytes
        self._parsed_elves: dict[str, ElfInfo | None] = {}
        self.report = PruneReport()

    def _needs(self) -> dict[str, set[str]]:
        return needs_in_tree(self.tree, self._parsed_elves)

    def trace(self) -> set[str]:
        with tempfile.TemporaryDirectory(prefix="layers-trace-", dir=self.tmp) as scratch:
            out = Path(scratch) / "trace.json"
            result = run_workload(self.tree, self.smoke, self.interpreter, self.runner, self.tmp,
                                  prelude=_TRACE_PRELUDE, epilogue=_TRACE_EPILOGUE,
                                  env={"LAYERS_TRACE_OUT": str(out)})
            if not result.ok or "TRACE-OK" not in result.stdout:
                output = result.stdout + result.stderr
                raise VerifyError(
                    f"the smoke workload failed under the tracer: {decisive_line(output)}",
                    hint="make the recipe's [smoke] pass with strip profile 'standard' first, then use 'trace'"
                         + keep_output(f"trace-python{self.interpreter.version}", output))
            return set(json.loads(out.read_text()))

    def passes(self) -> tuple[bool, str]:
        try:
            run_smoke_test(self.tree, self.smoke, self.interpreter, self.runner, self.tmp)
            return True, ""
        except VerifyError as error:
            return False, error.message.splitlines()[-1][:200]

    def _move_aside(self, rels: list[str], batch: str) -> Path:
        target = self.aside / batch
        for rel in rels:
            destination = target / rel
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.tree / rel, destination)
        # The tree tested must be the tree shipped, which has no empty
        # directories: an empty scipy/fft left behind imports as a namespace
        # package, and the workload would pass without the real one.
        prune_empty_dirs(self.tree)
        return target

    def _put_back(self, batch_dir: Path) -> None:
        for path in sorted(batch_dir.rglob("*")):
            if path.is_file():
                destination = self.tree / path.relative_to(batch_dir)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, destination)
        shutil.rmtree(batch_dir, ignore_errors=True)

    def _prune_to_trace(self, batch: str) -> tuple[list[str], int, Path]:
        files = _files(self.tree)
        loaded = {rel for rel in self.trace() if rel in files}
        keep = keep_set(files, loaded, needed_closure(self._needs(), loaded))
        doomed = sorted(rel for rel in files if rel not in keep)
        self.report.loaded_files = len(loaded)
        self.report.loaded_bytes = sum(files[r] for r in loaded)
        return doomed, sum(files[r] for r in doomed), self._move_aside(doomed, batch)

    def run(self, experiments: bool = True) -> PruneReport:
        before = _files(self.tree)
        doomed, _, batch_dir = self._prune_to_trace("trace")
        ok, why = self.passes()
        if not ok:
            self._put_back(batch_dir)
            self.report.status = f"kept unpruned: the workload failed on the pruned tree ({why})"
            return self.report
        if experiments:
            self._experiments()
        after = _files(self.tree)
        removed = {rel: size for rel, size in before.items() if rel not in after}
        by_package: dict[str, int] = {}
        for rel, size in removed.items():
            by_package[rel.split("/", 1)[0]] = by_package.get(rel.split("/", 1)[0], 0) + size
        self.report.removed_files = len(removed)
        self.report.removed_bytes = sum(removed.values())
        self.report.removed_by_package = sorted(by_package.items(), key=lambda item: -item[1])[:25]
        self.report.status = "pruned"
        prune_empty_dirs(self.tree)
        return self.report

    def _experiments(self) -> None:
        tried_paths: set[str] = set()
        tried_file_sets: set[frozenset[str]] = set()
        for number in range(MAX_EXPERIMENTS):
            candidate = self._next_candidate(tried_paths, tried_file_sets)
            if candidate is None:
                return
            rel, files, size = candidate
            tried_paths.add(rel)
            tried_file_sets.add(files)
            batch_dir = self._move_aside(sorted(files), f"experiment-{number}")
            ok, why = self.passes()
            if not ok:
                self._put_back(batch_dir)
                self.report.experiments.append({"drop": rel, "bytes": size, "kept": False, "why": why})
                continue
            # Accepted: trace again, so what only the dropped code loaded goes too.
            _, extra, extra_dir = self._prune_to_trace(f"after-experiment-{number}")
            ok, why = self.passes()
            if not ok:
                self._put_back(extra_dir)
                extra = 0
            self.report.experiments.append({"drop": rel, "bytes": size + extra, "kept": True,
                                            "why": "the workload passes without it"})

    def _next_candidate(self, tried_paths: set[str],
                        tried_file_sets: set[frozenset[str]]) -> tuple[str, frozenset[str], int] | None:
        """The biggest directory or file not tried yet whose removal might pass.

        Never: a package the smoke test imports by name (its subpackages and
        files may go), or anything holding a library that a shared object
        left outside it needs. Each path is tried once, and a directory
        holding the same files as one tried (``google`` and
        ``google/protobuf``) is the same experiment.
        """
        named = {name.split(".")[0] for name in self.smoke.imports}
        files = _files(self.tree)
        needed_by: dict[str, set[str]] = {}
        for elf, needed in self._needs().items():
            for rel in needed:
                needed_by.setdefault(rel, set()).add(elf)
        groups: dict[str, set[str]] = {}
        for rel in files:
            parts = rel.split("/")
            if parts[0].endswith(".dist-info"):
                continue
            for depth in range(1, len(parts) + 1):
                groups.setdefault("/".join(parts[:depth]), set()).add(rel)
        candidates = []
        for rel, members in groups.items():
            size = sum(files[m] for m in members)
            frozen = frozenset(members)
            if (size < self.experiment_min_bytes or rel in named or rel in tried_paths
                    or frozen in tried_file_sets):
                continue
            if any(needed_by.get(m, set()) - members for m in members):
                continue
            candidates.append((size, -rel.count("/"), rel, frozen))
        if not candidates:
            return None
        size, _, rel, frozen = max(candidates)  # biggest; of equals, the outermost
        return rel, frozen, size
