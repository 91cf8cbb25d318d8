"""The packed-layer runtime (``layer_runtime._unpack``), run the way Lambda runs it.

Each layer is made here by hand, to the contract the builder writes:
a tar of a small tree, gzip- or zstd-compressed, with packed.json, a stub per
top-level name, and the runtime's files copied into python/layer_runtime/.
For zstd on a Python before 3.14 the layer also carries the ``zstandard``
package, installed for that Python with pip (``--target``), just as a real
layer would. Real interpreters (3.6 to 3.13) run it with ``-I -S -B``, and
those isolated runs ignore PYTHONPATH, so the child puts the layer's python/
first on sys.path itself, where Lambda has /opt/python. The runs that prove
that nothing is written into the layer bind-mount it read-only under
``unshare -m``, and the small /tmp is a real 1 MiB tmpfs mounted there too.
The host's mounts are never touched. Python 3.14, which unpacks zstd with
the standard library's ``compression.zstd``, is Debian's, from a small root
that ``.ci/test-python314-root.sh`` makes; it runs under bwrap with that
root's /usr and /etc and this run's temporary directory bound in. The
remaining tests call the module in this process: unsafe members, tar
formats, stale partials, manifests.
"""

from __future__ import annotations

import ast
import collections
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from builder.runner import Runner
from builder.runtime import _unpack
from builder.verify.interpreters import find_interpreter
from tests.conftest import ROOT

pytestmark = pytest.mark.functional

RUNTIME = ROOT / "builder" / "runtime"
STUB = "from layer_runtime._unpack import redirect; redirect(__name__)\n"
MTIME = 315532800  # the builder's fixed timestamp (1980-01-01)
EXT = "_lsprof"  # a stdlib extension module (a file in every Python here), copied into the tree as a top-level
TOP_LEVEL = ["demo_pkg", "demo_mod", "demo_ns", EXT]
ZSTANDARD = {"3.6": "0.20.0"}  # its last release for 3.6; newer Pythons get 0.25.0
PY314_ROOT = Path(os.environ.get("LAYERS_TEST_PY314_ROOT", "/var/cache/layers-test/py314-root"))

DEMO_PKG = b'''"""A packed package that reads a data file beside itself."""
import os

HERE = os.path.dirname(__file__)


def data():
    with open(os.path.join(HERE, "data.txt")) as f:
        return f.read()


def fail():
    raise ValueError("demo failure")  # the line a traceback must show
'''


def demo_tree(ext: Path | None = None, big: int = 0) -> dict[str, object]:
    """The tree's members, by name: bytes for a file, ("dir",), ("symlink", target), ..."""
    tree: dict[str, object] = {
        "demo_pkg": ("dir",),
        "demo_pkg/__init__.py": DEMO_PKG,
        "demo_pkg/data.txt": b"packed data\n",
        "demo_pkg/tool.sh": ("exec", b"#!/bin/sh\necho tool\n"),
        "demo_pkg/data-link.txt": ("symlink", "data.txt"),
        "demo_mod.py": b"VALUE = 42\n",
        "demo_ns": ("dir",),
        "demo_ns/sub": ("dir",),
        "demo_ns/sub/__init__.py": b"NAME = 'sub'\n",
        "demo_pkg-1.0.dist-info": ("dir",),
        "demo_pkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo_pkg\nVersion: 1.0\n",
    }
    if ext is not None:
        tree[ext.name] = ext.read_bytes()
    if big:
        tree["demo_pkg/big.bin"] = bytes(big)
    return tree


