"""Bytecode compiled by the runtime's Python: reproducible and importable from a read-only tree."""

import hashlib
import subprocess
from pathlib import Path

import pytest

from builder.runner import Runner
from builder.strip.bytecode import compile_tree
from builder.verify.interpreters import find_interpreter

pytestmark = pytest.mark.functional


def tree_with_module(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("from .mod import answer\n")
    # A set literal in a test compiles to a frozenset constant, marshalled in hash order.
    (root / "pkg" / "mod.py").write_text("def answer(name='a'):\n"
                                         "    return 42 if name in {'a', 'b', 'c', 'd', 'e', 'f', 'g'} else 0\n")
    return root


def digest(tree: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(tree.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(tree).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("version", ["3.6", "3.11", "3.12"])  # 3.12+: compileall's workers use a forkserver
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


DOCUMENTED = '''"""Module docstring."""


class Thing:
    """Class docstring."""

    def method(self):
        """Only a docstring: the body must stay valid."""


def checked(value):
    """Function docstring."""
    assert value > 0, "asserts stay"
    if value == 1:
        raise ValueError("line 15")
    return value
'''


@pytest.mark.parametrize("version", ["3.6", "3.8", "3.12", "3.13"])
def test_docstrings_emptied_asserts_and_line_numbers_kept(tmp_path, version):
    runner = Runner()
    interpreter = find_interpreter(version, runner)
    assert interpreter is not None
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "__init__.py").write_text("")
    (tree / "pkg" / "documented.py").write_text(DOCUMENTED)
    kept = compile_tree(tree, "only", interpreter, runner, docstrings="keep")
    with_docs = (tree / "pkg" / "documented.pyc").stat().st_size
    (tree / "pkg" / "documented.pyc").unlink()
    (tree / "pkg" / "documented.py").write_text(DOCUMENTED)
    result = compile_tree(tree, "only", interpreter, runner, docstrings="empty")
    assert kept.compiled == 2 and result.compiled == 1 and result.docstrings == "empty"
    assert (tree / "pkg" / "documented.pyc").stat().st_size < with_docs
    probe = (
        "import sys, traceback; sys.path.insert(0, sys.argv[1]); from pkg import documented as d\n"
        # "", not None: code that hands docstrings on (NumPy's add_docstring) needs a str.
        "assert d.Thing.__doc__ == d.checked.__doc__ == ''\n"
        # Module docstrings stay: TF 1.x keeps only the symbols they list (remove_undocumented).
        "assert d.__doc__ == 'Module docstring.'\n"
        "assert d.Thing().method() is None\n"
        "try:\n    d.checked(-1)\nexcept AssertionError as e:\n    assert str(e) == 'asserts stay'\n"
        "else:\n    raise SystemExit('the assert was compiled out')\n"
        "try:\n    d.checked(1)\nexcept ValueError:\n    frame = traceback.extract_tb(sys.exc_info()[2])[-1]\n"
        "    print(frame[0], frame[1])\n"
    )
    out = subprocess.run([interpreter.path, "-I", "-S", "-B", "-c", probe, str(tree)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # Tracebacks name the file where Lambda puts it (in its package), at the source's own line.
    assert out.stdout.split() == ["/opt/python/pkg/documented.py", "15"]
