"""Models from S3, fetched to /tmp once per container: ``load("s3://bucket/key", sha256=...)``.

Shipped in a layer as ``layer_runtime.model_loader`` (recipe: ``[include]
model_loader = true``). Needs only boto3, which Lambda's Python runtimes
provide, and runs on Python 3.6 and later.

- The object is streamed to a temporary file beside its final place (never
  whole in memory), hashed on the way, checked against ``sha256`` (and its
  size), and only then renamed into place: a reader never sees half a model.
- Warm invocations reuse the file: nothing is downloaded again.
- Several models can be served by one function. When /tmp's budget would be
  exceeded, the least recently used models are evicted first; a model that
  cannot fit even alone fails at once with ``ModelTooLarge``, before any
  download.
- Two processes asking for the same model at once download it once: the
  second waits on a file lock, then finds the file.

Budget: ``MODEL_CACHE_BYTES`` in the environment, else the size of the file
system holding the cache minus 32 MiB for the function's own files.
"""

import hashlib
import os
import tempfile
import threading

try:
    import fcntl
except ImportError:  # not on Lambda: no cross-process lock, thread lock only
    fcntl = None

CHUNK = 1 << 20
HEADROOM = 32 << 20
DEFAULT_ROOT = os.environ.get("MODEL_CACHE_DIR", "/tmp/models")


class ModelError(Exception):
    """A model could not be provided."""


class ModelTooLarge(ModelError):
    """The model alone is bigger than the /tmp budget."""


class ChecksumMismatch(ModelError):
    """What arrived is not the model that was asked for."""


class ModelCache(object):
    def __init__(self, root=DEFAULT_ROOT, budget_bytes=None, s3_client=None):
        self.root = root
        self.budget_bytes = budget_bytes
        self._s3 = s3_client
        self._lock = threading.Lock()
        self.downloads = 0  # objects fetched by this process (for logs and tests)

    # -- public -----------------------------------------------------------
    def load(self, uri, sha256=None):
        """The local path of the model at ``uri`` (``s3://bucket/key``), downloading it if needed."""
        bucket, key = _split_s3(uri)
        if not os.path.isdir(self.root):
            os.makedirs(self.root, exist_ok=True)
        path = os.path.join(self.root, _file_name(bucket, key, sha256))
        with self._lock:
            if os.path.exists(path):
                _touch(path)  # the LRU clock: a model in use is the last to go
                return path
            with _FileLock(path + ".lock"):
                if os.path.exists(path):  # another process fetched it while we waited
                    _touch(path)
                    return path
                self._fetch(bucket, key, sha256, path)
            return path

    def budget(self):
        if self.budget_bytes is not None:
            return self.budget_bytes
        if os.environ.get("MODEL_CACHE_BYTES"):
            return int(os.environ["MODEL_CACHE_BYTES"])
        stats = os.statvfs(self.root)
        return max(0, stats.f_blocks * stats.f_frsize - HEADROOM)

    # -- internals --------------------------------------------------------
    def _client(self):
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    def _fetch(self, bucket, key, sha256, path):
        client = self._client()
        size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        budget = self.budget()
        if size > budget:
            raise ModelTooLarge(
                "s3://%s/%s is %d bytes; /tmp allows %d for models. Raise the function's ephemeral storage "
                "(up to 10,240 MB), or serve this model from a container image." % (bucket, key, size, budget))
        self._make_room(size, budget)
        handle, partial = tempfile.mkstemp(prefix=".partial-", dir=self.root)
        digest = hashlib.sha256()
        received = 0
        try:
            with os.fdopen(handle, "wb") as out:
                body = client.get_object(Bucket=bucket, Key=key)["Body"]
                for chunk in iter(lambda: body.read(CHUNK), b""):
                    digest.update(chunk)
                    received += len(chunk)
                    out.write(chunk)
            if received != size:
                raise ChecksumMismatch("s3://%s/%s: got %d bytes, expected %d" % (bucket, key, received, size))
            if sha256 is not None and digest.hexdigest() != sha256.lower():
                raise ChecksumMismatch("s3://%s/%s has sha256 %s, expected %s"
                                       % (bucket, key, digest.hexdigest(), sha256))
            os.replace(partial, path)
            self.downloads += 1
        finally:
            if os.path.exists(partial):
                os.unlink(partial)

    def _make_room(self, size, budget):
        """Evict the least recently used models until ``size`` more bytes fit the budget."""
        models = []
        for name in os.listdir(self.root):
            if name.startswith(".") or name.endswith(".lock"):
                continue
            full = os.path.join(self.root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            models.append((stat.st_mtime, stat.st_size, full))
        used = sum(entry[1] for entry in models)
        for _, bytes_, full in sorted(models):
            if used + size <= budget:
                break
            try:
                os.unlink(full)
                used -= bytes_
            except OSError:
                pass
        if used + size > budget:
            raise ModelTooLarge("cannot make %d bytes of room in %s (budget %d, %d in use)"
                                % (size, self.root, budget, used))


class _FileLock(object):
    """An exclusive lock on a file, across processes (flock), released on exit."""

    def __init__(self, path):
        self.path = path
        self.handle = None

    def __enter__(self):
        self.handle = open(self.path, "a+")
        if fcntl is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        if fcntl is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()


def _split_s3(uri):
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ModelError("expected s3://bucket/key, got %r" % (uri,))
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def _file_name(bucket, key, sha256):
    # Content-addressed when the checksum is known; else by location.
    tag = sha256.lower()[:32] if sha256 else hashlib.sha256(("%s/%s" % (bucket, key)).encode()).hexdigest()[:32]
    return "%s-%s" % (tag, os.path.basename(key) or "model")


def _touch(path):
    try:
        os.utime(path, None)
    except OSError:
        pass


_default = None


def load(uri, sha256=None):
    """``ModelCache().load`` on one cache per process (what a handler calls)."""
    global _default
    if _default is None:
        _default = ModelCache()
    return _default.load(uri, sha256)