def make_tar(members: dict[str, object], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A reproducible tar: members in the given order, fixed mtime, owner root."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, spec in members.items():
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            data = None
            if isinstance(spec, bytes):
                info.mode, data = 0o644, spec
            elif spec[0] == "exec":
                info.mode, data = 0o755, spec[1]
            elif spec[0] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif spec[0] in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if spec[0] == "symlink" else tarfile.LNKTYPE
                info.linkname, info.mode = spec[1], 0o777
            elif spec[0] == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif spec[0] == "fifo":
                info.type = tarfile.FIFOTYPE
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    zstandard = pytest.importorskip("zstandard", reason="zstd layers: the test venv needs the zstandard package "
                                                        "(pip install zstandard) to compress them")
    return zstandard.ZstdCompressor(level=3).compress(data)


def write_packed(layer: Path, members: dict[str, object], compression: str = "gzip",
                 top_level: list[str] | None = None, tar: bytes | None = None) -> dict:
    """packed.json and the archive in ``layer``/python/layer_runtime; returns the manifest."""
    runtime = layer / "python" / "layer_runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    archive = compress(make_tar(members) if tar is None else tar, compression)
    name = "packed.tar.zst" if compression == "zstd" else "packed.tar.gz"
    (runtime / name).write_bytes(archive)
    sha = hashlib.sha256(archive).hexdigest()
    files = [spec for spec in members.values() if isinstance(spec, bytes) or spec[0] == "exec"]
    manifest = {"format": 1, "id": sha[:16], "archive": name, "compression": compression, "sha256": sha,
                "archive_bytes": len(archive), "files": len(files),
                "unpacked_bytes": sum(len(spec if isinstance(spec, bytes) else spec[1]) for spec in files),
                "unpack_dir": "/tmp/layers", "top_level": top_level if top_level is not None else TOP_LEVEL}
    (runtime / "packed.json").write_text(json.dumps(manifest))
    return manifest


def make_layer(layer: Path, compression: str = "gzip", ext: Path | None = None, zstd: Path | None = None,
               big: int = 0) -> dict:
    """A whole packed layer: archive, packed.json, stubs, the runtime, and the zstd decoder when needed."""
    python = layer / "python"
    manifest = write_packed(layer, demo_tree(ext, big), compression,
                            TOP_LEVEL if ext is not None else TOP_LEVEL[:-1])
    for name in ("__init__.py", "_unpack.py", "unpack.py"):
        shutil.copy(RUNTIME / name, python / "layer_runtime" / name)
    for name in manifest["top_level"]:
        stub = python / name / "__init__.py" if name in ("demo_pkg", "demo_ns") else python / (name + ".py")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(STUB)
    if zstd is not None:
        shutil.copytree(zstd / "zstandard", python / "zstandard")
    return manifest


def snapshot(tree: Path) -> dict[str, tuple]:
    return {str(path.relative_to(tree)): (path.stat().st_mode, path.read_bytes() if path.is_file() else b"")
            for path in sorted(tree.rglob("*"))}


def python314(base: Path) -> Path:
    """A ``python3.14`` command: Debian's, run by bwrap from PY314_ROOT with ``base`` (this run's tmp) bound in."""
    python = PY314_ROOT / "usr" / "bin" / "python3.14"
    assert python.is_file(), f"no Python 3.14 root at {PY314_ROOT}: run bash .ci/test-python314-root.sh"
    wrapper = base / "python3.14"
    if not wrapper.exists():
        # No ro-bind of the root at /: bwrap could not make the mount point for ``base`` in it.
        wrapper.write_text(
            "#!/bin/sh\n"
            f'exec bwrap --tmpfs / --ro-bind "{PY314_ROOT}/usr" /usr --ro-bind "{PY314_ROOT}/etc" /etc'
            " --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/bin /bin --proc /proc --dev /dev"
            f' --tmpfs /tmp --bind "{base}" "{base}" --chdir "{base}" /usr/bin/python3.14 "$@"\n')
        wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="session")
def interpreters(tmp_path_factory):
    runner, found = Runner(), {}

    def get(version: str) -> Path:
        if version == "3.14":
            return python314(tmp_path_factory.getbasetemp())
        if version not in found:
            interpreter = find_interpreter(version, runner)
            found[version] = interpreter.path if interpreter else None
        if found[version] is None:
            pytest.skip(f"python{version} is not installed on this machine")
        return found[version]
    return get


@pytest.fixture(scope="session")
def zstandard_for(tmp_path_factory):
    """The zstandard package built for a Python version, installed with pip the way a layer carries it."""
    cache: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in cache:
            target = tmp_path_factory.mktemp(f"zstandard-{version}")
            pin = ZSTANDARD.get(version, "0.25.0")
            result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--no-deps",
                                     "--only-binary=:all:", "--python-version", version, "--target", str(target),
                                     f"zstandard=={pin}"], capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                pytest.skip(f"zstd on python{version} untested: pip could not fetch zstandard=={pin} for it: "
                            + result.stderr.strip().splitlines()[-1])
            cache[version] = target
        return cache[version]
    return get


