"""Write a Lambda layer zip that is reproducible and fast to build.

Reproducible: the same file contents give a byte-identical zip, so a layer's
CodeSha256 changes only when its contents do. Entries are sorted by name (the
UTF-8 bytes), there are no directory entries, every timestamp is 1980-01-01
00:00:00, modes are normalised to 0644 or 0755, and there are no extra fields
or comments that could carry an mtime, an owner or the building host.
Symlinks are stored as the file they point to.

Fast: compression runs on a thread pool (zlib releases the GIL). Every file is
cut into fixed 1 MiB chunks, which are deflated independently the way pigz
does it: each chunk is primed with the 32 KiB of data before it and ends on a
sync flush (the last one on a finish), so the pieces, concatenated, are one
valid deflate stream. A 300 MB shared library therefore uses every core, and
since chunk boundaries never depend on the worker count, neither does the
output. Small files are grouped into tasks of up to 1 MiB so the per-task
overhead stays small.

Bounded memory: at most ``2 * workers + 2`` tasks are in flight, each holding
at most one chunk of input and its deflated form, so the peak is roughly
``(2 * workers + 2) * 2 MiB``, whatever the size of the tree. The output is
written sequentially in sorted order. A file of several chunks gets a
placeholder local header that is patched once its size and CRC are known, so
no data descriptor (and no spool file) is needed.

The zip is built in a temporary file next to ``dest`` and moved into place
only once it is complete and synced; a failure leaves ``dest`` untouched.
Output is identical for a given zlib version; another zlib implementation
(zlib-ng, say) may deflate differently.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import struct
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError, UsageError

# 1 MiB takes 10-25 ms to deflate, which dwarfs the Python overhead of a task,
# and still splits a 300 MB .so into 300 parallel pieces. Each chunk costs a
# sync marker of a few bytes; the 32 KiB dictionary keeps the ratio otherwise
# intact. On a 685 MB site-packages, pigz's 128 KiB used 1.5 % more CPU for a
# 0.01 % smaller zip; 4 MiB gained nothing and would quadruple the memory.
CHUNK_SIZE = 1 << 20
DICT_SIZE = 32 * 1024  # deflate's window: all a chunk can refer back to
MAX_PIECES_PER_TASK = 64  # keeps progress granular on trees of tiny files

# 1980-01-01 00:00:00, the earliest DOS timestamp.
DOS_TIME = 0
DOS_DATE = (0 << 9) | (1 << 5) | 1

UNIX = 3
VERSION_MADE_BY = (UNIX << 8) | 45  # Unix, spec 4.5 (what we implement: ZIP64)
VERSION_STORED = 10
VERSION_DEFLATED = 20
VERSION_ZIP64 = 45

METHOD_STORED = 0
METHOD_DEFLATED = 8

FLAG_UTF8_NAME = 1 << 11
MODE_EXECUTABLE = 0o100755
MODE_REGULAR = 0o100644

# A value at or beyond its limit moves into a ZIP64 record and its classic
# field holds the all-ones marker. Tests lower the limits to exercise ZIP64
# without writing 4 GiB.
ZIP64_LIMIT = 0xFFFFFFFF
ZIP64_COUNT_LIMIT = 0xFFFF
IN_ZIP64_32 = 0xFFFFFFFF
IN_ZIP64_16 = 0xFFFF
ZIP64_EXTRA_ID = 0x0001

LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
END_OF_CENTRAL_DIR = struct.Struct("<IHHHHIIH")
ZIP64_END_OF_CENTRAL_DIR = struct.Struct("<IQHHIIQQQQ")
ZIP64_LOCATOR = struct.Struct("<IIQI")

# What to do next, for the errors that share a cause.
UNREADABLE_HINT = "check that you can read it (permissions) and that nothing else is changing the tree"
CHANGING_HINT = "something else writes to the tree: let it finish, then build again"
DAMAGED_ZIP_HINT = "the zip is damaged: download or build it again (layers build writes it to dist/RECIPE/)"

LOCAL_HEADER_SIGNATURE = 0x04034B50
CENTRAL_HEADER_SIGNATURE = 0x02014B50
END_OF_CENTRAL_DIR_SIGNATURE = 0x06054B50
ZIP64_END_OF_CENTRAL_DIR_SIGNATURE = 0x06064B50
ZIP64_LOCATOR_SIGNATURE = 0x07064B50


@dataclass(frozen=True)
class ZipResult:
    path: Path
    sha256_hex: str  # hex sha256 of the zip bytes
    code_sha256: str  # base64 of the sha256 digest: what Lambda reports as CodeSha256
    zipped_bytes: int
    unzipped_bytes: int
    entries: int


def write_layer_zip(
    tree: Path,
    dest: Path,
    *,
    prefix: str = "python/",
    level: int = 6,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ZipResult:
    """Zip every file under ``tree`` as ``prefix + relative path`` into ``dest``.

    ``progress`` is called with the number of uncompressed bytes each time a
    piece of input has been written.
    """
    tree, dest = Path(tree), Path(dest)
    _check_arguments(prefix, level, workers)
    workers = workers or os.cpu_count() or 1
    if dest.resolve().parent.is_relative_to(tree.resolve()):
        raise UsageError(f"{dest} is inside the tree being zipped", hint="write the zip outside the layer directory")
    files = _collect_files(tree, prefix)
    if not files:
        raise BuildError(f"nothing to zip: {tree} contains no files",
                         hint="check that the recipe's requirements install files and that no [strip] rule "
                              "removes them all")

    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise BuildError(f"cannot create {dest}: {exc.strerror}",
                         hint=f"check that {dest.parent} exists and that you can write there") from exc
    temp_path = Path(temp_name)
    try:
        with open(fd, "wb", buffering=CHUNK_SIZE) as stream:
            _write_zip(files, stream, level=level, workers=workers, progress=progress)
            stream.flush()
            # mkstemp creates 0600; a build artifact should be readable like any other file.
            os.fchmod(stream.fileno(), 0o644)
            os.fsync(stream.fileno())
        sha256_hex, code_sha256 = sha256_of(temp_path)
        zipped_bytes = temp_path.stat().st_size
        os.replace(temp_path, dest)
    except BaseException as exc:
        temp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise BuildError(f"cannot write {dest}: {exc.strerror or exc}",
                             hint=f"check the free space and your permissions in {dest.parent}") from exc
        raise
    _fsync_directory(dest.parent)
    return ZipResult(
        path=dest,
        sha256_hex=sha256_hex,
        code_sha256=code_sha256,
        zipped_bytes=zipped_bytes,
        unzipped_bytes=sum(file.size for file in files),
        entries=len(files),
    )


def _write_zip(
    files: list[_SourceFile], stream, *, level: int, workers: int, progress: Callable[[int], None] | None
) -> None:
    writer = _ZipWriter(stream, level)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="layer-zip")
    try:
        # Twice the workers keeps every worker busy while the head of the queue
        # is being written, without letting finished chunks pile up.
        for piece, raw, deflated in _compress_in_order(_tasks(files), pool, level, max_in_flight=2 * workers + 2):
            writer.add_piece(piece, raw, deflated)
            if progress is not None and piece.length:
                progress(piece.length)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    writer.finish()


def sha256_of(path: Path) -> tuple[str, str]:
    """The sha256 of a file as (hex, base64), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(CHUNK_SIZE):
            digest.update(block)
    return digest.hexdigest(), base64.b64encode(digest.digest()).decode("ascii")


