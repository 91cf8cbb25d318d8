"""What a failed tool said: its decisive line for the error message, the rest in a log file.

An error is one line and one hint (``errors.LayerError``). When pip, a
compiler, ``docker build`` or the smoke test's Python fails, the line that
says why is rarely its last: pip ends with "ResolutionImpossible: for help
visit ...", a compiler with "compilation terminated.", a build with "The
command ... returned a non-zero code: 1". ``decisive_line`` picks the line
that says why, condensed to one bounded line; ``keep_output`` saves the whole
output under the cache (``LAYERS_CACHE_DIR``) and returns the hint's clause
naming the file.

Here and not in ``backends``: verify and strip (the smoke test, the tracer,
bytecode) fail with tool output too, and they sit below the backends.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

LIMIT = 300

# pip frames a build tool's output: "╰─> [18 lines of output]" ... "[end of output]".
# pip before 21.3: "Complete output (18 lines):" ... a line of dashes.
_FRAME_START = re.compile(r"\[\d+ lines? of output\]|^Complete output \(\d+ lines?\):$")
_FRAME_END = re.compile(r"^\[end of output\]$|^-{10,}$")
# Lines that only frame or decorate what failed.
_NOISE = (
    re.compile(r"is ignored: it is neither a file nor a directory"),  # pip, machine-wide find-links
    re.compile(r"^\[notice\]"),
    re.compile(r"^(×|│|╰─>|note:|hint: See above)"),  # pip's rich framing
    re.compile(r"^Step \d+/\d+ :"),  # docker build's classic builder
    re.compile(r"^---> "),
    re.compile(r"^Removing intermediate container"),
    re.compile(r"^[\^~ ]+$|^\d* *\|"),  # a compiler's caret lines and quoted source
)
# "cext.c:1:10: fatal error: ffi.h: No such file or directory": the first one is the cause.
_COMPILER_ERROR = re.compile(r"^\S+:\d+(?::\d+)?: (?:fatal )?error: ")
_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception|Exit|Interrupt|Warning)\b(?::|$)")
_FAILURE_WORDS = re.compile(
    r"(?i)\b(error|fatal|not found|no such file|cannot|can't|could not|failed|denied|refused|missing|unable)\b")
_GENERIC = re.compile(r"returned a non-zero code|^error: subprocess-exited-with-error$|^Failed to build")
# pip's two lines for one cause, merged: "No matching distribution found for x==9 (from versions: 1.0, 2.0)".
_NOT_SATISFIED = re.compile(r"Could not find a version that satisfies the requirement (\S+) \(from versions: (.*)\)$")
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
_PIP_GENERIC = ("ResolutionImpossible", "Failed building wheel", "Failed to build one or more wheels",
                "Command errored out with exit status")
_CONFLICT = "The conflict is caused by:"
# Why pip's index did not answer, from its "Retrying ... after connection broken by ..." warnings.
_NETWORK = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)|(Read timed out|Connection to \S+ timed out)")
_UNTRUSTED = re.compile(r"repository located at (\S+) is not a trusted or secure host")


def decisive_line(output: str, *, limit: int = LIMIT) -> str:
    """The line of ``output`` that says why the tool failed, as one line of at most ``limit`` characters.

    In order: the build tool's own output where pip framed it; pip's ``ERROR:``
    lines, merged and stripped of the prefix (with why the index did not
    answer, when it did not); a compiler's first error; a traceback's
    exception; the last line that reads like a failure; the last line.
    """
    lines = _lines(output)
    framed = _framed(lines)
    if framed:
        lines = framed
    line = _pip_errors(lines) or _first(lines, _COMPILER_ERROR) or _exception(lines) or _failure(lines)
    return shorten(line or "(no output)", limit)


def shorten(text: str, limit: int = LIMIT) -> str:
    """``text`` on one line, whitespace collapsed, cut at ``limit`` characters with "..."."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _lines(output: str) -> list[str]:
    kept = []
    for raw in output.splitlines():
        line = raw.strip()
        if line and (_FRAME_START.search(line) or not any(noise.search(line) for noise in _NOISE)):
            kept.append(line)
    return kept