def extension(python: Path) -> Path:
    out = subprocess.run([str(python), "-I", "-S", "-c", f"import {EXT}; print({EXT}.__file__)"],
                         capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    return path if python.name != "python3.14" else PY314_ROOT / path.relative_to("/")  # seen from its root


class Layer:
    """A packed layer on disk, the Python that runs it, and the unpack directory it gets."""

    def __init__(self, path: Path, python: Path, unpack_dir: Path, manifest: dict):
        self.path, self.python, self.unpack_dir, self.manifest = path, python, unpack_dir, manifest
        self.root = unpack_dir / manifest["id"]

    def command(self, code: str) -> list[str]:
        # -I ignores PYTHONPATH, so the child puts the layer's python/ first on sys.path itself.
        preamble = f"import sys; PY = {str(self.path / 'python')!r}; sys.path.insert(0, PY)\n"
        return [str(self.python), "-I", "-S", "-B", "-c", preamble + code]

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "LAYER_UNPACK_DIR": str(self.unpack_dir), "LAYER_UNPACK_DEBUG": "1"}

    def run(self, code: str, read_only: bool = False) -> subprocess.CompletedProcess:
        command = self.command(code)
        if read_only:
            # The layer is mounted read-only over itself in a private mount namespace, as /opt is on Lambda.
            command = ["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"'
                       ' && shift && exec "$@"', "sh", str(self.path), *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=self.env())

    def leftovers(self) -> list[str]:
        return sorted(os.listdir(self.unpack_dir)) if self.unpack_dir.exists() else []


@pytest.fixture
def layer_for(tmp_path, interpreters, zstandard_for):
    def make(version: str, compression: str = "gzip", **kwargs) -> Layer:
        python = interpreters(version)
        # From 3.14 on the decoder is the standard library's compression.zstd: no zstandard in the layer.
        zstd = zstandard_for(version) if compression == "zstd" and version != "3.14" else None
        path = tmp_path / f"layer-{version}-{compression}"
        manifest = make_layer(path, compression, ext=extension(python), zstd=zstd, **kwargs)
        return Layer(path, python, tmp_path / f"unpack-{version}-{compression}", manifest)
    return make


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The UnpackError the child caught and printed: one line, starting "layer_runtime: "."""
    assert result.returncode == 3, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("UnpackError ")]
    message = line[len("UnpackError "):]
    assert message.startswith("layer_runtime: ") and "<newline>" not in message, message
    return message


CATCH = """
try:
    import demo_pkg
except Exception as e:
    print(type(e).__name__, str(e).replace("\\n", "<newline>"))
    sys.exit(3)
"""

IMPORTS = f"""
import os, traceback
import demo_pkg
root = [entry for entry in sys.path if entry.startswith(os.environ["LAYER_UNPACK_DIR"])][0]
assert sys.path.index(root) + 1 == sys.path.index(PY), sys.path
assert demo_pkg.__file__ == os.path.join(root, "demo_pkg", "__init__.py"), demo_pkg.__file__
assert demo_pkg.data() == "packed data\\n"
assert open(os.path.join(demo_pkg.HERE, "data-link.txt")).read() == "packed data\\n"
assert os.access(os.path.join(demo_pkg.HERE, "tool.sh"), os.X_OK)
assert int(os.stat(demo_pkg.__file__).st_mtime) == {MTIME}
import demo_pkg as again, importlib
assert again is demo_pkg is sys.modules["demo_pkg"]
assert importlib.reload(demo_pkg).__file__ == demo_pkg.__file__
import demo_mod, demo_ns.sub
assert demo_mod.VALUE == 42 and demo_mod.__file__.startswith(root)
assert demo_ns.sub.NAME == "sub" and demo_ns.sub.__file__.startswith(root), demo_ns.sub.__file__
assert getattr(demo_ns, "__file__", None) is None and list(demo_ns.__path__) == [os.path.join(root, "demo_ns")]
import {EXT}
assert {EXT}.__file__.startswith(root) and {EXT}.__file__.endswith(".so"), {EXT}.__file__
if sys.version_info >= (3, 8):
    import importlib.metadata
    assert importlib.metadata.version("demo_pkg") == "1.0"
try:
    demo_pkg.fail()
except ValueError:
    print(traceback.format_exc())
try:
    open(os.path.join(PY, "written-by-the-run"), "w")
except OSError as e:
    print("layer write refused:", e.strerror)
