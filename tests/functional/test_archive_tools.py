"""Our layer zips checked by real readers: Info-ZIP's unzip and Python's zipfile."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest

from builder import archive
from builder.archive import CHUNK_SIZE, write_layer_zip
from builder.runner import Runner

UNZIP = "/usr/bin/unzip"


def unzip(*args: str | Path, cwd: Path | None = None):
    return Runner().run([UNZIP, *args], cwd=cwd, timeout=120)


def assert_unzip_test_passes(path: Path) -> None:
    result = unzip("-t", "-q", path)
    assert result.ok, result.tail()
    assert "No errors detected" in result.stdout


def mixed_data(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(rng.randrange(1, 50_000))
        out += b"import numpy as np\nnp.zeros(3)\n" * rng.randrange(1, 3_000)
    return bytes(out[:size])


@pytest.fixture
def layer_tree(tmp_path: Path) -> dict[str, bytes]:
    """A tree shaped like a layer: modules, an executable, a big .so, oddities."""
    files = {
        "numpy/__init__.py": b"from .core import *\n" * 40,
        "numpy/core/_multiarray.cpython-311-x86_64-linux-gnu.so": mixed_data(3 * CHUNK_SIZE + 1234, seed=1),
        "numpy/random.bin": random.Random(2).randbytes(200_000),
        "numpy/empty.typed": b"",
        "bin/f2py": b"#!/usr/bin/env python3\nimport sys\n",
        "données/café.py": "café = 'crème'\n".encode(),
    }
    tree = tmp_path / "tree"
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    (tree / "bin/f2py").chmod(0o755)
    (tree / "numpy/alias.py").symlink_to("__init__.py")
    return files | {"numpy/alias.py": files["numpy/__init__.py"]}


def test_unzip_accepts_and_extracts_our_zip(tmp_path: Path, layer_tree: dict[str, bytes]) -> None:
    dest = tmp_path / "layer.zip"
    write_layer_zip(tmp_path / "tree", dest, workers=2)

    assert_unzip_test_passes(dest)
    out = tmp_path / "extracted"
    result = unzip("-q", dest, "-d", out)
    assert result.ok, result.tail()
    extracted = {
        str(path.relative_to(out / "python")): path.read_bytes() for path in out.rglob("*") if path.is_file()
    }
    assert extracted == layer_tree
    assert (out / "python/bin/f2py").stat().st_mode & 0o777 == 0o755
    assert (out / "python/numpy/__init__.py").stat().st_mode & 0o777 == 0o644
    assert not (out / "python/numpy/alias.py").is_symlink()


def test_zip64_with_70000_entries(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    count = 70_000
    for directory in range(70):
        (tree / f"d{directory:02}").mkdir(parents=True)
    for index in range(count):
        (tree / f"d{index % 70:02}" / f"m{index}.py").write_bytes(b"%d\n" % index)
    dest = tmp_path / "layer.zip"

    result = write_layer_zip(tree, dest)

    assert result.entries == count
    raw_tail = dest.read_bytes()[-98:]
    assert raw_tail.startswith(b"PK\x06\x06")  # ZIP64 end record (56) + locator (20) + end record (22)
    with zipfile.ZipFile(dest) as zf:
        infos = zf.infolist()
        assert len(infos) == count
        assert zf.read(f"python/d{12345 % 70:02}/m12345.py") == b"12345\n"
        assert zf.testzip() is None
    assert_unzip_test_passes(dest)


def test_zip64_sizes_and_offsets_accepted_by_both_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layer_tree: dict[str, bytes]
) -> None:
    """A 4 GiB file takes too long to test; lowered limits exercise the same records."""
    monkeypatch.setattr(archive, "ZIP64_LIMIT", 100_000)
    monkeypatch.setattr(archive, "ZIP64_COUNT_LIMIT", 4)
    dest = tmp_path / "layer.zip"
    write_layer_zip(tmp_path / "tree", dest)

    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None
        assert {info.filename.removeprefix("python/"): zf.read(info) for info in zf.infolist()} == layer_tree
        big = zf.getinfo("python/numpy/core/_multiarray.cpython-311-x86_64-linux-gnu.so")
        assert big.extra[:2] == b"\x01\x00"  # several chunks, patched header with ZIP64 sizes
    assert_unzip_test_passes(dest)
