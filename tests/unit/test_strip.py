"""Strip rules on small synthetic trees laid out like installed wheels."""

import importlib.metadata
from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.recipe import StripSettings
from builder.strip.imports import ImportIndex, imported_by_source, unimported
from builder.strip.rules import Distribution, StripContext, installed_distributions, matches_any, plan_drop, strip_tree


def make_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def dist(name: str, version: str, requires=(), files=()) -> dict[str, str]:
    info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    metadata += "\n" + "A long description. " * 200
    record = "".join(f"{f},,\n" for f in [*files, f"{info}/METADATA", f"{info}/RECORD"])
    return {f"{info}/METADATA": metadata, f"{info}/RECORD": record, f"{info}/WHEEL": "Wheel-Version: 1.0\n",
            f"{info}/INSTALLER": "pip\n", f"{info}/LICENSE.txt": "BSD\n"}


def run(tree: Path, profile="standard", remove=(), keep=(), drop=(), roots=("app",), skip=("debug-symbols",)):
    from builder.strip import rules as strip

    rules = tuple(r for r in strip.PROFILES[profile] if r not in skip)
    settings = StripSettings(profile=profile, remove=tuple(remove), keep=tuple(keep), drop=tuple(drop), docstrings="keep")
    ctx = StripContext(tree, settings, "3.11", "x86_64", tuple(roots))
    original = strip.PROFILES[profile]
    strip.PROFILES[profile] = rules
    try:
        report = strip_tree(ctx)
    finally:
        strip.PROFILES[profile] = original
    return {r.rule: r for r in report.rules}


# -- imports ------------------------------------------------------------------
def test_imports_are_read_absolute_relative_and_lazy():
    source = (
        "import os, numpy.linalg as la\nfrom . import tests\nfrom .testing import (assert_equal,\n    run)\n"
        "from ..core import example\nloader = LazyLoader('contrib', globals(), 'tensorflow.contrib')\n"
    )
    names = imported_by_source(source, "pkg.sub.mod", is_package=False)
    assert {"os", "numpy.linalg", "pkg.sub.tests", "pkg.sub.testing.run", "pkg.core.example",
            "tensorflow.contrib"} <= names


def test_package_init_resolves_relative_imports_from_itself():
    assert "numpy.testing" in imported_by_source("from .testing import Tester\n", "numpy", is_package=True)


def test_test_suites_that_import_each_other_go_together(tmp_path):
    tree = make_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/tests/__init__.py": "from pkg.other.tests import helper\n",
        "pkg/other/__init__.py": "",
        "pkg/other/tests/__init__.py": "from pkg.tests import x\n",
    })
    removable, kept = unimported([Path("pkg/tests"), Path("pkg/other/tests")], ImportIndex.scan(tree))
    assert removable == {Path("pkg/tests"), Path("pkg/other/tests")} and not kept


# -- rules --------------------------------------------------------------------
def test_test_dirs_removed_unless_imported(tmp_path):
    tree = make_tree(tmp_path, {
        "numpy/__init__.py": "from .testing import Tester\n",
        "numpy/testing/__init__.py": "Tester = 1\n",
        "numpy/core/tests/test_a.py": "import numpy.testing\n" + "x = 1\n" * 100,
        "tensorflow/python/platform/test.py": "from tensorflow.python.framework import test_util\n",
        "tensorflow/python/framework/test_util.py": "x = 1\n",
        "tensorflow/python/framework/ops_test.py": "y = 2\n",
        "tensorflow/_api/v1/__init__.py": "from tensorflow._api.v1 import test\n",
        "tensorflow/_api/v1/test/__init__.py": "",
        "pkg/__init__.py": "",
        "pkg/conftest.py": "import pytest\n",
    })
    results = run(tree)
    assert (tree / "numpy/testing/__init__.py").exists()
    assert (tree / "tensorflow/python/framework/test_util.py").exists()
    assert (tree / "tensorflow/_api/v1/test/__init__.py").exists()
    assert not (tree / "numpy/core/tests").exists()
    assert not (tree / "tensorflow/python/framework/ops_test.py").exists()
    assert not (tree / "pkg/conftest.py").exists()
    rule = results["tests"]
    assert rule.files == 3
    assert rule.bytes == len("import numpy.testing\n" + "x = 1\n" * 100) + len("y = 2\n") + len("import pytest\n")
    assert any("numpy/testing" in note and "numpy/__init__.py" in note for note in rule.notes)


def test_docs_and_examples_that_are_code_stay(tmp_path):
    tree = make_tree(tmp_path, {
        "tensorflow/core/example/__init__.py": "",
        "tensorflow/core/example/example_pb2.py": "",
        "tensorflow/python/training.py": "from tensorflow.core.example import example_pb2\n",
        "numpy/doc/__init__.py": "'''docs'''\n",
        "docs/autogen.py": "print('docs')\n",
    })
    run(tree)
    assert (tree / "tensorflow/core/example/example_pb2.py").exists()
    assert not (tree / "numpy/doc").exists() and not (tree / "docs").exists()