import layer_runtime._unpack as u
assert u.install() == root and sys.path.count(root) == 1  # idempotent
assert sum(isinstance(finder, u._PackedFinder) for finder in sys.meta_path) == 1
print("ROOT", root)
"""

VERSIONS = ["3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]
CASES = [(v, "gzip") for v in VERSIONS] + [(v, "zstd") for v in ("3.6", "3.12", "3.13", "3.14")]


@pytest.mark.parametrize("version,compression", CASES)
def test_packed_modules_import_as_if_unpacked_from_a_read_only_layer(layer_for, version, compression):
    layer = layer_for(version, compression)
    before = snapshot(layer.path)
    result = layer.run(IMPORTS, read_only=True)
    assert result.returncode == 0, result.stderr
    assert f"ROOT {layer.root}" in result.stdout
    # The traceback names the real file in the root and shows its source line.
    assert f'File "{layer.root}/demo_pkg/__init__.py", line 13, in fail' in result.stdout
    assert 'raise ValueError("demo failure")  # the line a traceback must show' in result.stdout
    assert "layer write refused: Read-only file system" in result.stdout
    assert snapshot(layer.path) == before
    assert layer.leftovers() == [f".{layer.manifest['id']}.lock", layer.manifest["id"]]
    assert sorted(name for name in os.listdir(layer.root) if not name.startswith(EXT)) == [
        ".unpacked", "demo_mod.py", "demo_ns", "demo_pkg", "demo_pkg-1.0.dist-info"]
    assert not any(path.name == "__pycache__" for path in layer.root.rglob("*"))  # -B: no bytecode written


@pytest.mark.parametrize("version", ["3.6", "3.12"])
def test_the_eager_module_unpacks_at_import_and_the_stubs_then_cost_nothing(layer_for, version):
    layer = layer_for(version)
    result = layer.run("""
import layer_runtime.unpack as unpack
assert "demo_pkg" not in sys.modules
if sys.version_info >= (3, 8):
    import importlib.metadata
    assert importlib.metadata.version("demo_pkg") == "1.0"  # before any packed import
