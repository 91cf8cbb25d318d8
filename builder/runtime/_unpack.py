"""Packed layers: the layer's Python tree as one archive, unpacked into /tmp at first import.

Lambda counts a layer's unzipped size against its 250 MB limit, so a heavy
stack can ship as one compressed tar, ``python/layer_runtime/packed.tar.zst``
(or ``.tar.gz``), described by ``packed.json`` beside it, with a stub in
``python/`` for each top-level name. A stub holds one line,
``from layer_runtime._unpack import redirect; redirect(__name__)``.

Shipped in the layer as ``layer_runtime._unpack``. It uses only the standard
library, apart from the zstd decoder: the ``zstandard`` package, installed
uncompressed beside the stubs, or ``compression.zstd`` from Python 3.14 on.
It runs on Python 3.6 and later. Importing it has no side effects.

- ``ensure()`` returns the unpacked root, ``{unpack_dir}/{id}``, unpacking it
  if needed. A warm start (the root is already there) reads packed.json and
  stats one file, the marker written last into the tree. A cold start takes
  a file lock, so a second process waits and then finds the root. It checks
  free space before writing anything, and extracts into a partial directory
  while hashing the archive in the same pass. Only when the sha256 matches
  does it rename the partial into place, so a crash or a timeout never
  leaves a tree that a later start trusts.
- ``install()`` puts the root on sys.path, just before the layer's own
  python/, and adds a finder that looks up the packed top-level names in the
  root only, so the stubs never shadow the real modules again.
- ``redirect(name)`` is what a stub runs. The real module replaces the stub
  in sys.modules, and the import statement that ran the stub receives the
  real module.

Every failure raises ``UnpackError``, whose message is one line starting
"layer_runtime: ". ``LAYER_UNPACK_DIR`` in the environment overrides
packed.json's unpack_dir. ``LAYER_UNPACK_DEBUG=1`` logs each step to stderr.
"""

import errno
import importlib
import json
import os
import sys
import threading
import time
from importlib.machinery import PathFinder

try:
    import fcntl
except ImportError:  # not Lambda (Windows): only this process's own lock is left
    fcntl = None

FORMAT = 1
MANIFEST = "packed.json"
MARKER = ".unpacked"  # written last, so a tree that has it is complete
DEFAULT_UNPACK_DIR = "/tmp/layers"
CHUNK = 1 << 20  # decompressed bytes per read: this bounds memory, whatever the compression ratio
RAW_CHUNK = 1 << 18  # compressed bytes per read
MB = 1 << 20
# The space check adds a block per file (a file wastes at most one), plus room for
# directories and the marker file.
BLOCK = 4096
MARGIN = 4 * MB
# Lambda's EphemeralStorage, in MB: the range it accepts, and the step we round up to.
STORAGE_MIN, STORAGE_MAX, STORAGE_STEP = 512, 10240, 512

HERE = os.path.dirname(os.path.abspath(__file__))
LAYER_PYTHON = os.path.dirname(HERE)  # the layer's python/, which holds the stubs

_lock = threading.RLock()
_finder = None  # set by the first install()
_redirecting = set()  # names whose stub is being replaced, to stop a stub finding itself again


class UnpackError(RuntimeError):
    """A packed layer could not be unpacked or installed. The message is one line."""

    def __init__(self, message):
        message = " ".join(str(message).splitlines())
        RuntimeError.__init__(self, "layer_runtime: " + message)


class _Truncated(Exception):
    """The archive's data ended early. Turned into an UnpackError naming the archive."""