# --- reading a layer zip that someone else may have made -------------------------

# Lambda unpacks stored and deflated members; anything else (deflate64, bzip2, lzma, AES) is refused here
# rather than crashing a reader later. 10 GiB unpacked is past every Lambda limit, counted from the
# central directory before a byte is inflated.
_READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
MAX_LAYER_MEMBERS = 500_000
MAX_DECLARED_BYTES = 10 << 30


def open_layer_zip(path: Path) -> zipfile.ZipFile:
    """``path`` opened as a zip whose every member a layer may hold; UsageError naming the first that is not.

    A layer holds regular files, directories and symlinks with relative
    names; no device, FIFO or socket entries, no encrypted members, no
    names that are not valid UTF-8 although the zip says they are.
    """
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise UsageError(f"{path} is not a regular file", hint="give a layer zip")
        archive = zipfile.ZipFile(path)
    except UsageError:
        raise
    except FileNotFoundError:
        raise UsageError(f"no such zip: {path}",
                         hint="check the path; layers build writes zips to dist/RECIPE/") from None
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"cannot read {path} as a zip: {exc}", hint="give a layer zip") from None
    try:
        members = archive.infolist()
        if len(members) > MAX_LAYER_MEMBERS:
            raise UsageError(f"{path} has {len(members):,} members, more than any layer ({MAX_LAYER_MEMBERS:,})",
                             hint="give a Lambda layer zip (at most 250 MB unzipped), not another archive")
        declared = 0
        for info in members:
            name = info.filename
            kind = stat.S_IFMT(info.external_attr >> 16)
            if info.flag_bits & 0x1:
                raise UsageError(f"{path}: member {name!r} is encrypted", hint="Lambda cannot unpack it")
            if info.compress_type not in _READABLE_METHODS:
                raise UsageError(f"{path}: member {name!r} uses compression method {info.compress_type}",
                                 hint="Lambda unpacks stored and deflated members only; zip it again")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
                raise UsageError(f"{path}: member {name!r} is a device, FIFO or socket, not a file",
                                 hint="a layer holds files, directories and symlinks only")
            # orig_filename: zipfile cuts a name at its first NUL, so "python/a\0b" would read as "python/a".
            if "\0" in info.orig_filename or "\\" in name or name.startswith("/") or ".." in name.split("/"):
                raise UsageError(f"{path}: member {name!r} would be extracted outside /opt",
                                 hint="a layer zip holds relative paths (python/..., lib/...) only")
            if kind == stat.S_IFLNK:
                _check_link(archive, info, path)
            declared += info.file_size
        if declared > MAX_DECLARED_BYTES:
            raise UsageError(f"{path} declares {declared:,} bytes unpacked, more than any Lambda limit",
                             hint="give a Lambda layer zip (at most 250 MB unzipped), not another archive")
    except BaseException:
        archive.close()
        raise
    return archive


