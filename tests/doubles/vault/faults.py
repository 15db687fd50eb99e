"""Fault injection: sealing, queued error answers (fail_next) and slow bodies (trickle).
Latency and echo_credentials are plain attributes applied in server.py."""

from __future__ import annotations

import threading

from tests.doubles.vault.records import _Failure
from tests.doubles.vault.values import JSON
from tests.doubles.vault.wire import Request, Response, _json_response


class FaultsMixin:
    """Test controls that make the double misbehave on purpose."""

    @property
    def sealed(self) -> bool:
        return self._sealed

    def seal(self) -> None:
        with self._lock:
            self._sealed = True

    def unseal(self) -> None:
        with self._lock:
            self._sealed = False

    def unseal_after(self, seconds: float) -> None:
        timer = threading.Timer(seconds, self.unseal)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def fail_next(self, n: int = 1, status: int = 429, *, errors: list[str] | None = None,
                  path: str | None = None, body: bytes | str | None = None,
                  content_type: str = JSON, headers: dict[str, str] | None = None) -> None:
        """Answer the next n requests (whose API path starts with `path`, if given) with an error.

        Default bodies are what Vault says for that status; pass `body` (and `content_type`) to
        imitate a proxy's non-JSON page instead.
        """
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            for _ in range(n):
                self._failures.append(_Failure(status, errors, path and path.strip("/"), raw,
                                               content_type, dict(headers or {})))

    def trickle(self, path: str, seconds_per_byte: float = 1.0, *, after: int = 0) -> None:
        """Answer requests under `path` slowly: headers, then one body byte every interval.

        The first `after` matching requests are answered normally.
        """
        with self._lock:
            self._trickles.append([path.strip("/"), seconds_per_byte, after])

    # -- applying them ----------------------------------------------------------------------

    def _take_failure(self, request: Request) -> Response | None:
        for index, failure in enumerate(self._failures):
            if failure.path is None or request.path.startswith(failure.path):
                del self._failures[index]
                if failure.body is not None:
                    return Response(failure.status, failure.body, failure.content_type,
                                    failure.headers)
                errors = failure.errors
                if errors is None:
                    errors = self._default_errors(failure.status, request.path)
                response = _json_response(failure.status, {"errors": errors})
                response.headers.update(failure.headers)
                return response
        return None

    @staticmethod
    def _default_errors(status: int, path: str) -> list[str]:
        return {
            400: ["invalid request"],
            403: ["permission denied"],
            404: [],
            429: [f'request path "{path}": rate limit quota exceeded'],
            500: ["internal error"],
            501: ["Vault is not initialized"],
            502: ["bad gateway"],
            503: ["Vault is sealed"],
        }.get(status, ["error"])