def _framed(lines: list[str]) -> list[str]:
    """The body of the last frame pip drew around a subprocess's output (pip's framing itself is noise)."""
    starts = [i for i, line in enumerate(lines) if _FRAME_START.search(line)]
    if not starts:
        return []
    body = []
    for line in lines[starts[-1] + 1:]:
        if _FRAME_END.search(line):
            break
        body.append(line)
    return body


def _first(lines: list[str], pattern: re.Pattern) -> str:
    return next((line for line in lines if pattern.search(line)), "")


def _exception(lines: list[str]) -> str:
    """The exception a traceback ended in (the last one, where one was raised while handling another)."""
    if _TRACEBACK not in lines:
        return ""
    after = lines[len(lines) - 1 - lines[::-1].index(_TRACEBACK):]
    return next((line for line in reversed(after) if _EXCEPTION.search(line)), after[-1])


def _failure(lines: list[str]) -> str:
    specific = [line for line in lines if _FAILURE_WORDS.search(line) and not _GENERIC.search(line)]
    return (specific or [line for line in lines if _FAILURE_WORDS.search(line)] or lines or [""])[-1]


def _pip_errors(lines: list[str]) -> str:
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    if not errors:
        return ""
    if "Exception:" in errors:  # pip itself crashed: its traceback says why
        return _exception(lines) or "pip crashed"
    causes = [e for e in errors if not e.startswith(_PIP_GENERIC)] or errors
    cause = causes[-1]
    versions = next((m for e in causes if (m := _NOT_SATISFIED.search(e))), None)
    if _NO_MATCH.search(cause) and versions:
        cause = f"{cause} (from versions: {_few(versions.group(2))})"
    elif versions and cause == versions.group(0):
        cause = f"No matching distribution found for {versions.group(1)} (from versions: {_few(versions.group(2))})"
    if "conflicting dependencies" in cause and _CONFLICT in lines:
        start = lines.index(_CONFLICT) + 1
        why = []
        for line in lines[start:]:
            if line.endswith(":") or line.startswith(("ERROR:", "To fix this")):
                break
            why.append(line)
        cause = cause.rstrip(".") + (": " + "; ".join(why) if why else "")
    return cause + _index_trouble(lines)


def _few(versions: str) -> str:
    """pip's "from versions" list, its first two and last three when it is long."""
    items = [v.strip() for v in versions.split(",")]
    return ", ".join(items if len(items) <= 6 else [*items[:2], "...", *items[-3:]])


def _index_trouble(lines: list[str]) -> str:
    """Why the index did not answer, when pip's warnings say so: the real reason nothing was found."""
    for line in reversed(lines):
        if line.startswith("WARNING: Retrying") and (network := _NETWORK.search(line)):
            return f" (the index did not answer: {network.group(1) or network.group(2)})"
        if untrusted := _UNTRUSTED.search(line):
            return f" (pip ignored the index at {untrusted.group(1)}: plain HTTP; trust it with PIP_TRUSTED_HOST)"
    return ""


# -- the whole output, in a log file ---------------------------------------------------------------------------

def cache_dir() -> Path:
    """Where the builder caches (wheels, build images' wheels, logs): ``LAYERS_CACHE_DIR`` or the XDG cache."""
    if os.environ.get("LAYERS_CACHE_DIR"):
        return Path(os.environ["LAYERS_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "lambda-layer-builder"


def logs_dir() -> Path:
    return cache_dir() / "logs"


def save_log(name: str, text: str, directory: Path | None = None) -> Path | None:
    """Write ``text`` to ``<directory>/<name>.log`` (default: the cache's logs/), replacing the last one of that name.

    Returns the path, or None when it cannot be written: a log is never worth failing over.
    """
    directory = directory or logs_dir()
    path = directory / (re.sub(r"[^A-Za-z0-9._=+-]+", "_", name).strip("._") + ".log")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        with open(fd, "w", encoding="utf-8", errors="replace") as stream:
            stream.write(text if text.endswith("\n") else text + "\n")
        os.replace(temp, path)
    except OSError:
        return None
    return path


def keep_output(name: str, text: str, directory: Path | None = None) -> str:
    """Save ``text`` as the log ``name``; the clause a hint ends with to name it ("" if it could not be saved)."""
    path = save_log(name, text, directory)
    return f"; the full output is in {path}" if path else ""