def _check_link(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> None:
    """A symlink member must point inside the layer: Lambda unpacks it under /opt as it is."""
    if info.file_size > 4096:
        raise UsageError(f"{path}: symlink {info.filename!r} has a {info.file_size:,}-byte target",
                         hint="a symlink's target is a short path inside the layer")
    target = read_member_head(archive, info, 4096).decode("utf-8", "replace")
    # Absolute targets are fine inside /opt, where Lambda puts the layer; relative ones must not climb out.
    if target.startswith("/"):
        parts = target.split("/")[1:]
        parts, depth = (parts[1:], 0) if parts[:1] == ["opt"] else ([], -1)
    else:
        parts, depth = target.split("/"), len(info.filename.rstrip("/").split("/")) - 1
    for part in parts:
        if part == "..":
            depth -= 1
        elif part not in ("", "."):
            depth += 1
        if depth < 0:
            break
    if depth < 0 or "\0" in target:
        raise UsageError(f"{path}: symlink {info.filename!r} points outside /opt (to {target!r})",
                         hint="a layer's symlinks point inside it (relative, without leaving /opt)")


def verify_layer_zip(path: Path) -> None:
    """Open ``path`` as ``open_layer_zip`` does, then read every member whole, checking its size and CRC.

    For the commands that vouch for a zip (report, check, publish, a build's
    --compare-to, diff): a damaged member would otherwise pass them and fail
    only when Lambda unpacks the layer. Memory stays bounded: members are
    read in chunks, and the total was bounded from the central directory.
    """
    with open_layer_zip(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            read = 0
            try:
                with archive.open(info) as member:
                    while block := member.read(CHUNK_SIZE):
                        read += len(block)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError, zlib.error) as exc:
                raise UsageError(f"{path}: member {info.filename!r} cannot be read: {exc}",
                                 hint=DAMAGED_ZIP_HINT) from None
            if read != info.file_size:  # zipfile checks the CRC, not the size the directory declares
                raise UsageError(f"{path}: member {info.filename!r} declares {info.file_size:,} bytes and holds "
                                 f"{read:,}", hint=DAMAGED_ZIP_HINT)


def read_member_head(archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> bytes:
    """The first ``size`` bytes of a member (never the whole of it); UsageError if it cannot be read."""
    try:
        with archive.open(info) as member:
            return member.read(size)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError, zlib.error) as exc:
        raise UsageError(f"{archive.filename}: member {info.filename!r} cannot be read: {exc}",
                         hint=DAMAGED_ZIP_HINT) from None


# --- the files to zip ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SourceFile:
    path: str  # opened by the workers; a symlink is followed
    arcname: bytes  # UTF-8 name inside the zip
    size: int
    executable: bool


@dataclass(frozen=True, slots=True)
class _Piece:
    """One chunk of one file: the unit of compression."""

    file: _SourceFile
    index: int
    offset: int
    length: int
    last: bool


def _check_arguments(prefix: str, level: int, workers: int | None) -> None:
    if not 0 <= level <= 9:
        raise UsageError(f"compression level must be 0-9, not {level}",
                         hint="set compression in the recipe from 0 (stored) to 9 (smallest); 6 is the default")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}", hint="pass None for one per CPU")
    parts = prefix.split("/")
    if prefix and (not prefix.endswith("/") or prefix.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1])):
        raise UsageError(f"zip prefix must be a relative directory ending in '/', like 'python/', not {prefix!r}",
                         hint="use 'python/' (where Lambda looks for a layer's packages), or '' for the zip's root")


