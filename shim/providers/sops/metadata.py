"""The `sops` metadata: lastmodified, the encrypted MAC, the encryption rule, master keys."""

from __future__ import annotations

import re
from typing import NamedTuple

from shim.providers.sops.stores import FormatError
from shim.providers.sops.tree import DEFAULT_UNENCRYPTED_SUFFIX, RuleError, Rules, compile_rule

# sops' names for its master key kinds, and the names messages use for them.
KEY_KINDS = {
    "age": "age", "pgp": "pgp", "kms": "aws kms", "hc_vault": "vault transit",
    "azure_kv": "azure key vault", "gcp_kms": "gcp kms", "hckms": "huaweicloud kms",
}
_RULES = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex")
_COMMENT_RULES = ("unencrypted_comment_regex", "encrypted_comment_regex")
_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


class Unsupported(Exception):
    """A sops file valid for sops that needs what shim does not read (78, not 65)."""


class MasterKey(NamedTuple):
    kind: str           # a KEY_KINDS key
    fields: dict        # as the file lists it (enc, recipient, arn, fp, ...)

    @property
    def enc(self) -> str:
        value = self.fields.get("enc")
        return value if isinstance(value, str) else ""


class Metadata(NamedTuple):
    lastmodified: str   # as sops re-formats it for the MAC's additional data
    mac: str
    rules: Rules
    key_groups: list    # list of lists of MasterKey
    shamir_threshold: int
    version: str

    def kinds(self) -> list[str]:
        seen = []
        for group in self.key_groups:
            for key in group:
                if KEY_KINDS[key.kind] not in seen:
                    seen.append(KEY_KINDS[key.kind])
        return seen


def parse(raw: dict) -> Metadata:
    if not isinstance(raw, dict):
        raise FormatError("its sops metadata is not a mapping")
    lastmodified = go_rfc3339(_text(raw, "lastmodified"))
    if any(_text(raw, name) for name in _COMMENT_RULES):
        # A valid sops file shim cannot read (comments choose which values are encrypted):
        # unsupported configuration, 78, as for Shamir key groups.
        raise Unsupported("it uses a comment-based encryption rule (encrypted_comment_regex or "
                          "unencrypted_comment_regex), which shim does not read")
    chosen = [name for name in _RULES if _text(raw, name)]
    if len(chosen) > 1:
        raise FormatError("its metadata names more than one encryption rule")
    settings = {name: _text(raw, name) for name in chosen}
    if not chosen:
        settings["unencrypted_suffix"] = DEFAULT_UNENCRYPTED_SUFFIX
    for name in ("unencrypted_regex", "encrypted_regex"):
        if settings.get(name):
            try:
                compile_rule(settings[name])
            except RuleError as error:
                kind = Unsupported if error.missing_engine else FormatError
                raise kind(f"its {name} {error}") from None
    mac_only = raw.get("mac_only_encrypted") in (True, "true", "True")
    rules = Rules(**settings, mac_only_encrypted=mac_only)
    groups = []
    if "key_groups" in raw and raw["key_groups"]:
        if not isinstance(raw["key_groups"], list):
            raise FormatError("its key_groups is not a list")
        for group in raw["key_groups"]:
            if not isinstance(group, dict):
                raise FormatError("a key group is not a mapping")
            groups.append(_keys(group))
    else:
        groups.append(_keys(raw))
    try:
        threshold = int(raw.get("shamir_threshold") or 0)
    except (TypeError, ValueError):
        raise FormatError("its shamir_threshold is not a number") from None
    return Metadata(lastmodified, _text(raw, "mac"), rules, groups, threshold,
                    _text(raw, "version"))


def _keys(holder: dict) -> list[MasterKey]:
    keys = []
    for kind in KEY_KINDS:
        entries = holder.get(kind) or []
        if not isinstance(entries, list):
            raise FormatError(f"its {kind} keys are not a list")
        for entry in entries:
            if not isinstance(entry, dict):
                raise FormatError(f"a {kind} key entry is not a mapping")
            keys.append(MasterKey(kind, entry))
    return keys


def _text(raw: dict, name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise FormatError(f"its sops {name} is not text")
    return str(value)


def go_rfc3339(text: str) -> str:
    """lastmodified as sops formats it after parsing: no fraction, Z for UTC."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise FormatError("its sops lastmodified is not an RFC 3339 time")
    moment, _fraction, zone = match.groups()
    return moment + ("Z" if zone in ("Z", "+00:00", "-00:00") else zone)
