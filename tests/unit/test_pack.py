"""Packed layers (issue 14): the archive, its manifest, the stubs, what stays uncompressed; the [pack] recipe table."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile

import pytest
import zstandard

from builder.errors import BuildError, RecipeError
from builder.lockfile import layer_identity
from builder.pack import MTIME, STUB, pack_tree, top_level_names
from builder.recipe import PackSettings, load_recipe
from builder.strip.bytecode import FIXED_MTIME
from tests.conftest import ROOT, VALID_RECIPE

ZSTD = PackSettings(mode="tmp", compression="zstd", level=3, unpack_dir="/tmp/layers")
GZIP = PackSettings(mode="tmp", compression="gzip", level=6, unpack_dir="/tmp/layers")
PY311 = (3, 11)
SO = ".cpython-311-x86_64-linux-gnu.so"

METADATA = "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA long description\nof many lines.\n"


def _write(path, data: bytes | str = b"", mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def _dist_info(tree, name: str, version: str, files: list[str], top_level: str = "") -> None:
    info = tree / f"{name}-{version}.dist-info"
    _write(info / "METADATA", METADATA.format(name=name, version=version))
    _write(info / "RECORD", "".join(f"{f},sha256=x,1\n" for f in files) + f"{info.name}/RECORD,,\n")
    _write(info / "WHEEL", "Wheel-Version: 1.0\n")
    _write(info / "LICENSE.txt", "BSD\n")
    if top_level:
        _write(info / "top_level.txt", top_level + "\n")


@pytest.fixture
def tree(tmp_path):
    """A small site-packages: packages, a module, a namespace package, extension modules, bytecode, the decoder."""
    root = tmp_path / "tree"
    _write(root / "numpy/__init__.py", "from .core import *\n")
    _write(root / "numpy/core/__init__.py", "")
    _write(root / f"numpy/core/_multiarray_umath{SO}", os.urandom(300_000), 0o755)
    _write(root / "numpy/__pycache__/__init__.cpython-311.pyc", os.urandom(100))
    (root / "numpy/alias.py").symlink_to("__init__.py")
    (root / "numpy/empty").mkdir()
    _dist_info(root, "numpy", "1.16.6", ["numpy/__init__.py", "../../bin/f2py"], top_level="numpy")
    _write(root / "numpy.libs/libopenblas-r0.so", os.urandom(1000), 0o755)
    _write(root / "six.py", "PY3 = True\n")
    _write(root / "__pycache__/six.cpython-311.pyc", os.urandom(50))
    _dist_info(root, "six", "1.17.0", ["six.py"])
    _write(root / "google/protobuf/__init__.py", "")  # google: a namespace package
    _write(root / "_cffi_backend.cpython-36m-x86_64-linux-gnu.so", os.urandom(2000), 0o755)
    _write(root / "bin/f2py", "#!/bin/sh\n", 0o755)
    _write(root / "foo-bar.py", "")  # not an identifier: imports nothing
    _write(root / "scipy-1.0.data/scripts/x", "")
    _write(root / "long" / ("d" * 120) / "é.py", "# a name past ustar's 100 characters\n")
    _write(root / f"zstandard/backend_c{SO}", os.urandom(5000), 0o755)
    _write(root / "zstandard/__init__.py", "from .backend_c import *\n")
    _dist_info(root, "zstandard", "0.25.0", ["zstandard/__init__.py", f"zstandard/backend_c{SO}"],
               top_level="zstandard")
    return root


@pytest.fixture
def runtime_dir(tmp_path):
    """builder/runtime's modules; placeholders for the unpacker's while it is being written."""
    out = tmp_path / "runtime"
    out.mkdir()
    for name in ("__init__", "_unpack", "unpack"):
        source = ROOT / "builder" / "runtime" / f"{name}.py"
        if source.is_file():
            shutil.copyfile(source, out / f"{name}.py")
        else:
            (out / f"{name}.py").write_text(f"# placeholder for layer_runtime.{name}\n")
    return out


@pytest.fixture
def pack(tmp_path, runtime_dir):
    counter = iter(range(100))

    def run(tree, settings=ZSTD, python_version=PY311):
        layer_python = tmp_path / f"layer{next(counter)}" / "python"
        return pack_tree(tree, layer_python, settings, python_version=python_version, runtime_dir=runtime_dir)
    return run


def _tar(result) -> tarfile.TarFile:
    data = result.archive.read_bytes()
    raw = (zstandard.ZstdDecompressor().decompress(data) if result.archive.suffix == ".zst"
           else gzip.decompress(data))
    return tarfile.open(fileobj=io.BytesIO(raw), mode="r:")


def _python(result):
    return result.archive.parent.parent


# -- reproducible ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [ZSTD, GZIP], ids=["zstd", "gzip"])
def test_the_same_tree_packs_to_the_same_bytes(tree, pack, settings):
    first, second = pack(tree, settings), pack(tree, settings)
    assert first.archive != second.archive
    assert first.archive.read_bytes() == second.archive.read_bytes()
    assert first.sha256 == second.sha256 == hashlib.sha256(first.archive.read_bytes()).hexdigest()
    manifest = "layer_runtime/packed.json"
    assert (_python(first) / manifest).read_bytes() == (_python(second) / manifest).read_bytes()


@pytest.mark.parametrize("settings", [ZSTD, GZIP], ids=["zstd", "gzip"])
def test_mtimes_modes_and_owners_do_not_reach_the_archive(tree, tmp_path, pack, settings):
    other = tmp_path / "other"
    shutil.copytree(tree, other, symlinks=True)
    for number, path in enumerate(sorted(other.rglob("*"))):
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o700)
        else:  # executables stay executable, other files stay not
            path.chmod(0o744 if path.stat().st_mode & 0o111 else 0o600)
        os.utime(path, (1_600_000_000 + number, 1_700_000_000 + number))
        if os.geteuid() == 0:
            os.chown(path, 1234, 5678)
    assert pack(other, settings).sha256 == pack(tree, settings).sha256


def test_an_executable_bit_does_change_the_archive(tree, pack):
    before = pack(tree).sha256
    (tree / "six.py").chmod(0o755)
    assert pack(tree).sha256 != before


# -- the archive's members -----------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [ZSTD, GZIP], ids=["zstd", "gzip"])
def test_members_are_sorted_relative_and_normalised(tree, pack, settings):
    result = pack(tree, settings)
    with _tar(result) as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.encode())
    assert "numpy/__init__.py" in names and "six.py" in names and "numpy-1.16.6.dist-info/METADATA" in names
    assert "numpy/empty" in names  # an empty directory too
    assert not any(n.startswith(("/", "./", "python/")) for n in names)
    assert ("zstandard/__init__.py" in names) == (settings.compression == "gzip")  # the decoder is not in its own
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (MTIME, 0, 0, "", "")
        assert member.isfile() or member.isdir() or member.issym()
    kinds = {m.name: m for m in members}
    assert kinds["numpy"].isdir() and kinds["numpy"].mode == 0o755
    assert kinds[f"numpy/core/_multiarray_umath{SO}"].mode == 0o755
    assert kinds["bin/f2py"].mode == 0o755
    assert kinds["six.py"].mode == 0o644
    assert kinds["numpy/alias.py"].issym() and kinds["numpy/alias.py"].linkname == "__init__.py"
    assert "long/" + "d" * 120 + "/é.py" in kinds
    files = [m for m in members if m.isfile()]
    assert result.files == len(files)
    assert result.unpacked_bytes == sum(m.size for m in files)


def test_members_carry_the_mtime_that_python_3_6_bytecode_was_compiled_against():
    # 3.6's .pyc files hold their source's mtime; bytecode.py sets the tree's to FIXED_MTIME before compiling.
    assert MTIME == FIXED_MTIME == 315532800


def test_member_contents_are_the_trees(tree, pack):
    with _tar(pack(tree)) as archive:
        for member in archive.getmembers():
            if member.isfile():
                assert archive.extractfile(member).read() == (tree / member.name).read_bytes(), member.name


def test_zstd_frame_says_its_content_size_and_has_a_checksum(tree, pack):
    data = pack(tree).archive.read_bytes()
    frame = zstandard.get_frame_parameters(data)
    raw = zstandard.ZstdDecompressor().decompress(data)
    assert frame.content_size == len(raw) and len(raw) % tarfile.RECORDSIZE == 0
    assert frame.has_checksum


def test_gzip_header_holds_no_mtime_and_no_name(tree, pack):
    header = pack(tree, GZIP).archive.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] == 0  # no FNAME, no FEXTRA, no comment
    assert header[4:8] == b"\0\0\0\0"


# -- what python/ holds ------------------------------------------------------------------------------------


def test_stubs_for_packages_modules_namespace_packages_and_extension_modules(tree, pack):
    result = pack(tree)
    python = _python(result)
    for stub in ("numpy/__init__.py", "google/__init__.py", "long/__init__.py", "six.py", "_cffi_backend.py"):
        assert (python / stub).read_text() == STUB, stub
    assert STUB == "from layer_runtime._unpack import redirect; redirect(__name__)\n"
    assert result.top_level == ("_cffi_backend", "google", "long", "numpy", "six")
    assert result.stubs == 5
    for absent in ("__pycache__", "bin", "numpy.libs", "foo-bar.py", "foo-bar", "scipy-1.0.data", "numpy/core"):
        assert not (python / absent).exists(), absent
    stubs = {p.relative_to(python).as_posix() for p in python.rglob("*.py") if p.read_text() == STUB}
    assert stubs == {"numpy/__init__.py", "google/__init__.py", "long/__init__.py", "six.py", "_cffi_backend.py"}


def test_top_level_names_follow_the_finders_precedence(tmp_path):
    root = tmp_path / "t"
    _write(root / "regular/__init__.py", "")
    _write(root / "regular.py", "")  # a regular package wins over a module
    _write(root / "spaced/sub.py", "")
    _write(root / "spaced.py", "")  # a module wins over a namespace package
    _write(root / "compiled.pyc", b"")  # sourceless bytecode (bytecode = "only")
    _write(root / "abi.abi3.so", b"")
    _write(root / f"pkg_so/__init__{SO}", b"")
    _write(root / "types.pyi", "")
    _write(root / "setup.pth", "")
    _write(root / "__pycache__/x.pyc", b"")
    _write(root / "x-1.0.dist-info/METADATA", "")
    assert top_level_names(root) == ["abi", "compiled", "pkg_so", "regular", "spaced"]


def test_stub_shape_follows_the_precedence(tmp_path, pack):
    root = tmp_path / "t"
    _write(root / "regular/__init__.py", "")
    _write(root / "regular.py", "")
    _write(root / "spaced/sub.py", "")
    _write(root / "spaced.py", "")
    python = _python(pack(root, GZIP))
    assert (python / "regular/__init__.py").read_text() == STUB and not (python / "regular.py").exists()
    assert (python / "spaced.py").read_text() == STUB and not (python / "spaced").exists()


def test_dist_info_is_copied_small_and_stays_in_the_archive(tree, pack):
    result = pack(tree)
    copy = _python(result) / "numpy-1.16.6.dist-info"
    assert sorted(p.name for p in copy.iterdir()) == ["METADATA", "RECORD", "top_level.txt"]
    assert (copy / "METADATA").read_text() == "Metadata-Version: 2.1\nName: numpy\nVersion: 1.16.6\n"
    assert (copy / "RECORD").read_bytes() == (tree / "numpy-1.16.6.dist-info/RECORD").read_bytes()
    assert sorted(p.name for p in (_python(result) / "six-1.17.0.dist-info").iterdir()) == ["METADATA", "RECORD"]
    with _tar(result) as archive:
        names = archive.getnames()
    assert "numpy-1.16.6.dist-info/WHEEL" in names and "numpy-1.16.6.dist-info/METADATA" in names


def test_the_dist_info_copies_are_what_importlib_metadata_reads(tree, pack):
    from importlib.metadata import distributions

    python = _python(pack(tree))
    found = {d.metadata["Name"]: d.version for d in distributions(path=[str(python)])}
    assert found == {"numpy": "1.16.6", "six": "1.17.0", "zstandard": "0.25.0"}


def test_the_decoder_stays_out_of_the_archive_before_python_3_14(tree, pack):
    result = pack(tree)
    python = _python(result)
    assert (python / "zstandard/__init__.py").read_text() == "from .backend_c import *\n"
    assert (python / f"zstandard/backend_c{SO}").read_bytes() == (tree / f"zstandard/backend_c{SO}").read_bytes()
    assert (python / "zstandard-0.25.0.dist-info/RECORD").is_file()
    assert (python / "zstandard-0.25.0.dist-info/WHEEL").is_file()  # copied whole, not trimmed
    assert "zstandard" not in result.top_level
    assert set(result.uncompressed) == {"zstandard", "zstandard-0.25.0.dist-info"}
    with _tar(result) as archive:
        assert not [n for n in archive.getnames() if n.startswith("zstandard")]
    assert (tree / "zstandard/__init__.py").is_file()  # the tree is left as it was


def test_the_decoder_is_found_by_top_level_txt_when_strip_dropped_record(tree, pack):
    (tree / "zstandard-0.25.0.dist-info/RECORD").unlink()
    result = pack(tree)
    assert set(result.uncompressed) == {"zstandard", "zstandard-0.25.0.dist-info"}
    assert (_python(result) / "zstandard/__init__.py").read_text() != STUB


@pytest.mark.parametrize("settings,python_version", [(ZSTD, (3, 14)), (GZIP, PY311)], ids=["py3.14", "gzip"])
def test_the_decoder_is_packed_like_the_rest_where_it_is_not_needed(tree, pack, settings, python_version):
    result = pack(tree, settings, python_version)
    assert "zstandard" in result.top_level and result.uncompressed == ()
    assert (_python(result) / "zstandard/__init__.py").read_text() == STUB


def test_zstd_before_python_3_14_needs_the_decoder_in_the_tree(tree, pack):
    shutil.rmtree(tree / "zstandard")
    shutil.rmtree(tree / "zstandard-0.25.0.dist-info")
    with pytest.raises(BuildError) as caught:
        pack(tree)
    assert "zstandard" in caught.value.message and "gzip" in caught.value.hint


def test_the_trees_layer_runtime_stays_uncompressed_beside_the_unpacker(tree, pack, runtime_dir):
    _write(tree / "layer_runtime/__init__.py", (runtime_dir / "__init__.py").read_text())
    _write(tree / "layer_runtime/model_loader.py", "def load(): pass\n")
    result = pack(tree)
    runtime = _python(result) / "layer_runtime"
    assert (runtime / "model_loader.py").read_text() == "def load(): pass\n"
    assert "layer_runtime" not in result.top_level
    with _tar(result) as archive:
        assert not [n for n in archive.getnames() if n.startswith("layer_runtime")]


def test_the_unpacker_ships_in_layer_runtime(tree, pack, runtime_dir):
    runtime = _python(pack(tree)) / "layer_runtime"
    for name in ("__init__", "_unpack", "unpack"):
        assert (runtime / f"{name}.py").read_bytes() == (runtime_dir / f"{name}.py").read_bytes()


def test_packed_json(tree, pack):
    result = pack(tree)
    manifest = json.loads((result.archive.parent / "packed.json").read_text())
    assert list(manifest) == ["format", "id", "archive", "compression", "sha256", "archive_bytes",
                              "unpacked_bytes", "files", "unpack_dir", "top_level"]
    assert manifest == {
        "format": 1, "id": result.sha256[:16], "archive": "packed.tar.zst", "compression": "zstd",
        "sha256": result.sha256, "archive_bytes": result.archive.stat().st_size,
        "unpacked_bytes": result.unpacked_bytes, "files": result.files, "unpack_dir": "/tmp/layers",
        "top_level": ["_cffi_backend", "google", "long", "numpy", "six"],
    }
    assert len(manifest["id"]) == 16 and int(manifest["id"], 16) >= 0
    assert result.id == manifest["id"] and result.stubs == len(manifest["top_level"]) and result.seconds > 0
    gzipped = pack(tree, GZIP.model_copy(update={"unpack_dir": "/tmp/x"}))
    manifest = json.loads((gzipped.archive.parent / "packed.json").read_text())
    assert (manifest["archive"], manifest["compression"], manifest["unpack_dir"]) == ("packed.tar.gz", "gzip", "/tmp/x")


# -- refusals ------------------------------------------------------------------------------------------------


def _refused(pack, tree, tmp_path, words):
    with pytest.raises(BuildError) as caught:
        pack(tree)
    assert all(word in caught.value.message for word in words), caught.value.message
    assert caught.value.hint
    assert not any(p.iterdir() for p in tmp_path.glob("layer*/python"))  # nothing written


def test_a_fifo_is_refused(tree, tmp_path, pack):
    os.mkfifo(tree / "numpy/pipe")
    _refused(pack, tree, tmp_path, ["numpy/pipe", "FIFO"])


def test_an_absolute_symlink_is_refused(tree, tmp_path, pack):
    (tree / "numpy/libc.so").symlink_to("/lib/x86_64-linux-gnu/libc.so.6")
    _refused(pack, tree, tmp_path, ["numpy/libc.so", "absolute"])


@pytest.mark.parametrize("target", ["../../outside", "../" * 5 + "etc/passwd"])
def test_a_symlink_out_of_the_tree_is_refused(tree, tmp_path, pack, target):
    (tree / "numpy/out").symlink_to(target)
    _refused(pack, tree, tmp_path, ["numpy/out", "outside the tree"])


def test_a_symlink_with_dotdot_after_a_name_is_refused_as_the_unpacker_would(tree, tmp_path, pack):
    (tree / "numpy/sibling").symlink_to("core/../__init__.py")  # inside, but the unpacker cannot check it exactly
    _refused(pack, tree, tmp_path, ["numpy/sibling", "a '..' after a name"])


def test_a_symlink_out_through_another_symlink_is_refused(tree, tmp_path, pack):
    (tree / "numpy/up").symlink_to("..")  # the tree's root: inside
    (tree / "numpy/out").symlink_to("up/..")  # looks like numpy/, is the tree's parent
    _refused(pack, tree, tmp_path, ["numpy/out", "a '..' after a name"])


def test_a_layer_python_that_is_not_empty_is_refused(tree, tmp_path, runtime_dir):
    layer_python = tmp_path / "python"
    _write(layer_python / "left.py", "")
    with pytest.raises(BuildError) as caught:
        pack_tree(tree, layer_python, ZSTD, python_version=PY311, runtime_dir=runtime_dir)
    assert "not an empty directory" in caught.value.message and caught.value.hint
    with pytest.raises(BuildError):
        pack_tree(tree, tree / "python", ZSTD, python_version=PY311, runtime_dir=runtime_dir)


def test_a_missing_unpacker_module_is_refused_before_anything_is_written(tree, tmp_path, runtime_dir):
    (runtime_dir / "unpack.py").unlink()
    with pytest.raises(BuildError) as caught:
        pack_tree(tree, tmp_path / "python", ZSTD, python_version=PY311, runtime_dir=runtime_dir)
    assert "unpack.py" in caught.value.message and caught.value.hint
    assert not (tmp_path / "python").exists()


def test_a_tree_of_no_files_is_refused(tmp_path, pack):
    (tmp_path / "empty/sub").mkdir(parents=True)
    with pytest.raises(BuildError) as caught:
        pack(tmp_path / "empty", GZIP)
    assert "nothing to pack" in caught.value.message and caught.value.hint


# -- the [pack] table of a recipe ------------------------------------------------------------------------------


def _recipe(write_recipe, pack_table: str = "", bytecode: str = "alongside"):
    # A packed layer carries its bytecode, so the recipe compiles it.
    text = VALID_RECIPE.replace('runtime = "python3.11"', f'runtime = "python3.11"\nbytecode = "{bytecode}"')
    return load_recipe(write_recipe(text + (f"[pack]\n{pack_table}\n" if pack_table else "")))


def test_pack_defaults(write_recipe):
    pack = _recipe(write_recipe).pack
    assert pack == PackSettings(mode="none", compression="zstd", level=19, unpack_dir="/tmp/layers")


def test_gzip_without_a_level_gets_gzips_default(write_recipe):
    assert _recipe(write_recipe, 'mode = "tmp"\ncompression = "gzip"').pack.level == 6
    assert _recipe(write_recipe, 'compression = "gzip"\nlevel = 9').pack.level == 9
    assert _recipe(write_recipe, "level = 22").pack.level == 22


BAD_PACK = [
    ("zstd level 0", "level = 0", "pack.level", "zstd"),
    ("zstd level 23", "level = 23", "pack.level", "1 to 22"),
    ("gzip level 0", 'compression = "gzip"\nlevel = 0', "pack.level", "gzip"),
    ("gzip level 10", 'compression = "gzip"\nlevel = 10', "pack.level", "1 to 9"),
    ("gzip with zstd's level", 'compression = "gzip"\nlevel = 19', "pack.level", "gzip"),
    ("level as a string", 'level = "19"', "pack.level", "integer"),
    ("level as a boolean", "level = true", "pack.level", "integer"),
    ("unknown mode", 'mode = "opt"', "pack.mode", "'tmp'"),
    ("unknown compression", 'compression = "lz4"', "pack.compression", "'gzip'"),
    ("outside /tmp", 'unpack_dir = "/var/task/layers"', "pack.unpack_dir", "/tmp"),
    ("/tmp itself", 'unpack_dir = "/tmp"', "pack.unpack_dir", "below /tmp"),
    ("a prefix of /tmp only", 'unpack_dir = "/tmpfoo/x"', "pack.unpack_dir", "below /tmp"),
    ("climbing out with ..", 'unpack_dir = "/tmp/../etc"', "pack.unpack_dir", "normalised"),
    ("a .. inside", 'unpack_dir = "/tmp/a/../b"', "pack.unpack_dir", "normalised"),
    ("a trailing slash", 'unpack_dir = "/tmp/layers/"', "pack.unpack_dir", "normalised"),
    ("a double slash", 'unpack_dir = "/tmp//layers"', "pack.unpack_dir", "normalised"),
    ("relative", 'unpack_dir = "tmp/layers"', "pack.unpack_dir", "relative"),
    ("a space", 'unpack_dir = "/tmp/my layers"', "pack.unpack_dir", "characters"),
    ("a newline", 'unpack_dir = "/tmp/a\\nb"', "pack.unpack_dir", "characters"),
    ("a final newline", 'unpack_dir = "/tmp/layers\\n"', "pack.unpack_dir", "characters"),
    ("a dollar", 'unpack_dir = "/tmp/$HOME"', "pack.unpack_dir", "characters"),
    ("non-ASCII", 'unpack_dir = "/tmp/lâyers"', "pack.unpack_dir", "characters"),
    ("over 100 characters", f'unpack_dir = "/tmp/{"x" * 96}"', "pack.unpack_dir", "100"),
    ("empty", 'unpack_dir = ""', "pack.unpack_dir", "characters"),
    ("unknown key", 'levle = 3', "pack.levle", "did you mean"),
]


@pytest.mark.parametrize("what,table,key,word", BAD_PACK, ids=[b[0] for b in BAD_PACK])
def test_bad_pack_settings_are_refused_naming_the_key(write_recipe, what, table, key, word):
    with pytest.raises(RecipeError) as caught:
        _recipe(write_recipe, table)
    error = caught.value
    assert f": {key}: " in error.message
    assert word in error.message + " " + error.hint
    assert error.hint and "\n" not in error.message


def test_the_longest_unpack_dir_is_accepted(write_recipe):
    path = "/tmp/" + "x" * 95
    assert _recipe(write_recipe, f'unpack_dir = "{path}"').pack.unpack_dir == path


def test_a_packed_layer_needs_bytecode(write_recipe):
    with pytest.raises(RecipeError, match="bytecode: a packed layer carries its bytecode") as refused:
        _recipe(write_recipe, 'mode = "tmp"\ncompression = "gzip"', bytecode="none")
    assert 'bytecode = "only"' in refused.value.hint


def test_zstd_packing_needs_the_decoder_in_the_requirements(write_recipe):
    with pytest.raises(RecipeError, match="pack.compression: zstd on python3.11 needs the decoder") as refused:
        _recipe(write_recipe, 'mode = "tmp"')
    assert "zstandard" in refused.value.hint


def test_identity_is_unchanged_unless_the_layer_is_packed(write_recipe):
    def identity(table=""):
        return layer_identity(_recipe(write_recipe, table), "lock-digest", "pip")

    plain = identity()
    assert identity('mode = "none"\ncompression = "gzip"\nlevel = 1\nunpack_dir = "/tmp/x"') == plain
    packed = identity('mode = "tmp"\ncompression = "gzip"')
    assert packed != plain
    assert identity('mode = "tmp"\ncompression = "gzip"\nlevel = 9') != packed
    assert identity('mode = "tmp"\ncompression = "gzip"\nunpack_dir = "/tmp/x"') != packed
