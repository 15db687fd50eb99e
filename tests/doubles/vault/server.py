"""HTTP: the stdlib server and handler, the double's lifecycle (start, stop, url, an hvac
client), and the path of every request (latency, answer, echo mode, request log, trickle)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from tests.doubles.vault.records import LoggedRequest
from tests.doubles.vault.values import _clean_namespace
from tests.doubles.vault.wire import Request, Response, VaultFailure, _echoing, _methods


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as hvac's requests.Session expects
    # Headers and body go out in separate writes; without this, Nagle plus delayed ACKs add
    # about 40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw_path = unquote(url.path)
        method = self.command.upper()
        if method == "GET" and query.get("list", "").lower() in ("true", "1"):
            method = "LIST"
        path = raw_path[len("/v1/"):] if raw_path.startswith("/v1/") else ""
        request = Request(method, raw_path, path.strip("/"), query,
                          {k.lower(): v for k, v in self.headers.items()}, body)
        self._send(self.server.vault._handle(request))  # type: ignore[attr-defined]

    def send_response(self, code: int, message: str | None = None) -> None:
        # Vault (Go net/http) sends Date but no Server header.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 204:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.status != 204:
            if response.trickle:
                self._trickle(response)
            else:
                self.wfile.write(response.body)

    def _trickle(self, response: Response) -> None:
        """Headers at once, then the body a byte at a time (until the client or the double goes)."""
        self.wfile.flush()
        for index in range(len(response.body)):
            if self.server.vault._server is None:  # type: ignore[attr-defined]
                break
            try:
                self.wfile.write(response.body[index:index + 1])
                self.wfile.flush()
            except OSError:
                break
            time.sleep(response.trickle)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_LIST = do_HEAD = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the double keeps its own request log


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a client opening 16 connections at once
    # would see some SYNs dropped and retried a second later. Go's listener (Vault) uses the
    # system's somaxconn.
    request_queue_size = 128


_ROOT = object()


class ServerMixin:
    """Serving over HTTP and logging what was asked; the state lives in VaultState."""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        server = _Server((self._host, self._port), _HttpHandler)
        server.daemon_threads = True
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        server.vault = self  # type: ignore[attr-defined]
        self._server = server
        # A short poll interval keeps stop() (and so each test's teardown) fast.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="vault-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the double first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    def client(self, token: Any = _ROOT, namespace: str | None = None, **kwargs: Any):
        """An hvac.Client for this server; token="" sends no token (hvac would read VAULT_TOKEN)."""
        import hvac
        value = self.root_token if token is _ROOT else (token or "")
        return hvac.Client(url=self.url, token=value, namespace=namespace, **kwargs)

    # -- request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def count(self, path: str | None = None, method: str | None = None, *,
              prefix: bool = False) -> int:
        """Requests seen for an API path ("secret/data/app" or "/v1/secret/data/app")."""
        wanted = path.strip("/").removeprefix("v1/") if path is not None else None
        total = 0
        for entry in self.requests:
            api_path = entry.path.strip("/").removeprefix("v1/")
            if method is not None and entry.method != method.upper():
                continue
            matches = api_path.startswith(wanted) if prefix else api_path == wanted
            if wanted is not None and not matches:
                continue
            total += 1
        return total

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._max_in_flight = self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests in progress at once since start (or the last reset_log())."""
        with self._lock:
            return self._max_in_flight

    # -- answering a request -----------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)  # outside the lock: concurrent requests overlap
            with self._lock:
                try:
                    response = self._answer(request)
                except VaultFailure as failure:
                    response = failure.response
                if self.echo_credentials and response.status >= 400:
                    response = _echoing(request, response)
                self._record(request, response.status)
                for trickle in self._trickles:
                    if request.path.startswith(trickle[0]):
                        if trickle[2] > 0:
                            trickle[2] -= 1
                        else:
                            response.trickle = trickle[1]
                        break
            return response
        finally:
            with self._lock:
                self._in_flight -= 1

    def _record(self, request: Request, status: int) -> None:
        headers = {}
        for name, value in request.headers.items():
            redacted = name in ("x-vault-token", "authorization")
            headers[name] = "<redacted>" if redacted else value
        self._log.append(LoggedRequest(
            method=request.method, path=request.raw_path, query=dict(request.query),
            headers=headers,
            namespace=_clean_namespace(request.headers.get("x-vault-namespace", "")),
            status=status, time=time.time()))

    def _answer(self, request: Request) -> Response:
        if not request.raw_path.startswith("/v1/"):
            raise VaultFailure(404, [])
        failure = self._take_failure(request)
        if failure is not None:
            return failure
        if request.path == "sys/health":
            return self._health(request)
        if request.path == "sys/seal-status":
            return _methods(request, {"GET": self._seal_status})
        if self._sealed:
            raise VaultFailure(503, ["Vault is sealed"])
        call = self._locate(request)
        response = self._route(call)
        return self._wrap_if_asked(call, response)
