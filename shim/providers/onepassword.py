"""1Password, through a Connect server: `op://VAULT/ITEM/[SECTION/]FIELD`, 1Password's own
secret-reference syntax, so an env file written for `op run` works unchanged.

The locator is `VAULT/ITEM` (names or 26-character IDs); the section and field are a selector
into the item's map, so every reference into one item shares one read. A read is at most three
GETs: the vault by name (once per vault per run), the item by title, then the item itself. The
syntax is a row of shim/syntax/refs.py.

Credentials: OP_CONNECT_HOST and OP_CONNECT_TOKEN, as 1Password's own tools read them. The token
goes only to OP_CONNECT_HOST: https, or http to a loopback address (Connect as a sidecar); no
reference or answer names another address, and no redirect is followed. A service account
(OP_SERVICE_ACCOUNT_TOKEN) needs 1Password's SDK, which talks to 1Password.com and cannot be
tested here: docs/onepassword.md says so.

--watch probe: the vault's item list (`GET /v1/vaults/ID/items`, once per vault per tick for
every reference into it): item summaries with their `version`, no fields, so no value; an item
is read again only when its version changed. Connect has no permission that
allows the read but not the list, so a failed probe is left to the read to explain.

Plain REST over `requests` (shim/providers/rest.py); docs/onepassword.md says why. Messages quote
vault and item names, HTTP statuses and counts, never a field value or the token.
"""

from __future__ import annotations

import re
import threading

from shim.tools.errors import ConfigError, NotFound, ShimError, Unavailable, UnusableValue
from shim.providers import rest
from shim.providers.base import Fetched, SecretMeta
from shim.providers.bodycap import ONEPASSWORD_BODY_CAP
from shim.providers.mechanism import retry

TITLE = "1Password Connect"
HOST_VARIABLE = "OP_CONNECT_HOST"
TOKEN_VARIABLE = "OP_CONNECT_TOKEN"
SERVICE_ACCOUNT_VARIABLE = "OP_SERVICE_ACCOUNT_TOKEN"
# 1Password's vault, item, section and field IDs: 26 lower-case letters and digits.
ID_PATTERN = r"[a-z0-9]{26}"
LOOPBACK = r"http://(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])(:\d{1,5})?"
HINTS = rest.StatusHints(
    store=TITLE, endpoint=HOST_VARIABLE,
    not_found="check the vault and item names, and that the Connect token may read the vault",
    denied=f"check {TOKEN_VARIABLE}: it must be a Connect token with read access to the vault",
    bad_request="check the vault and item names in the reference")


def host_setting(environ) -> str:
    """OP_CONNECT_HOST: https://, or http:// to a loopback address only (a sidecar), so the
    token never crosses a network in clear text."""
    value = (environ.get(HOST_VARIABLE) or "").rstrip("/")
    if not value:
        raise ConfigError(f"{HOST_VARIABLE} is not set",
                          hint="give the Connect server's URL, e.g. https://connect.example:8443"
                               + (f" ({SERVICE_ACCOUNT_VARIABLE} needs 1Password's SDK, which "
                                  "shim does not use yet)"
                                  if environ.get(SERVICE_ACCOUNT_VARIABLE) else ""))
    if re.fullmatch(LOOPBACK, value):
        return value
    return rest.endpoint_setting(HOST_VARIABLE, value, "https://connect.example:8443")