def _collect_files(tree: Path, prefix: str) -> list[_SourceFile]:
    """Every regular file under ``tree`` (following symlinks), sorted by name in the zip."""
    if not tree.is_dir():
        raise BuildError(f"cannot zip {tree}: not a directory", hint="pass the directory whose files go into the zip")
    files: list[_SourceFile] = []
    root = os.stat(tree)
    # Each directory carries the (device, inode) of the directories above it,
    # so a symlink back up the tree is reported instead of followed forever.
    pending: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (os.fspath(tree), prefix, frozenset({(root.st_dev, root.st_ino)}))
    ]
    while pending:
        directory, arc_directory, ancestors = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError as exc:
            raise BuildError(f"cannot read directory {directory}: {exc.strerror}", hint=UNREADABLE_HINT) from exc
        for entry in entries:
            info = _stat_following_links(entry)
            if stat.S_ISDIR(info.st_mode):
                identity = (info.st_dev, info.st_ino)
                if identity in ancestors:
                    raise BuildError(f"symlink loop: {entry.path} leads back to a directory above it",
                                     hint="remove the symlink (a [strip] remove glob), or point it at a file")
                pending.append((entry.path, f"{arc_directory}{entry.name}/", ancestors | {identity}))
            elif stat.S_ISREG(info.st_mode):
                files.append(
                    _SourceFile(
                        path=entry.path,
                        arcname=_encode_name(arc_directory + entry.name, entry.path),
                        size=info.st_size,
                        executable=bool(info.st_mode & 0o111),
                    )
                )
            else:
                raise BuildError(f"cannot zip {entry.path}: not a regular file, directory or symlink to one",
                                 hint="a layer holds files only: drop it with a [strip] remove glob")
    files.sort(key=lambda file: file.arcname)
    return files


