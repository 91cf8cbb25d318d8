"""The pictures of real builds, drawn by a real browser: where the megabytes go.

Every build writes ``RECIPE-RUNTIME-ARCH.html`` beside its report; ``layers
report --html``, ``layers diff --html`` and ``layers plan --html`` write
theirs. Here Debian's headless Chromium opens each from a network namespace
with no network (``unshare -n``): the page's script must run to its end
(``data-render="ok"``) with no console message, its screenshot must not be
blank, and the biggest package's name must be drawn where the screenshot
shows text. A page must also send no request when it could (through a local
recording proxy; a control page shows the recorder sees requests). The
numbers in each page's data are checked against the zip itself (zipfile's
sizes; a packed layer's archive read with tarfile), and its boxes' areas
against the bytes.

Quick tier: small real builds (six and idna, plain and packed). Slow tier:
tf18, np311 and tf18-packed as ``make layer`` builds them (reused from this
session's earlier tests when they built them already). With
``LAYERS_WRITE_SCREENSHOT=docs/treemap-tf18.png`` the tf18 screenshot is
kept there, for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from builder.backends.pip import PipBackend
from builder.build import BuildOptions, build
from builder.picture import MAX_PAGE_BYTES
from builder.picture.layout import HEIGHT, WIDTH
from builder.recipe import parse_recipe
from builder.runner import Runner
from tests.conftest import ROOT

pytestmark = pytest.mark.functional
CHROMIUM = shutil.which("chromium")
STARTED = time.time()  # this module is collected before any test runs: outputs newer than this are this run's
WINDOW = (1400, 900)
QUIET = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
CHROMIUM_SERVICES = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")


# --- the browser --------------------------------------------------------------


def chromium(tmp: Path, *args: str, offline: bool = True) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is not installed (apt-get install chromium; .ci/run installs it)"
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)  # a new profile each time
    command = [CHROMIUM, *QUIET, f"--user-data-dir={profile}", *args]
    # offline: a network namespace of its own, not even loopback up, so nothing can be reached.
    return subprocess.run(["unshare", "-n", "--", *command] if offline else command, capture_output=True, text=True,
                          timeout=180, check=False)


def console_lines(stderr: str) -> list[str]:
    """The console messages in Chromium's log, but those of its own pages (chrome://), which are not the page's."""
    return [line for line in stderr.splitlines()
            if (":CONSOLE" in line or "Uncaught" in line) and "source: chrome://" not in line]


class Dom(HTMLParser):
    """What a test reads of the drawn page: each panel's top boxes (rect, bytes, name, aria-label) and labels."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.body: dict = {}
        self.boxes: dict[str, list[dict]] = {}
        self.labels: list[dict] = []
        self._panel: str | None = None
        self._depth = 0            # <g> nesting inside the panel's svg
        self._box: dict | None = None
        self._label: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "div" and "panel" in (attrs.get("class") or "").split() and attrs.get("data-tree"):
            self._panel = attrs["data-tree"]
            self.boxes[self._panel] = []
        elif tag == "g" and self._panel:
            self._depth += 1
            if self._depth == 1:
                self._box = {**attrs, "panel": self._panel, "rect": None}
                self.boxes[self._panel].append(self._box)
        elif tag == "rect" and self._box is not None and self._box["rect"] is None:
            self._box["rect"] = tuple(float(attrs[k]) for k in ("x", "y", "width", "height"))
        elif tag == "text" and "label" in (attrs.get("class") or "").split():
            self._label = {**attrs, "text": "", "box_name": self._box.get("data-name") if self._box else None,
                           "panel": self._panel}
            self.labels.append(self._label)

    def handle_endtag(self, tag):
        if tag == "g" and self._panel:
            self._depth -= 1
            if not self._depth:
                self._box = None
        elif tag == "svg":
            self._panel = None
        elif tag == "text":
            self._label = None

    def handle_data(self, data):
        if self._label is not None:
            self._label["text"] += data


