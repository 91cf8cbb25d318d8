"""builder.picture's pages: self-contained, every input escaped, the data exact, written whole or not at all.

The browser's view of the same pages (drawn, offline, no console error) is
tests/functional/test_treemap.py's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from builder.compare import compare_zips
from builder.errors import LayerError, UsageError
from builder.picture import MAX_PAGE_BYTES, check_out, diff_page, layer_page, plan_page, write_page
from builder.picture.layout import HEIGHT, WIDTH
from builder.picture.tree import strip_ledger
from builder.plan import Item, plan_budget

SCRIPT = "<script>alert(1)</script>"
BREAK = "</script><script>alert(2)</script>"
IMAGE = '"><img src=x onerror=alert(3)>'
OPEN = "<script>alert(4)"  # a zip name's parts hold no "/": this is what a file name can carry


class Page(HTMLParser):
    """A page's elements, text, scripts and its JSON data block."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self._script: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        else:
            self.text.append(data)

    @property
    def data(self) -> dict:
        (text,) = [t for a, t in self.scripts if a.get("id") == "data"]
        return json.loads(text)


def assert_self_contained(text: str) -> Page:
    """Nothing to fetch: no URL anywhere, no attribute that loads, a policy that forbids it, only our script."""
    assert not re.search(r"[a-zA-Z][a-zA-Z0-9+.-]*://", text), re.search(r".{40}://.{40}", text)
    page = Page(text)
    loads = [(tag, name) for tag, attrs in page.elements for name in attrs
             if name in ("src", "srcset", "href", "data", "poster", "action", "formaction", "background")
             or name.startswith("on")]
    assert loads == []
    assert {tag for tag, _ in page.elements}.isdisjoint({"img", "link", "iframe", "object", "embed", "base", "form",
                                                        "video", "audio", "source", "image", "use", "foreignobject"})
    assert "url(" not in text and "@import" not in text
    (policy,) = [a["content"] for tag, a in page.elements if tag == "meta" and a.get("http-equiv")
                 == "Content-Security-Policy"]
    assert policy.startswith("default-src 'none'")
    code = [t for a, t in page.scripts if "type" not in a]
    assert len(code) <= 1 and all(a.get("type") == "application/json" for a, _ in page.scripts if "type" in a)
    if code:
        digest = base64.b64encode(hashlib.sha256(code[0].encode()).digest()).decode()
        assert f"script-src 'sha256-{digest}'" in policy and "unsafe-inline'" not in policy.split("script-src")[1]
    return page


def hostile_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("python/tensorflow/_pywrap.so", b"\x7fELF" + b"x" * 60_000)
        archive.writestr("python/tensorflow/__init__.py", b"import os\n" * 500)
        archive.writestr(f"python/{OPEN}/x.py", b"y" * 3000)
        archive.writestr(f"python/evil/{OPEN}.py", b"z" * 2000)
        archive.writestr(f"python/{IMAGE}", b"w" * 1000)
        archive.writestr("python/http:/evil.example/x", b"v" * 10)
    return path


def hostile_report(zip_path: Path) -> dict:
    installed = {"tensorflow/_pywrap.so": 90_000, "tensorflow/__init__.py": 5000, f"{OPEN}/x.py": 3000,
                 f"evil/{OPEN}.py": 2000, IMAGE: 1000, "tensorflow/include/a.h": 7000, "http:/evil.example/x": 10}
    taken = {"tensorflow/_pywrap.so": [(f"debug{SCRIPT}", 29_996)], "tensorflow/include/a.h": [("headers", 7000)]}
    return {"recipe": SCRIPT, "runtime": IMAGE, "architecture": "x86_64", "built_at": BREAK, "builder_version": "1",
            "budget": {"unzipped_bytes": 1, "reserve_bytes": 10 << 20},
            "zip": {"zipped_bytes": zip_path.stat().st_size},
            "verification": {"verified": True, "how": IMAGE, "load_check": {"status": "passed", "how": BREAK}},
            "strip": {"bytes_removed": 36_996, "rules": [
                {"rule": f"debug{SCRIPT}", "description": IMAGE, "files": 1, "bytes": 29_996},
                {"rule": "headers", "description": BREAK, "files": 1, "bytes": 7000}]},
            "tree_before": strip_ledger(installed, taken)}