def _stat_following_links(entry: os.DirEntry) -> os.stat_result:
    try:
        return entry.stat(follow_symlinks=True)
    except OSError as exc:
        if entry.is_symlink():
            try:
                target = os.readlink(entry.path)
            except OSError:
                target = "?"
            reason = "broken symlink" if isinstance(exc, FileNotFoundError) else f"unusable symlink ({exc.strerror})"
            raise BuildError(f"{reason}: {entry.path} -> {target}",
                             hint="drop the symlink with a [strip] remove glob, or keep what it points to") from exc
        raise BuildError(f"cannot read {entry.path}: {exc.strerror}", hint=UNREADABLE_HINT) from exc


def _encode_name(name: str, path: str) -> bytes:
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:
        raise BuildError(f"file name is not valid UTF-8: {path!r}", hint="rename the file") from None


def _tasks(files: Iterable[_SourceFile]) -> Iterator[list[_Piece]]:
    """Chunks of every file, in zip order, grouped into tasks of at most CHUNK_SIZE bytes."""
    task: list[_Piece] = []
    task_bytes = 0
    for piece in _pieces(files):
        if task and (task_bytes + piece.length > CHUNK_SIZE or len(task) >= MAX_PIECES_PER_TASK):
            yield task
            task, task_bytes = [], 0
        task.append(piece)
        task_bytes += piece.length
    if task:
        yield task


def _pieces(files: Iterable[_SourceFile]) -> Iterator[_Piece]:
    for file in files:
        count = max(1, -(-file.size // CHUNK_SIZE))
        for index in range(count):
            offset = index * CHUNK_SIZE
            yield _Piece(file, index, offset, min(CHUNK_SIZE, file.size - offset), index == count - 1)


# --- compression (runs on the worker threads) -----------------------------------


def _compress_in_order(
    tasks: Iterator[list[_Piece]], pool: ThreadPoolExecutor, level: int, max_in_flight: int
) -> Iterator[tuple[_Piece, bytes, bytes]]:
    """(piece, raw, deflated) for every piece, in input order, with a bounded number of tasks in flight."""
    in_flight: deque[tuple[list[_Piece], Future[list[tuple[bytes, bytes]]]]] = deque()
    for task in tasks:
        if len(in_flight) >= max_in_flight:
            yield from _results(*in_flight.popleft())
        in_flight.append((task, pool.submit(_compress_task, task, level)))
    while in_flight:
        yield from _results(*in_flight.popleft())


def _results(task: list[_Piece], future: Future) -> Iterator[tuple[_Piece, bytes, bytes]]:
    for piece, (raw, deflated) in zip(task, future.result()):
        yield piece, raw, deflated


def _compress_task(task: list[_Piece], level: int) -> list[tuple[bytes, bytes]]:
    return [_compress_piece(piece, level) for piece in task]


def _compress_piece(piece: _Piece, level: int) -> tuple[bytes, bytes]:
    """The piece's bytes and their raw-deflate form, ready to be concatenated with its neighbours'."""
    path = piece.file.path
    previous = b""
    try:
        with open(path, "rb") as stream:
            if piece.index:
                stream.seek(piece.offset - DICT_SIZE)
                previous = stream.read(DICT_SIZE)
            raw = stream.read(piece.length)
            grew = piece.last and stream.read(1)
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc.strerror or exc}", hint=UNREADABLE_HINT) from exc
    if len(raw) != piece.length or grew or len(previous) != (DICT_SIZE if piece.index else 0):
        raise BuildError(f"{path} changed while it was being zipped", hint=CHANGING_HINT)
    if previous:
        # Priming with the preceding 32 KiB lets this chunk refer back across
        # the boundary exactly as a single-stream deflate would.
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=previous)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    # A sync flush ends byte-aligned without a final block, so the next chunk's
    # output can follow directly; only the file's last chunk finishes the stream.
    deflated = compressor.compress(raw) + compressor.flush(zlib.Z_FINISH if piece.last else zlib.Z_SYNC_FLUSH)
    return raw, deflated


# --- the zip format (runs on the calling thread) --------------------------------


