"""Bytecode compiled by the runtime's Python: reproducible and importable from a read-only tree."""

import hashlib
import subprocess
from pathlib import Path

import pytest

from builder.bytecode import compile_tree
from builder.interpreters import find_interpreter
from builder.runner import Runner

pytestmark = pytest.mark.functional


def tree_with_module(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("from .mod import answer\n")
    (root / "pkg" / "mod.py").write_text("def answer():\n    return 42\n")
    return root


def digest(tree: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(tree.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(tree).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("version", ["3.6", "3.11"])
@pytest.mark.parametrize("mode", ["alongside", "only"])
def test_compile_for_target_is_reproducible_and_imports(tmp_path, version, mode):
    runner = Runner()
    interpreter = find_interpreter(version, runner)
    assert interpreter is not None
    first = compile_tree(tree_with_module(tmp_path / "a"), mode, interpreter, runner)
    compile_tree(tree_with_module(tmp_path / "b"), mode, interpreter, runner)
    assert first.compiled == 2 and not first.not_compiled
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    if mode == "only":
        assert not list((tmp_path / "a").rglob("*.py"))
    tree = tmp_path / "a"
    # Read-only, like /opt on Lambda; -B so nothing is written.
    subprocess.run(["chmod", "-R", "a-w", tree], check=True)
    out = subprocess.run([interpreter.path, "-I", "-S", "-B", "-c",
                          f"import sys; sys.path.insert(0, {str(tree)!r}); import pkg; print(pkg.answer(), pkg.mod.__file__)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("42 ")
    subprocess.run(["chmod", "-R", "u+w", tree], check=True)
