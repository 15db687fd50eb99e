"""The base of every vendor's HTTPS REST double: Doppler, Infisical, 1Password Connect,
Bitwarden, Google Secret Manager and Azure Key Vault.

What they share, written once here: the listeners on 127.0.0.1 (HTTPS behind a CA made at test
time, tests/doubles/tls.py, or plain HTTP where the vendor's own endpoint is plain: a metadata
server, App Service's identity endpoint), the request log that keeps no body and no header
value (a bearer token is named by a short digest), and the faults every store's tests inject per
listener: latency, an error status with the vendor's own error body, a 200 that is not JSON, a
body trickled a byte at a time, any reply at all (a redirect, a lie).

A double of one API subclasses HttpsDouble and writes `route()` and `error()` the way its
vendor documents them, citing the vendor's API reference. A double of several services (Google:
Secret Manager, OAuth, STS, the metadata server; Azure: Key Vault, Entra ID, the managed-identity
endpoint) lists one `Service` per vendor host in `services()`: each gets a port of its own, its
own faults and its own rows in the log, as the vendor's hosts are separate.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from .tls import make_test_pki


@dataclass(frozen=True)
class LoggedRequest:
    """One request as a double saw it: never a token, a secret value or a body."""
    service: str
    method: str
    path: str
    query: dict             # the query's names and (last) values
    bearer: str             # the Authorization scheme's token, hashed: which token, never its value
    authorized: bool        # an Authorization header came along (any scheme)
    status: int
    started: float = 0.0    # time.monotonic() on arrival, before any injected latency
    finished: float = 0.0   # ... when the answer was ready (overlap shows concurrency)


class Reply(Exception):
    """An answer: raised or returned by `route()`; `payload` is JSON-encoded unless it is text.
    Without a content type, the service's own (`Service.content_type`) is sent."""

    def __init__(self, status: int, payload: Any = None, content_type: Optional[str] = None,
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

    def form(self) -> dict[str, str]:
        """An application/x-www-form-urlencoded body (the last value of each name)."""
        return {key: values[-1] for key, values in
                parse_qs(self.body.decode(), keep_blank_values=True).items()}


def token_tag(token: str) -> str:
    """A short digest naming a token in the log without holding it."""
    return hashlib.sha256(token.encode()).hexdigest()[:12] if token else ""


class Service:
    """One vendor host of a double: its routes, its error body, its listener."""

    name = "api"
    tls = True                         # False: plain HTTP, where the vendor's endpoint is plain
    content_type = "application/json"  # of every answer whose Reply names none

    def __init__(self, double: "HttpsDouble"):
        self.double = double

    def route(self, request: Incoming) -> Any:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Reply:
        """The vendor's error body for `status` (what an injected failure answers)."""
        return Reply(status, {"message": message})

    def headers(self, request: Incoming) -> dict[str, str]:
        """Headers the vendor sends on every answer of this host."""
        return {}


class _OwnApi(Service):
    """The one service of a single-API double: its `route()` and `error()` are the double's."""

    def __init__(self, double: "HttpsDouble", name: str, tls: bool):
        super().__init__(double)
        self.name, self.tls = name, tls

    def route(self, request: Incoming) -> Any:
        return self.double.route(request)

    def error(self, status: int, message: str) -> Reply:
        return self.double.error(status, message)


@dataclass
class Faults:
    """What one service does wrong next."""
    latency: float = 0.0       # seconds before each answer
    slow_body: float = 0.0     # seconds between the bytes of each answer body
    queued: deque = field(default_factory=deque)   # [reply, how many more times], in order
    garbage: int = 0           # answers replaced by a 200 that is not JSON
    garbage_size: int = 0      # bytes of such an answer (0: a short HTML error page)


class HttpsDouble:
    """A vendor's API on https://127.0.0.1:PORT (one port per service), trusted through `ca_path`."""

    def __init__(self, directory: Path, name: str, *, tls: bool = True):
        self.tls = tls              # False: plain HTTP (a loopback sidecar some stores allow)
        self.directory = Path(directory) / f"{name}-double"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pki = make_test_pki(self.directory / "pki")
        self.lock = threading.RLock()
        self._name = name
        self._log: list[LoggedRequest] = []
        self._services = {service.name: service for service in self.services()}
        self._faults = {name: Faults() for name in self._services}
        self._primary = next(iter(self._services))    # the default of every per-service call
        self._servers: dict[str, ThreadingHTTPServer] = {}

    # -- the vendor's part ---------------------------------------------------------------------

    def services(self) -> list[Service]:
        """The vendor's hosts, the first the one every per-service call means by default."""
        return [_OwnApi(self, self._name, self.tls)]

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
        context = self.pki.server_context()
        for name, service in self._services.items():
            server = _DoubleServer(("127.0.0.1", 0), _DoubleHandler)
            server.double, server.service = self, service  # type: ignore[attr-defined]
            if service.tls:
                # The handshake runs in the handler thread (_DoubleHandler.setup), not in accept().
                server.socket = context.wrap_socket(server.socket, server_side=True,
                                                    do_handshake_on_connect=False)
            # A short poll interval keeps stop() (shutdown waits for one poll) from costing seconds.
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True, name=f"{self._name}-{name}").start()
            self._servers[name] = server
        return self

    def stop(self) -> None:
        servers, self._servers = self._servers, {}
        for server in servers.values():
            server.shutdown()
            server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def port(self, service: Optional[str] = None) -> int:
        return self._servers[service or self._primary].server_address[1]

    def url_of(self, service: Optional[str] = None) -> str:
        """scheme://127.0.0.1:PORT of `service` (default: the first)."""
        scheme = "https" if self._services[service or self._primary].tls else "http"
        return f"{scheme}://127.0.0.1:{self.port(service)}"

    @property
    def endpoint(self) -> str:
        return self.url_of()

    @property
    def ca_path(self) -> Path:
        return self.pki.ca_path

    # -- faults (`service`: None is the first) -------------------------------------------------

    def _fault_controls(self, service: Optional[str]) -> Faults:
        return self._faults[service or self._primary]

    def inject_failure(self, status: int, *, count: int = 1, retry_after: Optional[float] = None,
                       service: Optional[str] = None) -> None:
        """The next `count` requests get the vendor's error body with `status`."""
        reply = self._services[service or self._primary].error(status, "injected failure")
        if retry_after is not None:
            reply.headers["Retry-After"] = f"{retry_after:g}"
        with self.lock:
            # One reply answers `count` requests: a storm of 10,000 is one entry, not 10,000.
            self._fault_controls(service).queued.append([reply, count])

    def inject_reply(self, reply: Reply, service: Optional[str] = None) -> None:
        """The next request gets exactly `reply` (a redirect, a lie, ...)."""
        with self.lock:
            self._fault_controls(service).queued.append([reply, 1])

    def inject_garbage(self, count: int = 1, service: Optional[str] = None, *, size: int = 0) -> None:
        """The next `count` answers are 200 with a body that is not JSON (`size` bytes of it)."""
        with self.lock:
            faults = self._fault_controls(service)
            faults.garbage += count
            faults.garbage_size = size

    def set_latency(self, seconds: float, service: Optional[str] = None) -> None:
        """Delay every following request to `service` by `seconds` before it is answered."""
        with self.lock:
            self._fault_controls(service).latency = seconds

    def set_slow_body(self, seconds_per_byte: float, service: Optional[str] = None) -> None:
        with self.lock:
            self._fault_controls(service).slow_body = seconds_per_byte

    @property
    def latency(self) -> float:
        return self._fault_controls(None).latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.set_latency(seconds)

    @property
    def slow_body(self) -> float:
        return self._fault_controls(None).slow_body

    @slow_body.setter
    def slow_body(self, seconds_per_byte: float) -> None:
        self.set_slow_body(seconds_per_byte)

    # -- log (`service`: the first by default, None for every service) -------------------------

    def requests(self, service: Optional[str] = "", **match: Any) -> list[LoggedRequest]:
        wanted_service = self._primary if service == "" else service
        with self.lock:
            log = list(self._log)
        return [entry for entry in log
                if (wanted_service is None or entry.service == wanted_service)
                and all(getattr(entry, key) == wanted for key, wanted in match.items())]

    def count(self, service: Optional[str] = "", **match: Any) -> int:
        return len(self.requests(service, **match))

    def clear_log(self) -> None:
        with self.lock:
            self._log.clear()

    def _next_fault(self, service: str) -> tuple[Optional[Reply], float]:
        """(the reply a fault puts in place of the answer, or None; the slow-body pace), after
        the latency."""
        with self.lock:
            faults = self._faults[service]
            latency, slow = faults.latency, faults.slow_body
            reply = None
            if faults.queued:
                reply = faults.queued[0][0]
                faults.queued[0][1] -= 1
                if faults.queued[0][1] <= 0:
                    faults.queued.popleft()
            if reply is None and faults.garbage > 0:
                faults.garbage -= 1
                size = faults.garbage_size
                reply = Reply(200, "x" * size if size else "<html>502 upstream connect error</html>",
                              "text/html")
        if latency:
            time.sleep(latency)
        return reply, slow