def page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    start = text.index('<script type="application/json" id="data">') + len('<script type="application/json" id="data">')
    return json.loads(text[start:text.index("</script>", start)])


def render(page: Path, tmp: Path, scripted: bool = True, view: str = "") -> tuple[Dom, Image.Image]:
    """The page drawn offline: its DOM once the script ran, and a screenshot; no console message either time.

    ``view``: the address's fragment, PANEL/DIR/...: the page opens zoomed there.
    """
    size = f"--window-size={WINDOW[0]},{WINDOW[1]}"  # the DOM's label boxes are then the screenshot's pixels
    url = page.as_uri() + (f"#{view}" if view else "")
    dom = chromium(tmp, size, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_lines(dom.stderr) == []
    parsed = Dom(dom.stdout)
    assert parsed.body.get("data-render") == ("ok" if scripted else None), parsed.body
    shot = tmp / f"{page.stem}.png"
    result = chromium(tmp, f"--screenshot={shot}", size, url)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    assert console_lines(result.stderr) == []
    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    return parsed, image


def assert_not_blank(image: Image.Image, ink: float = 0.3) -> dict:
    """At least ``ink`` of the screenshot is not white, in more than 50 colours; the colours, counted."""
    colours = image.getcolors(maxcolors=1 << 20)
    white = sum(count for count, rgb in colours if min(rgb) >= 245)
    assert len(colours) > 50 and white < (1 - ink) * image.size[0] * image.size[1], (len(colours), white)
    return {rgb: count for count, rgb in colours}


def assert_name_is_drawn(dom: Dom, image: Image.Image, name: str, panel: str = "after") -> dict:
    """``name``'s box is in the DOM with a label that fits it, on screen, where the screenshot shows dark text."""
    (box,) = [b for b in dom.boxes[panel] if b.get("data-name") == name]
    (label,) = [lb for lb in dom.labels if lb["panel"] == panel and lb["box_name"] == name and lb["text"] == name]
    x, y, w, h = (float(v) for v in label["data-box"].split(","))
    assert w >= 4 * len(name) and h >= 9 and x >= 0 and y >= 0 and x + w <= WINDOW[0] and y + h <= WINDOW[1], label
    crop = image.crop((int(x), int(y), int(x + w) + 1, int(y + h) + 1))
    dark = sum(count for count, rgb in crop.getcolors(maxcolors=1 << 16) if sum(rgb) < 200)
    assert dark >= 2 * len(name), (name, dark)  # glyphs, not an empty box
    return box


def assert_boxes_have_their_bytes(dom: Dom, data: dict, panel: str = "after") -> None:
    """The drawn boxes of the first view: each one's area is its share of the panel, as its bytes are of the tree."""
    total = data["panels"][panel]["tree"]["b"]
    boxes = [b for b in dom.boxes[panel] if b["rect"]]
    assert boxes
    for box in boxes:
        _, _, w, h = box["rect"]
        assert w * h == pytest.approx(WIDTH * HEIGHT * int(box["data-bytes"]) / total, rel=1e-3, abs=1.0), box
    assert sum(b["rect"][2] * b["rect"][3] for b in boxes) == pytest.approx(WIDTH * HEIGHT, rel=1e-3) or \
        sum(int(b["data-bytes"]) for b in boxes) < total  # empty files have no box


# --- the numbers ----------------------------------------------------------------


def zip_sizes(zip_path: Path) -> dict[str, int]:
    with zipfile.ZipFile(zip_path) as archive:
        return {i.filename: i.file_size for i in archive.infolist() if not i.is_dir()}


def archive_sizes(zip_path: Path) -> dict[str, int]:
    """A packed layer's archive, read here with tarfile (and zstandard): its regular files."""
    import zstandard

    with zipfile.ZipFile(zip_path) as archive:
        (name,) = [n for n in archive.namelist() if n.startswith("python/layer_runtime/packed.tar.")]
        with archive.open(name) as raw:
            if name.endswith(".gz"):
                with tarfile.open(fileobj=raw, mode="r|gz") as tar:
                    return {m.name: m.size for m in tar if m.isfile()}
            with zstandard.ZstdDecompressor().stream_reader(raw) as stream, \
                    tarfile.open(fileobj=stream, mode="r|") as tar:
                return {m.name: m.size for m in tar if m.isfile()}


def assert_data_is_the_layer(zip_path: Path, page: Path, report: dict) -> dict:
    """The page's trees against the zip (or its archive) and the report, byte for byte."""
    assert page.stat().st_size <= MAX_PAGE_BYTES
    data = page_data(page)
    tree = data["panels"]["after"]["tree"]
    if report.get("pack"):
        files = archive_sizes(zip_path)
        assert tree["b"] == report["pack"]["unpacked_bytes"]
        top = {}
        for name, size in files.items():
            top[name.split("/")[0]] = top.get(name.split("/")[0], 0) + size
    else:
        files = zip_sizes(zip_path)
        assert tree["b"] == report["zip"]["unzipped_bytes"]
        top = {}
        for name, size in files.items():
            part = name.split("/")[1]
            top[part] = top.get(part, 0) + size
    assert tree["b"] == sum(files.values()) and tree["f"] == len(files)
    merged = [c for c in tree["c"] if c.get("t", "").endswith("merged into one box")]
    for child in tree["c"]:
        if child not in merged:
            assert child["b"] == top[child["n"].rstrip("/")], child["n"]
    assert sum(c["b"] for c in tree["c"]) == tree["b"]
    before = data["panels"]["before"]["tree"]
    assert before["b"] == report["sizes"]["installed_bytes"] and before["f"] == report["sizes"]["installed_files"]
    keys = dict(before.get("m", []))
    for rule in report["strip"]["rules"]:
        assert keys.get(rule["rule"], 0) == rule["bytes"], rule["rule"]
    return data


def biggest_package(data: dict) -> dict:
    return max(data["panels"]["after"]["tree"]["c"], key=lambda c: c["b"])


def check_layer_page(zip_path: Path, tmp: Path, screenshot_to: str | None = None) -> tuple[Dom, dict]:
    report = json.loads(zip_path.with_name(zip_path.name[:-4] + ".report.json").read_text())
    page = zip_path.with_suffix(".html")
    assert page.is_file(), "the build writes its picture beside the report"
    data = assert_data_is_the_layer(zip_path, page, report)
    dom, image = render(page, tmp)
    assert_not_blank(image)
    assert_boxes_have_their_bytes(dom, data)
    top = biggest_package(data)
    box = assert_name_is_drawn(dom, image, top["n"])
    assert f"{top['b']:,} bytes" in box["aria-label"]  # what hovering shows: the exact size
    if screenshot_to:
        target = ROOT / screenshot_to
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, optimize=True)
    return dom, data


