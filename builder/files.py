"""Reading the files users and pull requests hand us: recipes' neighbours, locks, reports, manifests.

They are untrusted input. Each is read only when it is a regular file (a
FIFO or /dev/zero would hang the read), up to a size that no real one
reaches, as UTF-8, and parsed as JSON without letting deep nesting reach
Python's recursion limit. Every failure is the caller's own error class
(a ``LayerError``), naming the file, with a hint; never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from .errors import LayerError, UsageError

MAX_JSON_BYTES = 64 << 20  # a tf18 report is ~200 KB, a lock ~20 KB
MAX_JSON_DEPTH = 32


def read_text(path: Path, what: str, *, limit: int, error: type[LayerError] = UsageError,
              hint: str | None = None) -> str:
    """The UTF-8 text of ``path``, a regular file of at most ``limit`` bytes."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"no {what} at {path}", hint=hint) from None
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror or exc}", hint=hint) from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
        raise error(f"the {what} {path} is {kind}, not a file", hint=hint)
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror or exc}", hint=hint) from None
    if len(raw) > limit:
        raise error(f"the {what} {path} is over {limit:,} bytes", hint=hint)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"the {what} {path} is not UTF-8 text (byte {exc.start})", hint=hint) from None


def read_json(path: Path, what: str, *, error: type[LayerError] = UsageError, hint: str | None = None,
              limit: int = MAX_JSON_BYTES) -> Any:
    """``path`` parsed as JSON, nested at most ``MAX_JSON_DEPTH`` deep."""
    return parse_json(read_text(path, what, limit=limit, error=error, hint=hint), f"the {what} {path}",
                      error=error, hint=hint)


def parse_json(text: str, where: str, *, error: type[LayerError] = UsageError, hint: str | None = None) -> Any:
    if _nesting(text) > MAX_JSON_DEPTH:
        raise error(f"{where} nests more than {MAX_JSON_DEPTH} levels deep", hint=hint)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:  # JSONDecodeError, and numbers too long to convert
        raise error(f"{where} is not valid JSON ({exc})", hint=hint) from None


def _no_constant(name: str):
    # NaN and Infinity are Python's extension, not JSON: no file we write holds them.
    raise ValueError(f"{name} is not a JSON value")


def _nesting(text: str) -> int:
    """The deepest bracket nesting outside strings, counted before the parser could recurse."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def kind_of(path: Path, what: str, *, error: type[LayerError] = UsageError, hint: str | None = None) -> str:
    """"missing", "file", "directory", "FIFO" or "special file": asked without following the path's work.

    An OSError (a 5,000-character name, a loop of symlinks) becomes ``error``
    naming ``what``, where ``Path.exists`` would raise it.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        shown = str(path) if len(str(path)) <= 80 else str(path)[:80] + "..."
        raise error(f"{what} {shown}: {exc.strerror or exc}", hint=hint or "check the path") from None
    if stat.S_ISREG(mode):
        return "file"
    return "directory" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "special file"


def check_directory_option(path: Path, option: str, *, must_exist: bool = False) -> None:
    """A directory option (``--recipes``, ``--manifests``, ``--out``) names a directory, or nothing yet."""
    kind = kind_of(path, option)
    if kind == "missing" and must_exist:
        raise UsageError(f"{option} {path}: no such directory", hint=f"give {option} an existing directory")
    if kind not in ("missing", "directory"):
        raise UsageError(f"{option} {path} is a {kind}, not a directory", hint=f"give {option} a directory")


# -- --output files: a regular file or nothing yet, written whole by a rename ----------------
def _mode_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a file" if stat.S_ISREG(mode) else "a special file"


def check_output_file(path: Path, hint: str, option: str = "--output") -> None:
    """Refuse an output a rename would put a file in place of: anything but a regular file or nothing.

    The nearest existing folder above it must be a folder, as the missing ones are made.
    """
    try:
        mode = path.stat().st_mode  # follows a symlink: one to /dev/null is refused like /dev/null
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # a non-folder above it is named below
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror or exc}", hint=hint) from None
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"{option} {path} is {_mode_kind(mode)}, not a file", hint=hint)
    for parent in path.parents:
        try:
            parent_mode = parent.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise UsageError(f"{option} {path}: cannot reach {parent}: {exc.strerror or exc}", hint=hint) from None
        if not stat.S_ISDIR(parent_mode):
            raise UsageError(f"{option} {path}: {parent} is {_mode_kind(parent_mode)}, not a directory", hint=hint)
        return


def write_output_file(path: Path, text: str, hint: str, option: str = "--output") -> None:
    """Write ``text`` to ``path`` by a rename from a temporary file beside it; a failure leaves neither half a
    file nor the temporary."""
    check_output_file(path, hint, option)
    failed = "check that the folder is writable and the disk not full, or give another " + option
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise LayerError(f"cannot write {path}: {exc.strerror or exc}", hint=failed) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # mkstemp makes it 0600; what is written here is read by others: keep the old file's mode, or 0644.
        os.chmod(temp, stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o644)
        check_output_file(path, hint, option)  # again, just before the rename: a device made there since stays
        os.replace(temp, path)
    except BaseException as exc:
        Path(temp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise LayerError(f"cannot write {path}: {exc.strerror or exc}", hint=failed) from None
        raise
