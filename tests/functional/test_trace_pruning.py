"""Trace pruning on small real trees: the real tracer, the runtime's Python, gcc-built shared objects."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.recipe import SmokeTest
from builder.runner import Runner
from builder.strip.trace import Pruner, needs_in_tree
from builder.verify.interpreters import find_interpreter

pytestmark = pytest.mark.functional

FILLER = "# " + "x" * 1000 + "\n"


def write(tree: Path, rel: str, text: str, filler_lines: int = 0) -> None:
    path = tree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + FILLER * filler_lines)


def stack(tree: Path) -> None:
    # app imports core and, only optionally, "extras"; sub is needed outright.
    write(tree, "app/__init__.py", "from . import core\nfrom . import sub\n"
                                   "try:\n    import extras\nexcept ImportError:\n    extras = None\n")
    write(tree, "app/core.py", "def answer():\n    return 42\n")
    write(tree, "app/lazy.py", "LAZY = True\n")  # a sibling nobody imported: its package was touched
    write(tree, "app/setup.py", "raise SystemExit('a build script')\n")
    write(tree, "app/unused/__init__.py", "X = 1\n")  # a package nobody touched
    write(tree, "app/sub/__init__.py", "VALUE = 7\n", filler_lines=20)
    write(tree, "extras/__init__.py", "import json\n", filler_lines=40)
    write(tree, "extras/data.json", "{}\n")
    write(tree, "app-1.0.dist-info/METADATA", "Name: app\n")


# The workload does not touch app.sub's contents: only the import tells a package from an empty directory.
def pruner(tree: Path, tmp_path: Path, code: str = "import app\nassert app.core.answer() == 42\n") -> Pruner:
    runner = Runner()
    interpreter = find_interpreter("3.11", runner)
    assert interpreter is not None
    return Pruner(tree, SmokeTest(imports=("app",), code=code), interpreter, runner, None,
                  tmp_path / "aside", experiment_min_bytes=10_000)


def files(tree: Path) -> set[str]:
    return {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}


def test_keeps_what_the_workload_uses_and_drops_an_optional_package_by_experiment(tmp_path):
    tree = tmp_path / "layer"
    stack(tree)
    report = pruner(tree, tmp_path).run()
    assert report.status == "pruned"
    assert files(tree) == {"app/__init__.py", "app/core.py", "app/lazy.py", "app/sub/__init__.py",
                           "app-1.0.dist-info/METADATA"}
    experiments = {e["drop"]: e["kept"] for e in report.experiments}
    assert experiments["extras"] is True      # imported inside try/except: the workload passes without it
    assert experiments["app/sub"] is False    # imported outright
    # No empty directory is left to pass for a namespace package: without
    # app/sub's files, "from . import sub" must fail, and it did.
    assert not (tree / "app" / "unused").exists() and not (tree / "extras").exists()
    assert report.removed_files == 4  # setup.py, unused/__init__.py, extras/__init__.py, extras/data.json


def test_a_workload_that_fails_on_the_pruned_tree_keeps_the_tree_whole(tmp_path):
    tree = tmp_path / "layer"
    stack(tree)
    before = files(tree)
    # Passes under the tracer (which imports app.lazy), yet needs a file the trace cannot see:
    # it reads app/unused/__init__.py by path only on the second run.
    code = ("import app, os, sys\nmarker = os.path.join(os.path.dirname(app.__file__), 'traced')\n"
            "if os.path.exists(marker):\n    import app.unused\nelse:\n    open(marker, 'w').close()\n")
    report = pruner(tree, tmp_path, code).run()
    assert report.status.startswith("kept unpruned")
    assert files(tree) - {"app/traced"} == before


def test_needed_libraries_resolve_as_the_loader_finds_them(tmp_path):
    """Two bundled copies of one soname (NumPy's and SciPy's libgfortran): each user needs its own."""
    tree = tmp_path / "layer"
    source = tmp_path / "dup.c"
    source.write_text("int dup(void) { return 1; }\n")
    for folder in ("numpy/.libs", "scipy.libs"):
        (tree / folder).mkdir(parents=True)
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", tree / folder / "libdup.so", source], check=True)
    user = tmp_path / "user.c"
    user.write_text("int dup(void);\nint use(void) { return dup(); }\n")
    (tree / "numpy/core").mkdir(parents=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", tree / "numpy/core/_umath.so", user,
                    "-L", tree / "numpy/.libs", "-ldup", "-Wl,-rpath,$ORIGIN/../.libs"], check=True)
    # Beside it, with no RPATH of its own (found through its parent's): the sibling copy.
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", tree / "numpy/.libs/libblas.so", user,
                    "-L", tree / "numpy/.libs", "-ldup"], check=True)
    needs = needs_in_tree(tree)
    assert needs["numpy/core/_umath.so"] == {"numpy/.libs/libdup.so"}
    assert needs["numpy/.libs/libblas.so"] == {"numpy/.libs/libdup.so"}
