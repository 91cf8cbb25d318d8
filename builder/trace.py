"""Trace-guided pruning (strip profile ``trace``): keep what the workload uses.

After the standard strip, the recipe's smoke workload runs once under a
tracer, with the runtime's Python (on this machine or in the build
container). The tracer records every file the process opens (audit hooks
from Python 3.8; on 3.6 and 3.7, ``open`` and ``os.open`` are wrapped), every
module's file in ``sys.modules``, and every file mapped into the process
(``/proc/self/maps``: the shared objects the loader pulled in). The keep set
is those files, their ELF DT_NEEDED closure inside the layer, every ``.py``
of each top-level package the workload touched, and all dist-info metadata.
Everything else is moved aside; the workload then runs again on the result.
If it fails, everything is put back and the build keeps the unpruned tree.

Then experiments, biggest first: a loaded directory that the workload may
import only optionally (Keras 2.2.4 imports parts of SciPy inside
try/except) is moved aside, the workload runs again, and the drop is kept
only if it still passes; the trace is then taken again, so whatever only the
dropped code loaded goes too. The report lists every removal and experiment,
so that users can judge whether their workload was representative.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .elf import elf_files, read_elf
from .errors import LayerError, VerifyError
from .interpreters import Interpreter
from .recipe import SmokeTest
from .runner import Runner
from .strip import prune_empty_dirs
from .verify import run_smoke_test, run_workload

MIB = 1 << 20
# Experiments: only directories at least this big are worth a workload run each.
EXPERIMENT_MIN_BYTES = 2 * MIB
MAX_EXPERIMENTS = 20

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


def needed_closure(tree: Path, start: set[str]) -> set[str]:
    """``start`` plus every shared object inside the layer that they need (DT_NEEDED), transitively."""
    by_name: dict[str, list[str]] = {}
    elves = {p.relative_to(tree).as_posix() for p in elf_files(tree)}
    for rel in elves:
        by_name.setdefault(Path(rel).name, []).append(rel)
    keep, todo = set(start), [r for r in start if r in elves]
    while todo:
        rel = todo.pop()
        try:
            needed = read_elf(tree / rel).needed
        except LayerError:
            continue
        for name in needed:
            for candidate in by_name.get(name, []):
                if candidate not in keep:
                    keep.add(candidate)
                    todo.append(candidate)
    return keep


def keep_set(files: dict[str, int], loaded: set[str], closure: set[str]) -> set[str]:
    """What stays: loaded files and their libraries, every .py of a touched package, all dist-info."""
    touched = {rel.split("/", 1)[0] for rel in loaded if "/" in rel}
    keep = set(loaded) | closure
    for rel in files:
        top = rel.split("/", 1)[0]
        if top.endswith(".dist-info") or (top in touched and rel.endswith(".py")):
            keep.add(rel)
    return keep


class Pruner:
    def __init__(self, tree: Path, smoke: SmokeTest, interpreter: Interpreter, runner: Runner,
                 tmp: Path | None, aside: Path) -> None:
        self.tree, self.smoke, self.interpreter, self.runner, self.tmp = tree, smoke, interpreter, runner, tmp
        self.aside = aside
        self.report = PruneReport()

    def trace(self) -> set[str]:
        with tempfile.TemporaryDirectory(prefix="layers-trace-", dir=self.tmp) as scratch:
            out = Path(scratch) / "trace.json"
            result = run_workload(self.tree, self.smoke, self.interpreter, self.runner, self.tmp,
                                  prelude=_TRACE_PRELUDE, epilogue=_TRACE_EPILOGUE,
                                  env={"LAYERS_TRACE_OUT": str(out)})
            if not result.ok or "TRACE-OK" not in result.stdout:
                raise VerifyError(f"the workload failed under the tracer:\n{result.tail(10)}")
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
        keep = keep_set(files, loaded, needed_closure(self.tree, loaded))
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
        tried: set[str] = set()
        for number in range(MAX_EXPERIMENTS):
            candidate = self._next_candidate(tried)
            if candidate is None:
                return
            rel_dir, size = candidate
            tried.add(rel_dir)
            files = [rel for rel in _files(self.tree) if rel == rel_dir or rel.startswith(rel_dir + "/")]
            batch_dir = self._move_aside(files, f"experiment-{number}")
            ok, why = self.passes()
            if not ok:
                self._put_back(batch_dir)
                self.report.experiments.append({"drop": rel_dir, "bytes": size, "kept": False, "why": why})
                continue
            # Accepted: trace again, so what only the dropped code loaded goes too.
            _, extra, extra_dir = self._prune_to_trace(f"after-experiment-{number}")
            ok, why = self.passes()
            if not ok:
                self._put_back(extra_dir)
                extra = 0
            self.report.experiments.append({"drop": rel_dir, "bytes": size + extra, "kept": True,
                                            "why": "the workload passes without it"})

    def _next_candidate(self, tried: set[str]) -> tuple[str, int] | None:
        """The biggest package directory (top level or one below), or large file, not tried yet.

        The packages the smoke test imports by name are never candidates
        themselves (their subpackages and files may be).
        """
        named = {name.split(".")[0] for name in self.smoke.imports}
        sizes: dict[str, int] = {}
        for rel, size in _files(self.tree).items():
            parts = rel.split("/")
            if parts[0].endswith(".dist-info"):
                continue
            for depth in (1, 2):
                if len(parts) > depth:
                    key = "/".join(parts[:depth])
                    sizes[key] = sizes.get(key, 0) + size
            if size >= EXPERIMENT_MIN_BYTES:
                sizes[rel] = size  # a large file on its own: an optional extension, say
        candidates = [(rel, size) for rel, size in sizes.items()
                      if rel not in tried and rel not in named and size >= EXPERIMENT_MIN_BYTES]
        return max(candidates, key=lambda item: item[1]) if candidates else None