import demo_pkg
print("ROOT", unpack.ROOT, demo_pkg.__file__)
""")
    assert result.returncode == 0, result.stderr
    assert f"ROOT {layer.root} {layer.root}/demo_pkg/__init__.py" in result.stdout
    assert result.stderr.count("layer_runtime: unpacking ") == 1
    assert "already unpacked" not in result.stderr  # the stub found the finder installed: not even a stat


@pytest.mark.parametrize("version,compression", [("3.6", "gzip"), ("3.12", "zstd"), ("3.14", "zstd")])
def test_a_second_start_finds_the_root_and_does_not_unpack_again(layer_for, version, compression):
    layer = layer_for(version, compression)
    code = "import demo_pkg; print(demo_pkg.data())"
    first = layer.run(code)
    assert first.returncode == 0, first.stderr
    assert "layer_runtime: unpacking " in first.stderr
    inode = os.stat(layer.root).st_ino
    second = layer.run(code)
    assert second.returncode == 0, second.stderr
    assert "unpacking" not in second.stderr
    assert f"layer_runtime: found {layer.root}, already unpacked" in second.stderr
    assert os.stat(layer.root).st_ino == inode
    assert layer.leftovers() == [f".{layer.manifest['id']}.lock", layer.manifest["id"]]


@pytest.mark.parametrize("version,compression", [("3.6", "gzip"), ("3.12", "zstd"), ("3.14", "zstd")])
def test_two_processes_started_at_once_unpack_once(layer_for, version, compression, tmp_path):
    layer = layer_for(version, compression)
    layer.unpack_dir.mkdir()
    # This test holds the lock until both children are waiting for it, then lets them race.
    lock = os.open(layer.unpack_dir / f".{layer.manifest['id']}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    logs = [tmp_path / f"child-{i}.log" for i in range(2)]
    children = []
    for log in logs:
        with open(log, "w") as err:
            children.append(subprocess.Popen(layer.command("import demo_pkg; print(demo_pkg.data())"),
                                             stdout=subprocess.PIPE, stderr=err, text=True, env=layer.env()))
    deadline = time.monotonic() + 60
    while not all("waiting for another process" in log.read_text() for log in logs):
        assert time.monotonic() < deadline, [log.read_text() for log in logs]
        assert all(child.poll() is None for child in children), [log.read_text() for log in logs]
        time.sleep(0.02)
    os.close(lock)
    outputs = [child.communicate(timeout=60)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0], [log.read_text() for log in logs]
    assert outputs == ["packed data\n\n"] * 2
    stderr = "".join(log.read_text() for log in logs)
    assert stderr.count("layer_runtime: unpacking ") == 1, stderr
    assert stderr.count(f"layer_runtime: found {layer.root}, unpacked by another process") == 1, stderr
    assert layer.leftovers() == [f".{layer.manifest['id']}.lock", layer.manifest["id"]]


def _truncate(layer: Layer, consistent: bool) -> None:
    """Cut the archive in half; ``consistent``: packed.json describes the cut file (a builder that packed it so)."""
    runtime = layer.path / "python" / "layer_runtime"
    archive = runtime / layer.manifest["archive"]
    data = archive.read_bytes()[:archive.stat().st_size // 2]
    archive.write_bytes(data)
    if consistent:
        sha = hashlib.sha256(data).hexdigest()
        layer.manifest.update(sha256=sha, id=sha[:16], archive_bytes=len(data))
        (runtime / "packed.json").write_text(json.dumps(layer.manifest))


@pytest.mark.parametrize("version,compression", [("3.6", "gzip"), ("3.12", "gzip"), ("3.12", "zstd"),
                                                 ("3.14", "zstd")])
@pytest.mark.parametrize("damage,expected", [
    ("truncated", "is {size} bytes, packed.json says {bytes}: the archive is truncated"),
    ("truncated-consistent", "is truncated: its data ends before the end of the tar"),
    ("sha256", "has sha256 {sha}, packed.json says {wrong}: the archive is damaged"),
    ("flipped", "damaged"),
])
def test_a_damaged_archive_fails_in_one_line_and_leaves_nothing(layer_for, version, compression, damage, expected):
    layer = layer_for(version, compression, big=3 << 20)
    runtime = layer.path / "python" / "layer_runtime"
    archive = runtime / layer.manifest["archive"]
    sha, size = layer.manifest["sha256"], layer.manifest["archive_bytes"]
    wrong = "0" * 64
    if damage.startswith("truncated"):
        _truncate(layer, consistent=damage == "truncated-consistent")
    elif damage == "sha256":
        layer.manifest["sha256"] = wrong
        layer.manifest["id"] = wrong[:16]
        (runtime / "packed.json").write_text(json.dumps(layer.manifest))
    else:
        data = bytearray(archive.read_bytes())
        data[len(data) // 2] ^= 0xFF
        archive.write_bytes(bytes(data))
    message = one_line_error(layer.run(CATCH))
    assert str(archive) in message
    assert expected.format(size=f"{size // 2:,}", bytes=f"{size:,}", sha=sha, wrong=wrong) in message, message
    assert "publish the layer again" in message
    assert layer.leftovers() == [f".{layer.manifest['id']}.lock"]  # no root, no partial


@pytest.mark.parametrize("version", ["3.6", "3.12"])
def test_a_tmp_too_small_fails_before_writing_and_names_ephemeral_storage(layer_for, version, tmp_path):
    layer = layer_for(version, big=2 << 20)
    small = tmp_path / "small-tmp"
    small.mkdir()
    layer.unpack_dir = small / "layers"
    # A real 1 MiB file system, in a private mount namespace: what is in it is listed before it goes away.
    command = ["unshare", "-m", "sh", "-c", 'd="$1"; shift; mount -t tmpfs -o size=1m tmpfs "$d" || exit 9;'
               ' "$@"; rc=$?; echo "--- listing"; (cd "$d" && find . | sort); df -k "$d" | tail -1; exit $rc',
               "sh", str(small), *layer.command(CATCH)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=layer.env())
    message = one_line_error(result)
    m = layer.manifest
    need = -(-(m["unpacked_bytes"] + m["files"] * _unpack.BLOCK + _unpack.MARGIN) // (1 << 20))
    assert message == (f"layer_runtime: {small} has 1 MB free, this packed layer needs {need} MB unpacked: set"
                       " the function's EphemeralStorage to at least 512 MB (Lambda allows 512 to 10,240)")
    listing = result.stdout.split("--- listing\n")[1].splitlines()
    assert listing[:-1] == [".", "./layers", f"./layers/.{layer.manifest['id']}.lock"]
    assert listing[-1].split()[2] == "0", listing[-1]  # nothing written: 0 KiB used
    assert not small.joinpath("layers").exists()  # the tmpfs lived only in the child's namespace


def test_running_out_of_space_while_unpacking_cleans_up_and_names_ephemeral_storage(layer_for, tmp_path):
    # The free-space check is switched off in the child, to reach ENOSPC in the middle of a file.
    layer = layer_for("3.12", big=2 << 20)
    small = tmp_path / "small-tmp"
    small.mkdir()
    layer.unpack_dir = small / "layers"
    code = "import layer_runtime._unpack as u\nu._check_space = lambda m: None\n" + CATCH
    command = ["unshare", "-m", "sh", "-c", 'd="$1"; shift; mount -t tmpfs -o size=1m tmpfs "$d" || exit 9;'
               ' "$@"; rc=$?; echo "--- listing"; (cd "$d" && find . | sort); exit $rc',
               "sh", str(small), *layer.command(code)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=layer.env())
    message = one_line_error(result)
    assert message.startswith(f"layer_runtime: ran out of space unpacking: {small} has 1 MB free, this packed"
                              " layer needs "), message
    assert message.endswith("set the function's EphemeralStorage to at least 512 MB (Lambda allows 512 to 10,240)")
    listing = result.stdout.split("--- listing\n")[1].splitlines()
    assert listing == [".", "./layers", f"./layers/.{layer.manifest['id']}.lock"]


# In this process, through the repository's copy of the module --------------------------------------------


@pytest.fixture
def unpack_dir(tmp_path, monkeypatch):
    path = tmp_path / "unpack"
    monkeypatch.setenv("LAYER_UNPACK_DIR", str(path))
    monkeypatch.delenv("LAYER_UNPACK_DEBUG", raising=False)
    return path


def _manifest_path(layer: Path) -> str:
    return str(layer / "python" / "layer_runtime" / "packed.json")


UNSAFE = {
    "dot-dot": ({"../evil.py": b"x"}, "climbs out with .."),
    "dot-dot-inside": ({"demo/../../evil.py": b"x"}, "climbs out with .."),
    "absolute": ({"/tmp/evil.py": b"x"}, "is absolute"),
    "symlink-out": ({"demo": ("dir",), "demo/link": ("symlink", "../../outside")}, "which leads out of the tree"),
    "symlink-absolute": ({"link": ("symlink", "/etc/passwd")}, "which leads out of the tree"),
    "symlink-back-through-a-link": ({"a": ("dir",), "a/b": ("dir",), "up": ("symlink", "a/b"),
                                     "out": ("symlink", "up/../../..")}, "which leads out of the tree"),
    "below-a-symlink": ({"real": ("dir",), "link": ("symlink", "real"), "link/evil.py": b"x"},
                        "lies below the symlink link"),
    "device": ({"null": ("chr",)}, "is a character device"),
    "fifo": ({"pipe": ("fifo",)}, "is a FIFO"),
    "hard-link": ({"a.py": b"x", "b.py": ("hardlink", "a.py")}, "is a hard link"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_an_unsafe_member_stops_the_unpack_and_nothing_is_kept(case, tmp_path, unpack_dir):
    members, why = UNSAFE[case]
    manifest = write_packed(tmp_path / "layer", {"ok.py": b"fine\n", **members}, top_level=[])
    with pytest.raises(_unpack.UnpackError) as error:
        _unpack.ensure(_manifest_path(tmp_path / "layer"))
    message = str(error.value)
    assert message.startswith("layer_runtime: the packed archive's member ") and why in message, message
    assert "\n" not in message
    assert sorted(os.listdir(unpack_dir)) == [f".{manifest['id']}.lock"]
    assert sorted(os.listdir(tmp_path)) == ["layer", "unpack"]  # nothing escaped
    assert not os.path.lexists("/tmp/evil.py")


def test_a_member_twice_is_refused(tmp_path, unpack_dir):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for data in (b"x", b"y"):
            info = tarfile.TarInfo("a.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    write_packed(tmp_path / "layer", {"a.py": b"x", "b.py": b"y"}, top_level=[], tar=out.getvalue())
    with pytest.raises(_unpack.UnpackError, match="member a.py appears twice"):
        _unpack.ensure(_manifest_path(tmp_path / "layer"))
    assert not (unpack_dir / "a.py").exists() and len(os.listdir(unpack_dir)) == 1


LONG = "deep/" + "/".join(["d" * 60] * 4) + "/" + "n" * 120 + ".py"  # past ustar's 100 and 155 characters


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_tar_formats_unpack_the_same_tree(fmt, compression, tmp_path, unpack_dir):
    members = {**demo_tree(), "./dotted.py": b"dot\n", "pkg/sub/": ("dir",), "pkg/sub/x.so": ("exec", b"\x7fELF"),
               "pkg/sub/lib.so.1": ("symlink", "x.so"), "pkg/up.so": ("symlink", "../pkg/sub/x.so"),
               "unicode/é.py": "é".encode(), "big.bin": os.urandom(3 << 20)}
    name = "u" * 90 + "/" + "v" * 90 + ".py"  # ustar: fits only with the prefix field
    members[name] = b"prefixed\n"
    if fmt != tarfile.USTAR_FORMAT:
        members[LONG] = b"long\n"
    write_packed(tmp_path / "layer", members, compression, top_level=[])
    root = Path(_unpack.ensure(_manifest_path(tmp_path / "layer")))
    for member, spec in members.items():
        path = root / member
        if isinstance(spec, bytes):
            assert path.read_bytes() == spec and path.stat().st_mode & 0o777 == 0o644, member
            assert path.stat().st_mtime == MTIME
        elif spec[0] == "exec":
            assert path.read_bytes() == spec[1] and path.stat().st_mode & 0o777 == 0o755
        elif spec[0] == "symlink":
            assert os.readlink(path) == spec[1] and path.resolve().is_relative_to(root.resolve())
        else:
            assert path.is_dir() and not path.is_symlink()
    assert (root / "pkg/up.so").read_bytes() == b"\x7fELF"
    assert json.loads((root / ".unpacked").read_text())["files"] == sum(
        1 for spec in members.values() if isinstance(spec, bytes) or spec[0] == "exec")


class Pieces:
    """A decompressed stream handed out in pieces of the given sizes, in turn, whatever was asked for."""

    def __init__(self, data: bytes, sizes: list[int]):
        self.data, self.sizes, self.pos, self.turn = data, sizes, 0, 0

    def read(self, n: int) -> bytes:
        size = self.sizes[self.turn % len(self.sizes)]
        self.turn += 1
        piece = self.data[self.pos:self.pos + size]
        self.pos += len(piece)
        return piece


@pytest.mark.parametrize("sizes", [[1], [511, 513], [7, 4096, 100003], [1 << 20]])
def test_the_tree_does_not_depend_on_where_the_stream_is_cut(sizes, tmp_path):
    members = {**demo_tree(), "big.bin": os.urandom(300_000), LONG: b"long\n", "z.py": b""}
    tar = make_tar(members)
    dest = tmp_path / "out"
    dest.mkdir()
    _unpack._extract(Pieces(tar, sizes), str(dest), 1 << 30)
    for member, spec in members.items():
        path = dest / member
        if isinstance(spec, bytes):
            assert path.read_bytes() == spec, member
        elif spec[0] == "symlink":
            assert os.readlink(path) == spec[1]
        elif spec[0] == "exec":
            assert path.read_bytes() == spec[1]
    (tmp_path / "half").mkdir()
    with pytest.raises(_unpack._Truncated):
        _unpack._extract(Pieces(tar[:len(tar) // 2], sizes), str(tmp_path / "half"), 1 << 30)


def test_stale_partials_and_a_root_without_its_marker_are_replaced(tmp_path, unpack_dir):
    manifest = write_packed(tmp_path / "layer", demo_tree(), top_level=[])
    stale = unpack_dir / f".{manifest['id']}.partial.99999"
    (stale / "demo_pkg").mkdir(parents=True)
    (stale / "demo_pkg" / "half.py").write_text("")
    other = unpack_dir / ".0123456789abcdef.partial.99999"  # another layer's, perhaps in progress: kept
    other.mkdir()
    half_root = unpack_dir / manifest["id"]
    half_root.mkdir()
    (half_root / "junk").write_text("")
    root = _unpack.ensure(_manifest_path(tmp_path / "layer"))
    assert root == str(half_root)
    assert sorted(os.listdir(root)) == [".unpacked", "demo_mod.py", "demo_ns", "demo_pkg", "demo_pkg-1.0.dist-info"]
    assert sorted(os.listdir(unpack_dir)) == [".0123456789abcdef.partial.99999", f".{manifest['id']}.lock",
                                              manifest["id"]]


def test_an_archive_bigger_than_its_manifest_says_is_refused_while_unpacking(tmp_path, unpack_dir):
    manifest = write_packed(tmp_path / "layer", {"a.bin": bytes(1000), "b.bin": bytes(5000)}, top_level=[])
    manifest["unpacked_bytes"] = 3000
    Path(_manifest_path(tmp_path / "layer")).write_text(json.dumps(manifest))
    with pytest.raises(_unpack.UnpackError, match=r"holds more than packed.json's unpacked_bytes \(3,000\)"):
        _unpack.ensure(_manifest_path(tmp_path / "layer"))
    assert sorted(os.listdir(unpack_dir)) == [f".{manifest['id']}.lock"]


@pytest.mark.parametrize("change,expected", [
    ({"format": 2}, "has format 2; this layer_runtime reads format 1"),
    ({"id": "0" * 16}, "is not the start of sha256"),
    ({"archive": "../x.tar.gz"}, "archive must be a file name beside it"),
    ({"compression": "xz"}, "compression must be zstd or gzip"),
    ({"unpack_dir": "/var/task"}, "unpack_dir must be an absolute path under /tmp"),
    ({"unpack_dir": "/tmpfoo"}, "unpack_dir must be an absolute path under /tmp"),
    ({"files": -1}, "files must be a whole number"),
    ({"top_level": ["a.b"]}, "top_level must be a list of module names"),
])
def test_a_bad_manifest_is_named_in_one_line(change, expected, tmp_path, unpack_dir):
    manifest = write_packed(tmp_path / "layer", demo_tree(), top_level=[])
    Path(_manifest_path(tmp_path / "layer")).write_text(json.dumps({**manifest, **change}))
    with pytest.raises(_unpack.UnpackError) as error:
        _unpack.ensure(_manifest_path(tmp_path / "layer"))
    assert str(error.value).startswith("layer_runtime: ") and expected in str(error.value)
    assert not unpack_dir.exists()


def test_the_space_message_rounds_up_to_what_lambda_accepts():
    mb = 1 << 20
    usage = collections.namedtuple("usage", "total used free")(512 * mb, 212 * mb, 300 * mb)

    class M:
        unpack_dir = "/"
    assert _unpack._space_message(M, usage, 820 * mb) == (
        "/ has 300 MB free, this packed layer needs 820 MB unpacked: set the function's EphemeralStorage to at"
        " least 1,536 MB (Lambda allows 512 to 10,240)")
    assert "more than Lambda's largest EphemeralStorage (10,240 MB)" in _unpack._space_message(
        M, usage, 10100 * mb)


def test_the_runtime_imports_only_the_standard_library_and_its_decoder_lazily():
    # zstandard ships uncompressed in the layer; compression.zstd is the stdlib's from 3.14. Both only
    # when a zstd archive is unpacked, so a warm start never imports them.
    allowed = set(sys.stdlib_module_names) | {"compression"}
    tree = ast.parse((RUNTIME / "_unpack.py").read_text())
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, "a relative import: the module is copied into the layer alone"
            names = [node.module]
        else:
            continue
        for name in names:
            top_name = name.split(".")[0]
            if top_name == "zstandard" or name.startswith("compression"):
                assert id(node) not in top, f"{name} is imported at module level"
            else:
                assert top_name in allowed, f"_unpack.py imports {name}"


@pytest.mark.parametrize("version", ["3.12", "3.14"])
def test_the_builders_own_archive_unpacks_with_the_runtimes_decoder(interpreters, zstandard_for, version, tmp_path):
    """pack.py's archive (multi-threaded zstd, level 19, with content size and checksum), not the test's own:
    on 3.14 the standard library's compression.zstd decodes it, with no zstandard in the layer."""
    from builder.pack import pack_tree
    from builder.recipe import PackSettings

    python = interpreters(version)
    tree = tmp_path / "tree"
    for name, spec in demo_tree(extension(python), big=3 << 20).items():
        path = tree / name
        if isinstance(spec, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(spec if name != "demo_pkg/big.bin" else os.urandom(len(spec)))
        elif spec[0] == "dir":
            path.mkdir(parents=True, exist_ok=True)
        elif spec[0] == "exec":
            path.write_bytes(spec[1])
            path.chmod(0o755)
        else:
            path.symlink_to(spec[1])
    if version != "3.14":  # the decoder as pip installs it, with its dist-info
        for entry in zstandard_for(version).iterdir():
            if entry.name.startswith("zstandard"):
                shutil.copytree(entry, tree / entry.name)
    layer = tmp_path / "layer"
    result = pack_tree(tree, layer / "python", PackSettings(mode="tmp", compression="zstd", level=19,
                                                            unpack_dir="/tmp/layers"),
                       python_version=tuple(map(int, version.split("."))), runtime_dir=RUNTIME)
    assert ("zstandard" in result.uncompressed) == (version != "3.14")
    manifest = json.loads((layer / "python" / "layer_runtime" / "packed.json").read_text())
    run = Layer(layer, python, tmp_path / "unpack", manifest).run(IMPORTS, read_only=True)
    assert run.returncode == 0, run.stderr
    assert f"ROOT {tmp_path / 'unpack' / result.id}" in run.stdout
    assert "layer_runtime: unpacked 8 files" in run.stderr, run.stderr
