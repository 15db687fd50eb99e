"""A loopback TCP listener that answers nothing and records every connection and byte it gets.

For proving that shim never contacted an address (a credential sent nowhere): point the
hostile input at `listener.url`, then check `listener.connections == 0`.
"""

from __future__ import annotations

import socket
import threading


class CaptureListener:
    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.received = b""
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            connection.settimeout(0.5)
            try:
                while chunk := connection.recv(65536):
                    self.received += chunk
            except OSError:
                pass
            connection.close()

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        self.server.close()
