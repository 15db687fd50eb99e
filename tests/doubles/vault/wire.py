"""What goes over the wire: a request as the handlers see it, the response they return, errors
as exceptions, and JSON written the way Vault's Go encoder writes it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from tests.doubles.vault.records import Namespace, Token
from tests.doubles.vault.values import JSON


@dataclass
class Request:
    method: str                  # upper case; GET ?list=true is turned into LIST
    raw_path: str
    path: str                    # without "/v1/" and surrounding slashes
    query: dict[str, str]
    headers: dict[str, str]      # lower-cased names
    body: bytes

    def json(self) -> dict:
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except ValueError:
            raise VaultFailure(400, ["failed to parse JSON input: invalid character"]) from None
        if not isinstance(value, dict):
            raise VaultFailure(400, ["failed to parse JSON input: not an object"])
        return value


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = JSON
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0         # seconds between body bytes (a slow server); 0: all at once


class VaultFailure(Exception):
    """Raised by a handler to answer with an error status (or a prepared response)."""

    def __init__(self, status: int, errors: list[str] | None = None,
                 response: Response | None = None):
        super().__init__(status, errors)
        self.response = response or _json_response(status, {"errors": errors or []})


_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                    "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_json(payload: Any) -> bytes:
    """JSON as Go's json.Encoder writes it: compact, UTF-8, HTML characters escaped, newline."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    # These characters can only occur inside JSON strings, so replacing them is safe.
    for char, escape in _GO_HTML_ESCAPES.items():
        text = text.replace(char, escape)
    return (text + "\n").encode()


def _json_response(status: int, payload: dict) -> Response:
    return Response(status, _go_json(payload))


def _echoing(request: Request, response: Response) -> Response:
    """The error answer, plus the credentials of the request quoted back (echo_credentials)."""
    try:
        errors = json.loads(response.body).get("errors") or []
    except ValueError:
        errors = []
    sent = " ".join(part for part in (request.headers.get("x-vault-token", ""),
                                      request.body.decode("utf-8", "replace")) if part)
    return _json_response(response.status, {"errors": [*errors, f"request was: {sent}"]})


def envelope(data: Any = None, *, lease_id: str = "", renewable: bool = False,
             lease_duration: int = 0, auth: dict | None = None, warnings: list[str] | None = None,
             wrap_info: dict | None = None, request_id: str | None = None) -> dict:
    # OpenBao's envelope has no mount_type (Vault >= 1.13 adds one; no client needs it).
    return {
        "request_id": str(uuid.uuid4()) if request_id is None else request_id,
        "lease_id": lease_id,
        "renewable": renewable,
        "lease_duration": lease_duration,
        "data": data,
        "wrap_info": wrap_info,
        "warnings": warnings,
        "auth": auth,
    }


def _ok(payload: dict) -> Response:
    return _json_response(200, payload)


def _no_content() -> Response:
    return Response(204, b"", content_type=None)


def _methods(request: Request, handlers: dict[str, Callable[[], Response]]) -> Response:
    """Vault treats POST and PUT alike; anything not listed is 405."""
    method = "PUT" if request.method == "POST" else request.method
    table = {("PUT" if name == "POST" else name): fn for name, fn in handlers.items()}
    if method not in table:
        raise VaultFailure(405, ["unsupported operation"])
    return table[method]()


@dataclass
class _Call:
    """One request being answered: where it points and who makes it."""
    request: Request
    namespace: Namespace
    path: str                    # relative to the namespace
    token: Token | None = None
