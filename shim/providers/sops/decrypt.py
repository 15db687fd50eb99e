"""sops-encrypted files, read (and, for dotenv, written) without the sops binary.

    decrypt_file(path, environ, deadline, fmt=None) -> Decrypted

reads the file (a regular file, size-capped, never blocking on a FIFO),
recovers the data key from a master key it lists, decrypts every value,
and verifies the MAC before returning anything. Failures are ShimErrors
that name the file and never a value: 65 for a damaged or tampered file,
77 when a usable key refused, 78 when no key is configured (or the file
needs what shim does not read), 69 when a key service is unreachable.
docs/sops.md has the format facts this follows.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

from shim.tools.errors import ConfigError, PermissionDenied, Unavailable, UnusableValue

__all__ = ["Decrypted", "decrypt_file", "decrypt_bytes", "FORMATS"]

from shim.syntax.refs import SOPS_FORMATS as FORMATS  # the ?format= values the grammar accepts
from shim.tools.safe_read import read_capped

# The cap of a plain secret file (shim/providers/files.py): secrets and settings, not data.
MAX_SOPS_FILE_BYTES = 1024 * 1024


class Decrypted(NamedTuple):
    value: Any          # a dict (yaml/json/dotenv/ini; yaml: the first document), or the binary text
    format: str
    lastmodified: str   # RFC 3339, from the file's metadata


def decrypt_file(path: str, environ: Mapping[str, str], deadline, fmt: str | None = None,
                 log=None) -> Decrypted:
    # Symlinks followed: Kubernetes secret volumes are links into ..data/.
    content = read_capped(path, cap=MAX_SOPS_FILE_BYTES, what="sops file", size_text="1 MiB")
    return decrypt_bytes(content, path, environ, deadline, fmt, log)


def decrypt_bytes(content: bytes, path: str, environ: Mapping[str, str], deadline,
                  fmt: str | None = None, log=None) -> Decrypted:
    from shim.providers.sops import cipher, keys, metadata, stores, tree  # lazy: only with a sops file
    fmt = fmt or stores.format_for_path(path)
    try:
        branches, raw = stores.load(content, fmt)
        meta = metadata.parse(raw)
    except metadata.Unsupported as error:
        raise ConfigError(f"sops file {path}: {error}",
                          hint="re-encrypt it with a key-based rule (--encrypted-regex, "
                               "--unencrypted-suffix, ...), or decrypt it with sops") from None
    except (stores.FormatError, RecursionError) as error:
        what = error if isinstance(error, stores.FormatError) else "it nests too deeply"
        raise UnusableValue(f"sops file {path} ({fmt}): {what}",
                            hint="check the file and its format (?format= overrides the extension)") from None
    key = _data_key(path, meta, environ, deadline, log)
    try:
        decrypted, computed = tree.decrypt(branches, key, meta.rules)
        stored = cipher.decrypt(meta.mac, key, meta.lastmodified) if meta.mac else ""
    except (tree.TreeError, cipher.CipherError, RecursionError):
        raise UnusableValue(f"sops file {path}: MAC mismatch (a value does not authenticate)",
                            hint="the file was changed without sops or tampered with; restore it from git") from None
    if not isinstance(stored, str) or stored.upper() != computed or not stored:
        raise UnusableValue(f"sops file {path}: MAC mismatch",
                            hint="the file was changed without sops or tampered with; restore it from git") from None
    if fmt == "binary":
        data = decrypted[0].as_dict().get("data") if decrypted else None
        if not isinstance(data, (str, bytes)):
            raise UnusableValue(f"sops file {path} (binary): it has no data entry",
                                hint="read it with the format it was encrypted as (?format=)")
        return Decrypted(data, fmt, meta.lastmodified)
    # Several YAML documents: the MAC covered them all, and the first is what is read, as
    # `sops decrypt --extract`, `--output-type json` and `sops exec-env` read it.
    value = decrypted[0].as_dict() if decrypted else {}
    return Decrypted(value, fmt, meta.lastmodified)


def _data_key(path, meta, environ, deadline, log) -> bytes:
    from shim.providers.sops import keys  # lazy: only with a sops file
    listed = ", ".join(meta.kinds()) or "none"
    if not any(meta.key_groups):
        raise ConfigError(f"sops file {path} lists no master keys",
                          hint="re-encrypt it with sops to at least one key")
    if len(meta.key_groups) > 1:
        raise ConfigError(f"sops file {path} splits its data key over {len(meta.key_groups)} key "
                          "groups (Shamir), which shim does not read",
                          hint="no well-kept Python implementation of sops' Shamir scheme exists; "
                               "re-encrypt it with a single key group")
    key, failures = keys.data_key(meta.key_groups[0], environ, deadline, log)
    if key is not None:
        return key
    reasons = "; ".join(dict.fromkeys(failure.why for failure in failures))
    hows = {failure.how for failure in failures}
    message = f"sops file {path}: no master key it lists ({listed}) gave the data key: {reasons}"
    if "refused" in hows:
        raise PermissionDenied(message, hint="give shim a key the file was encrypted to")
    if "unreachable" in hows:
        raise Unavailable(message, hint="check the key service's endpoint and network")
    raise ConfigError(message, hint="configure one of its keys (SOPS_AGE_KEY_FILE, GNUPGHOME, "
                                    "AWS credentials, ...)")


class Layout(NamedTuple):
    """What `shim scan` needs to know of a sops file, without a key."""
    unencrypted: list[str]   # paths of values its rules say are encrypted but are in plain text
    sealed: list[str]        # its ENC[...] values and metadata texts: high-entropy by design
    plain: list[str]         # the values it leaves in clear: always scanned, even if the
                             # metadata (written by anyone) repeats them


def inspect(content: bytes, path: str) -> Layout | None:
    """For `shim scan`: None if this is not a sops file (no sops metadata with a mac and a
    lastmodified). Rules shim does not read (comments) report no unencrypted paths."""
    from shim.providers.sops import cipher, metadata, stores, tree  # lazy: only with a sops file
    try:
        branches, raw = stores.load(content, stores.format_for_path(path))
        if not isinstance(raw, dict) or "mac" not in raw or "lastmodified" not in raw:
            return None
        try:
            rules = metadata.parse(raw).rules
        except metadata.Unsupported:
            rules = None        # which values should be encrypted is not known here
    except (stores.FormatError, RecursionError):
        return None
    sealed = [text for text in _texts(raw) if text]
    found: list[str] = []
    plain: list[str] = []
    if isinstance(raw.get("mac"), str) and raw["mac"] and not cipher.is_encrypted(raw["mac"]):
        found.append("sops/mac")

    def leaf(value, keys):
        if cipher.is_encrypted(value):
            sealed.append(value)
            return value
        plain.append(str(value))
        if rules is not None and rules.encrypts(keys) and value != "":
            found.append("/" + "/".join(keys))
        return value

    try:
        for branch in branches:
            tree.walk(branch, [], leaf)
    except (tree.TreeError, tree.RuleError, RecursionError):
        return None
    return Layout(found, sealed, plain)


def _texts(value) -> list[str]:
    """Every text in the metadata (keys' enc blocks, recipients, fingerprints, the MAC)."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return [value] if isinstance(value, str) else []