# --- quick tier: small real builds ------------------------------------------------


def small_recipe(name: str, requirements: list[str], packed: bool = False):
    data = {"name": name, "runtime": "python3.11", "requirements": requirements,
            "smoke": {"imports": ["six"], "code": "assert six.PY3"}}
    if packed:
        data |= {"bytecode": "only", "pack": {"mode": "tmp", "compression": "gzip"}}  # zstd needs its decoder
    return parse_recipe(data)


@pytest.fixture(scope="module")
def small_builds(tmp_path_factory, own_cache_dir):
    out = tmp_path_factory.mktemp("dist")
    backend = PipBackend(Runner(), own_cache_dir)
    options = BuildOptions(out_dir=out, time_imports=False)
    return {name: build(recipe, "x86_64", backend, options) for name, recipe in (
        ("both", small_recipe("both", ["six==1.17.0", "idna==3.10"])),
        ("six", small_recipe("six", ["six==1.17.0"])),
        ("packed", small_recipe("packed", ["six==1.17.0", "idna==3.10"], packed=True)))}


def test_a_build_delivers_its_picture_and_the_browser_draws_it_offline(small_builds, tmp_path):
    result = small_builds["both"]
    assert sorted(p.name for p in result.zip.path.parent.iterdir() if p.name.startswith("both")) == [
        "both-python3.11-x86_64.cdx.json", "both-python3.11-x86_64.html", "both-python3.11-x86_64.lock.json",
        "both-python3.11-x86_64.report.json", "both-python3.11-x86_64.zip"]
    dom, data = check_layer_page(result.zip.path, tmp_path)
    assert biggest_package(data)["n"] == "idna"
    assert {b["data-name"] for b in dom.boxes["before"]} >= {"idna", "six.py"}
    assert data["panels"]["before"]["tree"]["b"] > data["panels"]["after"]["tree"]["b"]  # strip took something
    # Zoomed into idna (as a click does): its own files over the whole view, each its share of idna's bytes.
    idna = next(c for c in data["panels"]["after"]["tree"]["c"] if c["n"] == "idna")
    zoomed, image = render(result.zip.path.with_suffix(".html"), tmp_path, view="after/idna")
    assert {b["data-name"] for b in zoomed.boxes["after"]} == {c["n"] for c in idna["c"] if "v" in c}
    assert_boxes_have_their_bytes(zoomed, {"panels": {"after": {"tree": idna}}})
    assert_name_is_drawn(zoomed, image, max(idna["c"], key=lambda c: c["b"])["n"])