class OnePasswordConnectProvider:
    name = "onepassword"

    def __init__(self, context):
        self.context = context
        self._session = None
        self._vaults: dict[str, object] = {}     # vault name -> id, or the ShimError
        self._vault_lock = threading.Lock()
        self._summaries: dict[str, list] = {}    # vault id -> its item summaries (probes)

    def fetch_all(self, references, deadline):
        if not references:
            return {}
        try:
            self._ready()
        except ShimError as error:
            return {reference.fetch_key: error for reference in references}
        return rest.read_each_locator(references, self._read_item, deadline, TITLE)

    def _ready(self) -> None:
        self._host = host_setting(self.context.environ)
        self._token = self.context.environ.get(TOKEN_VARIABLE) or ""
        if not self._token:
            raise ConfigError(f"{TOKEN_VARIABLE} is not set",
                              hint="give the Connect server's access token")
        if self._session is None:
            self._session = rest.new_session()

    # -- --watch change probes (shim.pipeline.probes) -------------------------------------------

    def probe_kind(self, reference) -> str:
        return "item-version"

    def probe(self, reference, deadline):
        """"ID vN" of the item from its vault's item summaries (one list per vault per tick,
        shared by every reference into it); None when the list does not name exactly one such
        item or is refused (the read says what is wrong)."""
        self._ready()
        vault, item = reference.locator.split("/", 1)
        vault_id = self._vault_id(vault, deadline)
        with self._vault_lock:
            if vault_id not in self._summaries:
                answer = self._get(f"/v1/vaults/{vault_id}/items", None, deadline, "probe")
                listed = answer.body if answer.status == 200 and isinstance(answer.body, list) \
                    else []
                self._summaries[vault_id] = [entry for entry in listed if isinstance(entry, dict)]
            summaries = self._summaries[vault_id]
        key = "id" if re.fullmatch(ID_PATTERN, item) else "title"
        matches = [entry for entry in summaries if entry.get(key) == item]
        if len(matches) != 1:
            return None
        found, version = matches[0].get("id"), matches[0].get("version")
        if not isinstance(version, int) or isinstance(version, bool) or not isinstance(found, str):
            return None
        return f"{found} v{version}"

    def _get(self, path: str, params, deadline, operation: str):
        return retry(lambda: rest.call(self._session, "GET", self._host + path,
                                       headers={"Authorization": f"Bearer {self._token}",
                                                "Accept": "application/json"},
                                       params=params, timeout=deadline.remaining(),
                                       cap=ONEPASSWORD_BODY_CAP, store=TITLE),
                     deadline, self.context.log, provider=self.name, title=TITLE,
                     operation=operation,
                     hint="transient failures were retried until --deadline; raise it or "
                          "check the Connect server")

    def _read_item(self, locator: str, deadline):
        vault, item = locator.split("/", 1)
        try:
            vault_id = self._vault_id(vault, deadline)
            item_id = self._item_id(vault_id, vault, item, deadline)
            answer = self._get(f"/v1/vaults/{vault_id}/items/{item_id}", None, deadline, "item")
        except ShimError as error:
            return error
        if answer.status != 200:
            return rest.outcome_of_status(answer.status, f"item {item} in vault {vault}", HINTS)
        return item_map(answer.body, f"item {item} in vault {vault}")

    def _vault_id(self, vault: str, deadline) -> str:
        if re.fullmatch(ID_PATTERN, vault):
            return vault
        with self._vault_lock:
            if vault not in self._vaults:
                try:
                    self._vaults[vault] = self._find("/v1/vaults", f'name eq "{vault}"',
                                                     f"vault {vault}", deadline)
                except ShimError as error:
                    self._vaults[vault] = error
            found = self._vaults[vault]
        if isinstance(found, ShimError):
            raise found
        return found

    def _item_id(self, vault_id: str, vault: str, item: str, deadline) -> str:
        if re.fullmatch(ID_PATTERN, item):
            return item
        return self._find(f"/v1/vaults/{vault_id}/items", f'title eq "{item}"',
                          f"item {item} in vault {vault}", deadline)

    def _find(self, path: str, expression: str, shown: str, deadline) -> str:
        """The id of the one object a SCIM filter names (by name or title)."""
        answer = self._get(path, {"filter": expression}, deadline, "lookup")
        if answer.status != 200:
            raise rest.outcome_of_status(answer.status, shown, HINTS)
        listed = answer.body if isinstance(answer.body, list) else None
        if listed is None or not all(isinstance(entry, dict) for entry in listed):
            raise Unavailable(f"the answer for {shown} is not a list",
                              hint=f"check {HOST_VARIABLE} points at a Connect server")
        if not listed:
            raise NotFound(f"{shown} does not exist", hint=HINTS.not_found)
        if len(listed) > 1:
            raise ConfigError(f"{len(listed)} objects match {shown}",
                              hint="name it by its ID (op item get --format json shows it)")
        found = listed[0].get("id")
        if not isinstance(found, str) or not re.fullmatch(ID_PATTERN, found):
            raise Unavailable(f"the answer for {shown} holds no valid ID",
                              hint=f"check {HOST_VARIABLE} points at a Connect server")
        return found


def item_map(body, shown: str):
    """An item -> {field: value, section: {field: value}}, by label (the names `op://` uses and
    an import turns into variables; field and section IDs are not names here).

    A field outside any section is a top-level key, a section a key holding its fields; the
    sections are added after the fields, so a section never hides a field of the same name, and
    a sectioned field whose name is unique in the item is a top-level key too. A label several
    fields of one section share names the first of them.
    """
    if not isinstance(body, dict) or not isinstance(body.get("fields", []), list):
        return Unavailable(f"the answer for {shown} is not an item",
                           hint=f"check {HOST_VARIABLE} points at a Connect server")
    sections: dict[str, dict] = {}
    for section in body.get("sections") or []:
        if isinstance(section, dict) and isinstance(section.get("id"), str):
            sections[section["id"]] = {"label": section.get("label"), "fields": {}}
    values: dict[str, object] = {}
    for field in (field for field in body.get("fields") or [] if isinstance(field, dict)):
        value = field.get("value", "")
        if not isinstance(value, str):
            return UnusableValue(f"a field of {shown} is not text",
                                 hint=f"check {HOST_VARIABLE} points at a Connect server")
        section = field.get("section") if isinstance(field.get("section"), dict) else None
        target = sections.get(section.get("id")) if section else None
        name = field.get("label")
        if isinstance(name, str) and name:
            (target["fields"] if target else values).setdefault(name, value)
    for section in sections.values():
        if isinstance(section["label"], str) and section["label"]:
            values.setdefault(section["label"], section["fields"])
    # `op://V/I/FIELD` also finds a field inside a section when no other field of the item has
    # that name (as `op read` does); a name two sections share stays ambiguous and is not found.
    counts: dict[str, int] = {}
    for section in sections.values():
        for name in section["fields"]:
            counts[name] = counts.get(name, 0) + 1
    for section in sections.values():
        for name, value in section["fields"].items():
            if counts[name] == 1:
                values.setdefault(name, value)
    return Fetched(values, SecretMeta(version=str(body.get("version"))
                                      if isinstance(body.get("version"), int) else None))
