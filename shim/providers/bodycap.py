"""A cap on how much of a store's answer shim reads.

A store (or whatever answers at its address) can send a body of any size, or one that never
ends; client libraries read it whole into memory before anything looks at it. Each store has
a largest secret it can hold, so an answer many times that size is not a secret: shim stops
reading at the store's cap and refuses the value (65), whatever follows. A body that arrives
slower than the deadline still ends at the deadline (69): the runner abandons the read.

The caps leave room for JSON escaping (a value of control characters can grow six-fold) and
for the metadata around the value:

- Vault: KV has no fixed value limit (Vault's default request limit is 32 MiB; OpenBao stores
  5 MiB without complaint); shim reads at most 4 MiB of any answer, and its refusal says that
  the limit is shim's (shim.providers.vault.http.too_large).
- AWS: a Secrets Manager value is at most 64 KiB, an SSM parameter 8 KiB (advanced tier), up
  to ten per GetParameters answer: 1 MiB.
- Azure Key Vault: a secret value is at most 25 KiB: 256 KiB.
- Doppler: one answer is a whole config (every secret of it, as one JSON object); Doppler
  documents no size limit, so the cap is Vault's: 4 MiB.
- Infisical: one answer is a whole folder, each secret with its metadata (comments, tags,
  versions); no documented limit either: 4 MiB.
- 1Password Connect: one answer is an item (its fields, sections, notes) or a list of vault or
  item summaries; 4 MiB as well.
- Bitwarden Secrets Manager: a secret's value is at most 35,000 characters before encryption,
  and an import reads a whole project at once: 4 MiB.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import requests

from shim.tools.errors import ShimError, UnusableValue

VAULT_BODY_CAP = 4 * 1024 * 1024
AWS_BODY_CAP = 1024 * 1024
AZURE_BODY_CAP = 256 * 1024
DOPPLER_BODY_CAP = 4 * 1024 * 1024
INFISICAL_BODY_CAP = 4 * 1024 * 1024
ONEPASSWORD_BODY_CAP = 4 * 1024 * 1024
BITWARDEN_BODY_CAP = 4 * 1024 * 1024
CHUNK = 64 * 1024


def _shown(cap: int) -> str:
    return f"{cap // (1024 * 1024)} MiB" if cap % (1024 * 1024) == 0 else f"{cap // 1024} KiB"


def too_large(store: str, cap: int) -> UnusableValue:
    return UnusableValue(f"{store} answered with more than {_shown(cap)}, more than any secret "
                         "it can hold; shim stopped reading",
                         hint="check that the address points at the store (not a proxy or a "
                              "file server), and that the secret is not a file in disguise")


def read_body(chunks: Iterable[bytes], headers: Mapping[str, str], cap: int,
              store: str, refusal: Callable[[str, int], ShimError] = too_large) -> bytes:
    """At most `cap` bytes of `chunks`; a declared or actual length past it raises 65
    (`refusal(store, cap)`: a store whose secrets may be larger says why the cap is there)."""
    declared = (headers.get("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > cap:
        raise refusal(store, cap)
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise refusal(store, cap)
        parts.append(chunk)
    return b"".join(parts)


class CappedSession(requests.Session):
    """A requests session that reads every answer itself, at most `cap` bytes of it.

    Used by hvac (Vault) and by azure-core's requests transport (Key Vault): both would read
    the body whole with stream=False. Decoded bytes are counted, so a compressed bomb stops
    at the cap too.
    """

    def __init__(self, cap: int, store: str,
                 refusal: Callable[[str, int], ShimError] = too_large):
        super().__init__()
        self.body_cap = cap
        self.store = store
        self.refusal = refusal

    def send(self, request, **kwargs):
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        try:
            content = read_body(response.iter_content(CHUNK), response.headers,
                                self.body_cap, self.store, self.refusal)
        except BaseException:
            response.close()
            raise
        response._content = content       # what response.content and .json() read
        response._content_consumed = True
        response.close()                  # the body is read: the connection goes back to the pool
        return response


def cap_botocore_client(client, cap: int, store: str) -> None:
    """Make a boto3 client read at most `cap` bytes of every answer.

    botocore's HTTP session reads each answer whole (AWSResponse.content) before returning it,
    unless the request asks for a streaming answer; no option limits that read. So the
    session's `send` is wrapped: the request is marked as streaming for the send only, and the
    raw body is then read here, capped, into the response, where botocore's parser reads it.
    The attributes are botocore's own (not documented): tests/hardening/test_provider_bodies.py
    fails if a botocore upgrade changes them.
    """
    session = client._endpoint.http_session
    send = session.send

    def capped_send(request):
        streaming = request.stream_output
        request.stream_output = True
        try:
            response = send(request)
        finally:
            request.stream_output = streaming
        if streaming:
            return response
        raw = response.raw
        try:
            response._content = read_body(raw.stream(CHUNK), response.headers, cap, store)
        finally:
            raw.release_conn()
        return response

    session.send = capped_send