def test_a_packed_layers_picture_is_its_archive_unpacked(small_builds, tmp_path):
    result = small_builds["packed"]
    assert result.report["pack"]["files"] == len(archive_sizes(result.zip.path))
    _, data = check_layer_page(result.zip.path, tmp_path)
    names = {c["n"] for c in data["panels"]["after"]["tree"]["c"]}
    assert {"idna", "six.pyc"} <= names and "layer_runtime" not in names  # the archive's tree, not the stubs
    text = result.zip.path.with_suffix(".html").read_text()
    assert "Lambda counts the zip as it unzips" in text and "/tmp of an EphemeralStorage of 512 MB" in text


def test_build_report_diff_and_plan_write_their_pages_from_the_cli(small_builds, tmp_path):
    both, six = small_builds["both"].zip.path, small_builds["six"].zip.path
    env = {**os.environ, "COLUMNS": "400"}

    def layers(*args):
        return subprocess.run([sys.executable, "-m", "builder", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, check=False, env=env)

    recipe = tmp_path / "idna.toml"
    recipe.write_text('name = "idna"\nruntime = "python3.11"\nrequirements = ["idna==3.10"]\n'
                      '[smoke]\nimports = ["idna"]\n')
    done = layers("build", str(recipe), "--backend", "pip", "--out", str(tmp_path / "dist"), "--no-import-timing")
    picture = tmp_path / "dist" / "idna" / "idna-python3.11-x86_64.html"
    assert done.returncode == 0 and f"picture {picture}" in done.stdout, done.stderr[-2000:]
    assert picture.is_file()

    page = tmp_path / "report.html"
    done = layers("report", str(both), "--html", str(page))
    assert done.returncode == 0 and f"wrote {page}" in done.stderr, done.stderr
    assert page.read_bytes() == both.with_suffix(".html").read_bytes()  # the same page the build wrote
    refused = layers("report", str(both), "--html", str(tmp_path))
    assert refused.returncode == 2 and "is a directory" in refused.stderr and "hint:" in refused.stderr

    diff = tmp_path / "diff.html"
    done = layers("diff", str(both), str(six), "--html", str(diff))
    assert done.returncode == 1 and diff.is_file(), done.stderr  # 1: the file lists differ
    data = page_data(diff)
    first = {c["n"]: c for c in data["panels"]["first"]["tree"]["c"]}
    assert first["idna"]["k"] == "went" and first["six.py"]["k"] == "same"
    assert "the distribution idna is in one build only" in json.dumps(first["idna-3.10.dist-info"])  # compare's why
    dom, image = render(diff, tmp_path)
    assert_not_blank(image)
    assert_name_is_drawn(dom, image, "idna", "first")

    plan = tmp_path / "plan.html"
    done = layers("plan", "--layer", str(both), "--model", "model.h5=120MB", "--function-size", "20MB",
                  "--html", str(plan))
    assert done.returncode == 0 and plan.is_file(), done.stderr
    _, image = render(plan, tmp_path, scripted=False)
    colours = assert_not_blank(image, ink=0.02)
    # The bars: the function (20 MB) and the model (120 MB) in their colours, the 35 KiB layer too thin to count.
    assert colours.get((0x4E, 0x79, 0xA7), 0) > 2000 and colours.get((0xED, 0xC9, 0x48), 0) > 10_000
    text = plan.read_text()
    assert "layer both" in text and "model model.h5" in text and "recommended:" in text


def test_a_page_sends_no_request_when_it_could(small_builds, tmp_path):
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><p>control</p><img src="http://treemap-control.invalid/x.png">')
    assert any("treemap-control.invalid" in r for r in requests_of(control, tmp_path))
    for name in ("both", "packed"):
        assert requests_of(small_builds[name].zip.path.with_suffix(".html"), tmp_path) == []


def requests_of(page: Path, tmp: Path) -> list[str]:
    """The first line of every request Chromium sends, through a local proxy, while it loads ``page``."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    seen: list[str] = []
    done = threading.Event()

    def accept():
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError:
                    first = "?"
                if not any(host in first for host in CHROMIUM_SERVICES):
                    seen.append(first)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        result = chromium(tmp, f"--proxy-server=http://127.0.0.1:{server.getsockname()[1]}",
                          "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=3000", "--dump-dom",
                          page.as_uri(), offline=False)
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        done.set()
        thread.join(5)
        server.close()
    return seen


def test_the_console_check_sees_an_error():
    # Guards render(): a page whose script throws must show up in what it looks at.
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "broken.html"
        page.write_text("<!DOCTYPE html><body><script>null.x</script></body>")
        result = chromium(Path(tmp), "--dump-dom", page.as_uri())
        assert any("Uncaught TypeError" in line for line in console_lines(result.stderr))


# --- slow tier: the heavy stacks ----------------------------------------------------


def built(recipe: str) -> Path:
    """dist/RECIPE's zip, built by ``make layer`` unless this run built it already (test_build, test_packed_stacks)."""
    directory = ROOT / "dist" / recipe
    pages = list(directory.glob(f"{recipe}-*-x86_64.html")) if directory.is_dir() else []
    if not (pages and pages[0].stat().st_mtime > STARTED):
        result = subprocess.run(["make", "layer", f"RECIPE={recipe}", "BACKEND=pip", "ARCH=x86_64"], cwd=ROOT,
                                capture_output=True, text=True, timeout=3000, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        pages = list(directory.glob(f"{recipe}-*-x86_64.html"))
    (page,) = pages
    return page.with_suffix(".zip")


@pytest.mark.slow
def test_tf18s_picture(tmp_path):
    _, data = check_layer_page(built("tf18"), tmp_path, os.environ.get("LAYERS_WRITE_SCREENSHOT"))
    assert biggest_package(data)["n"] == "tensorflow"
    assert len(data["panels"]["before"]["tree"]["c"]) > 10


@pytest.mark.slow
def test_np311s_picture(tmp_path):
    _, data = check_layer_page(built("np311"), tmp_path)
    assert biggest_package(data)["n"] in ("numpy", "numpy.libs", "PIL", "pillow.libs")


@pytest.mark.slow
def test_tf18_packeds_picture_is_its_archive(tmp_path):
    zip_path = built("tf18-packed")
    _, data = check_layer_page(zip_path, tmp_path)
    assert biggest_package(data)["n"] == "tensorflow"
    assert data["panels"]["after"]["tree"]["b"] > 200 * 2**20 > sum(zip_sizes(zip_path).values())
