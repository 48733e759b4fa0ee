"""GCS peers for tests: the gcp-storage-emulator package as a process, and a fault proxy.

The emulator speaks the GCS JSON API on 127.0.0.1 on a free port. It ignores generation
preconditions, so the proxy in front of it can answer chosen requests itself (429, 503, 412, or
a stall past the client's timeout) to exercise retries and the mapping of those answers.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKET = "vault-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GcsEmulator:
    """`gcp-storage-emulator start` in memory, with one bucket; stop() ends the process."""

    def __init__(self, bucket: str = BUCKET) -> None:
        self.port = free_port()
        self.bucket = bucket
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gcp_storage_emulator",
                "start",
                "--host=127.0.0.1",
                f"--port={self.port}",
                "--in-memory",
                f"--default-bucket={bucket}",
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited: {self._process.stderr!r}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("gcp-storage-emulator did not start within 30 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@dataclass
class Fault:
    """Answer the next request whose method matches and whose path contains `path_part`."""

    method: str
    path_part: str
    status: int = 503
    stall_seconds: float = 0.0
    # Forward the request first (so it takes effect), then answer with the fault anyway.
    after_forwarding: bool = False


class FaultProxy:
    """A plain HTTP proxy to the emulator that applies queued faults, one request each."""

    def __init__(self, upstream_port: int) -> None:
        self.faults: deque[Fault] = deque()
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.seen.append((self.command, self.path))
                fault = proxy._take(self.command, self.path)
                if fault is not None and fault.stall_seconds:
                    time.sleep(fault.stall_seconds)
                if fault is None or fault.after_forwarding:
                    status, headers, payload = _forward(upstream_port, self, body)
                if fault is not None:
                    status, headers, payload = (
                        fault.status,
                        [],
                        b'{"error": {"code": %d}}' % fault.status,
                    )
                    headers = [("Content-Type", "application/json")]
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method == method and fault.path_part in path:
                    self.faults.remove(fault)
                    return fault
        return None

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    """Clients that time out hang up mid-answer on purpose: that is not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _forward(
    port: int, request: BaseHTTPRequestHandler, body: bytes
) -> tuple[int, list[tuple[str, str]], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        connection.request(request.command, request.path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()