class _DoubleServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a client opening 50 connections at once would
    # see some SYNs dropped and retried a second later (the vendors' front ends never do that).
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (abandoned at its deadline) is not a double bug


class _DoubleHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as the vendors' SDKs expect
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

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        double: HttpsDouble = self.server.double  # type: ignore[attr-defined]
        service: Service = self.server.service  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        query = {key: values[-1] for key, values in
                 parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        incoming = Incoming(method, unquote(split.path), query, self.headers,
                            self.rfile.read(length) if length else b"")
        started = time.monotonic()
        reply, slow = double._next_fault(service.name)
        if reply is None:
            try:
                answer = service.route(incoming)
                reply = answer if isinstance(answer, Reply) else Reply(200, answer)
            except Reply as raised:
                reply = raised
        with double.lock:
            double._log.append(LoggedRequest(
                service.name, method, incoming.path, query, token_tag(incoming.bearer()),
                "Authorization" in self.headers, reply.status, started, time.monotonic()))
        self._answer(reply, {"Content-Type": reply.content_type or service.content_type,
                             **service.headers(incoming), **reply.headers}, slow)

    def _answer(self, reply: Reply, headers: dict[str, str], slow: float) -> None:
        payload = reply.payload
        data = payload.encode() if isinstance(payload, str) else (
            payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not slow:
            self.wfile.write(data)
            return
        for index in range(len(data)):
            self.wfile.write(data[index:index + 1])
            self.wfile.flush()
            time.sleep(slow)