def test_installer_bytecode_but_not_sourceless_modules(tmp_path):
    tree = make_tree(tmp_path, {
        "pkg/__init__.py": "", "pkg/__pycache__/__init__.cpython-311.pyc": b"x" * 10,
        "pkg/mod.py": "", "pkg/mod.pyc": b"y" * 5, "pkg/sourceless.pyc": b"z" * 7,
    })
    result = run(tree)["installer-bytecode"]
    assert (result.files, result.bytes) == (2, 15)
    assert (tree / "pkg/sourceless.pyc").exists()


def test_headers_and_include_dirs(tmp_path):
    tree = make_tree(tmp_path, {
        "numpy/core/include/numpy/arrayobject.h": "x" * 50,
        "tensorflow/include/Eigen/Core": "x" * 40,  # Eigen's headers have no suffix
        "pkg/include/__init__.py": "",  # a package called include is code
        "pkg/_impl.pyx": "x" * 3, "pkg/_impl.pyi": "x" * 2,
    })
    result = run(tree)["headers"]
    assert result.bytes == 95
    assert (tree / "pkg/include/__init__.py").exists()


def test_recipe_remove_and_keep_globs(tmp_path):
    tree = make_tree(tmp_path, {
        "tensorflow/contrib/a/b.py": "x" * 10, "tensorflow/contrib/keepme.py": "k",
        "tensorflow/python/x.py": "", "scipy/misc/face.dat": "f" * 20,
    })
    result = run(tree, remove=["tensorflow/contrib/**", "scipy/misc", "nothing/**"],
                 keep=["tensorflow/contrib/keepme.py"])["recipe-remove"]
    assert result.bytes == 30
    assert (tree / "tensorflow/contrib/keepme.py").exists() and (tree / "tensorflow/python/x.py").exists()
    assert any("nothing/**" in note for note in result.notes)


@pytest.mark.parametrize("pattern,path,hit", [
    ("tensorflow/contrib/**", "tensorflow/contrib/x/y.py", True),
    ("tensorflow/contrib/**", "tensorflow/contribx/y.py", False),
    ("*.md", "a/b/README.md", True),
    ("scipy/misc", "scipy/misc/face.dat", True),
    ("scipy/misc", "x/scipy/misc/face.dat", False),
    ("**/tests/*.py", "a/b/tests/t.py", True),
])
def test_globs(pattern, path, hit):
    assert matches_any(path, [pattern]) is hit


def test_dist_info_trimmed_but_version_still_readable(tmp_path):
    tree = make_tree(tmp_path, {**dist("app", "1.2.3", files=["app/__init__.py"]), "app/__init__.py": ""})
    result = run(tree)["dist-info"]
    assert result.bytes > 4000  # RECORD, WHEEL, INSTALLER and the long description
    # The same API importlib.metadata.version() uses in the layer.
    found = list(importlib.metadata.distributions(path=[str(tree)]))
    assert [d.version for d in found] == ["1.2.3"]
    assert (tree / "app-1.2.3.dist-info/LICENSE.txt").exists()
    assert not (tree / "app-1.2.3.dist-info/RECORD").exists()


# -- drop ---------------------------------------------------------------------
def test_plan_drop_takes_orphans_but_not_shared_dependencies():
    def d(name, *requires):
        return Distribution(name, Path(name), requires, ())
    dists = {n.name: n for n in [
        d("tensorflow", "tensorboard", "numpy", "protobuf"), d("tensorboard", "markdown", "werkzeug", "numpy", "protobuf"),
        d("markdown"), d("werkzeug"), d("numpy"), d("protobuf"), d("unrelated"),
    ]}
    assert plan_drop(dists, ["tensorflow"], ["tensorboard"]) == ["markdown", "tensorboard", "werkzeug"]


def test_drop_removes_record_files_and_orphans(tmp_path):
    tree = make_tree(tmp_path, {
        **dist("app", "1.0", requires=["big", "shared"], files=["app/__init__.py"]),
        **dist("big", "2.0", requires=["onlybig", "shared"], files=["big/__init__.py", "big/data.bin"]),
        **dist("onlybig", "1.0", files=["onlybig.py"]),
        **dist("shared", "1.0", files=["shared.py"]),
        "app/__init__.py": "", "big/__init__.py": "", "big/data.bin": "d" * 1000, "onlybig.py": "", "shared.py": "",
    })
    result = run(tree, drop=["big"])["drop"]
    assert not (tree / "big").exists() and not (tree / "onlybig.py").exists()
    assert (tree / "shared.py").exists() and (tree / "app/__init__.py").exists()
    assert sorted(installed_distributions(tree, "3.11")) == ["app", "shared"]
    assert result.bytes >= 1000 and "onlybig" in result.notes[0]


def test_dropping_what_is_not_installed_is_a_recipe_error(tmp_path):
    tree = make_tree(tmp_path, {**dist("app", "1.0", files=["app/__init__.py"]), "app/__init__.py": ""})
    with pytest.raises(RecipeError, match="strip.drop: tensorboard is not installed"):
        run(tree, drop=["tensorboard"])


def test_profile_none_removes_nothing(tmp_path):
    tree = make_tree(tmp_path, {"pkg/tests/test_x.py": "x", "pkg/__pycache__/a.pyc": b"p"})
    assert run(tree, profile="none") == {}
    assert (tree / "pkg/tests/test_x.py").exists()
