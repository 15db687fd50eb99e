"""A server that answers every request with a huge or an endless body: what a hostile or
misconfigured address (a file server, a proxy's error loop, an attacker) can send to a client
that expected a store's small JSON answer.

`FloodServer(size=...)` declares Content-Length and sends `size` bytes; `FloodServer()` sends
a chunked body that never ends (until the client goes); `FloodServer(body=..., status=...)`
answers every request with exactly that (the answer fuzzer's arbitrary bodies). The bytes are a JSON prefix followed
by one long string, so a client that reads it all would have a valid-looking document.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = b"A" * (256 * 1024)
PREFIX = b'{"data": {"data": {"password": "'


class FloodServer:
    def __init__(self, *, size: int | None = None, content_type: str = "application/json",
                 context: ssl.SSLContext | None = None, body: bytes | None = None,
                 status: int = 200):
        self.size = len(body) if body is not None else size
        self.body = body
        self.status = status
        self.content_type = content_type
        self.requests = 0
        flood = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                flood.requests += 1
                self.send_response(flood.status)
                self.send_header("Content-Type", flood.content_type)
                if flood.size is None:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(flood.size))
                self.end_headers()
                try:
                    flood._write(self.wfile)
                except OSError:
                    pass
                self.close_connection = True

            do_GET = do_POST = do_PUT = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _write(self, stream) -> None:
        if self.body is not None:
            stream.write(self.body)
            return
        if self.size is None:
            def chunk(data):
                stream.write(b"%x\r\n%s\r\n" % (len(data), data))
            chunk(PREFIX)
            while True:
                chunk(CHUNK)
        left = self.size
        stream.write(PREFIX[:left])
        left -= min(left, len(PREFIX))
        while left > 0:
            piece = CHUNK[:left]
            stream.write(piece)
            left -= len(piece)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FloodServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