def test_a_layer_page_escapes_every_name_and_value_and_loads_nothing(tmp_path):
    zip_path = hostile_zip(tmp_path / "evil.zip")
    text = layer_page(zip_path, hostile_report(zip_path))
    page = assert_self_contained(text)
    assert SCRIPT not in text and BREAK not in text and IMAGE not in text and OPEN not in text  # only escaped
    shown = " ".join(page.text)
    assert SCRIPT in shown and IMAGE in shown and BREAK in shown  # as text, to read
    assert len([a for a, _ in page.scripts]) == 2  # the data and the page's own script: no injected one
    names = [node["n"] for node in _walk(page.data["panels"]["after"]["tree"])]
    assert OPEN in names and f"{OPEN}.py" in names and IMAGE in names  # the data holds the names as they are
    assert f"debug{SCRIPT}: {IMAGE}" in page.data["panels"]["before"]["labels"].values()
    before = page.data["panels"]["before"]
    assert before["tree"]["b"] == 108_010 and before["colors"][f"debug{SCRIPT}"].startswith("#")
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for p in page.data["panels"].values() for c in p["colors"].values())


def _walk(node):
    yield node
    for child in node.get("c", ()):
        yield from _walk(child)


def test_the_data_is_the_zips_bytes_and_every_box_its_share(tmp_path):
    zip_path = hostile_zip(tmp_path / "evil.zip")
    page = Page(layer_page(zip_path, hostile_report(zip_path)))
    tree = page.data["panels"]["after"]["tree"]
    with zipfile.ZipFile(zip_path) as archive:
        sizes = {i.filename: i.file_size for i in archive.infolist()}
    assert tree["b"] == sum(sizes.values()) and tree["f"] == len(sizes)
    packages = {child["n"]: child for child in tree["c"]}
    assert packages["tensorflow"]["b"] == sum(s for n, s in sizes.items() if n.startswith("python/tensorflow/"))
    for node in _walk(tree):
        for child in node.get("c", ()):
            if "v" in child:
                area = child["v"][2] * child["v"][3]
                assert area == pytest.approx(WIDTH * HEIGHT * child["b"] / node["b"], rel=1e-3, abs=2.0)


def test_a_report_without_a_tree_before_says_so(tmp_path):
    zip_path = hostile_zip(tmp_path / "evil.zip")
    report = hostile_report(zip_path)
    del report["tree_before"]
    page = Page(layer_page(zip_path, report))
    assert "before" not in page.data["panels"] and "rebuild the layer to see it" in " ".join(page.text)
    report["tree_before"] = {"entries": [["a", "kept"]]}
    with pytest.raises(UsageError, match="tree_before"):
        layer_page(zip_path, report)


def test_a_layer_of_twenty_thousand_files_stays_under_2_mb(tmp_path):
    path = tmp_path / "big.zip"
    installed = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(20_000):
            name = f"pkg{i % 13}/sub{i % 211}/deeper{i % 7}/module_with_a_long_name_{i}.py"
            archive.writestr(f"python/{name}", b"x" * (i % 500 + 1))
            installed[name] = i % 500 + 1
            installed[name + ".orig"] = i % 300 + 1
    report = {"recipe": "big", "tree_before": strip_ledger(installed, {
        p: [("tests", s)] for p, s in installed.items() if p.endswith(".orig")})}
    text = layer_page(path, report)
    assert len(text.encode()) <= MAX_PAGE_BYTES, len(text)
    data = Page(text).data
    assert data["panels"]["after"]["tree"]["f"] == 20_000 and data["panels"]["before"]["tree"]["f"] == 40_000
    assert len(json.dumps(report["tree_before"])) < 200_000  # what the build report carries for it


