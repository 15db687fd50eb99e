"""--fallback-cache: the last values read from remote stores, sealed, for when a store is down.

After a resolution in which every reference resolved, the secrets read from remote stores (not
files, not env files, nothing with a lease) are written into one file in DIR, encrypted with age
to the identity in --fallback-key-file. When a later resolution fails with 69 (unreachable,
deadline, 5xx/429 after retries, sealed) and only then, a secret whose entry is younger than
--fallback-max-age is served from that file instead, and `secret.stale` says so. 77 (access may
have been revoked on purpose), 66 (deleted on purpose), 65 and 78 are never covered.

Why age to a key the workload holds: a key derived from the host or the store token protects
nothing once the volume is copied. Age authenticates the file (a flipped byte is refused), but
anyone who knows the public key can write a valid one, so DIR must be writable by shim's user
alone: the cache's owner and mode are checked before it is believed.

The file: one line `shim-fallback-cache 1` (the format version, the only thing in clear), then
the age ciphertext of a JSON object {"entries": {read: {"fetched": epoch, "kind", "value",
"version"}}}, one entry per secret read (store, path, pinned version: the reference without
its #key part), with the time it was fetched.
"""

from __future__ import annotations

import base64
import json
import os
import time

from shim.tools.errors import ConfigError, ShimError, Unavailable, UnusableValue
from shim.providers.base import Fetched, SecretMeta
from shim.tools.safe_read import read_capped

CACHE_NAME = "shim-fallback.age"
MAGIC = b"shim-fallback-cache 1\n"
MAX_CACHE_BYTES = 16 * 1024 * 1024
MAX_KEY_FILE_BYTES = 64 * 1024
# Stores whose outage the cache covers: every provider but local files. A file that cannot be
# read is not an outage, and a cached copy of it would only hide the mistake.
LOCAL_PROVIDERS = frozenset({"file", "envfile"})


