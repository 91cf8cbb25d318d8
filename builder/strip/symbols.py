"""Strip debug symbols from a layer's shared objects, without breaking any.

Why: wheels often ship shared objects with symbol tables and DWARF, which can
be half of a layer's size, and a Lambda layer has a hard size limit.

Why carefully: ``strip --strip-unneeded`` (GNU or LLVM) rewrites the file
layout, and on libraries that auditwheel/patchelf have already grown it can
write PT_LOAD segments that ld.so refuses ("ELF load command address/offset
not page-aligned"). That was seen on Pillow, numpy's OpenBLAS, a TensorFlow
stack and most of an aarch64 stack, and it is reproduced by this project's
tests with patchelf'ed libraries and with numpy's aarch64 wheel. So each file
is handled as a transaction:

1. copy it to a temporary file beside the original and strip the copy (the
   original is never written by the tool);
2. check the result the way ld.so would (``elf.load_segments_problem``) and
   re-read it: same machine, type, soname, DT_NEEDED list and glibc needs;
3. only then move it over the original atomically, with the original's mode.
   A broken result, or a tool that fails, leaves the original as it was and
   is reported in ``StripOutcome.restored``.

Not attempted (``skipped``): libraries auditwheel vendored into ``*.libs/``
(they are patchelf'ed by construction, hence the riskiest, and usually
already stripped), files with nothing to strip, and files no tool on this
host can read (GNU ``strip`` only reads its own machine).

The copies are stripped in a few batches, one strip command each, run
concurrently (the work is in subprocesses): starting a command costs ~60 ms
in a build container, more than stripping most files. The outcome is sorted
by path, so it does not depend on scheduling. Every command goes through the
project's ``Runner``; nothing here prints.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolMissing, VerifyError
from ..runner import Runner
from ..runtimes import MACHINE
from ..verify.elf import ElfInfo, elf_files, load_segments_problem, read_elf

# What GNU strip calls each machine's ELF format in `strip --info`.
_BFD_TARGET = {"x86_64": "elf64-x86-64", "aarch64": "elf64-littleaarch64"}
_TRIPLET = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}

VENDORED = "auditwheel-vendored library (*.libs/)"
NO_DEBUG = "no debug info"

Progress = Callable[[int, int, Path], None]


@dataclass(frozen=True)
class StripOutcome:
    stripped: tuple[tuple[Path, int], ...]  # (file, bytes saved)
    restored: tuple[tuple[Path, str], ...]  # attempted, original kept: (file, why)
    skipped: tuple[tuple[Path, str], ...]  # left as is: not attempted, or nothing saved: (file, why)

    @property
    def bytes_saved(self) -> int:
        return sum(saved for _, saved in self.stripped)


def find_strip_tool(
    machine: str,
    runner: Runner,
    which: Callable[[str], str | None] = shutil.which,
) -> list[str] | None:
    """The argv prefix of a strip that can read `machine` objects, or None.

    GNU strip first: it breaks far fewer patchelf'ed files than llvm-strip
    (measured with patchelf 0.14, binutils 2.40, LLVM 14: 33 against 81 of
    85 x86_64 libraries grown by 1-3 patchelf edits; numpy 2.2.6's aarch64
    wheel: 2 of its 21 objects against 5) and saves slightly more.
    A GNU strip reads only the machines it was built for, so each candidate
    is asked (`--info` lists its formats) rather than trusted by name: plain
    ``strip`` is x86_64-only on an x86_64 host, aarch64-only on an aarch64
    one, and everything with binutils-multiarch. llvm-strip reads any ELF.
    """
    machine = MACHINE.get(machine, machine)
    target = _BFD_TARGET.get(machine)
    if target is None:
        return None  # Lambda runs only x86_64 and aarch64: nothing else is worth stripping
    for name in ("strip", f"{_TRIPLET[machine]}-strip"):
        if which(name) and _gnu_reads(name, target, runner):
            return [name]
    if which("llvm-strip"):
        return ["llvm-strip"]
    return None


def _gnu_reads(tool: str, target: str, runner: Runner) -> bool:
    try:
        result = runner.run([tool, "--info"], timeout=60)
    except ToolMissing:
        return False
    return result.ok and target in (line.strip() for line in result.stdout.splitlines())


def strip_shared_objects(
    tree: Path,
    *,
    runner: Runner,
    machine: str,
    which: Callable[[str], str | None] = shutil.which,
    skip_vendored: bool = True,
    workers: int | None = None,
    progress: Progress | None = None,
) -> StripOutcome:
    """Strip every shared object under tree built for `machine`, keeping any the strip would break.

    ``progress(done, total, path)`` is called from this thread after each
    attempted file.
    """
    tree = Path(tree)
    machine = MACHINE.get(machine, machine)
    skipped: list[tuple[Path, str]] = []
    todo: list[tuple[Path, ElfInfo, list[str]]] = []
    tools: dict[str, list[str] | None] = {}
    for path in elf_files(tree):
        reason = None
        if skip_vendored and _vendored(path, tree):
            reason = VENDORED
        else:
            try:
                info = read_elf(path)
            except VerifyError as exc:
                reason = f"unreadable ELF: {exc.message}"
            else:
                reason = _not_strippable(info, machine)
                if reason is None:
                    if info.machine not in tools:
                        tools[info.machine] = find_strip_tool(info.machine, runner, which)
                    if tools[info.machine] is None:
                        reason = f"no strip tool for {info.machine}"
        if reason is not None:
            skipped.append((path, reason))
        else:
            todo.append((path, info, tools[info.machine]))

    stripped: list[tuple[Path, int]] = []
    restored: list[tuple[Path, str]] = []
    if todo:
        batches = _batches(todo, workers or os.cpu_count() or 1)
        done = 0
        with ThreadPoolExecutor(max_workers=len(batches)) as pool:
            futures = [pool.submit(_strip_batch, batch, runner) for batch in batches]
            for future in as_completed(futures):
                for path, kind, value in future.result():
                    {"stripped": stripped, "restored": restored, "skipped": skipped}[kind].append((path, value))
                    done += 1
                    if progress is not None:
                        progress(done, len(todo), path)
    return StripOutcome(
        stripped=tuple(sorted(stripped)),
        restored=tuple(sorted(restored)),
        skipped=tuple(sorted(skipped)),
    )


def _vendored(path: Path, tree: Path) -> bool:
    # auditwheel puts copied libraries in "<dist>.libs/" (or "<pkg>/.libs/").
    parents = path.relative_to(tree).parent.parts
    return any(part.endswith(".libs") for part in parents)


def _not_strippable(info: ElfInfo, machine: str) -> str | None:
    if info.elf_type != "ET_DYN":
        return f"not a shared object ({info.elf_type})"
    if info.machine != machine:
        return f"{info.machine} object in a {machine} layer"
    if not info.has_debug_info:
        return NO_DEBUG
    return None


def _batches(todo: list[tuple[Path, ElfInfo, list[str]]], count: int) -> list[list[tuple[Path, ElfInfo, list[str]]]]:
    """Up to ``count`` batches of similar total size, each for one tool (biggest files dealt first)."""
    by_tool: dict[tuple[str, ...], list[tuple[Path, ElfInfo, list[str]]]] = {}
    for item in todo:
        by_tool.setdefault(tuple(item[2]), []).append(item)
    batches = []
    for items in by_tool.values():
        lanes: list[list] = [[] for _ in range(min(count, len(items)))]
        loads = [0] * len(lanes)
        for item in sorted(items, key=lambda i: -i[0].stat().st_size):
            lane = loads.index(min(loads))
            lanes[lane].append(item)
            loads[lane] += item[0].stat().st_size
        batches += [lane for lane in lanes if lane]
    return batches


def _strip_batch(batch: list[tuple[Path, ElfInfo, list[str]]], runner: Runner) -> list[tuple[Path, str, int | str]]:
    """Strip copies of a batch's files with one command; move each good copy over its original."""
    results: list[tuple[Path, str, int | str]] = []
    copies: list[tuple[Path, ElfInfo, os.stat_result, Path]] = []
    tool = batch[0][2]
    for path, info, _ in batch:
        try:
            original = path.stat()
            # Beside the original, so the final os.replace is a same-filesystem rename.
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".strip", dir=path.parent)
            os.close(fd)
            shutil.copyfile(path, name)
        except OSError as exc:
            results.append((path, "restored", f"cannot write beside the file: {exc}"))
            continue
        copies.append((path, info, original, Path(name)))
    try:
        if not copies:
            return results
        result = runner.run([*tool, "--strip-unneeded", *(str(tmp) for *_, tmp in copies)])
        text = result.stdout + "\n" + result.stderr
        output = text.splitlines()
        # A failure that names no file (the tool itself broke) counts against every file.
        failed_globally = not result.ok and not any(str(tmp) in text for *_, tmp in copies)
        for path, before, original, tmp in copies:
            complaints = [line.replace(str(tmp), str(path)) for line in output
                          if str(tmp) in line and "warning" not in line.lower()]
            if complaints or failed_globally:
                last = complaints[-1] if complaints else (result.tail(1) or f"exit code {result.returncode}")
                results.append((path, "restored", f"{tool[0]} failed: {last}"))
                continue
            results.append((path, *_keep_if_good(path, before, original, tmp)))
        return results
    finally:
        for *_, tmp in copies:
            tmp.unlink(missing_ok=True)


def _keep_if_good(path: Path, before: ElfInfo, original: os.stat_result, tmp: Path) -> tuple[str, int | str]:
    try:
        problem = _stripped_problem(before, tmp)
        if problem is not None:
            return "restored", problem
        saved = original.st_size - tmp.stat().st_size
        if saved <= 0:
            return "skipped", "stripping saved nothing"
        os.chmod(tmp, stat.S_IMODE(original.st_mode))
        os.replace(tmp, path)
        return "stripped", saved
    except OSError as exc:
        return "restored", f"cannot replace the file: {exc}"


def _stripped_problem(before: ElfInfo, stripped: Path) -> str | None:
    problem = load_segments_problem(stripped)
    if problem is not None:
        return f"strip broke the load segments: {problem}"
    try:
        after = read_elf(stripped)
    except VerifyError as exc:
        return f"strip left an unreadable file: {exc.message}"
    for field in ("machine", "elf_type", "soname", "needed", "glibc_versions"):
        if getattr(after, field) != getattr(before, field):
            return f"strip changed the {field}: {getattr(before, field)!r} -> {getattr(after, field)!r}"
    return None
