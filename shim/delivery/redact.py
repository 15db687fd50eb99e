"""--redact: the program's output with every delivered value replaced by `[redacted:NAME]`.

What is matched, for each value at least MIN_LENGTH characters long: the raw UTF-8 bytes, and
the encodings programs commonly print: base64 (standard and URL-safe, at each of the three
alignments a value can take inside a longer base64 text), percent-encoding (every reserved
character, and with `/` left as is), JSON string escaping (non-ASCII as is and as \\uXXXX), and
hex (lower and upper case). Shorter values are not redacted (`PORT=80` would mangle every
line); `shim check -v` names them.

Output flows through at once, except a tail that could be the beginning of a value: such a
tail is held back until the next write completes or refutes it, and at most HOLD_SECONDS,
after which it is written as it is (a proper prefix of a value, never a whole one). So
interactive output and `tail -f` logs keep flowing, and a value split across two writes made
within the bound is still caught.

The tables live only in the redactor process (shim/delivery/redactor.py), which reads the program's
output: never in the supervisor, never in a log.
"""

from __future__ import annotations

import base64
import bisect
import json
from urllib.parse import quote

from shim.delivery import redactengines

MIN_LENGTH = 8
HOLD_SECONDS = 0.1


def forms(value: str) -> set[bytes]:
    """Every spelling of `value` that is redacted."""
    raw = value.encode("utf-8", "surrogateescape")
    found = {raw,
             quote(raw, safe="").encode(), quote(raw, safe="/").encode(),
             json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8", "surrogateescape"),
             json.dumps(value, ensure_ascii=True)[1:-1].encode(),
             raw.hex().encode(), raw.hex().upper().encode()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            # The value after `shift` bytes of something else: the characters that depend
            # only on the value's own bytes.
            text = encode(b"\0" * shift + raw)
            start = (shift * 4 + 2) // 3              # first character of the value's bits only
            end = (4 * (shift + len(raw))) // 3       # past the last one
            if end - start >= MIN_LENGTH:
                found.add(text[start:end])
    return {form for form in found if len(form) >= MIN_LENGTH}


class Redactor:
    """Feeds one stream: redacts, and holds back a tail that may begin a value."""

    def __init__(self, patterns: "Patterns"):
        self.patterns = patterns
        self.held = b""

    def feed(self, data: bytes | memoryview) -> bytes | memoryview:
        """What may be written now. `data` may be a view of the caller's read buffer, and so
        may the answer: write it before reading into that buffer again."""
        return self.feed_after_held(self.held + data if self.held else data)

    def feed_after_held(self, buffer: bytes | memoryview) -> bytes | memoryview:
        """feed(), for a caller that read the new data in right after a copy of `held` (the
        redactor's loop does, so that a megabyte is not copied to put a few bytes before it)."""
        out, self.held = self.patterns.redact(buffer)
        return out

    def flush(self) -> bytes:
        held, self.held = self.held, b""
        return held


class Patterns:
    """Every form of every value, the engine that finds them, and what makes a tail held."""

    def __init__(self):
        self.replacements: dict[bytes, bytes] = {}
        self.sorted_forms: list[bytes] = []
        self.longest = 0
        self.too_short: list[str] = []

    def add(self, values: dict[str, str]) -> None:
        """Add values (a rotation adds the new ones; the old ones stay redacted)."""
        for name in sorted(values):
            value = values[name]
            if len(value) < MIN_LENGTH:
                self.too_short.append(name)
                continue
            label = f"[redacted:{name}]".encode()
            for form in forms(value):
                self.replacements.setdefault(form, label)
        ordered = sorted(self.replacements, key=len, reverse=True)   # longest first wins
        self.ordered = ordered
        self.matcher = redactengines.fastest(ordered) if ordered else None
        self.longest = max((len(form) for form in ordered), default=0)
        self.sorted_forms = sorted(ordered)   # a tail begins a form: bisect finds which
        self.form_bytes = bytes(sorted(set(b"".join(ordered))))

    def redact(self, buffer: bytes | memoryview) -> tuple[bytes | memoryview, bytes]:
        """(what may be written now, the tail to hold back). Output without a form, the usual
        case, comes back as it went in, not copied."""
        if self.matcher is None:
            return buffer, b""
        pieces, position = [], 0
        for start, end in self.matcher(buffer):
            pieces.append(buffer[position:start])
            pieces.append(self.replacements[bytes(buffer[start:end])])
            position = end
        rest = buffer[position:]
        hold = self._held_tail(rest)
        kept, held = rest[:len(rest) - hold], bytes(rest[len(rest) - hold:])
        if not pieces:
            return kept, held
        pieces.append(kept)
        return b"".join(pieces), held

    def _held_tail(self, rest: bytes | memoryview) -> int:
        tail = bytes(rest[-(self.longest - 1):]) if self.longest > 1 else b""
        # Only a suffix made of bytes that occur in some form can begin one: rstrip finds the
        # longest such suffix in C (none, most often: a line ends in a newline).
        candidate = len(tail) - len(tail.rstrip(self.form_bytes))
        for size in range(candidate, 0, -1):
            if self._begins_a_form(tail[-size:]):
                return size
        return 0

    def _begins_a_form(self, text: bytes) -> bool:
        """`text` is a proper beginning of some form: the first form above it in sorted order
        starts with it if any does."""
        index = bisect.bisect_right(self.sorted_forms, text)
        return index < len(self.sorted_forms) and self.sorted_forms[index].startswith(text)