@dataclass(slots=True)
class _Entry:
    name: bytes
    flags: int
    external_attr: int
    offset: int
    uncompressed_size: int
    method: int = METHOD_DEFLATED
    crc: int = 0
    compressed_size: int = 0

    @property
    def sizes_need_zip64(self) -> bool:
        # Compressed size never exceeds the uncompressed one (we store instead),
        # so the uncompressed size, known up front, decides the header layout.
        return self.uncompressed_size >= ZIP64_LIMIT

    @property
    def version_needed(self) -> int:
        if self.sizes_need_zip64 or self.offset >= ZIP64_LIMIT:
            return VERSION_ZIP64
        return VERSION_DEFLATED if self.method == METHOD_DEFLATED else VERSION_STORED

    def local_header(self) -> bytes:
        if self.sizes_need_zip64:
            # In a local header the ZIP64 field must carry both sizes.
            extra = struct.pack("<HHQQ", ZIP64_EXTRA_ID, 16, self.uncompressed_size, self.compressed_size)
            compressed_size = uncompressed_size = IN_ZIP64_32
        else:
            extra = b""
            compressed_size, uncompressed_size = self.compressed_size, self.uncompressed_size
        return (
            LOCAL_HEADER.pack(
                LOCAL_HEADER_SIGNATURE,
                self.version_needed,
                self.flags,
                self.method,
                DOS_TIME,
                DOS_DATE,
                self.crc,
                compressed_size,
                uncompressed_size,
                len(self.name),
                len(extra),
            )
            + self.name
            + extra
        )

    def central_header(self) -> bytes:
        # ZIP64 values appear only for fields that overflow, in the spec's order.
        zip64_values = []
        compressed_size, uncompressed_size, offset = self.compressed_size, self.uncompressed_size, self.offset
        if self.sizes_need_zip64:
            zip64_values += [self.uncompressed_size, self.compressed_size]
            compressed_size = uncompressed_size = IN_ZIP64_32
        if self.offset >= ZIP64_LIMIT:
            zip64_values.append(self.offset)
            offset = IN_ZIP64_32
        extra = b""
        if zip64_values:
            extra = struct.pack(f"<HH{len(zip64_values)}Q", ZIP64_EXTRA_ID, 8 * len(zip64_values), *zip64_values)
        return (
            CENTRAL_HEADER.pack(
                CENTRAL_HEADER_SIGNATURE,
                VERSION_MADE_BY,
                self.version_needed,
                self.flags,
                self.method,
                DOS_TIME,
                DOS_DATE,
                self.crc,
                compressed_size,
                uncompressed_size,
                len(self.name),
                len(extra),
                0,  # comment length
                0,  # disk number
                0,  # internal attributes
                self.external_attr,
                offset,
            )
            + self.name
            + extra
        )


