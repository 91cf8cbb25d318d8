"""Bytecode for the target: compiled by the runtime's own Python version.

Lambda's /opt is read-only, so Python cannot cache bytecode for a layer and
recompiles every imported module at each cold start. Compiling at build time
with an interpreter of the runtime's version avoids that. From 3.7 the .pyc
files are "unchecked-hash" (no source mtime inside, so the zip stays
reproducible); 3.6 has only timestamp pycs, so the tree's mtimes are first set
to the zip's fixed timestamp, which is what the files get when Lambda unpacks
the layer. The compiler runs with a fixed hash seed: set constants are
marshalled in hash order. Tracebacks name /opt/python/..., where the layer runs.

``[strip] docstrings = "empty"`` (with ``bytecode = "only"``) compiles every
module with the docstrings of its functions and classes emptied: TF 1.8's
generated op wrappers are mostly docstring, and this halves its bytecode.
Unlike ``python -OO``, asserts stay, ``__doc__`` is "" rather than None (code
that passes docstrings along, such as NumPy 1.16's ``add_docstring(f,
dispatcher.__doc__)``, needs a str: it copes with None only when the
interpreter itself runs with -OO), and module docstrings stay: TF 1.x's
``remove_undocumented`` keeps only the symbols a module's docstring lists.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildError
from ..runner import Runner
from ..verify.interpreters import Interpreter
from ..verify.output import decisive_line, keep_output

# The zip's fixed timestamp (1980-01-01 00:00:00 UTC) as a Unix time.
FIXED_MTIME = 315532800
LAYER_ROOT = "/opt/python"

_COMPILE = """
import compileall, os, sys

if os.environ.get("LAYERS_HASH_SEED_FIXED") != "1":
    # Set literals compile to frozenset constants, marshalled in hash order:
    # without a fixed seed the same source gives other bytes each run. -I
    # would ignore PYTHONHASHSEED, so run again with it in an otherwise empty
    # environment, which isolates as -I does.
    env = {"PYTHONHASHSEED": "0", "LAYERS_HASH_SEED_FIXED": "1"}
    os.execve(sys.executable, [sys.executable, "-s", "-S", *sys.argv], env)

tree, mode, ddir, docstrings = sys.argv[1:5]


def _is_docstring(statement):
    import ast
    value = statement.value if isinstance(statement, ast.Expr) else None
    if sys.version_info >= (3, 8):
        return isinstance(value, ast.Constant) and isinstance(value.value, str)
    return isinstance(value, ast.Str)


def _with_empty_docstrings(self, data, path, *, _optimize=-1):
    import ast
    module = ast.parse(data, path)
    for node in ast.walk(module):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \\
                and node.body and _is_docstring(node.body[0]):
            empty = ast.Constant("") if sys.version_info >= (3, 8) else ast.Str("")
            node.body[0].value = ast.copy_location(empty, node.body[0].value)
    return compile(module, path, "exec", dont_inherit=True, optimize=_optimize)


if docstrings == "empty":
    # py_compile compiles through the loader's source_to_code (3.6 to 3.13 alike).
    # Patched at module level, so compileall's workers have it whether they are
    # forked (3.6-3.11) or started by a forkserver that re-runs this file (3.12+).
    import importlib.machinery
    importlib.machinery.SourceFileLoader.source_to_code = _with_empty_docstrings

if __name__ == "__main__":  # 3.12+ workers import this file as __mp_main__
    kwargs = dict(quiet=2, legacy=(mode == "only"))
    if sys.version_info >= (3, 7):
        import py_compile
        kwargs["invalidation_mode"] = py_compile.PycInvalidationMode.UNCHECKED_HASH
    if sys.version_info >= (3, 9):
        ok = compileall.compile_dir(tree, maxlevels=1000, ddir=ddir, workers=0, **kwargs)
    else:
        # Before 3.9, compile_dir gives every file the top ddir, so tracebacks
        # would name /opt/python/__init__.py for numpy/__init__.py: one ddir per directory.
        ok = True
        for folder, dirs, names in os.walk(tree):
            dirs.sort()
            relative = os.path.relpath(folder, tree)
            where = ddir if relative == "." else os.path.join(ddir, relative)
            for name in sorted(names):
                if name.endswith(".py"):
                    ok = compileall.compile_file(os.path.join(folder, name), ddir=where, **kwargs) and ok
    sys.exit(0 if ok else 1)
"""


@dataclass(frozen=True)
class BytecodeResult:
    mode: str
    docstrings: str
    compiled: int
    sources_removed: int
    not_compiled: tuple[str, ...]  # sources the target Python cannot compile (kept as source)


def fix_mtimes(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)


def compile_tree(tree: Path, mode: str, interpreter: Interpreter, runner: Runner,
                 tmp: Path | None = None, docstrings: str = "keep", ddir: str = LAYER_ROOT) -> BytecodeResult:
    """``alongside``: __pycache__ next to sources; ``only``: sourceless .pyc in place of .py.

    ``docstrings``: "keep", or "empty" to compile them as "".
    ``tmp``: where to put the compile script, somewhere ``runner``'s commands can read it.
    ``ddir``: where ``tree`` will be on Lambda, the file names tracebacks show.
    """
    fix_mtimes(tree)
    with tempfile.TemporaryDirectory(prefix="layers-compile-", dir=tmp) as scratch:
        script = Path(scratch) / "compile.py"
        script.write_text(_COMPILE)
        result = runner.run(interpreter.argv("-I", "-S", script, tree, mode, ddir, docstrings), timeout=3600)
    output = result.stdout + result.stderr
    if result.returncode not in (0, 1):  # 1: some files did not compile, reported below
        raise BuildError(f"compiling bytecode with python{interpreter.version} failed: {decisive_line(output)}",
                         hint="set bytecode = 'none' in the recipe to ship sources only"
                              + keep_output(f"bytecode-python{interpreter.version}", output))
    sources = sorted(tree.rglob("*.py"))
    tag = f"cpython-{interpreter.version.replace('.', '')}"
    compiled, missing, removed = 0, [], 0
    for source in sources:
        pyc = (source.with_suffix(".pyc") if mode == "only"
               else source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc")
        if pyc.exists():
            compiled += 1
            if mode == "only":
                source.unlink()
                removed += 1
        else:
            missing.append(source.relative_to(tree).as_posix())
    if sources and not compiled:  # e.g. the compiler's worker pool died: not "some files did not compile"
        raise BuildError(f"python{interpreter.version} compiled none of {len(sources)} modules: "
                         f"{decisive_line(output)}",
                         hint="set bytecode = 'none' in the recipe to ship sources only"
                              + keep_output(f"bytecode-python{interpreter.version}", output))
    return BytecodeResult(mode, docstrings, compiled, removed, tuple(missing))