class FallbackCache:
    """DIR, the age identity, and the age limit; reads the cache only when a store fails."""

    def __init__(self, directory: str, identities: list, key_file: str, max_age: float):
        self.directory = directory
        self.identities = identities
        self.key_file = key_file
        self.max_age = max_age
        self._entries: dict | None = None

    # -- serving --------------------------------------------------------------------------

    def cover(self, references, outcomes: dict) -> dict:
        """Replace each 69 of a cacheable reference with its cached secret, when young enough.

        Returns {fetch_key: (age_seconds, the original error)} of what was served; `outcomes`
        is changed in place. A damaged cache fails the run (65/78) rather than be half-believed.
        """
        served = {}
        if self.max_age <= 0:
            return served
        for reference in references:
            key = reference.fetch_key
            error = outcomes.get(key)
            if key in served or not isinstance(error, Unavailable) or not cacheable(reference):
                continue
            entry = self.entries().get(entry_key(reference))
            if entry is None:
                continue
            age = max(0.0, time.time() - entry["fetched"])
            if age > self.max_age:
                continue
            outcomes[key] = Fetched(_decode_value(entry), SecretMeta(version=entry.get("version")))
            served[key] = (age, error)
        return served

    def entries(self) -> dict:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict:
        directory = self._open_directory()
        try:
            try:
                descriptor = os.open(CACHE_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                                     | os.O_CLOEXEC, dir_fd=directory)
            except FileNotFoundError:
                return {}
            except OSError as error:
                raise ConfigError(f"--fallback-cache {self.path}: cannot be opened "
                                  f"({error.strerror})",
                                  hint="remove it; the next good start writes a new one") from None
            with open(descriptor, "rb") as stream:
                info = os.fstat(stream.fileno())
                self._check_owned(info, self.path, "file")
                if info.st_size > MAX_CACHE_BYTES:
                    raise UnusableValue(f"--fallback-cache {self.path} is larger than 16 MiB",
                                        hint="remove it; the next good start writes a new one")
                content = stream.read(MAX_CACHE_BYTES + 1)
        finally:
            os.close(directory)
        if not content.startswith(MAGIC):
            raise UnusableValue(f"--fallback-cache {self.path} is not a shim fallback cache "
                                "(format 1)", hint="remove it; the next good start writes a new one")
        plain = self._decrypt(content[len(MAGIC):])
        try:
            entries = json.loads(plain)["entries"]
            if not isinstance(entries, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            raise UnusableValue(f"--fallback-cache {self.path}: its content is not a cache",
                                hint="remove it; the next good start writes a new one") from None
        return entries

    def _decrypt(self, ciphertext: bytes) -> bytes:
        import pyrage  # lazy: only when a store failed and the cache is consulted

        try:
            return pyrage.decrypt(ciphertext, self.identities)
        except Exception as error:   # pyrage.DecryptError; its text names no value
            if "No matching keys" in str(error):
                raise ConfigError(f"--fallback-cache {self.path} was not encrypted to the identity "
                                  f"in {self.key_file} (or its header is damaged)",
                                  hint="give the key the cache was written with, or remove the "
                                       "cache") from None
            raise UnusableValue(f"--fallback-cache {self.path} is damaged or was changed "
                                "(age refused it)",
                                hint="it is never used; remove it, the next good start writes a "
                                     "new one") from None

    # -- writing --------------------------------------------------------------------------

    def save(self, resolution) -> None:
        """Write the remote secrets of a clean resolution (nothing served stale, no error)."""
        import pyrage  # lazy: only with --fallback-cache

        entries = {}
        now = time.time()
        for key, (provider, fetched) in resolution.fetched.items():
            if provider in LOCAL_PROVIDERS or fetched.meta.lease_id or fetched.meta.lease_duration:
                continue
            entries[_spelled(key)] = {"fetched": now, **_encode_value(fetched.value),
                                      "version": fetched.meta.version}
        plain = json.dumps({"entries": entries}, separators=(",", ":")).encode()
        recipients = [identity.to_public() for identity in self.identities[:1]]
        sealed = MAGIC + pyrage.encrypt(plain, recipients)
        self._write(sealed)

    def _write(self, content: bytes) -> None:
        directory = self._open_directory()
        temporary = f".{CACHE_NAME}.{os.getpid()}.tmp"
        try:
            try:
                os.unlink(temporary, dir_fd=directory)
            except FileNotFoundError:
                pass
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o600, dir_fd=directory)
            try:
                with open(descriptor, "wb", closefd=False) as stream:
                    stream.write(content)
                    stream.flush()
                os.fchmod(descriptor, 0o600)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.rename(temporary, CACHE_NAME, src_dir_fd=directory, dst_dir_fd=directory)
            os.fsync(directory)
        except OSError as error:
            try:
                os.unlink(temporary, dir_fd=directory)
            except OSError:
                pass
            raise ConfigError(f"--fallback-cache {self.directory}: cannot write the cache "
                              f"({error.strerror})",
                              hint="give shim's user a directory of its own") from None
        finally:
            os.close(directory)

    # -- the directory --------------------------------------------------------------------

    @property
    def path(self) -> str:
        return os.path.join(self.directory, CACHE_NAME)

    def _open_directory(self) -> int:
        try:
            directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                | os.O_CLOEXEC)
        except OSError as error:
            raise ConfigError(f"--fallback-cache {self.directory}: {error.strerror} (a symlink "
                              "is refused)", hint="give the real directory") from None
        try:
            self._check_owned(os.fstat(directory), self.directory, "directory")
        except ShimError:
            os.close(directory)
            raise
        return directory

    @staticmethod
    def _check_owned(info: os.stat_result, path: str, what: str) -> None:
        # Anyone who may write here could plant a cache encrypted to the (public) recipient.
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise ConfigError(f"--fallback-cache {path}: the {what} must belong to uid "
                              f"{os.geteuid()} and be writable by it alone",
                              hint=f"chown {os.geteuid()} and chmod go-w it")


