"""A PEP 503 package index on 127.0.0.1, for tests whose build container joins the host's network.

``serve_index({"six": [("six-1.17.0-py2.py3-none-any.whl", data)]})`` yields
the index URL (``http://127.0.0.1:PORT/simple``) and the list of request paths
it answered, in order. Pages and files carry the Cache-Control headers PyPI
sends when ``cache_headers`` is true (this machine's proxy strips PyPI's own).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

PAGE_CACHE = "max-age=600, public"
FILE_CACHE = "max-age=365000000, immutable, public"


@contextmanager
def serve_index(projects: Mapping[str, Sequence[tuple[str, bytes]]], *,
                cache_headers: bool = False) -> Iterator[tuple[str, list[str]]]:
    files = {name: data for entries in projects.values() for name, data in entries}
    requests: list[str] = []

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            project = self.path.rstrip("/").removeprefix("/simple/")
            filename = self.path.removeprefix("/files/")
            if self.path.startswith("/simple/") and project in projects:
                links = "".join(f'<a href="/files/{name}#sha256={hashlib.sha256(data).hexdigest()}">{name}</a>'
                                for name, data in projects[project])
                self._send(links.encode(), "text/html", PAGE_CACHE)
            elif self.path.startswith("/files/") and filename in files:
                self._send(files[filename], "application/octet-stream", FILE_CACHE)
            else:
                self.send_error(404)

        def _send(self, body: bytes, kind: str, cache: str):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if cache_headers:
                self.send_header("Cache-Control", cache)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", requests
    finally:
        server.shutdown()
        server.server_close()