class _Manifest:
    """packed.json, checked field by field."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as e:
            raise UnpackError(f"cannot read {path}: {_reason(e)}") from e
        if not isinstance(data, dict):
            raise UnpackError(f"{path} is not a JSON object")
        if data.get("format") != FORMAT:
            raise UnpackError("{} has format {!r}; this layer_runtime reads format {}: rebuild the layer with"
                              " one builder".format(path, data.get("format"), FORMAT))
        self.sha256 = self._hex(data, "sha256", 64)
        self.id = self._hex(data, "id", 16)
        if self.sha256[:16] != self.id:
            raise UnpackError(f"{path}: id {self.id} is not the start of sha256 {self.sha256}")
        archive = data.get("archive")
        if (not isinstance(archive, str) or not archive or archive.startswith(".")
                or "/" in archive or "\\" in archive or "\0" in archive):
            raise UnpackError(f"{path}: archive must be a file name beside it, not {archive!r}")
        self.archive = os.path.join(os.path.dirname(path), archive)
        self.compression = data.get("compression")
        if self.compression not in ("zstd", "gzip"):
            raise UnpackError(f"{path}: compression must be zstd or gzip, not {self.compression!r}")
        self.archive_bytes = self._count(data, "archive_bytes")
        self.unpacked_bytes = self._count(data, "unpacked_bytes")
        self.files = self._count(data, "files")
        unpack_dir = data.get("unpack_dir", DEFAULT_UNPACK_DIR)
        if not isinstance(unpack_dir, str) or not os.path.isabs(unpack_dir) or not (
                os.path.normpath(unpack_dir) + "/").startswith("/tmp/"):
            raise UnpackError(f"{path}: unpack_dir must be an absolute path under /tmp, not {unpack_dir!r}")
        override = os.environ.get("LAYER_UNPACK_DIR")
        if override:
            if not os.path.isabs(override):
                raise UnpackError(f"LAYER_UNPACK_DIR must be an absolute path, not {override!r}")
            unpack_dir = override
        self.unpack_dir = os.path.normpath(unpack_dir)
        self.root = os.path.join(self.unpack_dir, self.id)
        top_level = data.get("top_level")
        if not isinstance(top_level, list) or not all(
                isinstance(name, str) and name.isidentifier() for name in top_level):
            raise UnpackError(f"{path}: top_level must be a list of module names, not {top_level!r}")
        self.top_level = frozenset(top_level)

    def _hex(self, data, key, length):
        value = data.get(key)
        if not (isinstance(value, str) and len(value) == length
                and all(c in "0123456789abcdef" for c in value)):
            raise UnpackError(f"{self.path}: {key} must be {length} lowercase hex digits, not {value!r}")
        return value

    def _count(self, data, key):
        value = data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UnpackError(f"{self.path}: {key} must be a whole number, not {value!r}")
        return value


def ensure(manifest=None):
    """The unpacked root, ``{unpack_dir}/{id}``, unpacking the archive first if needed.

    ``manifest``: the path of a packed.json (default: the one beside this module).
    """
    m = _Manifest(manifest or os.path.join(HERE, MANIFEST))
    return _ensure(m)


def install():
    """Unpack if needed, then make the packed modules importable from the root. Returns the root.

    Idempotent: a second call returns the same root and changes nothing.
    """
    global _finder
    with _lock:
        if _finder is not None:
            return _finder.root
        m = _Manifest(os.path.join(HERE, MANIFEST))
        root = _ensure(m)
        _put_on_path(root)
        finder = _PackedFinder(root, m.top_level, LAYER_PYTHON)
        # Just before the PathFinder, as a sys.path entry would be: builtins and frozen modules
        # still come first, and other finders that others put ahead keep their place.
        for i, other in enumerate(sys.meta_path):
            if other is PathFinder:
                sys.meta_path.insert(i, finder)
                break
        else:
            sys.meta_path.append(finder)
        _finder = finder
        return root


def redirect(name):
    """Replace the stub module ``name`` by the real one from the unpacked root, and return it."""
    install()
    if name not in _finder.names:
        raise UnpackError(f"{name} has a stub in {LAYER_PYTHON} but is not in packed.json's top_level:"
                          " rebuild the layer")
    if name in _redirecting:
        # The finder found nothing in the root, so the import came back to the stub.
        raise UnpackError(f"{name} is in packed.json's top_level but not in {_finder.root}: rebuild the layer")
    _redirecting.add(name)
    try:
        sys.modules.pop(name, None)
        # The import lock on ``name``, held while the stub runs, is re-entrant for this thread.
        module = importlib.import_module(name)
    finally:
        _redirecting.discard(name)
    # The import machinery returns sys.modules[name] once the stub has run, so the
    # statement that ran the stub gets this module.
    sys.modules[name] = module
    return module


class _PackedFinder:
    """Finds the packed top-level names in the unpacked root, never in the stubs' directory."""

    def __init__(self, root, names, stub_dir):
        self.root = root
        self.names = names
        self.stub_dir = _norm(stub_dir)

    def find_spec(self, fullname, path=None, target=None):
        if path is not None or fullname not in self.names:
            return None
        spec = PathFinder.find_spec(fullname, [self.root])
        if spec is not None and spec.loader is None and spec.submodule_search_locations is not None:
            spec = self._namespace(fullname, spec)
        return spec

    def _namespace(self, fullname, spec):
        # A namespace package (google, say) may have portions elsewhere on sys.path, such as
        # the function's own code: look for them too, as if the tree were unpacked where the
        # stubs are, but never in the stubs' directory.
        entries = [entry for entry in sys.path if isinstance(entry, str) and _norm(entry) != self.stub_dir]
        if self.root not in entries:
            entries.insert(0, self.root)
        merged = PathFinder.find_spec(fullname, entries)
        if merged is not None and merged.loader is None and merged.submodule_search_locations is not None:
            return merged
        return spec  # a regular package of that name elsewhere: the packed one still wins

    def invalidate_caches(self):
        pass


