"""A fault-injecting HTTP reverse proxy between boto3 and a moto server (standard library only).

    with MotoServer() as moto, FaultProxy(moto.url) as proxy:
        lam = boto3.client("lambda", endpoint_url=proxy.url, region_name="eu-west-1", ...)
        proxy.add_fault("throttle", service="lambda", operation="PublishLayerVersion", times=2)
        ...
        assert [s.operation for s in proxy.requests] == [...]

Every request is recorded in ``proxy.requests`` as a ``Seen`` (service and region come from
the SigV4 credential scope, the operation from the botocore service model), then either
answered with a fault (when a rule added by ``add_fault`` matches) or forwarded verbatim to
the upstream server (``Host`` rewritten to the upstream, ``Expect`` and hop-by-hop headers
dropped, a chunked body de-chunked). ``delay`` seconds are slept in the request's own thread,
so concurrent requests are delayed concurrently.

Faults:
  "throttle"  429 TooManyRequestsException, as AWS Lambda sends it: JSON body with
              ``retryAfterSeconds`` and a ``Retry-After`` header (botocore exposes the header's
              value as ``err.response["retryAfterSeconds"]``); for S3 requests 503 SlowDown with
              an S3 XML error body, which is how S3 throttles.
  "error500"  500 ServiceException (JSON), or 500 InternalError (XML) for S3 requests.
  "reset"     read about half of the request body, then abort the TCP connection with a RST
              (SO_LINGER (1, 0) then close) without answering; not forwarded.
  "lost-answer"  forward the request (the server acts on it), then abort the connection with a
              RST instead of relaying the answer: the client cannot know the call succeeded.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("throttle", "error500", "reset", "lost-answer")

# Not forwarded in either direction (RFC 9110 section 7.6.1), plus what this proxy re-frames.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "expect",
}

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


@dataclass(frozen=True)
class Seen:
    """One request the proxy received. ``path`` is the request target (path and query)."""

    method: str
    path: str
    service: str
    region: str
    operation: str
    fault: str | None = None


@dataclass
class FaultRule:
    fault: str
    service: str | None = None
    operation: str | None = None
    region: str | None = None
    times: int | None = 1  # None: forever
    retry_after: float = 1.0
    fired: int = 0

    def matches(self, seen: Seen) -> bool:
        return ((self.times is None or self.fired < self.times)
                and self.service in (None, seen.service)
                and self.operation in (None, seen.operation)
                and self.region in (None, seen.region))

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times


# -- request classification ---------------------------------------------------------------

def credential_scope(headers, query: dict[str, list[str]]) -> tuple[str, str]:
    """(service, region) from the SigV4 Authorization header (or a presigned URL's query)."""
    text = headers.get("Authorization") or ""
    match = CREDENTIAL.search(text)
    if match:
        return match.group(4), match.group(3)
    cred = (query.get("X-Amz-Credential") or [""])[0].split("/")
    if len(cred) == 5:
        return cred[3], cred[2]
    return "", ""


class _RestRoute:
    """One REST operation of a botocore model: method, URI template, literal query, required members."""

    def __init__(self, name: str, op) -> None:
        self.name = name
        self.method = op.http["method"]
        self.deprecated = bool(op.deprecated)
        uri = op.http["requestUri"]
        path, _, query = uri.partition("?")
        self.segments = [s for s in path.split("/") if s]
        self.literal_query = {}
        for part in filter(None, query.split("&")):
            key, _, value = part.partition("=")
            self.literal_query[key] = value or None
        self.required_query: list[str] = []
        self.required_headers: list[str] = []
        shape = op.input_shape
        if shape is not None:
            required = set(shape.required_members)
            for member_name, member in shape.members.items():
                location = member.serialization.get("location")
                wire_name = member.serialization.get("name", member_name)
                if member_name not in required:
                    continue
                if location == "querystring":
                    self.required_query.append(wire_name)
                elif location == "header":
                    self.required_headers.append(wire_name.lower())

    def score(self, method: str, segments: list[str], query: dict, headers) -> tuple | None:
        if method != self.method or not _match_segments(self.segments, segments):
            return None
        for key, value in self.literal_query.items():
            if key not in query or (value is not None and value not in query[key]):
                return None
        if any(key not in query for key in self.required_query):
            return None
        if any(name not in headers for name in self.required_headers):
            return None
        literal_segments = sum(1 for s in self.segments if not s.startswith("{"))
        return (len(self.literal_query), len(self.required_query) + len(self.required_headers),
                literal_segments, not self.deprecated)


def _match_segments(template: list[str], actual: list[str]) -> bool:
    for index, part in enumerate(template):
        if part.startswith("{") and part.endswith("+}"):  # greedy label: the rest, at least one
            return len(actual) > index
        if index >= len(actual):
            return False
        if not part.startswith("{") and part != actual[index]:
            return False
    return len(actual) == len(template)


_models: dict[str, object] = {}
_models_lock = threading.Lock()


def _model(service: str):
    """(protocol, [routes]) of a service from botocore's bundled models, cached; None if unknown."""
    with _models_lock:
        if service not in _models:
            try:
                import botocore.session
                model = botocore.session.get_session().get_service_model(service)
                routes = [_RestRoute(name, model.operation_model(name)) for name in model.operation_names]
                _models[service] = (model.protocol, routes)
            except Exception:
                _models[service] = None
        return _models[service]


def classify_operation(method: str, target: str, headers, body: bytes, service: str) -> str:
    """Best-effort operation name of a request; "" when unknown."""
    amz_target = headers.get("X-Amz-Target")
    if amz_target:
        return amz_target.rsplit(".", 1)[-1]
    split = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
    if "Action" in query:
        return query["Action"][0]
    content_type = (headers.get("Content-Type") or "").lower()
    if body and "x-www-form-urlencoded" in content_type:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        if "Action" in form:
            return form["Action"][0]
    model = _model(service) if service else None
    if not model or model[0] not in ("rest-json", "rest-xml"):
        return ""
    segments = [urllib.parse.unquote(s) for s in split.path.split("/") if s]
    lower_headers = {k.lower() for k in headers.keys()}
    best, best_score = "", None
    for route in model[1]:
        score = route.score(method, segments, query, lower_headers)
        if score is not None and (best_score is None or score > best_score):
            best, best_score = route.name, score
    return best


# -- the proxy ------------------------------------------------------------------------------

class FaultProxy:
    """Reverse proxy on 127.0.0.1 (free port) to ``upstream_url``, with injectable faults."""

    def __init__(self, upstream_url: str, delay: float = 0.0, *, host: str = "127.0.0.1",
                 upstream_timeout: float = 60.0) -> None:
        upstream = urllib.parse.urlsplit(upstream_url)
        if upstream.scheme != "http" or not upstream.hostname:
            raise ValueError(f"upstream must be an http:// URL, not {upstream_url!r}")
        self.upstream_host = upstream.hostname
        self.upstream_port = upstream.port or 80
        self.upstream_netloc = upstream.netloc
        self.upstream_timeout = upstream_timeout
        self.delay = delay
        self.host = host
        self.url = ""
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._seen: list[Seen] = []
        self._sockets: set[socket.socket] = set()
        self.connections = 0  # TCP connections accepted so far (keep-alive reuses them)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- public API ---------------------------------------------------------------------
    def add_fault(self, fault: str, *, service: str | None = None, operation: str | None = None,
                  region: str | None = None, times: int | None = 1, retry_after: float = 1.0) -> FaultRule:
        """Answer the next ``times`` matching requests with ``fault`` (None: every one)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}: one of {FAULTS}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for forever)")
        rule = FaultRule(fault, service, operation, region, times, retry_after)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every fault rule and every record (and zero the connection count)."""
        with self._lock:
            self._rules.clear()
            self._seen.clear()
            self.connections = 0

    @property
    def requests(self) -> list[Seen]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._seen)

    def operations(self, **criteria) -> list[str]:
        """Operation names of the recorded requests matching ``criteria`` (e.g. service="s3")."""
        return [s.operation for s in self.requests
                if all(getattr(s, k) == v for k, v in criteria.items())]

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        _model("lambda"), _model("s3")  # load the common models before the first timed request
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        server = _Server((self.host, 0), Handler)
        self._server = server
        self.url = f"http://{self.host}:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fault-proxy-{server.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:  # end the keep-alive connections still served by handler threads
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- used by the handler ------------------------------------------------------------
    def _admit(self, seen: Seen) -> tuple[Seen, FaultRule | None]:
        with self._lock:
            rule = next((r for r in self._rules if r.matches(seen)), None)
            if rule is not None:
                rule.fired += 1
                seen = Seen(seen.method, seen.path, seen.service, seen.region, seen.operation, rule.fault)
            self._seen.append(seen)
            return seen, rule

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self.connections += 1
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many concurrent connects must not overflow the listen backlog
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away (or was reset on purpose): nothing to report
        super().handle_error(request, client_address)


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive; also makes parse_request answer "100 Continue"
    timeout = 120  # idle keep-alive connections end eventually

    def setup(self) -> None:
        super().setup()
        self.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.owner._track(self.connection, False)

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def _handle(self) -> None:
        owner = self.owner
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
        service, region = credential_scope(self.headers, query)
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = int(self.headers.get("Content-Length") or 0)

        # The operation of a query-protocol request is in its form body: peek at small ones.
        body: bytes | None = None
        content_type = (self.headers.get("Content-Type") or "").lower()
        if not chunked and "x-www-form-urlencoded" in content_type and length <= 1 << 20:
            body = self.rfile.read(length)
        operation = classify_operation(self.command, self.path, self.headers, body or b"", service)
        seen, rule = owner._admit(Seen(self.command, self.path, service, region, operation))

        if owner.delay > 0:
            time.sleep(owner.delay)

        if rule is not None and rule.fault == "reset":
            if body is None:
                self._read_partial(length, chunked)
            self._reset()
            return

        if body is None:
            body = self._read_chunked() if chunked else self._read_exact(length)

        if rule is not None and rule.fault == "lost-answer":
            self._forward(body, chunked, relay=False)
            self._reset()
            return
        if rule is not None:
            self._answer_fault(rule, service)
            return
        self._forward(body, chunked)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    # -- body reading -------------------------------------------------------------------
    def _read_exact(self, length: int) -> bytes:
        data = self.rfile.read(length) if length else b""
        if len(data) != length:
            raise ConnectionError("client closed the connection mid-body")
        return data

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields: dropped
                return b"".join(parts)
            parts.append(self._read_exact(size))
            self.rfile.readline(3)  # CRLF after the chunk

    def _read_partial(self, length: int, chunked: bool) -> None:
        want = length // 2 if not chunked else 64 * 1024
        while want > 0:
            data = self.rfile.read1(min(want, 65536))
            if not data:
                break
            want -= len(data)

    # -- answers ------------------------------------------------------------------------
    def _reset(self) -> None:
        """Abort the connection with a TCP RST, answering nothing."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        for stream in (self.rfile, self.wfile):
            try:
                stream.close()
            except OSError:
                pass
        sock.close()  # the last reference: the kernel sends RST because of the zero linger
        # http.server flushes wfile after the handler returns: give it something harmless.
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()

    def _answer_fault(self, rule: FaultRule, service: str) -> None:
        s3 = service == "s3"
        if rule.fault == "throttle":
            seconds = _seconds(rule.retry_after)
            if s3:
                status, reason, error_type = 503, "Slow Down", None
                body = _s3_error("SlowDown", "Please reduce your request rate.")
            else:
                status, reason, error_type = 429, "Too Many Requests", "TooManyRequestsException"
                body = json.dumps({"Type": "User", "message": "Rate exceeded",
                                   "retryAfterSeconds": seconds, "Reason": "CallerRateLimitExceeded"}).encode()
            # botocore's Lambda model reads TooManyRequestsException.retryAfterSeconds from this
            # header (not from the body): both carry the same string.
            extra = [("Retry-After", seconds)]
        else:  # error500
            status, reason, extra = 500, "Internal Server Error", []
            if s3:
                error_type, body = None, _s3_error("InternalError", "injected")
            else:
                error_type = "ServiceException"
                body = json.dumps({"Type": "Service", "message": "injected"}).encode()
        self.send_response_only(status, reason)
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-fa0170000000")
        self.send_header("Content-Type", "application/xml" if s3 else "application/json")
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, body: bytes, was_chunked: bool, relay: bool = True) -> None:
        owner = self.owner
        conn = http.client.HTTPConnection(owner.upstream_host, owner.upstream_port,
                                          timeout=owner.upstream_timeout)
        try:
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", owner.upstream_netloc)
                for name, value in self.headers.items():
                    lower = name.lower()
                    if lower in HOP_BY_HOP or lower == "host" or (lower == "content-length" and was_chunked):
                        continue
                    conn.putheader(name, value)
                if was_chunked:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self._bad_gateway(exc)
                return
            if not relay:
                return
            self.send_response_only(response.status, response.reason)
            head = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
            for name, value in response.getheaders():
                lower = name.lower()
                if lower in HOP_BY_HOP or (lower == "content-length" and not head):
                    continue
                self.send_header(name, value)
            if not head:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if not head:
                self.wfile.write(payload)
        finally:
            conn.close()

    def _bad_gateway(self, exc: Exception) -> None:
        body = f"fault proxy: upstream failed: {exc!r}".encode()
        self.send_response_only(502, "Bad Gateway")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _seconds(value: float) -> str:
    """"1" for 1, "0.2" for 0.2: the string AWS puts in retryAfterSeconds."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _s3_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fa017</RequestId></Error>").encode()
