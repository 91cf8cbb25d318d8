"""Unit tests of the reproducible layer zip writer (small trees, fast)."""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
import random
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from builder import archive
from builder.archive import CHUNK_SIZE, ZipResult, sha256_of, write_layer_zip
from builder.errors import BuildError, UsageError


def make_tree(root: Path, files: dict[str, bytes], *, order: list[str] | None = None) -> Path:
    for name in order or list(files):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
    return root


def mixed_data(size: int, seed: int = 0) -> bytes:
    """Alternating random and repetitive runs: deflates, but not to nothing."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(rng.randrange(1, 40_000))
        out += (b"def handler(event, context):\n    return event\n" * rng.randrange(1, 2_000))
    return bytes(out[:size])


SMALL_TREE = {
    "pkg/__init__.py": b"",
    "pkg/core.py": b"import os\n" * 200,
    "pkg/data/table.csv": b"a,b,c\n1,2,3\n" * 50,
    "top.py": b"print('hello')\n",
    "pkg-1.0.dist-info/METADATA": b"Name: pkg\nVersion: 1.0\n",
}


@pytest.fixture
def small_tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree", SMALL_TREE)


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return {info.filename: zf.read(info) for info in zf.infolist()}


def assert_local_headers_match_central(path: Path) -> None:
    """zipfile trusts the central directory; other readers check the local headers too."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            fields = struct.unpack_from("<IHHHHHIIIHH", raw, info.header_offset)
            signature, _, flags, method, time, date, crc, compressed, uncompressed, name_length, extra_length = fields
            assert signature == 0x04034B50
            assert (flags, method, time, date, crc) == (info.flag_bits, info.compress_type, 0, 0x21, info.CRC)
            name_start = info.header_offset + 30
            assert raw[name_start : name_start + name_length] == info.filename.encode()
            if compressed == uncompressed == 0xFFFFFFFF:
                assert struct.unpack_from("<HHQQ", raw, name_start + name_length) == (
                    1, 16, info.file_size, info.compress_size
                )
            else:
                assert (compressed, uncompressed, extra_length) == (info.compress_size, info.file_size, 0)


# --- round trip and format --------------------------------------------------