def test_a_diff_page_colours_what_grew_shrank_appeared_and_went_with_the_reasons(tmp_path):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    with zipfile.ZipFile(a, "w") as archive:
        for name, size in (("same.py", 100), ("grows.so", 1000), ("shrinks.so", 3000), ("goes.py", 500),
                           ("pkg-1.0.dist-info/METADATA", 50)):
            archive.writestr(f"python/{name}", b"\x7fELF" + b"a" * size)
    with zipfile.ZipFile(b, "w") as archive:
        for name, size in (("same.py", 100), ("grows.so", 4000), ("shrinks.so", 1000), (f"{OPEN}.py", 700),
                           ("pkg-2.0.dist-info/METADATA", 50)):
            archive.writestr(f"python/{name}", b"\x7fELF" + b"a" * size)
    comparison = compare_zips(a, b)
    text = diff_page(a, b, comparison)
    page = assert_self_contained(text)
    first = {n["n"]: n for n in _walk(page.data["panels"]["first"]["tree"])}
    second = {n["n"]: n for n in _walk(page.data["panels"]["second"]["tree"])}
    assert first["same.py"]["k"] == second["same.py"]["k"] == "same"
    assert first["goes.py"]["k"] == "went" and second[f"{OPEN}.py"]["k"] == "appeared"
    assert first["grows.so"]["k"] == second["grows.so"]["k"] == "grew"
    assert first["shrinks.so"]["k"] == second["shrinks.so"]["k"] == "shrank"
    assert "shared object: stripped by another binutils" in second["grows.so"]["d"]
    assert "pkg 1.0 here, 2.0 in the other build" in first["METADATA"]["d"]
    shown = " ".join(page.text)
    assert f"python/{OPEN}.py" in shown and "only in second" in shown and OPEN not in text


def test_a_plan_page_holds_every_layer_model_and_the_function_in_its_bars(tmp_path):
    plan = plan_budget(3_000_000, [Item("tf18", 217_201_622, "build report"),
                                   Item(SCRIPT, 39_024_813, "x", tmp_bytes=212_170_463)],
                       [Item(f"model{IMAGE}", 100_000_000, "given")])
    text = plan_page(plan)
    page = assert_self_contained(text)
    assert page.scripts == []  # bars only: nothing to run
    segments = [a["title"] for tag, a in page.elements if tag == "span" and "seg" in a.get("class", "")]
    for name, size in (("function code", 3_000_000), ("layer tf18", 217_201_622), (f"layer {SCRIPT}", 39_024_813),
                       (f"model model{IMAGE}", 100_000_000), (f"layer {SCRIPT} unpacked", 212_170_463)):
        assert f"{name}: {size:,} bytes" in " ".join(segments), name
    shown = " ".join(page.text)
    assert "over by" in shown  # 250 MB: 359 MB of function, layers and model
    assert f"recommended: {plan.recommended.title}" in shown and plan.recommended.advice in shown


@pytest.mark.parametrize("make", ["directory", "fifo", "symlink", "device", "no parent"])
def test_an_out_that_is_not_a_file_is_refused_before_any_work(tmp_path, make):
    path = {"directory": tmp_path, "device": Path("/dev/null"), "no parent": tmp_path / "none" / "x.html"}.get(
        make, tmp_path / "x.html")
    if make == "fifo":
        os.mkfifo(path)
    elif make == "symlink":
        path.symlink_to(tmp_path / "elsewhere.html")
    with pytest.raises(UsageError) as caught:
        check_out(path)
    assert caught.value.hint


def test_a_page_is_written_whole_by_rename_with_no_partial_left(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("old")
    check_out(path)
    write_page(path, "<!DOCTYPE html>é")
    assert path.read_text(encoding="utf-8") == "<!DOCTYPE html>é"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]
    assert path.stat().st_mode & 0o644 == 0o644
    # A place under a file cannot be written: refused, and the page beside it is left as it was.
    with pytest.raises(LayerError, match="not a directory"):
        write_page(path / "x.html", "x")
    assert path.read_text(encoding="utf-8") == "<!DOCTYPE html>é"


def test_a_build_refuses_before_any_work_a_picture_it_could_not_deliver(tmp_path):
    from builder.build import BuildOptions, check_outputs, output_names
    from builder.recipe import parse_recipe

    recipe = parse_recipe({"name": "demo", "runtime": "python3.11", "requirements": ["six==1.17.0"],
                           "smoke": {"imports": ["six"]}})
    names = output_names(recipe, "x86_64")
    assert "demo-python3.11-x86_64.html" in names and names[-1].endswith(".lock.json")  # the lock stays last
    (tmp_path / "demo" / "demo-python3.11-x86_64.html").mkdir(parents=True)
    with pytest.raises(UsageError, match="html exists and is not a regular file"):
        check_outputs(recipe, ["x86_64"], BuildOptions(out_dir=tmp_path))
