"""The base of every vendor's HTTPS REST double (Doppler, Infisical, ...).

What they share: one ThreadingHTTPServer on 127.0.0.1 behind a CA made at test time
(tests/doubles/tls.py), a request log that keeps no body and no header value (a token is named by
a short digest), and the faults every store's tests inject: latency, an error status with the
vendor's own error body, a 200 that is not JSON, a body trickled a byte at a time, any reply at
all (a redirect, a lie). A store's double subclasses HttpsDouble and writes `route()` and
`error()` the way its vendor documents them, citing the vendor's API reference.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from .tls import make_test_pki


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: tuple            # sorted (name, value) pairs
    bearer: str             # the Authorization scheme's token, hashed: which token, never its value
    status: int
    started: float = 0.0
    finished: float = 0.0


class Reply(Exception):
    """An answer: raised or returned by `route()`; `payload` is JSON-encoded unless it is text."""

    def __init__(self, status: int, payload: Any = None, content_type: str = "application/json",
                 headers: Optional[dict] = None):
        super().__init__(status)
        self.status, self.payload, self.content_type = status, payload, content_type
        self.headers = dict(headers or {})


@dataclass
class Incoming:
    """A request as `route()` sees it."""
    method: str
    path: str
    query: dict
    headers: Any
    body: bytes

    def bearer(self) -> str:
        value = self.headers.get("Authorization") or ""
        return value[len("Bearer "):] if value.startswith("Bearer ") else ""

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def token_tag(token: str) -> str:
    """A short digest naming a token in the log without holding it."""
    return hashlib.sha256(token.encode()).hexdigest()[:12] if token else ""


class HttpsDouble:
    """A vendor's REST API on https://127.0.0.1:PORT, trusted through `ca_path`."""

    def __init__(self, directory: Path, name: str, *, tls: bool = True):
        self.tls = tls              # False: plain HTTP (a loopback sidecar some stores allow)
        self.directory = Path(directory) / f"{name}-double"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pki = make_test_pki(self.directory / "pki")
        self.lock = threading.RLock()
        self._log: list[LoggedRequest] = []
        self._queued: deque = deque()      # replies (or statuses) for the next requests
        self._garbage: list = [0, 0]         # [count, size]
        self.latency = 0.0
        self.slow_body = 0.0
        self._server: Optional[ThreadingHTTPServer] = None

    # -- the vendor's part ---------------------------------------------------------------------

    def route(self, request: Incoming) -> Any:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Reply:
        """The vendor's error body for `status`."""
        return Reply(status, {"message": message})

    def credential_material(self) -> list[str]:
        """Every token, client secret or key the double issued or accepts."""
        return []

    def assert_no_credentials(self, *texts: str) -> None:
        """None of the double's credential material is in `texts` (shim's output)."""
        written = "".join(texts)
        for material in self.credential_material():
            assert material not in written, "credential material leaked into shim's output"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self):
        server = _DoubleServer(("127.0.0.1", 0), _DoubleHandler)
        server.double = self  # type: ignore[attr-defined]
        if self.tls:
            server.socket = self.pki.server_context().wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False)
        threading.Thread(target=server.serve_forever, daemon=True, name="https-double").start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_path(self) -> Path:
        return self.pki.ca_path

    # -- faults --------------------------------------------------------------------------------

    def inject_failure(self, status: int, *, count: int = 1, retry_after: Optional[float] = None):
        """The next `count` requests get the vendor's error body with `status`."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        with self.lock:
            for _ in range(count):
                reply = self.error(status, "injected failure")
                reply.headers.update(headers)
                self._queued.append(reply)

    def inject_reply(self, reply: Reply) -> None:
        """The next request gets exactly `reply` (a redirect, a lie, ...)."""
        with self.lock:
            self._queued.append(reply)

    def inject_garbage(self, count: int = 1, *, size: int = 0) -> None:
        """The next `count` answers are 200 with a body that is not JSON (`size` bytes of it)."""
        with self.lock:
            self._garbage = [count, size]

    # -- log -----------------------------------------------------------------------------------

    def requests(self, **match: Any) -> list[LoggedRequest]:
        with self.lock:
            log = list(self._log)
        return [entry for entry in log
                if all(getattr(entry, key) == wanted for key, wanted in match.items())]

    def count(self, **match: Any) -> int:
        return len(self.requests(**match))

    def _next_fault(self) -> Optional[Reply]:
        with self.lock:
            if self._queued:
                return self._queued.popleft()
            if self._garbage[0] > 0:
                self._garbage[0] -= 1
                size = self._garbage[1]
                return Reply(200, "x" * size if size else "<html>502 upstream connect error</html>",
                             "text/html")
        return None


class _DoubleServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128   # many connections at once, as a real front end accepts them

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (abandoned at its deadline) is not a double bug


class _DoubleHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        double: HttpsDouble = self.server.double  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        query = {key: values[-1] for key, values in
                 parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        incoming = Incoming(method, unquote(split.path), query, self.headers,
                            self.rfile.read(length) if length else b"")
        started = time.monotonic()
        if double.latency:
            time.sleep(double.latency)
        reply = double._next_fault()
        if reply is None:
            try:
                answer = double.route(incoming)
                reply = answer if isinstance(answer, Reply) else Reply(200, answer)
            except Reply as raised:
                reply = raised
        with double.lock:
            double._log.append(LoggedRequest(method, incoming.path, tuple(sorted(query.items())),
                                             token_tag(incoming.bearer()), reply.status, started,
                                             time.monotonic()))
        self._answer(reply, double.slow_body)

    def _answer(self, reply: Reply, slow: float) -> None:
        payload = reply.payload
        data = payload.encode() if isinstance(payload, str) else (
            payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not slow:
            self.wfile.write(data)
            return
        for index in range(len(data)):
            self.wfile.write(data[index:index + 1])
            self.wfile.flush()
            time.sleep(slow)
