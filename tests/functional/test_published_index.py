"""``layers arns --all --format json|html``: one index of every manifest, and a page that loads nothing.

The page is rendered by a real browser (Debian's headless Chromium) with the
network denied (a new network namespace, ``unshare -n``): its DOM must show
every region, ARN and digest of the manifests, and its screenshot must not be
blank. A second run sends Chromium through a local proxy that records every
connection: the page must cause none (a control page with one remote image
must cause one, so the recorder is known to work). Manifest values that look
like HTML are escaped or, where the manifest's own rules forbid them,
refused before anything is written.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from tests.functional.test_snippets import PUBLISHED, layers, write_manifests

pytestmark = pytest.mark.functional
CHROMIUM = shutil.which("chromium")
# Chromium's own background services (time, updates, sign-in): never the page's, and so not counted against it.
CHROMIUM_SERVICES = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")
QUIET = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
         "--metrics-recording-only", "--hide-scrollbars"]
SCRIPT = "<script>document.body.remove()</script>"   # 39 characters: a manifest's published_at may hold it
IMAGE = "<img src=x onerror=alert(1)>"                # 28: and a runtime this


def chromium(profile: Path, *args: str, offline: bool = True) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is not installed (apt-get install chromium; .ci/run installs it)"
    command = [CHROMIUM, *QUIET, f"--user-data-dir={profile}", *args]
    # offline: a network namespace of its own, with not even a loopback up, so no request can leave.
    return subprocess.run(["unshare", "--net", "--", *command] if offline else command, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Three manifests, one with values that look like HTML, and the index the CLI writes of them."""
    work = tmp_path_factory.mktemp("index")
    manifests = write_manifests(work / "published")
    manifests.update(write_manifests(work / "published", {"crafted": {"crafted-python312-x86_64": (
        "x86_64", ("python3.12", IMAGE), {"me-south-1": 4})}}, published_at=SCRIPT))
    page = work / "site" / "index.html"
    result = layers("arns", "--all", "--format", "html", "--manifests", str(work / "published"), "--output", str(page),
                    cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and page.is_file()
    return work, manifests, page


class Tags(HTMLParser):
    """Every element and attribute of a document, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.text).append(data)


def test_the_page_shows_every_region_offline(site, tmp_path):
    _, manifests, page = site
    dom = chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = " ".join(Tags(dom.stdout).text)
    entries = [e for m in manifests.values() for e in m.rows()]
    assert len({e.region for e in entries}) == 6
    for e in entries:
        for value in (e.region, e.arn, f"version {e.version}", e.sha256, e.lock_digest, e.identity, e.code_sha256,
                      *e.runtimes, *e.ssm):
            assert value in text, (e.layer_name, e.region, value)
    assert text.count(SCRIPT) == 1 and IMAGE in text  # shown as text: the script did not run and remove the body
    assert "bytes" not in text and "MiB" not in text  # the manifests record no sizes, and none are made up

    shot = tmp_path / "index.png"
    result = chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.getcolors(maxcolors=1 << 20)
    background = max(colours)[0]
    inked = sum(count for count, _ in colours) - background
    assert len(colours) > 50 and inked > 0.03 * image.size[0] * image.size[1], (len(colours), inked)


def test_the_page_loads_nothing_and_can_load_nothing(site, tmp_path):
    _, _, page = site
    document = Tags(page.read_text())
    loads = [(tag, name, value) for tag, attrs in document.elements for name, value in attrs.items()
             if name in ("src", "srcset", "data", "poster", "action", "background", "formaction")
             or (name == "href" and not (value or "").startswith("#")) or name.startswith("on")]
    assert loads == []
    assert {tag for tag, _ in document.elements}.isdisjoint(
        {"script", "img", "link", "iframe", "object", "embed", "svg", "video", "audio", "source", "base", "form"})
    assert "url(" not in "".join(document.styles) and "@import" not in "".join(document.styles)
    (policy,) = [a["content"] for tag, a in document.elements if tag == "meta"
                 and a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in policy

    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><p>control</p><img src="http://layers-index-control.invalid/x.png">')
    assert any("layers-index-control.invalid" in r for r in requests_of(control.as_uri(), tmp_path / "p1"))
    assert requests_of(page.as_uri(), tmp_path / "p2") == []


def requests_of(url: str, profile: Path) -> list[str]:
    """The first line of every request Chromium sends while it loads ``url``, but its own services'."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(32)
    server.settimeout(0.2)
    seen: list[str] = []
    done = threading.Event()

    def accept():
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    seen.append(connection.recv(4096).decode("latin-1").split("\r\n", 1)[0])
                except OSError as exc:
                    seen.append(f"connection without a request line: {exc}")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = server.getsockname()[1]
        result = chromium(profile, f"--proxy-server=http://127.0.0.1:{port}", "--proxy-bypass-list=<-loopback>",
                          "--dump-dom", url, offline=False)
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        done.set()
        thread.join(5)
        server.close()

    def own(line: str) -> bool:
        target = line.split(" ")[1] if " " in line else ""
        host = target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        return any(host == d or host.endswith("." + d) for d in CHROMIUM_SERVICES)

    return [line for line in seen if not own(line)]


def test_the_json_index_holds_every_entry(site):
    work, manifests, _ = site
    result = layers("arns", "--all", "--format", "json", "--manifests", str(work / "published"), cwd=work)
    assert result.returncode == 0, result.stderr
    index = json.loads(result.stdout)
    assert [r["recipe"] for r in index["recipes"]] == sorted(manifests)
    found = {(r["recipe"], layer["layer_name"], layer["architecture"], region, item["version"], item["arn"])
             for r in index["recipes"] for layer in r["layers"] for region, item in layer["regions"].items()}
    assert found == {(recipe, e.layer_name, e.architecture, e.region, e.version, e.arn)
                     for recipe, m in manifests.items() for e in m.rows()}
    assert index["regions"] == sorted({e.region for m in manifests.values() for e in m.rows()})
    one = layers("arns", "--all", "--format", "json", "--region", "sa-east-1", "--manifests",
                 str(work / "published"), cwd=work)
    assert [(r["recipe"], [list(layer["regions"]) for layer in r["layers"]]) for r in json.loads(one.stdout)["recipes"]
            ] == [("crafted", []), ("np311", []), ("tf18", [["sa-east-1"]])]


@pytest.mark.parametrize("damage, words", [
    ({"bad.json": '{"format": 1, "recipe": "bad", "layers": {"<b>x</b>": {}}}'}, "bad.json is not a manifest"),
    ({"Bad_Name.json": "{}"}, "Bad_Name.json is not named for a recipe"),
    ({"x.json/": None}, "x.json is a directory"),
    ({"np311.json": '{"format": 1, "recipe": "tf18", "layers": {}}'}, "np311.json is not a manifest"),
    ({"trunc.json": '{"format": 1, "recipe": "trunc", "layers": {'}, "trunc.json is not valid JSON"),
])
def test_a_bad_manifest_is_named_and_nothing_is_written(tmp_path, damage, words):
    write_manifests(tmp_path / "published", {"tf18": PUBLISHED["tf18"]})
    for name, text in damage.items():
        if text is None:
            (tmp_path / "published" / name).mkdir()
        else:
            (tmp_path / "published" / name).write_text(text)
    page = tmp_path / "site" / "index.html"
    result = layers("arns", "--all", "--format", "html", "--manifests", str(tmp_path / "published"),
                    "--output", str(page), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and words in lines[0], lines
    assert lines[1].startswith("hint: ")
    assert not page.parent.exists()


def test_nothing_to_index_is_an_error(tmp_path):
    (tmp_path / "published").mkdir()
    (tmp_path / "published" / "README.md").write_text("not a manifest, and not *.json")
    for directory, words in ((tmp_path / "published", "no manifests in"), (tmp_path / "missing", "no such directory")):
        result = layers("arns", "--all", "--manifests", str(directory), cwd=tmp_path)
        assert result.returncode == 2 and words in result.stderr and "hint: " in result.stderr, result.stderr


def test_output_is_replaced_by_a_rename_and_never_a_directory_or_device(site, tmp_path):
    work, _, _ = site
    base = ("arns", "--all", "--format", "html", "--manifests", str(work / "published"))
    page = tmp_path / "index.html"
    page.write_text("old")
    page.chmod(0o640)
    inode = page.stat().st_ino
    result = layers(*base, "--output", str(page), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert page.read_text().startswith("<!DOCTYPE html>") and page.stat().st_ino != inode  # a new file, renamed in
    assert page.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]
    (tmp_path / "a-file").write_text("x")
    for target, words in ((tmp_path, "is a directory, not a file"), (Path("/dev/null"), "is a device"),
                          (tmp_path / "a-file" / "index.html", "a-file is a file, not a directory")):
        result = layers(*base, "--output", str(target), cwd=tmp_path)
        assert result.returncode == 2 and words in result.stderr and "hint: " in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "index.html"]


def test_one_recipe_as_a_page(site):
    work, manifests, _ = site
    result = layers("arns", "tf18", "--format", "html", "--manifests", str(work / "published"), cwd=work)
    assert result.returncode == 0, result.stderr
    text = " ".join(Tags(result.stdout).text)
    assert all(e.arn in text for e in manifests["tf18"].rows()) and "np311" not in text
