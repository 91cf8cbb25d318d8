"""Errors users read: one line with a hint, the tool's decisive line in it, the whole output in a log file.

The pip outputs below are real: pip 26.3 run against a dead index
(``--index-url http://127.0.0.1:9/simple``, ``PIP_INDEX_URL`` likewise),
with ``--no-index``, against an unresolvable host, and against local wheels
and sdists that conflict or fail to build. They are stdout then stderr, as
the backend joins them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from builder.backends.base import Target
from builder.backends.pip import PipBackend
from builder.errors import ResolveError
from builder.recipe import parse_recipe
from builder.runner import Result
from builder.verify.output import decisive_line, keep_output, save_log, shorten
from tests.conftest import ROOT

PACKAGE = ROOT / "builder"

# -- every raise carries a hint ------------------------------------------------------------------------------

# Files allowed to raise without a hint, and how often: none now. The count may only go down.
HINTLESS_ALLOWED: dict[str, int] = {}


def _error_classes() -> set[str]:
    """LayerError and every class in builder/ that derives from it, however indirectly."""
    bases: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                bases.setdefault(node.name, set()).update(names)
    found = {"LayerError"}
    while grown := {name for name, parents in bases.items() if parents & found} - found:
        found |= grown
    return found


def _raises_without_hint() -> dict[str, list[str]]:
    """file -> "line: Class" for each ``raise Class(...)`` of a LayerError without ``hint=``."""
    classes = _error_classes()
    out: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in classes and not any(k.arg in ("hint", None) for k in node.exc.keywords):
                out.setdefault(path.relative_to(ROOT).as_posix(), []).append(f"{node.lineno}: {name}")
    return out


def test_the_scan_knows_the_error_classes():
    assert {"LayerError", "RecipeError", "ResolveError", "BuildError", "VerifyError", "ToolMissing"} <= _error_classes()


def test_every_raise_of_a_layer_error_carries_a_hint():
    missing = _raises_without_hint()
    unexpected = {path: sites for path, sites in missing.items() if path not in HINTLESS_ALLOWED}
    assert not unexpected, f"give these a hint= (what to do next, one line): {unexpected}"
    grown = {path: sites for path, sites in missing.items() if len(sites) > HINTLESS_ALLOWED[path]}
    assert not grown, f"new raises without a hint: {grown}"


def test_no_message_literal_spans_lines():
    # Tool output goes through decisive_line; a "\n" in the message's own text would break the one line.
    classes = _error_classes()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in classes and node.args:
                pieces = [n.value for n in ast.walk(node.args[0]) if isinstance(n, ast.Constant)]
                if any(isinstance(p, str) and "\n" in p for p in pieces):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    others = [site for site in found if site.split(":")[0] in HINTLESS_ALLOWED or site.startswith("builder/cli")]
    assert sorted(set(found) - set(others)) == []


# -- the decisive line of pip's output ---------------------------------------------------------------------------

DEAD_INDEX = """\
Looking in indexes: http://127.0.0.1:9/simple, file:///opt/pypi/simple, file:///opt/pypi-more/simple
Looking in links: /opt/wheels
WARNING: Location 'file:///opt/pypi/simple/foo/' is ignored: it is neither a file nor a directory.
WARNING: Location 'file:///opt/pypi-more/simple/foo/' is ignored: it is neither a file nor a directory.
ERROR: Could not find a version that satisfies the requirement foo==9 (from versions: none)
ERROR: No matching distribution found for foo==9
"""

NO_INDEX = """\
Looking in links: /opt/wheels
ERROR: Could not find a version that satisfies the requirement foo==9 (from versions: none)
ERROR: No matching distribution found for foo==9
"""

DEAD_INDEX_RETRIED = """\
Looking in indexes: http://127.0.0.1:9/simple
WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken by \
'NewConnectionError("HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new connection: [Errno 111] \
Connection refused")': /simple/foo/
ERROR: Could not find a version that satisfies the requirement foo==9 (from versions: none)
ERROR: No matching distribution found for foo==9
"""

UNRESOLVABLE_HOST = """\
Looking in indexes: https://nonexistent.invalid/simple
WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken by \
'NameResolutionError("HTTPSConnection(host='nonexistent.invalid', port=443): Failed to resolve 'nonexistent.invalid' \
([Errno -2] Name or service not known)")': /simple/foo/
ERROR: Could not find a version that satisfies the requirement foo==9 (from versions: none)
ERROR: No matching distribution found for foo==9
"""

PLAIN_HTTP_INDEX = """\
Looking in indexes: http://nonexistent.invalid/simple
WARNING: The repository located at nonexistent.invalid is not a trusted or secure host and is being ignored. If this \
repository is available via HTTPS we recommend you use HTTPS instead, otherwise you may silence this warning and allow \
it anyway with '--trusted-host nonexistent.invalid'.
ERROR: Could not find a version that satisfies the requirement foo==9 (from versions: none)
ERROR: No matching distribution found for foo==9
"""

OTHER_VERSIONS = """\
Looking in indexes: file:///opt/pypi/simple
ERROR: Could not find a version that satisfies the requirement numpy==0.0.1 (from versions: 1.26.4, 2.0.2, 2.2.6, \
2.3.5, 2.4.6)
ERROR: No matching distribution found for numpy==0.0.1
"""

CONFLICT = """\
Looking in links: links
Processing ./links/aaa-1-py3-none-any.whl
Processing ./links/bbb-2-py3-none-any.whl
Processing ./links/ccc-1-py3-none-any.whl (from aaa==1)