def test_round_trip_names_contents_and_metadata(small_tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "layer.zip"
    result = write_layer_zip(small_tree, dest, workers=2)

    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None
        assert zf.comment == b""
        infos = zf.infolist()
        assert [i.filename for i in infos] == sorted("python/" + name for name in SMALL_TREE)
        for info in infos:
            assert zf.read(info) == SMALL_TREE[info.filename.removeprefix("python/")]
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr == 0o100644 << 16
            assert info.create_system == 3
            assert info.extra == b""
            assert info.comment == b""
            assert not info.is_dir()
            assert info.flag_bits & 0x8 == 0  # no data descriptor
        assert zf.getinfo("python/pkg/core.py").compress_type == zipfile.ZIP_DEFLATED
    assert_local_headers_match_central(dest)

    assert result == ZipResult(
        path=dest,
        sha256_hex=hashlib.sha256(dest.read_bytes()).hexdigest(),
        code_sha256=base64.b64encode(hashlib.sha256(dest.read_bytes()).digest()).decode(),
        zipped_bytes=dest.stat().st_size,
        unzipped_bytes=sum(len(data) for data in SMALL_TREE.values()),
        entries=len(SMALL_TREE),
    )


def test_code_sha256_is_base64_of_zip_digest(small_tree: Path, tmp_path: Path) -> None:
    result = write_layer_zip(small_tree, tmp_path / "layer.zip")
    digest = hashlib.sha256(result.path.read_bytes()).digest()
    assert result.code_sha256 == base64.b64encode(digest).decode("ascii")
    assert sha256_of(result.path) == (digest.hex(), result.code_sha256)


def test_entries_sorted_by_utf8_bytes_with_utf8_flag(tmp_path: Path) -> None:
    names = ["a-b.py", "a/b.py", "B.py", "é.py", "z.py", "a.py"]
    tree = make_tree(tmp_path / "tree", {name: name.encode() for name in names})
    dest = tmp_path / "layer.zip"
    write_layer_zip(tree, dest, prefix="")

    with zipfile.ZipFile(dest) as zf:
        listed = [info.filename for info in zf.infolist()]
        assert listed == sorted(names, key=lambda name: name.encode("utf-8"))
        assert zf.getinfo("é.py").flag_bits & 0x800
        assert not zf.getinfo("z.py").flag_bits & 0x800


def test_prefix_is_applied(small_tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "layer.zip"
    write_layer_zip(small_tree, dest, prefix="python/lib/python3.11/site-packages/")
    assert all(name.startswith("python/lib/python3.11/site-packages/") for name in read_zip(dest))


@pytest.mark.parametrize("prefix", ["python", "/python/", "../x/", "a//b/"])
def test_bad_prefix_is_a_usage_error(small_tree: Path, tmp_path: Path, prefix: str) -> None:
    with pytest.raises(UsageError):
        write_layer_zip(small_tree, tmp_path / "layer.zip", prefix=prefix)


@pytest.mark.parametrize("kwargs", [{"level": 10}, {"level": -1}, {"workers": 0}])
def test_bad_level_or_workers_is_a_usage_error(small_tree: Path, tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(UsageError):
        write_layer_zip(small_tree, tmp_path / "layer.zip", **kwargs)


def test_dest_inside_tree_is_refused(small_tree: Path) -> None:
    with pytest.raises(UsageError):
        write_layer_zip(small_tree, small_tree / "layer.zip")


def test_zip_file_is_world_readable(small_tree: Path, tmp_path: Path) -> None:
    result = write_layer_zip(small_tree, tmp_path / "layer.zip")
    assert result.path.stat().st_mode & 0o777 == 0o644


# --- reproducibility --------------------------------------------------------


def test_same_contents_give_identical_zip_whatever_mtime_mode_and_order(tmp_path: Path) -> None:
    files = {**SMALL_TREE, "big.bin": mixed_data(3 * CHUNK_SIZE + 123)}
    first = make_tree(tmp_path / "first", files)
    second = make_tree(tmp_path / "second", files, order=list(reversed(files)))
    for index, path in enumerate(sorted(p for p in second.rglob("*") if p.is_file())):
        os.utime(path, (1_000_000 + index, 2_000_000_000 - index))
        path.chmod(0o600 if index % 2 else 0o664)  # no exec bit: still 0644 in the zip
    (second / "pkg").chmod(0o700)

    a = write_layer_zip(first, tmp_path / "a.zip")
    b = write_layer_zip(second, tmp_path / "b.zip")

    assert a.sha256_hex == b.sha256_hex
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_different_contents_give_different_sha(tmp_path: Path) -> None:
    first = make_tree(tmp_path / "first", SMALL_TREE)
    second = make_tree(tmp_path / "second", {**SMALL_TREE, "top.py": b"print('hello!')\n"})
    a = write_layer_zip(first, tmp_path / "a.zip")
    b = write_layer_zip(second, tmp_path / "b.zip")
    assert a.sha256_hex != b.sha256_hex


def test_output_does_not_depend_on_worker_count(tmp_path: Path) -> None:
    tree = make_tree(
        tmp_path / "tree",
        {**SMALL_TREE, "lib/big.so": mixed_data(4 * CHUNK_SIZE + 7), "lib/exact.so": mixed_data(2 * CHUNK_SIZE, 1)},
    )
    one = write_layer_zip(tree, tmp_path / "one.zip", workers=1)
    four = write_layer_zip(tree, tmp_path / "four.zip", workers=4)
    assert one.sha256_hex == four.sha256_hex


# --- contents ---------------------------------------------------------------


def test_file_of_many_chunks_round_trips(tmp_path: Path) -> None:
    data = mixed_data(5 * CHUNK_SIZE + 4321)
    tree = make_tree(tmp_path / "tree", {"lib/libbig.so": data})
    dest = tmp_path / "layer.zip"
    result = write_layer_zip(tree, dest, workers=3)

    with zipfile.ZipFile(dest) as zf:
        info = zf.getinfo("python/lib/libbig.so")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.compress_size < len(data)
        assert info.CRC == zlib.crc32(data)
        assert zf.read(info) == data
        assert zf.testzip() is None
    assert result.unzipped_bytes == len(data)
    assert_local_headers_match_central(dest)


def test_chunked_deflate_is_one_stream_close_to_single_shot_size(tmp_path: Path) -> None:
    """The pigz-style pieces decode as one stream and cost almost nothing in ratio."""
    data = mixed_data(3 * CHUNK_SIZE + 99, seed=7)
    tree = make_tree(tmp_path / "tree", {"f": data})
    dest = tmp_path / "layer.zip"
    write_layer_zip(tree, dest, prefix="")

    with zipfile.ZipFile(dest) as zf:
        info = zf.getinfo("f")
    raw = dest.read_bytes()
    name_length, extra_length = struct.unpack_from("<HH", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    stream = raw[start : start + info.compress_size]
    decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
    assert decompressor.decompress(stream) == data
    assert decompressor.eof and decompressor.unused_data == b""
    single = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    single_size = len(single.compress(data) + single.flush())
    assert info.compress_size <= single_size * 1.01


def test_empty_file_is_stored(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", {"empty.py": b"", "other.py": b"x = 1\n"})
    dest = tmp_path / "layer.zip"
    write_layer_zip(tree, dest)
    with zipfile.ZipFile(dest) as zf:
        info = zf.getinfo("python/empty.py")
        assert (info.compress_type, info.file_size, info.compress_size, info.CRC) == (zipfile.ZIP_STORED, 0, 0, 0)
        assert zf.read(info) == b""


@pytest.mark.parametrize("size", [1000, 2 * CHUNK_SIZE + 5])  # one piece; several (patched header)
def test_incompressible_file_is_stored(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    tree = make_tree(tmp_path / "tree", {"random.bin": data, "text.py": b"pass\n" * 100})
    dest = tmp_path / "layer.zip"
    write_layer_zip(tree, dest)
    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None
        info = zf.getinfo("python/random.bin")
        assert (info.compress_type, info.compress_size) == (zipfile.ZIP_STORED, size)
        assert zf.read(info) == data
        assert zf.getinfo("python/text.py").compress_type == zipfile.ZIP_DEFLATED
    assert_local_headers_match_central(dest)


def test_level_zero_stores_everything(small_tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "layer.zip"
    write_layer_zip(small_tree, dest, level=0)
    with zipfile.ZipFile(dest) as zf:
        assert {info.compress_type for info in zf.infolist()} == {zipfile.ZIP_STORED}
        assert zf.testzip() is None


def test_exec_bit_becomes_0755(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", {"bin/tool": b"#!/bin/sh\necho hi\n", "lib/mod.py": b"x = 1\n"})
    (tree / "bin/tool").chmod(0o700)
    (tree / "lib/mod.py").chmod(0o666)
    dest = tmp_path / "layer.zip"
    write_layer_zip(tree, dest)
    with zipfile.ZipFile(dest) as zf:
        assert zf.getinfo("python/bin/tool").external_attr >> 16 == 0o100755
        assert zf.getinfo("python/lib/mod.py").external_attr >> 16 == 0o100644


def test_symlinks_are_stored_as_their_targets(tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "outside", {"shared/lib.py": b"shared = True\n"})
    tree = make_tree(tmp_path / "tree", {"real.so": b"\x7fELF" + b"\0" * 100})
    (tree / "alias.so").symlink_to("real.so")
    (tree / "linked_dir").symlink_to(outside / "shared", target_is_directory=True)
    dest = tmp_path / "layer.zip"
    write_layer_zip(tree, dest)
    assert read_zip(dest) == {
        "python/alias.so": b"\x7fELF" + b"\0" * 100,
        "python/linked_dir/lib.py": b"shared = True\n",
        "python/real.so": b"\x7fELF" + b"\0" * 100,
    }


def test_progress_reports_every_uncompressed_byte(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", {**SMALL_TREE, "big.bin": mixed_data(2 * CHUNK_SIZE + 1)})
    reported: list[int] = []
    result = write_layer_zip(tree, tmp_path / "layer.zip", progress=reported.append)
    assert sum(reported) == result.unzipped_bytes
    assert all(n > 0 for n in reported)


def test_zip64_records_when_limits_are_crossed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lowered limits make small files need ZIP64 sizes, offsets and end records."""
    monkeypatch.setattr(archive, "ZIP64_LIMIT", 2000)
    monkeypatch.setattr(archive, "ZIP64_COUNT_LIMIT", 3)
    files = {"a.txt": b"a" * 10, "b.bin": random.Random(1).randbytes(5000), "c.txt": b"c" * 3000, "d.txt": b"d"}
    tree = make_tree(tmp_path / "tree", files)
    dest = tmp_path / "layer.zip"
    write_layer_zip(tree, dest, prefix="")

    raw = dest.read_bytes()
    assert raw[-22:-18] == struct.pack("<I", 0x06054B50)
    assert raw[-42:-38] == struct.pack("<I", 0x07064B50)  # ZIP64 locator
    assert read_zip(dest) == files
    with zipfile.ZipFile(dest) as zf:
        assert zf.getinfo("b.bin").extra.startswith(b"\x01\x00")  # sizes moved to ZIP64
        assert zf.getinfo("a.txt").extra == b""
    assert_local_headers_match_central(dest)


def test_no_zip64_records_for_a_normal_zip(small_tree: Path, tmp_path: Path) -> None:
    raw = write_layer_zip(small_tree, tmp_path / "layer.zip").path.read_bytes()
    assert struct.pack("<I", 0x07064B50) not in raw
    assert struct.pack("<I", 0x06064B50) not in raw


# --- errors -----------------------------------------------------------------


def test_broken_symlink_is_named(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", SMALL_TREE)
    (tree / "pkg/dangling.so").symlink_to("missing.so")
    with pytest.raises(BuildError, match="broken symlink.*dangling.so"):
        write_layer_zip(tree, tmp_path / "layer.zip")
    assert not (tmp_path / "layer.zip").exists()


def test_symlink_loop_is_reported(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", SMALL_TREE)
    (tree / "pkg/loop").symlink_to("..", target_is_directory=True)
    with pytest.raises(BuildError, match="loop"):
        write_layer_zip(tree, tmp_path / "layer.zip")


def test_empty_tree_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "tree/only/dirs").mkdir(parents=True)
    with pytest.raises(BuildError, match="nothing to zip"):
        write_layer_zip(tmp_path / "tree", tmp_path / "layer.zip")


def test_missing_tree_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not a directory"):
        write_layer_zip(tmp_path / "nope", tmp_path / "layer.zip")


def test_special_file_is_an_error(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", SMALL_TREE)
    os.mkfifo(tree / "pipe")
    with pytest.raises(BuildError, match="pipe"):
        write_layer_zip(tree, tmp_path / "layer.zip")


def deny_reads_of(monkeypatch: pytest.MonkeyPatch, victim: Path, *, after_opens: int = 0) -> None:
    """Make ``open`` in the archive module fail for one file (root ignores chmod 000)."""
    opens = 0

    def guarded_open(file, *args, **kwargs):
        nonlocal opens
        if isinstance(file, (str, os.PathLike)) and Path(file) == victim:
            opens += 1
            if opens > after_opens:
                raise PermissionError(13, "Permission denied", os.fspath(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(archive, "open", guarded_open, raising=False)


@pytest.mark.parametrize(
    "victim, after_opens",
    [("pkg/core.py", 0), ("lib/big.so", 2)],  # a small file; the third chunk of a big one
)
def test_failure_keeps_old_dest_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, victim: str, after_opens: int
) -> None:
    tree = make_tree(tmp_path / "tree", {**SMALL_TREE, "lib/big.so": mixed_data(4 * CHUNK_SIZE)})
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "layer.zip"
    dest.write_bytes(b"previous build")
    deny_reads_of(monkeypatch, tree / victim, after_opens=after_opens)

    with pytest.raises(BuildError, match=victim):
        write_layer_zip(tree, dest, workers=2)

    assert dest.read_bytes() == b"previous build"
    assert [p.name for p in out.iterdir()] == ["layer.zip"]


def test_exception_from_progress_removes_temp_file(small_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_layer_zip(small_tree, out / "layer.zip", progress=interrupt)
    assert list(out.iterdir()) == []


def test_file_changing_during_zip_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_tree(tmp_path / "tree", SMALL_TREE)
    collect = archive._collect_files

    def collect_then_grow(*args):
        files = collect(*args)
        with open(tree / "top.py", "ab") as stream:
            stream.write(b"# appended after the scan\n")
        return files

    monkeypatch.setattr(archive, "_collect_files", collect_then_grow)
    with pytest.raises(BuildError, match="top.py changed"):
        write_layer_zip(tree, tmp_path / "layer.zip")
    assert list(tmp_path.glob("*.zip*")) == []


def test_missing_dest_directory_is_an_error(small_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="cannot create"):
        write_layer_zip(small_tree, tmp_path / "no/such/dir/layer.zip")
