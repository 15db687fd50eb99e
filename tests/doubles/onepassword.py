"""A 1Password Connect server double: vaults, items and their fields, as the Connect API
reference documents them.

Real HTTPS on 127.0.0.1 (tests/doubles/https.py); shim finds it through OP_CONNECT_HOST and
trusts it through REQUESTS_CA_BUNDLE (`connect.env(token)` gives all three).

    with ConnectDouble(tmp_path) as connect:
        connect.add_item("prod", "postgres", {"password": canary}, sections={"admin": {...}})
        token = connect.token("prod")

Wire facts reproduced (https://developer.1password.com/docs/connect/connect-api-reference/ and
https://developer.1password.com/docs/cli/secret-reference-syntax/):

- `GET /v1/vaults?filter=name eq "NAME"` answers a list of vault summaries `{"id", "name",
  "type", "contentVersion", ...}`, only of the vaults the token may read; no match is `[]`.
- `GET /v1/vaults/VAULT_ID/items?filter=title eq "TITLE"` answers a list of item summaries
  `{"id", "title", "vault": {"id"}, "category", "version", ...}`; no match is `[]`, several items
  may share a title.
- `GET /v1/vaults/VAULT_ID/items/ITEM_ID` answers the full item: `{"id", "title", "vault":
  {"id"}, "category", "version", "sections": [{"id", "label"}], "fields": [{"id", "type",
  "purpose", "label", "value", "section": {"id"}}]}` (a field without `section` is in none).
- An item's `version` grows by one at each edit (the item summaries of the list carry it too,
  without fields: the Connect API reference's Item schema).
- IDs are 26 lower-case letters and digits. `Authorization: Bearer TOKEN` on every request.
- Errors are `{"status": N, "message": "..."}`: 401 `Invalid token signature`, 403
  `Authorization: Access denied` (a vault the token was not granted), 404 `vault not found` /
  `item not found`, 5xx.
"""

from __future__ import annotations

import re
import secrets
import string
from pathlib import Path

from .https import HttpsDouble, Incoming, Reply


def new_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(26))


class ConnectDouble(HttpsDouble):
    def __init__(self, directory: Path, *, tls: bool = True):
        super().__init__(directory, "onepassword", tls=tls)
        self._vaults: dict[str, dict] = {}     # vault id -> {"name", "items": {item id: item}}
        self._tokens: dict[str, set] = {}      # token -> vault names it may read

    # -- set-up --------------------------------------------------------------------------------

    def env(self, token: str) -> dict[str, str]:
        return {"OP_CONNECT_HOST": self.endpoint, "OP_CONNECT_TOKEN": token,
                "REQUESTS_CA_BUNDLE": str(self.ca_path)}

    def vault_id(self, name: str) -> str:
        with self.lock:
            for vault_id, vault in self._vaults.items():
                if vault["name"] == name:
                    return vault_id
            vault_id = new_id()
            self._vaults[vault_id] = {"name": name, "items": {}}
            return vault_id

    def add_item(self, vault: str, title: str, fields: dict, *, sections: dict | None = None) -> str:
        """An item of `fields` (label -> value) and `sections` (label -> {label: value}); its id."""
        vault_id = self.vault_id(vault)
        item_sections, item_fields = [], []
        for label, value in fields.items():
            purpose = {"username": "USERNAME", "password": "PASSWORD"}.get(label)
            item_fields.append({"id": purpose.lower() if purpose else new_id(), "label": label,
                                "type": "CONCEALED" if purpose == "PASSWORD" else "STRING",
                                **({"purpose": purpose} if purpose else {}), "value": value})
        for section_label, section_fields in (sections or {}).items():
            section_id = new_id()
            item_sections.append({"id": section_id, "label": section_label})
            for label, value in section_fields.items():
                item_fields.append({"id": new_id(), "label": label, "type": "CONCEALED",
                                    "section": {"id": section_id}, "value": value})
        item_id = new_id()
        with self.lock:
            self._vaults[vault_id]["items"][item_id] = {
                "id": item_id, "title": title, "vault": {"id": vault_id}, "category": "LOGIN",
                "version": 1, "sections": item_sections, "fields": item_fields}
        return item_id

    def update_item(self, vault: str, item_id: str, fields: dict) -> None:
        """An edit: the named fields get new values and the item a new version."""
        vault_id = self.vault_id(vault)
        with self.lock:
            item = self._vaults[vault_id]["items"][item_id]
            for field in item["fields"]:
                if field["label"] in fields:
                    field["value"] = fields[field["label"]]
            item["version"] += 1

    def token(self, *vaults: str) -> str:
        token = "eyJhbGciOiJFUzI1NiIs" + secrets.token_urlsafe(60)
        with self.lock:
            self._tokens[token] = set(vaults)
        return token

    def credential_material(self) -> list[str]:
        with self.lock:
            return list(self._tokens)

    # -- the API -------------------------------------------------------------------------------

    def error(self, status: int, message: str) -> Reply:
        return Reply(status, {"status": status, "message": message})

    def route(self, request: Incoming):
        with self.lock:
            granted = self._tokens.get(request.bearer())
        if granted is None:
            return self.error(401, "Invalid token signature")
        if request.method != "GET":
            return self.error(405, "method not allowed")
        if request.path == "/v1/vaults":
            name = _filtered(request.query.get("filter", ""), "name")
            with self.lock:
                return [{"id": vault_id, "name": vault["name"], "type": "USER_CREATED",
                         "contentVersion": 1}
                        for vault_id, vault in self._vaults.items()
                        if vault["name"] in granted and name in (None, vault["name"])]
        match = re.fullmatch(r"/v1/vaults/([a-z0-9]{26})/items(?:/([a-z0-9]{26}))?", request.path)
        if not match:
            return self.error(404, "Not Found")
        vault_id, item_id = match.groups()
        with self.lock:
            vault = self._vaults.get(vault_id)
            if vault is None:
                return self.error(404, "vault not found")
            if vault["name"] not in granted:
                return self.error(403, "Authorization: Access denied")
            items = dict(vault["items"])
        if item_id is None:
            title = _filtered(request.query.get("filter", ""), "title")
            return [{key: item[key] for key in ("id", "title", "vault", "category", "version")}
                    for item in items.values() if title in (None, item["title"])]
        if item_id not in items:
            return self.error(404, "item not found")
        return items[item_id]


def _filtered(expression: str, attribute: str):
    """The value of a `ATTRIBUTE eq "VALUE"` SCIM filter, or None without one."""
    if not expression:
        return None
    match = re.fullmatch(attribute + r' eq "([^"]*)"', expression)
    if not match:
        raise Reply(400, {"status": 400, "message": "Invalid filter"})
    return match.group(1)