The conflict is caused by:
    aaa 1 depends on ccc==1
    bbb 2 depends on ccc==2

Additionally, some packages in these conflicts have no matching distributions available for your environment:
    ccc

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip to attempt to solve the dependency conflict

ERROR: Cannot install aaa==1 and bbb==2 because these package versions have conflicting dependencies.
ERROR: ResolutionImpossible: for help visit \
https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""

SETUP_PY_FAILS = """\
Looking in links: links
Processing ./links/badsetup-1.0.tar.gz
  Preparing metadata (pyproject.toml): started
  Preparing metadata (pyproject.toml): finished with status 'error'
  error: subprocess-exited-with-error

  × Preparing metadata (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [18 lines of output]
      Traceback (most recent call last):
        File "/work/main/.venv/lib/python3.11/site-packages/pip/_vendor/pyproject_hooks/_in_process/_in_process.py", \
line 406, in <module>
          main()
        File "/work/main/.venv/lib/python3.11/site-packages/pip/_vendor/pyproject_hooks/_in_process/_in_process.py", \
line 381, in main
          json_out["return_val"] = hook(**hook_input["kwargs"])
                                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^
        File "/work/main/.venv/lib/python3.11/site-packages/setuptools/build_meta.py", line 484, in run_setup
          self).run_setup(setup_script=setup_script)
                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
        File "/work/main/.venv/lib/python3.11/site-packages/setuptools/build_meta.py", line 335, in run_setup
          exec(code, locals())
        File "<string>", line 1, in <module>
      ModuleNotFoundError: No module named 'numpy_not_here'
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
error: metadata-generation-failed

× Encountered error while generating package metadata.
╰─> badsetup

note: This is an issue with the package mentioned above, not pip.
hint: See above for details.
"""

