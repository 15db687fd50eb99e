"""moto's real HTTP server, and a small proxy in front of it that counts and injects faults.

moto (wire-facts.md) is a real Secrets Manager / SSM endpoint on 127.0.0.1;
boto3 reaches it through AWS_ENDPOINT_URL. It has no throttling and no
request log, so shim talks to it through `AwsProxy`, which

- counts every HTTP request it receives by its X-Amz-Target header
  (`secretsmanager.BatchGetSecretValue`, `AmazonSSM.GetParameters`, ...),
  so a test asserts on real requests, not on mocked calls;
- can answer chosen requests itself the way AWS answers a JSON-protocol
  error: HTTP 400 (or 5xx), `Content-Type: application/x-amz-json-1.1`,
  body `{"__type": "ThrottlingException", "message": "Rate exceeded"}`,
  which botocore parses into a ClientError with that code.

Everything else is forwarded to moto unchanged and its answer relayed.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.request import Request, urlopen

from moto.server import ThreadedMotoServer

TEST_ACCOUNT = "123456789012"   # moto's default account


class MotoServer:
    def __init__(self):
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()
        self.url = f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        urlopen(Request(self.url + "/moto-api/reset", method="POST", data=b"")).read()

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Fault:
    target: str | None          # X-Amz-Target suffix to match (None: every request)
    remaining: int | None       # how many more to answer (None: forever)
    status: int
    error_type: str
    message: str
    body_contains: str | None = None    # only requests whose body holds this text
    payload: bytes | None = None        # the answer's body as given (None: the error JSON)


class AwsProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.counts: Counter = Counter()        # every request received, by operation
        self.injected: Counter = Counter()      # the ones answered with a fault
        self.faults: list[Fault] = []
        self.trickles: dict[str | None, float] = {}   # target -> seconds per body byte
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):       # keep pytest output quiet
                pass

            def do_POST(self):
                proxy._handle(self)

            do_GET = do_PUT = do_DELETE = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def inject(self, error_type: str, *, target: str | None = None, times: int | None = None,
               status: int = 400, message: str = "injected by the test proxy",
               body_contains: str | None = None) -> None:
        """Answer the next `times` requests for `target` (e.g. "GetSecretValue") with an error."""
        with self._lock:
            self.faults.append(Fault(target, times, status, error_type, message, body_contains))

    def answer_with(self, payload: bytes, *, target: str | None = None,
                    times: int | None = None, status: int = 200) -> None:
        """Answer the next `times` requests for `target` with exactly `payload` (any bytes)."""
        with self._lock:
            self.faults.append(Fault(target, times, status, "", "", None, payload))

    def trickle(self, target: str | None = None, seconds_per_byte: float = 1.0) -> None:
        """Answer requests for `target` (None: all) slowly: headers, then one body byte a time."""
        with self._lock:
            self.trickles[target] = seconds_per_byte

    def count(self, operation: str) -> int:
        return sum(n for target, n in self.counts.items() if target.endswith("." + operation))

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.injected.clear()
            self.faults.clear()
            self.trickles.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fault_for(self, target: str, body: bytes) -> Fault | None:
        with self._lock:
            self.counts[target] += 1
            for fault in self.faults:
                if fault.target is not None and not target.endswith("." + fault.target):
                    continue
                if fault.body_contains is not None and fault.body_contains.encode() not in body:
                    continue
                if fault.remaining is not None:
                    if fault.remaining <= 0:
                        continue
                    fault.remaining -= 1
                self.injected[target] += 1
                return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        target = handler.headers.get("X-Amz-Target", "")
        fault = self._fault_for(target, body)
        if fault is not None:
            payload = fault.payload
            if payload is None:
                payload = json.dumps({"__type": fault.error_type,
                                      "message": fault.message}).encode()
            handler.send_response(fault.status)
            handler.send_header("Content-Type", "application/x-amz-json-1.1")
            handler.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items()
                       if k.lower() not in ("connection", "keep-alive")}
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            handler.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length",
                                       "keep-alive", "server", "date"):
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            delay = self._trickle_for(target)
            if delay:
                self._write_slowly(handler, payload, delay)
            else:
                handler.wfile.write(payload)
        finally:
            connection.close()

    def _trickle_for(self, target: str) -> float:
        with self._lock:
            for wanted, delay in self.trickles.items():
                if wanted is None or target.endswith("." + wanted):
                    return delay
        return 0.0

    @staticmethod
    def _write_slowly(handler: BaseHTTPRequestHandler, payload: bytes, delay: float) -> None:
        handler.wfile.flush()
        for index in range(len(payload)):
            try:
                handler.wfile.write(payload[index:index + 1])
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(delay)