def _ensure(m):
    marker = os.path.join(m.root, MARKER)
    if os.path.isfile(marker):
        _debug(f"found {m.root}, already unpacked")
        return m.root
    with _lock:
        _cold(m, marker)
    return m.root


def _cold(m, marker):
    started = time.time()
    try:
        os.makedirs(m.unpack_dir, exist_ok=True)
        lock_fd = os.open(os.path.join(m.unpack_dir, f".{m.id}.lock"),
                          os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise UnpackError(f"cannot create {m.unpack_dir}: {_reason(e)}") from e
    try:
        if fcntl is not None:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise UnpackError(f"cannot lock {m.unpack_dir}: {_reason(e)}") from e
                _debug(f"waiting for another process unpacking {m.root}")
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if os.path.isfile(marker):
            _debug(f"found {m.root}, unpacked by another process")
            return
        _remove_stale(m)
        _check_space(m)
        _unpack(m)
        _debug(f"unpacked {m.files} files, {m.unpacked_bytes / MB:.1f} MB, in {time.time() - started:.3f} s"
               f" into {m.root}")
    finally:
        os.close(lock_fd)  # releases the lock


def _remove_stale(m):
    """Partials of this id (their owner died: we hold the lock), and a root that lacks its marker."""
    import shutil
    prefix = f".{m.id}.partial."
    stale = [os.path.join(m.unpack_dir, name) for name in os.listdir(m.unpack_dir) if name.startswith(prefix)]
    if os.path.lexists(m.root):
        stale.append(m.root)
    for path in stale:
        _debug(f"removing {path}, left by a start that did not finish")
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
    if os.path.lexists(m.root):
        raise UnpackError(f"cannot remove {m.root}, an incomplete unpack: remove it by hand")


def _check_space(m):
    import shutil
    usage = shutil.disk_usage(m.unpack_dir)
    need = m.unpacked_bytes + m.files * BLOCK + MARGIN
    if usage.free < need:
        raise UnpackError(_space_message(m, usage, need))


def _space_message(m, usage, need):
    mount = _mount_point(m.unpack_dir)
    setting = -(-(usage.total - usage.free + need) // (STORAGE_STEP * MB)) * STORAGE_STEP
    if setting > STORAGE_MAX:
        advice = ("that is more than Lambda's largest EphemeralStorage (10,240 MB): split the stack"
                  " into smaller layers")
    else:
        advice = (f"set the function's EphemeralStorage to at least {max(setting, STORAGE_MIN):,} MB"
                  " (Lambda allows 512 to 10,240)")
    return (f"{mount} has {usage.free // MB:,} MB free, this packed layer needs {-(-need // MB):,} MB unpacked:"
            f" {advice}")


def _mount_point(path):
    path = os.path.abspath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def _unpack(m):
    import shutil
    partial = os.path.join(m.unpack_dir, f".{m.id}.partial.{os.getpid()}")
    _debug(f"unpacking {m.archive} into {partial}")
    try:
        os.mkdir(partial, 0o755)
    except OSError as e:
        raise UnpackError(f"cannot create {partial}: {_reason(e)}") from e
    try:
        try:
            raw = open(m.archive, "rb", buffering=0)
        except OSError as e:
            raise UnpackError(f"cannot open the packed archive {m.archive}: {_reason(e)}") from e
        with raw:
            size = os.fstat(raw.fileno()).st_size
            if size != m.archive_bytes:
                raise UnpackError(f"{m.archive} is {size:,} bytes, packed.json says {m.archive_bytes:,}: the archive"
                                  " is truncated or not this layer's; publish the layer again")
            hashed = _HashingReader(raw)
            # One thread. Decompressing on a second thread measured no faster for zstd on two
            # CPUs (zstandard holds the GIL while it decompresses), and about 4% faster for gzip.
            source = _decoder(m.compression, hashed)
            failure = None
            try:
                _extract(source, partial, m.unpacked_bytes)
                while source.read(CHUNK):  # the tar's padding, and any frame after it
                    pass
            except (_Truncated, _DecodeError, UnpackError) as e:
                failure = e
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    shutil.rmtree(partial, ignore_errors=True)
                    need = m.unpacked_bytes + m.files * BLOCK + MARGIN
                    raise UnpackError("ran out of space unpacking: " + _space_message(
                        m, shutil.disk_usage(m.unpack_dir), need)) from e
                raise UnpackError(f"cannot unpack {m.archive} into {partial}: {_reason(e)}") from e
            _drain(hashed)
        # A damaged archive can fail in any of the ways above (a garbled header reads as an
        # unsafe member, say): when the checksum says so, that is the one thing worth saying.
        _check_sha256(m, hashed)
        if isinstance(failure, _Truncated):
            raise UnpackError(f"{m.archive} is truncated: its data ends before the end of the tar; publish the layer"
                              " again")
        if isinstance(failure, _DecodeError):
            raise UnpackError(f"{m.archive} is damaged ({failure}): publish the layer again")
        if failure is not None:
            raise failure
        with open(os.path.join(partial, MARKER), "w") as f:
            json.dump({"id": m.id, "sha256": m.sha256, "files": m.files}, f)
        # Atomic: a later start sees either no root or a complete one. No fsync: /tmp does not
        # outlive the execution environment, and a crashed process does not lose the page cache.
        os.rename(partial, m.root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _drain(hashed):
    while hashed.read(RAW_CHUNK):
        pass


def _check_sha256(m, hashed):
    digest = hashed.sha256.hexdigest()
    if digest != m.sha256:
        raise UnpackError(f"{m.archive} has sha256 {digest}, packed.json says {m.sha256}: the archive is damaged"
                          " or not this layer's; publish the layer again")


class _HashingReader:
    """The archive file, hashed and counted as the decompressor reads it."""

    def __init__(self, raw):
        import hashlib  # here: it loads OpenSSL, a few ms that a warm start does without
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.total = 0

    def read(self, n=-1):
        data = self.raw.read(n if n is not None and n >= 0 else RAW_CHUNK)
        self.sha256.update(data)
        self.total += len(data)
        return data

    def readable(self):
        return True


class _DecodeError(Exception):
    """What the decompressors raise, under one name."""


def _decoder(compression, raw):
    """A reader with ``read(n)``: at most ``n`` decompressed bytes, b"" at the end."""
    if compression == "gzip":
        return _GzipReader(raw)
    if sys.version_info >= (3, 14):
        from compression import zstd
        return _ErrorsAs(zstd.ZstdFile(raw), zstd.ZstdError)
    try:
        import zstandard
    except ImportError as e:
        raise UnpackError(f"this packed layer is zstd-compressed, and the zstandard package is not importable"
                          f" ({_reason(e)}): the layer must carry it, uncompressed, in {LAYER_PYTHON};"
                          " rebuild the layer") from e
    dctx = zstandard.ZstdDecompressor()
    try:
        reader = dctx.stream_reader(raw, read_size=RAW_CHUNK, read_across_frames=True)
    except TypeError:  # zstandard before 0.14 reads one frame, which is what the builder writes
        reader = dctx.stream_reader(raw, read_size=RAW_CHUNK)
    return _ErrorsAs(reader, zstandard.ZstdError)


class _ErrorsAs:
    def __init__(self, reader, errors):
        self.reader = reader
        self.errors = errors

    def read(self, n):
        try:
            return self.reader.read(n)
        except EOFError:  # compression.zstd's word for a stream cut short
            raise _Truncated() from None
        except self.errors as e:
            raise _DecodeError(_reason(e)) from None


class _GzipReader:
    """gzip through zlib, output bounded per read; the stdlib's GzipFile reads in 8 KiB pieces on 3.6."""

    def __init__(self, raw):
        import zlib
        self.zlib = zlib
        self.raw = raw
        self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def read(self, n):
        d = self.d
        try:
            while True:
                if d.unconsumed_tail:
                    data = d.unconsumed_tail
                elif d.eof:
                    data = d.unused_data or self.raw.read(RAW_CHUNK)
                    if not data:
                        return b""
                    self.d = d = self.zlib.decompressobj(16 + self.zlib.MAX_WBITS)  # another member
                else:
                    data = self.raw.read(RAW_CHUNK)
                    if not data:
                        raise _Truncated()
                out = d.decompress(data, n)
                if out:
                    return out
        except self.zlib.error as e:
            raise _DecodeError(_reason(e)) from None


class _Stream:
    """The decompressed tar, read in large chunks and handed out by the member."""

    __slots__ = ("read", "buf", "pos")

    def __init__(self, read):
        self.read = read
        self.buf = b""
        self.pos = 0

    def take(self, n):
        """Exactly ``n`` bytes (for headers and pax records: small)."""
        buf, pos = self.buf, self.pos
        if len(buf) - pos >= n:
            self.pos = pos + n
            return buf[pos:pos + n]
        parts = [buf[pos:]]
        have = len(parts[0])
        while have < n:
            chunk = self.read(CHUNK)
            if not chunk:
                raise _Truncated()
            parts.append(chunk)
            have += len(chunk)
        if len(parts) == 2:  # the usual straddle: copy the header's bytes, not the next chunk
            rest = n - len(parts[0])
            self.buf, self.pos = parts[1], rest
            return parts[0] + parts[1][:rest]
        buf = b"".join(parts)
        self.buf, self.pos = buf, n
        return buf[:n]

    def copy(self, fd, n):
        """The next ``n`` bytes into ``fd``, or skipped when ``fd`` is None, without holding them all."""
        buf, pos = self.buf, self.pos
        if len(buf) - pos >= n:
            if fd is not None and n:
                _write(fd, memoryview(buf)[pos:pos + n])
            self.pos = pos + n
            return
        if fd is not None and len(buf) > pos:
            _write(fd, memoryview(buf)[pos:])
        n -= len(buf) - pos
        while True:
            chunk = self.read(CHUNK)
            if not chunk:
                raise _Truncated()
            if len(chunk) >= n:
                if fd is not None and n:
                    _write(fd, memoryview(chunk)[:n])
                self.buf, self.pos = chunk, n
                return
            if fd is not None:
                _write(fd, chunk)
            n -= len(chunk)


def _write(fd, data):
    while data:
        data = data[os.write(fd, data):]


_ZERO_BLOCK = bytes(512)
_FILE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL
               | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
_PAX_LIMIT = 1 * MB


def _extract(source, dest, limit):
    """Extract the tar read from ``source`` into the empty directory ``dest``.

    tarfile spends its time per member in Python (a TarInfo each, its own
    buffering, an extractall that stats, chowns and chmods each path): on a
    tree of 10,000 files and 200 MB its extractall measured 1.3 to 1.6 times
    slower than this, which hashes the archive as well. So the headers are
    read here, and each file costs an open, a write, a utime and a close.
    Paths stay bytes: no decoding, and no dependence on the locale's file
    system encoding (ASCII under LANG=C on 3.6). Regular files, directories
    and relative symlinks that stay inside the tree are written; anything
    else stops the unpack. The data is not trusted until the sha256 is checked
    after this returns, but nothing here can write outside ``dest``: no
    absolute name or "..", no member below a symlink, and a symlink's ".."
    steps may not climb above the tree. Header checksums are not checked; the
    sha256 covers every byte.
    """
    stream = _Stream(source.read)
    take, copy = stream.take, stream.copy
    dest = os.fsencode(dest)
    dirs = {b""}  # directories made here: real ones, never reached through a symlink
    links = set()  # symlinks made here: nothing is written below one
    written = 0
    utime_fd = os.utime in getattr(os, "supports_fd", ())
    pax = {}
    long_name = long_link = None
    while True:
        header = take(512)
        if header == _ZERO_BLOCK:
            return  # the end of the archive (tar writes two; one is enough)
        typ = header[156:157]
        size = _number(header[124:136])
        if typ in (b"x", b"g", b"L", b"K"):
            if size > _PAX_LIMIT:
                raise UnpackError(f"the packed archive has a tar extended header of {size:,} bytes: refused, nothing"
                                  " was kept")
            data = take(size)
            copy(None, -size % 512)
            if typ == b"x":
                pax = _pax_records(data)
            elif typ == b"L":
                long_name = data.rstrip(b"\0")
            elif typ == b"K":
                long_link = data.rstrip(b"\0")
            continue  # a global header ("g") carries nothing a member needs
        name = header[:100].split(b"\0", 1)[0]
        if header[257:263] == b"ustar\x00":  # POSIX: a prefix field (GNU's magic has other uses for it)
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        link = header[157:257].split(b"\0", 1)[0]
        mode = _number(header[100:108])
        mtime = _number(header[136:148])
        if long_name is not None:
            name, long_name = long_name, None
        if long_link is not None:
            link, long_link = long_link, None
        if pax:
            name = pax.get(b"path", name)
            link = pax.get(b"linkpath", link)
            if b"size" in pax:
                size = _number(pax[b"size"], 10)
            if b"mtime" in pax:
                try:
                    mtime = float(pax[b"mtime"])
                except ValueError:
                    raise _malformed() from None
            pax = {}
        if size < 0:
            raise _malformed()
        name = _clean(name)
        if typ in (b"0", b"\0", b"7"):
            if not name:
                raise _unsafe(name, "has no name")
            if written + size > limit:
                raise UnpackError(f"the archive holds more than packed.json's unpacked_bytes ({limit:,}): refused")
            written += size
            parent = name.rpartition(b"/")[0]
            if parent not in dirs:
                _make_dirs(dest, parent, dirs, links)
            path = dest + b"/" + name
            try:
                fd = os.open(path, _FILE_FLAGS, 0o755 if mode & 0o100 else 0o644)
            except FileExistsError:
                raise _unsafe(name, "appears twice") from None
            try:
                copy(fd, size)
                # 3.6's .pyc files hold their source's mtime: keep it, or every import would recompile.
                if utime_fd:
                    os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
            if not utime_fd:
                os.utime(path, (mtime, mtime))
            copy(None, -size % 512)
        elif typ == b"5":
            copy(None, size + -size % 512)
            if name:
                _make_dirs(dest, name, dirs, links)
        elif typ == b"2":
            copy(None, size + -size % 512)
            if not name:
                raise _unsafe(name, "has no name")
            parent = name.rpartition(b"/")[0]
            _check_link(name, link, parent)
            if parent not in dirs:
                _make_dirs(dest, parent, dirs, links)
            try:
                os.symlink(link, dest + b"/" + name)
            except FileExistsError:
                raise _unsafe(name, "appears twice") from None
            links.add(name)
        else:
            kind = {b"1": "a hard link", b"3": "a character device", b"4": "a block device",
                    b"6": "a FIFO"}.get(typ, "of tar type {!r}".format(typ.decode("latin-1")))
            raise _unsafe(name, f"is {kind}, not a regular file, directory or symlink")


def _number(field, base=8):
    try:
        return int(field.rstrip(b"\0") or b"0", base)  # the usual "0000644\0" (int() ignores spaces)
    except ValueError:
        pass
    if field[:1] and field[0] & 0x80:  # base-256, for values too big for octal
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * len(field) - 8)) if field[0] & 0x40 else value
    field = field.split(b"\0", 1)[0].strip()
    try:
        return int(field, base) if field else 0
    except ValueError:
        raise _malformed() from None


def _malformed():
    return UnpackError("the packed archive has a malformed tar header: refused, nothing was kept")


def _pax_records(data):
    records = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        length = _number(data[pos:space], 10) if space > pos else 0
        if length <= space - pos or pos + length > len(data):
            raise _malformed()
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records


def _clean(name):
    """The member name relative to the tree, without "./" or a trailing "/"; b"" for the tree itself."""
    if b"\0" in name or name.startswith(b"/"):
        raise _unsafe(name, "is absolute" if name.startswith(b"/") else "holds a NUL")
    if b".." in name or b"//" in name or name.startswith(b"./") or b"/." in name or name.endswith(b"/"):
        parts = [part for part in name.split(b"/") if part not in (b"", b".")]
        if b".." in parts:
            raise _unsafe(name, "climbs out with ..")
        name = b"/".join(parts)
    return b"" if name == b"." else name


def _check_link(name, target, parent):
    # Leading ".." steps are resolved against real directories (the link's parent is never below
    # a symlink), so counting them is exact; a ".." after a name could step back through a
    # symlink the count does not see, so it is refused.
    if not target or target.startswith(b"/") or b"\0" in target:
        raise _unsafe(name, f"is a symlink to {_show(target)!r}, which leads out of the tree")
    parts = [part for part in target.split(b"/") if part not in (b"", b".")]
    ups = 0
    while ups < len(parts) and parts[ups] == b"..":
        ups += 1
    depth = parent.count(b"/") + 1 if parent else 0
    if ups > depth or b".." in parts[ups:]:
        raise _unsafe(name, f"is a symlink to {_show(target)!r}, which leads out of the tree")


def _make_dirs(dest, name, dirs, links):
    prefix = b""
    for part in name.split(b"/"):
        prefix = prefix + b"/" + part if prefix else part
        if prefix in dirs:
            continue
        if prefix in links:
            raise _unsafe(name, f"lies below the symlink {_show(prefix)}")
        try:
            os.mkdir(dest + b"/" + prefix, 0o755)
        except FileExistsError:
            raise _unsafe(name, f"needs {_show(prefix)} as a directory, and it is a file") from None
        dirs.add(prefix)


def _unsafe(name, why):
    return UnpackError(f"the packed archive's member {_show(name)} {why}: refused, nothing was kept")


def _show(name):
    return name.decode("utf-8", "backslashreplace")


def _put_on_path(root):
    """``root`` just before the layer's python/ on sys.path, or last when that is not there."""
    entries = [_norm(entry) if isinstance(entry, str) else None for entry in sys.path]
    if _norm(root) in entries:
        return
    stub_dir = _norm(LAYER_PYTHON)
    if stub_dir not in entries:
        real = os.path.realpath(LAYER_PYTHON)
        entries = [os.path.realpath(entry) if isinstance(entry, str) else None for entry in sys.path]
        stub_dir = real
    index = entries.index(stub_dir) if stub_dir in entries else len(sys.path)
    sys.path.insert(index, root)


def _norm(path):
    return os.path.normcase(os.path.abspath(path or os.curdir))


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror + (": " + error.filename if isinstance(error.filename, str) else "")
    return str(error) or type(error).__name__


def _debug(message):
    if os.environ.get("LAYER_UNPACK_DEBUG"):
        sys.stderr.write(f"layer_runtime: {message}\n")
        sys.stderr.flush()