class _ZipWriter:
    """Appends entries to a seekable stream, one piece at a time, in order."""

    def __init__(self, stream, level: int) -> None:
        self._stream = stream
        self._offset = 0
        self._entries: list[_Entry] = []
        self._current: _Entry | None = None
        self._data_start = 0
        # Informational bits 1-2 for deflate, set the way Info-ZIP sets them.
        self._deflate_flags = 0x2 if level >= 8 else 0x4 if level == 2 else 0x6 if level == 1 else 0

    def add_piece(self, piece: _Piece, raw: bytes, deflated: bytes) -> None:
        if piece.index == 0 and piece.last:
            self._add_whole_file(piece.file, raw, deflated)
            return
        if piece.index == 0:
            self._begin_entry(piece.file)
        entry = self._current
        entry.crc = zlib.crc32(raw, entry.crc)
        entry.compressed_size += len(deflated)
        self._write(deflated)
        if piece.last:
            self._finish_entry(piece.file)

    def finish(self) -> None:
        """Write the central directory and its end records."""
        directory_offset = self._offset
        for entry in self._entries:
            self._write(entry.central_header())
        directory_size = self._offset - directory_offset
        count = len(self._entries)
        count_field = count if count < ZIP64_COUNT_LIMIT else IN_ZIP64_16
        size_field = directory_size if directory_size < ZIP64_LIMIT else IN_ZIP64_32
        offset_field = directory_offset if directory_offset < ZIP64_LIMIT else IN_ZIP64_32
        if (count_field, size_field, offset_field) != (count, directory_size, directory_offset):
            zip64_end_offset = self._offset
            self._write(
                ZIP64_END_OF_CENTRAL_DIR.pack(
                    ZIP64_END_OF_CENTRAL_DIR_SIGNATURE,
                    ZIP64_END_OF_CENTRAL_DIR.size - 12,  # size of the rest of the record
                    VERSION_MADE_BY,
                    VERSION_ZIP64,
                    0,  # this disk
                    0,  # disk holding the central directory
                    count,
                    count,
                    directory_size,
                    directory_offset,
                )
            )
            self._write(ZIP64_LOCATOR.pack(ZIP64_LOCATOR_SIGNATURE, 0, zip64_end_offset, 1))
        self._write(
            END_OF_CENTRAL_DIR.pack(
                END_OF_CENTRAL_DIR_SIGNATURE,
                0,
                0,
                count_field,
                count_field,
                size_field,
                offset_field,
                0,  # comment length
            )
        )

    def _new_entry(self, file: _SourceFile) -> _Entry:
        entry = _Entry(
            name=file.arcname,
            flags=0 if file.arcname.isascii() else FLAG_UTF8_NAME,
            external_attr=(MODE_EXECUTABLE if file.executable else MODE_REGULAR) << 16,
            offset=self._offset,
            uncompressed_size=file.size,
        )
        self._entries.append(entry)
        return entry

    def _add_whole_file(self, file: _SourceFile, raw: bytes, deflated: bytes) -> None:
        entry = self._new_entry(file)
        entry.crc = zlib.crc32(raw)
        data = self._choose_method(entry, raw, deflated)
        entry.compressed_size = len(data)
        self._write(entry.local_header())
        self._write(data)

    def _choose_method(self, entry: _Entry, raw: bytes, deflated: bytes) -> bytes:
        # Depends only on the two lengths, so it is as reproducible as the data.
        if len(deflated) < len(raw):
            entry.method, entry.flags = METHOD_DEFLATED, entry.flags | self._deflate_flags
            return deflated
        entry.method = METHOD_STORED
        return raw

    def _begin_entry(self, file: _SourceFile) -> None:
        # Sizes and CRC are not known yet: write a placeholder of the right
        # length now and patch it when the last chunk is in.
        self._current = self._new_entry(file)
        self._write(self._current.local_header())
        self._data_start = self._offset

    def _finish_entry(self, file: _SourceFile) -> None:
        entry, self._current = self._current, None
        if entry.compressed_size < entry.uncompressed_size:
            entry.method, entry.flags = METHOD_DEFLATED, entry.flags | self._deflate_flags
        else:
            self._replace_with_stored_copy(entry, file)
        self._stream.seek(entry.offset)
        self._stream.write(entry.local_header())
        self._stream.seek(0, os.SEEK_END)

    def _replace_with_stored_copy(self, entry: _Entry, file: _SourceFile) -> None:
        self._stream.seek(self._data_start)
        self._stream.truncate()
        self._offset = self._data_start
        crc = 0
        for block in _read_blocks(file.path):
            crc = zlib.crc32(block, crc)
            self._write(block)
        if crc != entry.crc or self._offset - self._data_start != entry.uncompressed_size:
            raise BuildError(f"{file.path} changed while it was being zipped", hint=CHANGING_HINT)
        entry.method = METHOD_STORED
        entry.compressed_size = entry.uncompressed_size

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        self._offset += len(data)


def _read_blocks(path: str) -> Iterator[bytes]:
    try:
        with open(path, "rb") as source:
            while block := source.read(CHUNK_SIZE):
                yield block
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc.strerror or exc}", hint=UNREADABLE_HINT) from exc


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; not every filesystem lets a directory be synced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
