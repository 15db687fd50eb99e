"""The tree walk: which values are encrypted, their additional data, and the MAC.

A tree is what a store read: mappings as `Branch` (ordered key/value pairs,
duplicates kept, as sops keeps them), lists, and scalars. Every leaf is
visited in file order with the keys leading to it; list positions are not
part of the path. The MAC is SHA-512 over the leaves' text forms (nulls
skipped), written as upper-case hex and stored encrypted with the data key,
the file's lastmodified as additional data (docs/sops.md).
"""

from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple

from shim.providers.sops import cipher

DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
# SHA-256 of b"sops": fed first into a mac_only_encrypted MAC, so it never equals the plain one.
MAC_ONLY_ENCRYPTED_PREFIX = hashlib.sha256(b"sops").digest()


class FormatError(Exception):
    """The file is not valid in its format, or has no sops metadata. Here, below every store
    (shim.providers.sops.stores and the YAML one it loads lazily), so no store imports another."""


class Branch(list):
    """An ordered mapping as a list of (key, value) pairs."""

    def as_dict(self) -> dict:
        return {key: plain(value) for key, value in self}


def plain(value):
    """Branches as dicts, recursively: what a caller reads."""
    if isinstance(value, Branch):
        return value.as_dict()
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


class Rules(NamedTuple):
    unencrypted_suffix: str = ""
    encrypted_suffix: str = ""
    unencrypted_regex: str = ""
    encrypted_regex: str = ""
    mac_only_encrypted: bool = False

    def encrypts(self, path: list[str]) -> bool:
        """Whether the value at `path` is encrypted (sops applies at most one rule)."""
        if self.unencrypted_suffix:
            return not any(key.endswith(self.unencrypted_suffix) for key in path)
        if self.encrypted_suffix:
            return any(key.endswith(self.encrypted_suffix) for key in path)
        if self.unencrypted_regex:
            return not any(_search(self.unencrypted_regex, key) for key in path)
        if self.encrypted_regex:
            return any(_search(self.encrypted_regex, key) for key in path)
        return True


def _search(pattern: str, text: str) -> bool:
    # Go's regexp.Match finds the pattern anywhere in the key, like search().
    return compile_rule(pattern).search(text) is not None


class RuleError(Exception):
    """A rule's regex RE2 (sops' own engine) does not accept; `missing_engine`: RE2 is not
    installed, a configuration problem of the image rather than of the file."""

    def __init__(self, message: str, missing_engine: bool = False):
        super().__init__(message)
        self.missing_engine = missing_engine


@functools.lru_cache(maxsize=16)
def compile_rule(pattern: str):
    """A file's regex, compiled by RE2: linear time in the key, whatever the pattern, as in sops
    (Go's regexp is RE2 too). Python's backtracking `re` would let a file's `^(a+)+$` hold the
    GIL for hours, past --deadline and in `shim scan`."""
    try:
        import re2  # lazy: the sops extra (google-re2), only for a file with a regex rule
    except ImportError:
        raise RuleError("is a regular expression, and google-re2 (part of shim-secrets[sops]) "
                        "is not installed", missing_engine=True) from None
    options = re2.Options()
    options.log_errors = False      # RE2 would print the pattern to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error:
        raise RuleError("is not a regular expression RE2 (and so sops) accepts") from None


def additional_data(path: list[str]) -> str:
    return "".join(key + ":" for key in path)


class TreeError(Exception):
    """A tree that cannot be walked (a non-string key, an undecryptable value)."""


def decrypt(branches: list[Branch], key: bytes, rules: Rules) -> tuple[list[Branch], str]:
    """The decrypted branches and the MAC computed over them (upper-case hex)."""
    digest = _new_digest(rules)

    def leaf(value, path):
        encrypted = rules.encrypts(path)
        if encrypted:
            if not isinstance(value, str):
                raise TreeError(f"the value at {_shown(path)} should be encrypted but is not")
            try:
                value = cipher.decrypt(value, key, additional_data(path))
            except cipher.CipherError as error:
                raise TreeError(f"the value at {_shown(path)}: {error}") from None
        if encrypted or not rules.mac_only_encrypted:
            digest.update(cipher.mac_bytes(value))
        return value

    return [walk(branch, [], leaf) for branch in branches], digest.hexdigest().upper()


def encrypt(branches: list[Branch], key: bytes, rules: Rules) -> tuple[list[Branch], str]:
    """The encrypted branches and the MAC of their plaintext (upper-case hex)."""
    digest = _new_digest(rules)

    def leaf(value, path):
        encrypted = rules.encrypts(path)
        if encrypted or not rules.mac_only_encrypted:
            digest.update(cipher.mac_bytes(value))
        if encrypted:
            value = cipher.encrypt(value, key, additional_data(path))
        return value

    return [walk(branch, [], leaf) for branch in branches], digest.hexdigest().upper()


def _new_digest(rules: Rules):
    digest = hashlib.sha512()
    if rules.mac_only_encrypted:
        digest.update(MAC_ONLY_ENCRYPTED_PREFIX)
    return digest


def walk(value, path, leaf):
    if isinstance(value, Branch):
        walked = Branch()
        for key, item in value:
            if not isinstance(key, str):
                raise TreeError(f"a key under {_shown(path)} is not a string")
            walked.append((key, walk(item, path + [key], leaf)))
        return walked
    if isinstance(value, list):
        return [walk(item, path, leaf) for item in value]
    if value is None:
        return None
    return leaf(value, path)


def _shown(path: list[str]) -> str:
    # Key names are structure, not values; still, keep a hostile one short.
    text = "/" + "/".join(path)
    return text if len(text) <= 80 else text[:77] + "..."
