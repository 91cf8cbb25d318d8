"""builder.picture's trees and boxes: what a zip and a report become, condensed, laid out; sizes kept exact."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.picture.layout import HEIGHT, WIDTH, inner_box, lay_out, rectangles
from builder.picture.tree import (
    KEPT,
    MAX_CHILDREN,
    MAX_NODES,
    Item,
    before_items,
    build_tree,
    condense,
    kind_of,
    strip_ledger,
    zip_items,
)


@pytest.mark.parametrize("path, kind", [
    ("numpy/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so", "shared object"),
    ("numpy.libs/libopenblas64_p-r0-0cf96a72.3.23.dev.so", "shared object"),
    ("PIL/.libs/libwebp-db943ca4.so.7.0.3", "shared object"),
    ("six.pyc", "bytecode"), ("a/__pycache__/b.cpython-36.pyc", "bytecode"),
    ("six.py", "source"), ("numpy/core/include/numpy/ndarraytypes.h", "source"),
    ("numpy-2.2.6.dist-info/METADATA", "metadata"), ("foo.egg-info/PKG-INFO", "metadata"),
    ("certifi/cacert.pem", "data"), ("so/notes.txt", "data"), ("a.sonic", "data"),
])
def test_kinds(path, kind):
    assert kind_of(path) == kind


def test_a_tree_sums_every_file_once_and_keeps_a_file_and_a_directory_of_one_name_apart():
    items = [Item("a/x.so", 100, "shared object"), Item("a/y.py", 10, "source"), Item("a", 7, "data"),
             Item("b/c/d/e.pyc", 3, "bytecode")]
    root = build_tree(items)
    assert (root.bytes, root.files) == (120, 4)
    assert root.keys == {"shared object": 100, "source": 10, "data": 7, "bytecode": 3} and root.key == "shared object"
    assert sorted(root.children) == ["a", "a/", "b/"]
    assert root.children["a/"].bytes == 110 and root.children["a"].bytes == 7


def test_a_path_of_thousands_of_parts_is_cut_not_recursed():
    deep = "/".join(["d"] * 5000) + "/f.py"
    root = build_tree([Item(deep, 9, "source")])
    assert root.bytes == 9 and root.count() < 40
    condensed, _ = condense(root)
    assert condensed.bytes == 9


def test_condensing_keeps_every_byte_and_bounds_the_boxes():
    # 12,000 files in 300 directories: one big file, the rest small.
    items = [Item(f"pkg{d % 7}/sub{d}/f{i}.py", 100 + i, "source") for d in range(300) for i in range(40)]
    items.append(Item("big/huge.so", 50_000_000, "shared object"))
    root = build_tree(items)
    condensed, how = condense(root)
    assert condensed.bytes == root.bytes and condensed.files == root.files == 12_001
    assert condensed.count() <= MAX_NODES
    assert all(len(n.children or {}) <= MAX_CHILDREN for n in condensed.walk())
    assert "merged per directory" in how and "12,000 files in 300 boxes" in how
    leaves = [n for n in condensed.walk() if not n.is_dir]
    assert sum(n.bytes for n in leaves) == root.bytes and sum(n.files for n in leaves) == root.files
    assert any(n.name == "huge.so" for n in leaves)  # a big file keeps its own box
    small, _ = condense(build_tree(items[:10]))
    assert small.count() == build_tree(items[:10]).count()


def test_the_ledger_accounts_for_every_installed_byte_within_its_row_limit():
    installed = {f"pkg/tests/t{i}.py": 1000 + i for i in range(3000)}
    installed |= {"pkg/core.so": 9_000_000, "pkg/__init__.py": 500, "pkg-1.0.dist-info/RECORD": 4000,
                  "pkg-1.0.dist-info/METADATA": 9000}
    taken = {f"pkg/tests/t{i}.py": [("tests", 1000 + i)] for i in range(3000)}
    taken |= {"pkg/core.so": [("debug-symbols", 2_000_000)], "pkg-1.0.dist-info/RECORD": [("dist-info", 4000)],
              "pkg-1.0.dist-info/METADATA": [("dist-info", 7000)]}
    ledger = strip_ledger(installed, taken, limit=100)
    assert len(ledger["entries"]) <= 100 and "grouped" in ledger["rows"]
    assert ledger["installed_bytes"] == sum(installed.values()) and ledger["installed_files"] == len(installed)
    by_fate: dict[str, int] = {}
    for _, fate, size, _ in ledger["entries"]:
        by_fate[fate] = by_fate.get(fate, 0) + size
    assert by_fate == {"tests": sum(1000 + i for i in range(3000)), "debug-symbols": 2_000_000,
                       "dist-info": 11_000, KEPT: 7_000_000 + 500 + 2000}
    assert ["pkg/core.so", "debug-symbols", 2_000_000, 1] in ledger["entries"]  # big files keep their own rows
    # Drawn: the installed tree, each file counted once although two rules' rows name it.
    tree = build_tree(before_items({"tree_before": ledger}))
    assert tree.bytes == sum(installed.values()) and tree.files == len(installed)
    core = tree.children["pkg/"].children["core.so"]
    assert core.split and {c.key: c.bytes for c in core.children.values()} == {"debug-symbols": 2_000_000,
                                                                              KEPT: 7_000_000}


def test_a_small_ledger_has_one_row_per_file_and_a_removed_file_is_not_kept():
    ledger = strip_ledger({"a.py": 10, "b/c.so": 20}, {"b/c.so": [("recipe-remove", 20)]})
    assert ledger["entries"] == [["a.py", KEPT, 10, 1], ["b/c.so", "recipe-remove", 20, 1]]


@pytest.mark.parametrize("bad", [
    "x", {"entries": "x"}, {"entries": [["a", "kept", 1]]}, {"entries": [["a", "kept", -1, 1]]},
    {"entries": [["a", "kept", True, 1]]}, {"entries": [[1, "kept", 1, 1]]}, {"entries": [["a", None, 1, 1]]},
    {"entries": [["a", "kept", 1 << 40, 1]]}, {"entries": [["a", "kept", 1, 1]] * 20_000},
])
def test_a_malformed_tree_before_is_refused(bad):
    with pytest.raises(UsageError, match="tree_before"):
        before_items({"tree_before": bad})


def test_a_report_without_a_tree_before_has_none():
    assert before_items({"recipe": "x"}) is None


def _area(box):
    return box[2] * box[3]


def test_boxes_have_the_areas_of_their_bytes_and_fill_their_parent():
    sizes = [5000, 3000, 1200, 700, 99, 1, 0]
    boxes = rectangles(sizes, (0.0, 0.0, WIDTH, HEIGHT))
    assert boxes[-1] is None
    total = sum(sizes)
    for size, box in zip(sizes[:-1], boxes):
        assert _area(box) == pytest.approx(WIDTH * HEIGHT * size / total, rel=1e-9)
        assert 0 <= box[0] <= box[0] + box[2] <= WIDTH + 1e-6 and 0 <= box[1] <= box[1] + box[3] <= HEIGHT + 1e-6
    assert sum(_area(b) for b in boxes if b) == pytest.approx(WIDTH * HEIGHT)


def test_a_directory_of_a_thousand_boxes_is_laid_out_without_recursing_a_thousand_deep():
    boxes = rectangles(sorted(range(1, 1001), reverse=True), (0.0, 0.0, WIDTH, HEIGHT))
    assert all(boxes) and sum(_area(b) for b in boxes) == pytest.approx(WIDTH * HEIGHT)


def test_every_directory_is_laid_out_over_the_view_and_inside_its_box():
    items = [Item("a/x.so", 6000, "shared object"), Item("a/y.py", 2000, "source"), Item("b/z", 1500, "data"),
             Item("c", 500, "data")]
    placed = lay_out(build_tree(items))
    a = next(p for p in placed.children if p.node.name == "a")
    assert _area(a.view) == pytest.approx(WIDTH * HEIGHT * 0.8)
    inner = inner_box(a.view)
    for child in a.children:  # over the whole view when "a" is the one shown, inside a's box in the root's view
        assert _area(child.view) == pytest.approx(WIDTH * HEIGHT * child.node.bytes / 8000)
        assert _area(child.inset) == pytest.approx(_area(inner) * child.node.bytes / 8000)
        assert inner[0] - 1e-6 <= child.inset[0] and child.inset[0] + child.inset[2] <= inner[0] + inner[2] + 1e-6


def test_zip_items_leave_out_python_and_keep_the_declared_sizes(tmp_path: Path):
    path = tmp_path / "layer.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("python/six.py", b"x" * 100)
        archive.writestr("python/pkg/", b"")
        archive.writestr("python/pkg/m.so", b"y" * 50)
    items = zip_items(path)
    assert sorted((i.path, i.bytes, i.key) for i in items) == [("pkg/m.so", 50, "shared object"),
                                                             ("six.py", 100, "source")]
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("lib/libx.so", b"z")
    assert {i.path for i in zip_items(path)} == {"python/six.py", "python/pkg/m.so", "lib/libx.so"}
