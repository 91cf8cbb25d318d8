"""The package's shape: stages as subpackages, imports only down a floor, no circle, a stdlib-only runtime.

Floors, lowest first. A module may import from its own floor or a lower one,
never from a higher one: so a newcomer reads ``builder/`` bottom-up, and a
stage can be tested without the ones above it. The floors follow what each
stage needs, not the order a recipe goes through them: the smoke test and
the interpreter finder (verify) serve the backends and trace pruning too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "builder"
FLOORS = (
    ("errors", "events", "runner", "files"),
    ("recipe", "runtimes", "measure", "archive", "pack", "compare", "plan", "sbom"),
    ("picture",),  # the HTML pages: over the zips, reports, comparisons and plans of the floor below
    ("verify",),
    ("backends",),
    ("strip",),
    ("lockfile", "build", "init"),  # init resolves with the pip backend to read the wheels' import names
    ("publish",),
    ("rebuild",),
    ("cli", "__main__"),
)
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every builder module ``path`` imports, at module level or inside a function."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("builder"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("builder"):
                continue
            for alias in node.names:  # "from . import x" may name a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return {name for name in found if name != "builder"}


def _exists(module: str) -> bool:
    relative = Path(*module.split("."))
    return (ROOT / relative.with_suffix(".py")).is_file() or (ROOT / relative / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def _stage(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def test_every_stage_has_a_floor():
    stages = {_stage(module) for module in _graph()} - {"builder", "runtime"}
    assert stages <= set(FLOOR), f"give these a floor in FLOORS: {sorted(stages - set(FLOOR))}"


def test_no_import_runs_up_a_floor():
    upward = [(module, target) for module, targets in _graph().items() for target in targets
              if _stage(module) in FLOOR and _stage(target) in FLOOR and FLOOR[_stage(target)] > FLOOR[_stage(module)]]
    assert not upward


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            assert visit(start) is None, f"import circle: {' -> '.join(path)}"


def test_the_in_layer_runtime_imports_only_the_standard_library():
    # It runs inside layers, on python3.6 and later, with only the stdlib there, and the boto3
    # that every Lambda Python runtime provides (imported when first needed).
    # The unpacker's zstd decoder: the zstandard wheel shipped beside it, or the stdlib's own from Python 3.14.
    # layer_runtime: the package's own name inside the layer.
    allowed = set(sys.stdlib_module_names) | {"boto3", "botocore", "zstandard", "compression", "layer_runtime"}
    for path in (PACKAGE / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path.name} imports from builder"


def test_the_checks_see_real_imports():
    # Guards the checks above against passing on an empty graph.
    graph = _graph()
    assert "builder.verify.elf" in graph["builder.strip.symbols"]
    assert "builder.publish.plan" in graph["builder.publish.executor"]
    assert "builder.cli.app" in graph["builder.cli.build"]
