"""A real ``moto_server`` subprocess on 127.0.0.1, as a context manager.

    with MotoServer() as moto:
        boto3.client("s3", endpoint_url=moto.url, ...)
        moto.reset()            # forget every resource of every backend

The server is always stopped on exit (terminate, then kill), also when the body
raises. On Linux the child additionally asks the kernel to SIGTERM it when the
thread that started it dies (PR_SET_PDEATHSIG), so a test run killed with
SIGKILL does not leave a server behind either; start it from a long-lived
thread (the pytest main thread is fine).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"

# Runs in the child: die with the parent (Linux), then hand over to moto's own main().
_BOOT = """
import os, sys
if sys.platform.startswith("linux"):
    import ctypes, signal
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(sys.argv[1]):   # the parent died before prctl took effect
        sys.exit(1)
from moto.server import main
main(sys.argv[2:])
"""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MotoServerError(RuntimeError):
    pass


class MotoServer:
    """Start ``moto_server`` on a free port of 127.0.0.1; ``.url`` is its endpoint."""

    def __init__(self, *, port: int | None = None, startup_timeout: float = 20.0,
                 env: dict[str, str] | None = None):
        self.port = port
        self.startup_timeout = startup_timeout
        self.env = env
        self.url = ""
        self.process: subprocess.Popen | None = None
        self._log = None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "MotoServer":
        if self.process is not None:
            raise MotoServerError("already started")
        attempts = 1 if self.port else 3  # a freed port can be taken by someone else: retry
        last: Exception | None = None
        for _ in range(attempts):
            port = self.port or free_port()
            try:
                self._spawn(port)
                self._wait_ready()
                return self
            except BaseException as exc:
                last = exc
                self.stop()
                if not isinstance(exc, MotoServerError):
                    raise
        raise last  # type: ignore[misc]

    def _spawn(self, port: int) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="moto-server-", suffix=".log", delete=False)
        env = dict(os.environ)
        env.update(self.env or {})
        # The server must not be redirected through some HTTP proxy of the environment.
        env.setdefault("NO_PROXY", HOST)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(os.getpid()), "--host", HOST, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        atexit.register(self.stop)
        self.url = f"http://{HOST}:{port}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self.process.poll() is not None:
                raise MotoServerError(f"moto_server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with opener.open(f"{self.url}/moto-api/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise MotoServerError(
                    f"moto_server did not answer on {self.url} within {self.startup_timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            atexit.unregister(self.stop)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        log, self._log = self._log, None
        if log is not None:
            log.close()
            Path(log.name).unlink(missing_ok=True)

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- helpers ---------------------------------------------------------
    def reset(self) -> None:
        """Forget every resource of every backend (POST /moto-api/reset)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with opener.open(request, timeout=10) as response:
            if response.status != 200:
                raise MotoServerError(f"reset answered {response.status}")

    def log_tail(self, lines: int = 40) -> str:
        if self._log is None:
            return ""
        try:
            text = Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
