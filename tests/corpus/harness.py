"""Runs one bad input through the real ``layers`` entry point and judges how it ended.

Each case runs in a child forked from the test process (the CLI already
imported, so a case costs a fork, not an interpreter start), in a fresh
directory holding only the case's files, with its own environment, stdin
from /dev/null and stdout/stderr to files. The child is its own process
group: a case still running after ``TIMEOUT`` seconds is killed whole and
counted as a hang.

An outcome is judged on five counts, the ones the issue asks for:
- traceback: Python's traceback text in the output, an exception escaping
  ``main`` or the CLI's exit for a bug (70);
- hang: killed at the time bound;
- partial output: a refused case changed its directory (or a watched
  device node), so a command left files it should not have;
- wrong exit: not the documented code;
- message: a refusal must be one ``error:`` line followed by one ``hint:``
  line.
AWS-touching cases also count the requests a recording endpoint received.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT = 30.0
BUG_EXIT = 70
ESCAPED = 99  # an exception got past main(): the child's own marker


class Dir:
    """A directory where the command expects a file."""


class Fifo:
    """A FIFO: a plain read would block forever."""


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Case:
    id: str
    family: str                       # recipes | arguments | zips | files | environment
    argv: tuple[str, ...]
    files: dict = field(default_factory=dict)   # relative path -> bytes | str | Dir() | Fifo() | Link
    env: dict = field(default_factory=dict)
    expect: int = 2
    aws: bool = False                 # count requests at the recording endpoint
    invalid_recipe: bool = False      # a recipe that must be refused at load
    stdout_has: str | None = None     # e.g. the "invalid" row of `layers recipes`
    watch: tuple[str, ...] = ()       # device nodes (outside the case dir) that must stay as they were


@dataclass
class Outcome:
    case: Case
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    changed: list[str]
    requests: int = 0
    problems: list[str] = field(default_factory=list)


def materialise(case: Case, where: Path) -> None:
    where.mkdir(parents=True)
    for relative, content in case.files.items():
        path = where / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Dir):
            path.mkdir()
        elif isinstance(content, Fifo):
            os.mkfifo(path)
        elif isinstance(content, Link):
            os.symlink(content.target, path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def snapshot(where: Path) -> dict[str, tuple]:
    """Every entry under ``where``: its kind, size and modification time (nanoseconds)."""
    seen = {}
    for root, dirs, files in os.walk(where):
        for name in dirs + files:
            path = Path(root, name)
            info = path.lstat()
            seen[str(path.relative_to(where))] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns)
    return seen


def _node(path: str) -> tuple | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return (stat.S_IFMT(info.st_mode), info.st_rdev)


def start(case: Case, where: Path, env: dict[str, str]) -> int:
    """Fork a child that runs ``layers *case.argv`` in ``where``; its pid."""
    from builder.cli import main

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = ESCAPED
    try:
        os.setpgid(0, 0)
        os.chdir(where)
        os.environ.clear()
        os.environ.update(env)
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, name in ((1, ".stdout"), (2, ".stderr")):
            out = os.open(where.parent / f"{where.name}{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, fd)
        # pytest's capture replaced sys.stdout/stderr with its own files: write to fds 1 and 2 again.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                      line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                      line_buffering=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sys.argv = ["layers", *case.argv]
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = ESCAPED
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def finish(case: Case, where: Path, pid: int, started: float, before: dict, watched: dict) -> Outcome:
    """Wait for the child (killing its group at the time bound) and judge the outcome."""
    code = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() - started > TIMEOUT:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.005)
    seconds = time.monotonic() - started
    try:  # whatever the case started in its group (pip, say) goes with it
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    stdout = (where.parent / f"{where.name}.stdout").read_text(errors="replace")
    stderr = (where.parent / f"{where.name}.stderr").read_text(errors="replace")
    after = snapshot(where)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    changed += [path for path, node in watched.items() if _node(path) != node]
    return judge(Outcome(case, code, stdout, stderr, seconds, changed))


def judge(outcome: Outcome) -> Outcome:
    case, problems = outcome.case, outcome.problems
    text = outcome.stdout + outcome.stderr
    if outcome.code is None:
        problems.append("hang")
        return outcome
    if "Traceback (most recent call last)" in text or outcome.code in (BUG_EXIT, ESCAPED):
        problems.append("traceback")
    if outcome.code != case.expect:
        problems.append("accepted-when-invalid" if case.invalid_recipe and outcome.code not in (BUG_EXIT, ESCAPED)
                        else "wrong-exit")
    if outcome.code != 0 and outcome.changed:
        problems.append("partial-output")
    if outcome.code != 0:
        lines = outcome.stderr.splitlines()
        errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
        if len(errors) != 1 or errors[0] + 1 >= len(lines) or not lines[errors[0] + 1].startswith("hint:"):
            problems.append("message")
    if case.stdout_has is not None and case.stdout_has not in outcome.stdout:
        problems.append("missing-output")
    return outcome


def run_all(cases: list[Case], root: Path, env: dict[str, str], *, parallel: int = 2,
            requests=None) -> list[Outcome]:
    """Every case, ``parallel`` at a time; AWS cases one at a time, so requests are counted per case."""
    outcomes: list[Outcome] = []
    running: dict[int, tuple] = {}
    pending = list(cases)

    def reap(block: bool) -> None:
        for pid, (case, where, started, before, watched, seen) in list(running.items()):
            if not block and not _exited(pid) and time.monotonic() - started <= TIMEOUT:
                continue
            outcome = finish(case, where, pid, started, before, watched)
            if case.aws and requests is not None:
                outcome.requests = len(requests) - seen
                if outcome.requests:
                    outcome.problems.append("request-sent")
            outcomes.append(outcome)
            del running[pid]

    while pending or running:
        if pending and len(running) < parallel and not (pending[0].aws and running) \
                and not any(c.aws for c, *_ in running.values()):
            case = pending.pop(0)
            where = root / case.id
            materialise(case, where)
            before = snapshot(where)
            watched = {path: _node(path) for path in case.watch}
            seen = len(requests) if requests is not None else 0
            pid = start(case, where, {**env, **case.env})
            running[pid] = (case, where, time.monotonic(), before, watched, seen)
        else:
            reap(block=False)
            time.sleep(0.002)
    return outcomes


def _exited(pid: int) -> bool:
    # Peek without reaping: /proc shows a zombie as state Z.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True