def from_options(options, identity=None) -> FallbackCache | None:
    """The cache these options ask for (DIR and key checked), or None without --fallback-cache.

    `identity`: who the program (or render's files) will belong to; neither DIR nor the key
    file may be readable or writable by that user (78).
    """
    directory = options.fallback_cache
    if not directory:
        return None
    key_file = options.fallback_key_file
    if not key_file:
        raise ConfigError("--fallback-cache needs --fallback-key-file: the cache is never "
                          "written in clear", hint="give an age identity (age-keygen) delivered "
                                                   "as a secret")
    _ensure_directory(directory)
    if identity is not None and identity.uid != os.geteuid():
        for path, what in ((directory, "--fallback-cache"), (key_file, "--fallback-key-file")):
            try:
                info = os.stat(path)
            except OSError:
                continue   # the key file's own read below says what is wrong
            if reachable_by(info, identity):
                raise ConfigError(f"{what} {path} is readable or writable by uid {identity.uid}, "
                                  "the user the program runs as",
                                  hint="make it readable by shim's user only (chmod go-rwx, "
                                       "another owner)")
    identities = read_identities(key_file)
    return FallbackCache(directory, identities, key_file, options.fallback_max_age)


def _ensure_directory(directory: str) -> None:
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        raise ConfigError(f"--fallback-cache {directory}: cannot create it ({error.strerror})",
                          hint="create it, owned by shim's user, mode 0700") from None


def reachable_by(info: os.stat_result, identity) -> bool:
    """Whether `identity` may read or write the file (its owner, group or other bits)."""
    if info.st_uid == identity.uid:
        bits = (info.st_mode >> 6) & 0o6
    elif info.st_gid == identity.gid or info.st_gid in identity.groups:
        bits = (info.st_mode >> 3) & 0o6
    else:
        bits = info.st_mode & 0o6
    return bool(bits)


def read_identities(key_file: str) -> list:
    try:
        import pyrage  # lazy: only with --fallback-cache
    except ImportError:
        raise ConfigError("--fallback-cache needs pyrage: install shim-secrets[sops]",
                          hint="install the extra, or drop --fallback-cache") from None
    content = read_capped(key_file, cap=MAX_KEY_FILE_BYTES, what="--fallback-key-file",
                          size_text="64 KiB", missing=ConfigError, unreadable=ConfigError,
                          not_regular=ConfigError, too_large=ConfigError)
    identities = []
    for line in content.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line.startswith("AGE-SECRET-KEY-"):
            continue   # comments and the public-key note age-keygen writes
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:   # pyrage's IdentityError; the line is never quoted
            raise ConfigError(f"--fallback-key-file {key_file} holds a malformed age identity",
                              hint="make one with age-keygen") from None
    if not identities:
        raise ConfigError(f"--fallback-key-file {key_file} holds no age identity "
                          "(AGE-SECRET-KEY-1...)", hint="make one with age-keygen")
    return identities


def cacheable(reference) -> bool:
    return reference.provider not in LOCAL_PROVIDERS


def entry_key(reference) -> str:
    """The read a reference makes (store, path, version, the options that change the read),
    spelled canonically: references that share a read share an entry, the #key aside."""
    return _spelled(reference.fetch_key)


def _spelled(fetch_key: tuple) -> str:
    return json.dumps(fetch_key, separators=(",", ":"))


def _encode_value(value) -> dict:
    if isinstance(value, bytes):
        return {"kind": "bytes", "value": base64.b64encode(value).decode()}
    if isinstance(value, str):
        return {"kind": "text", "value": value}
    return {"kind": "json", "value": value}


def _decode_value(entry: dict):
    if entry.get("kind") == "bytes":
        return base64.b64decode(entry["value"])
    return entry["value"]