COMPILER_FAILS = """\
Processing ./links/cext-1.0.tar.gz
  Building wheel for cext (pyproject.toml): started
  Building wheel for cext (pyproject.toml): finished with status 'error'
Failed to build cext
  error: subprocess-exited-with-error

  × Building wheel for cext (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [10 lines of output]
      running bdist_wheel
      running build
      running build_ext
      building 'cext' extension
      gcc -Wsign-compare -DNDEBUG -g -fwrapv -O3 -Wall -fPIC -I/work/main/.venv/include \
-I/root/.pyenv/versions/3.11.7/include/python3.11 -c cext.c -o build/temp.linux-x86_64-cpython-311/cext.o
      cext.c:1:10: fatal error: ffi_not_here.h: No such file or directory
          1 | #include <ffi_not_here.h>
            |          ^~~~~~~~~~~~~~~~
      compilation terminated.
      error: Command '['gcc', '-Wsign-compare', '-DNDEBUG', '-g', '-fwrapv', '-O3', '-Wall', '-fPIC', \
'-I/work/main/.venv/include', '-I/root/.pyenv/versions/3.11.7/include/python3.11', '-c', 'cext.c', '-o', \
'build/temp.linux-x86_64-cpython-311/cext.o']' returned non-zero exit status 1.
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
  ERROR: Failed building wheel for cext
ERROR: Failed to build one or more wheels
"""

BUILD_DEPENDENCIES_FAIL = """\
Looking in links: links
Processing ./links/badsetup-1.0.tar.gz
  Installing build dependencies: started
  Installing build dependencies: finished with status 'error'
  error: subprocess-exited-with-error

  × installing build dependencies for badsetup did not run successfully.
  │ exit code: 1
  ╰─> [3 lines of output]
      Looking in links: /opt/wheels, links
      ERROR: Could not find a version that satisfies the requirement setuptools>=40.8.0 (from versions: none)
      ERROR: No matching distribution found for setuptools>=40.8.0
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
ERROR: Failed to build 'badsetup' when installing build dependencies for badsetup
"""

NOT_FOUND = "No matching distribution found for foo==9 (from versions: none)"


@pytest.mark.parametrize("output,line", [
    (DEAD_INDEX, NOT_FOUND),
    (NO_INDEX, NOT_FOUND),
    (DEAD_INDEX_RETRIED, NOT_FOUND + " (the index did not answer: Connection refused)"),
    (UNRESOLVABLE_HOST, NOT_FOUND + " (the index did not answer: Name or service not known)"),
    (PLAIN_HTTP_INDEX, NOT_FOUND + " (pip ignored the index at nonexistent.invalid: plain HTTP; trust it with "
                                   "PIP_TRUSTED_HOST)"),
    (OTHER_VERSIONS, ("No matching distribution found for numpy==0.0.1 (from versions: 1.26.4, 2.0.2, 2.2.6, 2.3.5, "
                     "2.4.6)")),
    (CONFLICT, ("Cannot install aaa==1 and bbb==2 because these package versions have conflicting dependencies: "
               "aaa 1 depends on ccc==1; bbb 2 depends on ccc==2")),
    (SETUP_PY_FAILS, "ModuleNotFoundError: No module named 'numpy_not_here'"),
    (COMPILER_FAILS, "cext.c:1:10: fatal error: ffi_not_here.h: No such file or directory"),
    (BUILD_DEPENDENCIES_FAIL, "No matching distribution found for setuptools>=40.8.0 (from versions: none)"),
], ids=["dead-index", "no-index", "dead-index-retried", "unresolvable-host", "plain-http", "other-versions",
        "conflict", "setup-py", "compiler", "build-dependencies"])
def test_decisive_line_of_real_pip_failures(output, line):
    assert decisive_line(output) == line


def test_pip_before_21_3_frames_output_with_dashes():
    old = ("    ERROR: Command errored out with exit status 1:\n"
           "     command: /usr/bin/python3.6 -c 'import sys, setuptools'\n"
           "    Complete output (3 lines):\n"
           "    Traceback (most recent call last):\n"
           '      File "<string>", line 1, in <module>\n'
           "    ImportError: No module named numpy\n"
           "    ----------------------------------------\n"
           "ERROR: Command errored out with exit status 1: python setup.py egg_info Check the logs for full command "
           "output.\n")
    assert decisive_line(old) == "ImportError: No module named numpy"


def test_a_long_version_list_keeps_its_ends():
    versions = ", ".join(f"1.{minor}" for minor in range(40))
    output = (f"ERROR: Could not find a version that satisfies the requirement six==9 (from versions: {versions})\n"
              "ERROR: No matching distribution found for six==9\n")
    assert decisive_line(output) == "No matching distribution found for six==9 (from versions: 1.0, 1.1, ..., 1.37, " \
                                    "1.38, 1.39)"


def test_a_traceback_gives_its_exception_and_a_bare_exit_its_message():
    smoke = ("Traceback (most recent call last):\n  File \"/var/task/smoke.py\", line 8, in <module>\n"
             "    importlib.import_module(name)\n"
             "ImportError: libGL.so.1: cannot open shared object file: No such file or directory\n")
    assert decisive_line(smoke) == "ImportError: libGL.so.1: cannot open shared object file: No such file or directory"
    assert decisive_line("six was imported from /usr/lib/python3/dist-packages/six.py, not from the layer\n") == \
        "six was imported from /usr/lib/python3/dist-packages/six.py, not from the layer"


def test_decisive_line_is_one_bounded_line():
    line = decisive_line("ERROR: " + "x " * 400 + "\n", limit=120)
    assert "\n" not in line and len(line) == 120 and line.endswith("...")
    assert decisive_line("") == "(no output)"
    assert shorten("a\n  b\tc") == "a b c"


# -- the whole output in a log file ------------------------------------------------------------------------------

def test_the_log_goes_under_the_cache_and_the_hint_names_it(own_cache_dir):
    clause = keep_output("resolve-demo/python3.11 x86_64", CONFLICT)
    path = own_cache_dir / "logs" / "resolve-demo_python3.11_x86_64.log"
    assert clause == f"; the full output is in {path}"
    assert path.read_text() == CONFLICT
    assert save_log("again", "short", path.parent) == path.parent / "again.log"


def test_a_log_that_cannot_be_written_is_left_out(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert keep_output("x", "output", blocked / "logs") == ""


class _Pip:
    """A runner whose pip answers with ``output`` and fails."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.verbose, self.history = False, []

    def run(self, args, **kwargs) -> Result:
        return Result(tuple(map(str, args)), 1, "", self.output)


def _recipe(tmp_path: Path, *requirements: str):
    return parse_recipe({"name": "demo", "runtime": "python3.11", "requirements": list(requirements),
                         "smoke": {"imports": ["aaa"]}}, tmp_path / "demo.toml")


def test_a_failed_resolve_is_one_line_naming_the_cause_and_the_log(tmp_path):
    recipe = _recipe(tmp_path, "aaa==1", "bbb==2")
    backend = PipBackend(_Pip(CONFLICT), tmp_path / "cache")
    with pytest.raises(ResolveError) as caught:
        backend.resolve(recipe, Target(recipe.runtime_info, "x86_64"), tmp_path / "work")
    error = caught.value
    assert "\n" not in error.message and "\n" not in error.hint
    assert error.message.startswith("pip could not resolve demo for python3.11")
    assert error.message.endswith("conflicting dependencies: aaa 1 depends on ccc==1; bbb 2 depends on ccc==2")
    assert error.hint.startswith(f"check the pins in {tmp_path / 'demo.toml'}: requirements; the full output is in ")
    assert "ResolutionImpossible" not in error.message
    log = tmp_path / "cache" / "logs" / "resolve-demo-python3.11-x86_64.log"
    assert str(log) in error.hint and "ResolutionImpossible" in log.read_text()


def test_no_release_anywhere_says_why_on_one_line(tmp_path):
    recipe = _recipe(tmp_path, "foo==9")
    backend = PipBackend(_Pip(DEAD_INDEX_RETRIED), tmp_path / "cache")
    with pytest.raises(ResolveError) as caught:
        backend.resolve(recipe, Target(recipe.runtime_info, "x86_64"), tmp_path / "work")
    error = caught.value
    assert error.message.endswith(f"and no source distribution either: {NOT_FOUND} (the index did not answer: "
                                  "Connection refused)")
    assert "\n" not in error.message
    assert error.hint.startswith(f"relax the pin of foo==9 in {tmp_path / 'demo.toml'}: requirements; ")
