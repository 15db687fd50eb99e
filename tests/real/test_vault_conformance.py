"""The Vault double against the real OpenBao: one set of requests, two servers, the same answers.

Each scenario is played twice: against a real OpenBao server (tests/real/conftest.py) and against
the double (tests/doubles/vault/). The state each needs is set up the way each allows (OpenBao
through its API with the root token; the double through its helpers); the requests compared are
byte for byte the same. For every request the two answers must have

- the same HTTP status,
- the same JSON shape: the same keys, and values of the same type, where a string is typed by
  its format (a token `s.` + 24 characters, a UUID, an RFC 3339 time, a transit ciphertext),
- the same `errors` and `warnings` texts (what clients match on; durations in warnings masked
  where the clock makes them differ),
- and the same value at the few places a scenario names (a mount lookup's `path`, a KV v1 TTL).

A scenario is a function `play(side) -> [Step]`; `side` gives it the server's calls and the
set-up it needs. The double is for what no real server can be made to do (slow bodies, storms,
malformed answers); everything both can play is here, and must agree.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import unavailable
from tests.doubles.vault import VaultDouble
from tests.real.conftest import OpenBao, free_port, unique_path

# -- the wire, the same for both -------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any


def call(address: str, method: str, path: str, body: dict | None = None, *, token: str | None,
         namespace: str | None = None, headers: dict[str, str] | None = None) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{address}/v1/{path}", data=data, method=method)
    if token is not None:
        request.add_header("X-Vault-Token", token)
    if namespace:
        request.add_header("X-Vault-Namespace", namespace)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return Answer(status, json.loads(text) if text.strip() else None)


# -- shapes ----------------------------------------------------------------------------------

_FORMATS = [
    ("token s.+24", re.compile(r"s\.[A-Za-z0-9]{24}")),
    ("namespaced token s.+24.ns", re.compile(r"s\.[A-Za-z0-9]{24}\.[A-Za-z0-9]+")),
    ("token hvs.", re.compile(r"hvs\.[A-Za-z0-9_-]+")),
    ("uuid", re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")),
    ("time", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")),
    ("ciphertext", re.compile(r"vault:v\d+:[A-Za-z0-9+/=]+")),
]


def _string_kind(value: str) -> str:
    return next((name for name, pattern in _FORMATS if pattern.fullmatch(value)), "str")


def shape(value: Any) -> Any:
    """Keys and types, not values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        kinds = []
        for item in value:
            kind = shape(item)
            if kind not in kinds:
                kinds.append(kind)
        return ["list", *sorted(kinds, key=repr)]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return _string_kind(value)
    return "null" if value is None else type(value).__name__


def differences(ours: Any, theirs: Any, where: str = "") -> list[str]:
    """Where two shapes differ, as readable lines."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for key in sorted(set(ours) | set(theirs)):
            here = f"{where}.{key}" if where else key
            if key not in ours:
                found.append(f"{here}: only OpenBao has it ({theirs[key]!r})")
            elif key not in theirs:
                found.append(f"{here}: only the double has it ({ours[key]!r})")
            else:
                found.extend(differences(ours[key], theirs[key], here))
        return found
    return [] if ours == theirs else [f"{where or 'body'}: double {ours!r}, OpenBao {theirs!r}"]


_DURATION_IN_WARNING = re.compile(r'"(\d+[hms])+"')


def _texts(body: Any, key: str, mask_durations: bool) -> Any:
    texts = body.get(key) if isinstance(body, dict) else None
    if mask_durations and isinstance(texts, list):
        return [_DURATION_IN_WARNING.sub('"<duration>"', text) for text in texts]
    return texts


def _at(body: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if part == "__len__":
            return len(body) if isinstance(body, (list, dict)) else None
        body = body.get(part) if isinstance(body, dict) else None
    return body


@dataclass
class Step:
    label: str
    answer: Answer
    values: tuple[str, ...] = ()        # dotted paths whose values must be equal too
    mask_durations: bool = False        # warnings quote durations the clock moves
    # Durations left until a max TTL: OpenBao counts them from the creation in whole seconds, so
    # on a loaded machine its answer may be a second or two shorter than the double's.
    nearly: tuple[str, ...] = ()


def compare(double_steps: list[Step], openbao_steps: list[Step]) -> list[str]:
    assert [s.label for s in double_steps] == [s.label for s in openbao_steps]
    problems = []
    for ours, theirs in zip(double_steps, openbao_steps):
        a, b = ours.answer, theirs.answer
        found = []
        if a.status != b.status:
            found.append(f"status: double {a.status}, OpenBao {b.status}")
        for key in ("errors", "warnings"):
            mine, real = (_texts(x.body, key, ours.mask_durations) for x in (a, b))
            if mine != real:
                found.append(f"{key}: double {mine!r}, OpenBao {real!r}")
        found.extend(differences(shape(a.body), shape(b.body)))
        for dotted in ours.values:
            if _at(a.body, dotted) != _at(b.body, dotted):
                found.append(f"{dotted}: double {_at(a.body, dotted)!r}, "
                             f"OpenBao {_at(b.body, dotted)!r}")
        for dotted in ours.nearly:
            mine, real = _at(a.body, dotted), _at(b.body, dotted)
            if not (isinstance(mine, int) and isinstance(real, int) and abs(mine - real) <= 2):
                found.append(f"{dotted}: double {mine!r}, OpenBao {real!r} (2 s apart at most)")
        problems.extend(f"[{ours.label}] {line}" for line in found)
    return problems


# -- the two sides: the same calls, each server's own set-up ---------------------------------


class Side:
    """What a scenario may do: calls (the same on both), and set-up (each server's own way)."""

    name = ""
    address = ""
    root_token = ""

    def call(self, method: str, path: str, body: dict | None = None, *, token: Any = "root",
             namespace: str | None = None, headers: dict[str, str] | None = None) -> Answer:
        return call(self.address, method, path, body,
                    token=self.root_token if token == "root" else token, namespace=namespace,
                    headers=headers)

    # set-up, by each side
    def kv1_mount(self, mount: str) -> None: raise NotImplementedError
    def kv2_put(self, path: str, data: dict, *, namespace: str = "") -> int: raise NotImplementedError
    def reader_token(self, paths: list[str], *, ttl: int = 3600, max_ttl: int = 0,
                     renewable: bool = True, namespace: str = "",
                     denied: list[str] = ()) -> str: raise NotImplementedError
    def revoke(self, token: str) -> None: raise NotImplementedError
    def wait(self, seconds: float) -> None: raise NotImplementedError
    def namespace(self, path: str) -> None: raise NotImplementedError
    def transit_key(self, name: str) -> None: raise NotImplementedError
    def approle(self, role: str, paths: list[str]) -> None: raise NotImplementedError
    def seal(self) -> None: raise NotImplementedError
    def database_role(self, role: str, default_ttl: int, max_ttl: int) -> None:
        raise NotImplementedError
    def jwt_role(self, role: str, jwt: str, public_pem: str, paths: list[str]) -> None:
        raise NotImplementedError

    def clock(self) -> float:
        return time.time()

    def at_fraction_of_second(self, fraction: float) -> None:
        """Sleep until the server's clock is `fraction` into a second (within 20 ms)."""
        while abs(self.clock() % 1 - fraction) > 0.02:
            time.sleep(0.005)


class OpenBaoSide(Side):
    name = "openbao"

    def __init__(self, server: OpenBao):
        self.server, self.address, self.root_token = server, server.address, server.root_token

    def kv1_mount(self, mount):
        self.server.ok("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "1"}})

    def kv2_put(self, path, data, *, namespace=""):
        return self.server.ok("POST", f"secret/data/{path}", {"data": data},
                              namespace=namespace or None)["data"]["version"]

    def reader_token(self, paths, *, ttl=3600, max_ttl=0, renewable=True, namespace="",
                     denied=()):
        name = unique_path("policy")
        rules = "\n".join([*(f'path "{p}" {{ capabilities = ["read", "update", "create", "list"] }}'
                             for p in paths),
                           *(f'path "{p}" {{ capabilities = ["deny"] }}' for p in denied)])
        self.server.ok("PUT", f"sys/policy/{name}", {"policy": rules or "# none"},
                       namespace=namespace or None)
        body = {"policies": [name], "ttl": f"{ttl}s", "renewable": renewable}
        if max_ttl:
            body["explicit_max_ttl"] = f"{max_ttl}s"
        return self.server.ok("POST", "auth/token/create", body,
                              namespace=namespace or None)["auth"]["client_token"]

    def revoke(self, token):
        self.server.ok("POST", "auth/token/revoke", {"token": token})

    def wait(self, seconds):
        time.sleep(seconds)

    def namespace(self, path):
        parent, _, name = path.rpartition("/")
        self.server.ok("POST", f"sys/namespaces/{name}", {}, namespace=parent or None)
        self.server.mount_kv("secret", 2, namespace=path)

    def transit_key(self, name):
        status, _ = self.server.request("GET", "sys/mounts/transit")
        if status != 200:
            self.server.ok("POST", "sys/mounts/transit", {"type": "transit"})
        self.server.ok("POST", f"transit/keys/{name}", {})

    def approle(self, role, paths):
        status, _ = self.server.request("GET", "sys/auth/approle")
        if status != 200:
            self.server.ok("POST", "sys/auth/approle", {"type": "approle"})
        name = unique_path("policy")
        rules = "\n".join(f'path "{p}" {{ capabilities = ["read"] }}' for p in paths)
        self.server.ok("PUT", f"sys/policy/{name}", {"policy": rules})
        self.server.ok("POST", f"auth/approle/role/{role}", {"token_policies": [name],
                                                             "token_ttl": "1h"})

    def seal(self):
        self.server.ok("PUT", "sys/seal", {})

    def jwt_role(self, role, jwt, public_pem, paths):
        status, _ = self.server.request("GET", "sys/auth/jwt")
        if status != 200:
            self.server.ok("POST", "sys/auth/jwt", {"type": "jwt"})
        self.server.ok("POST", "auth/jwt/config", {"jwt_validation_pubkeys": [public_pem]})
        name = unique_path("policy")
        self.server.ok("PUT", f"sys/policy/{name}", {"policy": "\n".join(
            f'path "{p}" {{ capabilities = ["read"] }}' for p in paths)})
        self.server.ok("POST", f"auth/jwt/role/{role}", {
            "role_type": "jwt", "user_claim": "sub", "bound_audiences": ["shim"],
            "token_policies": [name], "token_ttl": "1h"})

    def database_role(self, role, default_ttl, max_ttl):
        # The real database engine, on a PostgreSQL of this module's own (`postgres` below).
        database = self.postgres
        status, _ = self.server.request("GET", "sys/mounts/database")
        if status != 200:
            self.server.ok("POST", "sys/mounts/database", {"type": "database"})
            self.server.ok("POST", "database/config/pg", {
                "plugin_name": "postgresql-database-plugin", "allowed_roles": "*",
                "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:"
                                  f"{database.port}/postgres?sslmode=disable",
                "username": database.user, "password": database.password})
        self.server.ok("POST", f"database/roles/{role}", {
            "db_name": "pg", "default_ttl": default_ttl, "max_ttl": max_ttl,
            "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
                                    "VALID UNTIL '{{expiration}}';"]})


class DoubleSide(Side):
    name = "double"

    def __init__(self, double: VaultDouble):
        self.double, self.address, self.root_token = double, double.url, double.root_token

    def kv1_mount(self, mount):
        self.double.add_mount(mount, "kv", version=1)

    def kv2_put(self, path, data, *, namespace=""):
        return self.double.kv2_put("secret", path, data, namespace=namespace)

    def reader_token(self, paths, *, ttl=3600, max_ttl=0, renewable=True, namespace="",
                     denied=()):
        # The double has no deny rules: the scenarios deny only what OpenBao ignores.
        return self.double.create_token(paths, ttl=ttl, max_ttl=max_ttl, renewable=renewable,
                                        namespace=namespace)

    def revoke(self, token):
        self.double.revoke_token(token)

    def wait(self, seconds):
        self.double.advance_clock(seconds)

    def namespace(self, path):
        self.double.add_namespace(path)

    def transit_key(self, name):
        self.double.add_transit_key(name)

    def approle(self, role, paths):
        self.double.add_approle(role, paths)

    def seal(self):
        self.double.seal()

    def clock(self):
        return self.double._now()   # the real clock plus what wait() advanced it

    def database_role(self, role, default_ttl, max_ttl):
        self.double.add_database_role(role, default_ttl=default_ttl, max_ttl=max_ttl)

    def jwt_role(self, role, jwt, public_pem, paths):
        self.double.add_jwt_role(role, jwt, paths)   # the double knows the one token it accepts


# -- scenarios ---------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Side, dict], list[Step]]] = {}


def scenario(function):
    SCENARIOS[function.__name__] = function
    return function


@scenario
def kv2_versions(side, names):
    path = names["path"]
    side.kv2_put(path, {"password": names["values"][0]})
    side.kv2_put(path, {"password": names["values"][1]})
    return [
        Step("latest", side.call("GET", f"secret/data/{path}"), ("data.metadata.version",)),
        Step("version 1", side.call("GET", f"secret/data/{path}?version=1"),
             ("data.metadata.version",)),
        Step("no such version", side.call("GET", f"secret/data/{path}?version=9")),
        Step("metadata", side.call("GET", f"secret/metadata/{path}"), ("data.current_version",)),
        Step("write", side.call("POST", f"secret/data/{path}", {"data": {"password": names["values"][2]}}),
             ("data.version",)),
    ]


@scenario
def kv2_deleted_and_destroyed(side, names):
    path = names["path"]
    for value in names["values"]:
        side.kv2_put(path, {"password": value})
    return [
        Step("delete v1", side.call("POST", f"secret/delete/{path}", {"versions": [1]})),
        Step("destroy v2", side.call("POST", f"secret/destroy/{path}", {"versions": [2]})),
        Step("read deleted", side.call("GET", f"secret/data/{path}?version=1"),
             ("data.data", "data.metadata.destroyed")),
        Step("read destroyed", side.call("GET", f"secret/data/{path}?version=2"),
             ("data.data", "data.metadata.destroyed", "data.metadata.deletion_time")),
        Step("read latest", side.call("GET", f"secret/data/{path}"), ("data.metadata.version",)),
    ]


@scenario
def kv_missing_paths(side, names):
    path, mount = names["path"], names["mount"]
    side.kv1_mount(mount)
    return [
        Step("kv2 missing", side.call("GET", f"secret/data/{path}")),
        Step("kv2 without data/", side.call("GET", f"secret/{path}")),
        Step("kv1 missing", side.call("GET", f"{mount}/{path}")),
        Step("no mount", side.call("GET", f"no-such-mount-{path}/x")),
        Step("no namespace", side.call("GET", f"secret/data/{path}", namespace=f"no-ns-{path}")),
    ]


@scenario
def kv1_read(side, names):
    path, mount = names["path"], names["mount"]
    side.kv1_mount(mount)
    return [
        Step("write", side.call("POST", f"{mount}/{path}", {"password": names["values"][0]})),
        Step("read", side.call("GET", f"{mount}/{path}"), ("lease_duration", "data")),
        Step("mount lookup", side.call("GET", f"sys/internal/ui/mounts/{mount}/{path}"),
             ("data.path", "data.type", "data.options")),
    ]


@scenario
def denied_policy(side, names):
    path = names["path"]
    side.kv2_put(path, {"password": names["values"][0]})
    token = side.reader_token([f"secret/data/{path}"])
    return [
        Step("allowed", side.call("GET", f"secret/data/{path}", token=token)),
        Step("denied", side.call("GET", f"secret/data/{path}-other", token=token)),
        Step("denied write", side.call("POST", f"secret/metadata/{path}", {}, token=token)),
    ]


@scenario
def mount_lookup(side, names):
    path, mount = names["path"], names["mount"]
    side.kv1_mount(mount)
    reader = side.reader_token([f"secret/data/{path}"])
    elsewhere = side.reader_token([f"{mount}/{path}"])
    # OpenBao has no policy-denied mount lookup: a deny on sys/internal/ui/mounts is ignored.
    deny_lookup = side.reader_token([f"secret/data/{path}"], denied=["sys/internal/ui/mounts/*",
                                                                    "sys/internal/ui/mounts"])
    return [
        Step("allowed", side.call("GET", f"sys/internal/ui/mounts/secret/data/{path}", token=reader),
             ("data.path", "data.type", "data.options")),
        Step("a policy denying the lookup",
             side.call("GET", f"sys/internal/ui/mounts/secret/data/{path}", token=deny_lookup),
             ("data.path",)),
        Step("allowed, another path of the mount",
             side.call("GET", f"sys/internal/ui/mounts/secret/data/{path}-x", token=reader),
             ("data.path",)),
        Step("no access to the mount",
             side.call("GET", f"sys/internal/ui/mounts/secret/data/{path}", token=elsewhere)),
        Step("no such mount", side.call("GET", f"sys/internal/ui/mounts/none-{path}/x")),
        Step("bad token", side.call("GET", f"sys/internal/ui/mounts/secret/data/{path}",
                                    token=names["bad_token"])),
    ]


@scenario
def child_namespace_mount_lookup(side, names):
    parent, child = names["namespace"], f"{names['namespace']}/inner"
    side.namespace(parent)
    side.namespace(child)
    side.kv2_put("app", {"password": names["values"][0]}, namespace=child)
    return [
        Step("from the parent", side.call("GET", "sys/internal/ui/mounts/inner/secret/data/app",
                                          namespace=parent), ("data.path", "data.type")),
        Step("in the child", side.call("GET", "sys/internal/ui/mounts/secret/data/app",
                                       namespace=child), ("data.path",)),
        Step("from the root", side.call("GET", f"sys/internal/ui/mounts/{child}/secret/data/app"),
             ("data.path",)),
        Step("read from the parent", side.call("GET", "inner/secret/data/app", namespace=parent),
             ("data.data",)),
        Step("no such mount in the child",
             side.call("GET", "sys/internal/ui/mounts/inner/none/app", namespace=parent)),
    ]


@scenario
def bad_tokens(side, names):
    path = names["path"]
    revoked = side.reader_token([f"secret/data/{path}"])
    side.revoke(revoked)
    return [
        Step("lookup, unknown token", side.call("GET", "auth/token/lookup-self",
                                                token=names["bad_token"])),
        Step("read, unknown token", side.call("GET", f"secret/data/{path}",
                                              token=names["bad_token"])),
        Step("read, revoked token", side.call("GET", f"secret/data/{path}", token=revoked)),
        Step("read, no token", side.call("GET", f"secret/data/{path}", token=None)),
    ]


@scenario
def expired_token(side, names):
    token = side.reader_token([f"secret/data/{names['path']}"], ttl=1)
    side.wait(2.5)
    return [
        Step("lookup", side.call("GET", "auth/token/lookup-self", token=token)),
        Step("read", side.call("GET", f"secret/data/{names['path']}", token=token)),
        Step("renew", side.call("POST", "auth/token/renew-self", {}, token=token)),
    ]


@scenario
def token_lookup_and_renew(side, names):
    token = side.reader_token([f"secret/data/{names['path']}"], ttl=600, max_ttl=3600)
    fixed = side.reader_token([], renewable=False)
    return [
        Step("lookup", side.call("GET", "auth/token/lookup-self", token=token),
             ("data.policies.__len__",)),
        Step("renew", side.call("POST", "auth/token/renew-self", {"increment": "1h"}, token=token),
             mask_durations=True),
        Step("renew past max_ttl", side.call("POST", "auth/token/renew-self",
                                             {"increment": "2h"}, token=token),
             mask_durations=True),
        Step("renew, not renewable", side.call("POST", "auth/token/renew-self", {}, token=fixed)),
        Step("renew an unknown lease", side.call("PUT", "sys/leases/renew",
                                                 {"lease_id": f"database/creds/x/{names['path']}"})),
        Step("revoke an unknown lease", side.call("PUT", "sys/leases/revoke",
                                                  {"lease_id": f"database/creds/x/{names['path']}"})),
    ]


@scenario
def token_renew_near_its_max_ttl(side, names):
    # OpenBao measures the max TTL from the token's creation time in whole seconds. A token made
    # at x.2 s with a 3 s max TTL, renewed 2.5 s later (x+2.7), has a second left by the clock;
    # one made at x.8, renewed at x+3.3, is past its max TTL in its last fraction of a second,
    # though still alive: 500, "past the max TTL, cannot renew".
    steps = []
    for label, fraction in (("a second left", 0.2), ("the last fraction of a second", 0.8)):
        side.at_fraction_of_second(fraction)
        token = side.reader_token([], ttl=3, max_ttl=3)
        side.wait(2.5)
        steps.append(Step(label, side.call("POST", "auth/token/renew-self", {"increment": "1h"},
                                           token=token), ("auth.lease_duration",)))
    return steps


@scenario
def transit(side, names):
    key = names["key"]
    side.transit_key(key)
    data_key = secrets.token_bytes(32)
    # sops sends base64(data key) once, as transit's wire encoding; decrypt gives it back.
    encrypted = side.call("POST", f"transit/encrypt/{key}",
                          {"plaintext": base64.b64encode(data_key).decode()})
    ciphertext = encrypted.body["data"]["ciphertext"]
    decrypted = side.call("POST", f"transit/decrypt/{key}", {"ciphertext": ciphertext})
    assert base64.b64decode(decrypted.body["data"]["plaintext"]) == data_key, side.name
    tampered = ciphertext[:-6] + ("AAAAAA" if not ciphertext.endswith("AAAAAA") else "BBBBBB")
    return [
        Step("encrypt", encrypted, ("data.key_version",)),
        Step("decrypt", decrypted),
        Step("decrypt tampered", side.call("POST", f"transit/decrypt/{key}",
                                           {"ciphertext": tampered})),
        Step("decrypt without prefix", side.call("POST", f"transit/decrypt/{key}",
                                                 {"ciphertext": "garbage"})),
        Step("decrypt with an unknown key", side.call("POST", f"transit/decrypt/{key}-none",
                                                      {"ciphertext": ciphertext})),
        Step("encrypt text that is not base64", side.call("POST", f"transit/encrypt/{key}",
                                                          {"plaintext": "not base64!"})),
    ]


@scenario
def approle_and_wrapped_secret_id(side, names):
    role, path = names["role"], names["path"]
    side.approle(role, [f"secret/data/{path}"])
    role_id = side.call("GET", f"auth/approle/role/{role}/role-id")
    secret_id = side.call("POST", f"auth/approle/role/{role}/secret-id", {})
    login = side.call("POST", "auth/approle/login",
                      {"role_id": role_id.body["data"]["role_id"],
                       "secret_id": secret_id.body["data"]["secret_id"]}, token=None)
    wrapped = side.call("POST", f"auth/approle/role/{role}/secret-id", {},
                        headers={"X-Vault-Wrap-TTL": "60s"})
    wrapping_token = wrapped.body["wrap_info"]["token"]
    unwrapped = side.call("POST", "sys/wrapping/unwrap", {}, token=wrapping_token)
    assert (unwrapped.body["data"]["secret_id_accessor"]
            == wrapped.body["wrap_info"]["wrapped_accessor"]), side.name
    return [
        Step("role-id", role_id),
        Step("secret-id", secret_id),
        Step("login", login, ("auth.policies.__len__", "auth.metadata", "auth.orphan")),
        Step("login, bad secret id", side.call("POST", "auth/approle/login",
                                               {"role_id": role_id.body["data"]["role_id"],
                                                "secret_id": "not-a-secret-id"}, token=None)),
        Step("wrapped secret-id", wrapped, ("wrap_info.ttl", "wrap_info.creation_path")),
        Step("unwrap", unwrapped),
        Step("unwrap again", side.call("POST", "sys/wrapping/unwrap", {}, token=wrapping_token)),
    ]


@scenario
def sealed(side, names):
    side.seal()
    return [
        Step("read", side.call("GET", f"secret/data/{names['path']}")),
        Step("mount lookup", side.call("GET", f"sys/internal/ui/mounts/secret/data/{names['path']}")),
        Step("lookup-self", side.call("GET", "auth/token/lookup-self")),
        Step("login", side.call("POST", "auth/approle/login", {"role_id": "x", "secret_id": "y"},
                                token=None)),
        Step("health", side.call("GET", "sys/health"), ("sealed", "initialized")),
        Step("seal status", side.call("GET", "sys/seal-status"), ("sealed",)),
    ]


def _signed_jwt(key, claims: dict) -> str:
    """An RS256 JWT, as an identity provider signs it."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def part(value) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signed = f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}"
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed}.{part(signature)}"


@scenario
def jwt_login(side, names):
    from cryptography.hazmat.primitives import serialization
    key, stranger = names["jwt_keys"]
    now = int(time.time())
    claims = {"sub": "app", "aud": "shim", "iat": now, "nbf": now - 5, "exp": now + 600}
    token = _signed_jwt(key, claims)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    side.jwt_role(names["role"], token, public.decode(), [f"secret/data/{names['path']}"])
    return [
        Step("login", side.call("POST", "auth/jwt/login", {"role": names["role"], "jwt": token},
                                token=None), ("auth.metadata", "auth.orphan", "auth.lease_duration")),
        Step("unknown role", side.call("POST", "auth/jwt/login",
                                       {"role": f"{names['role']}-none", "jwt": token}, token=None)),
        Step("signed by another key", side.call("POST", "auth/jwt/login",
                                                {"role": names["role"],
                                                 "jwt": _signed_jwt(stranger, claims)},
                                                token=None)),
    ]


@scenario
def database_lease(side, names):
    side.database_role(names["role"], default_ttl=60, max_ttl=120)
    creds = side.call("GET", f"database/creds/{names['role']}")
    lease = creds.body["lease_id"]
    assert lease.startswith(f"database/creds/{names['role']}/"), side.name
    return [
        Step("creds", creds, ("lease_duration", "renewable")),
        Step("renew", side.call("PUT", "sys/leases/renew", {"lease_id": lease, "increment": 60}),
             ("lease_duration", "renewable")),
        Step("renew past max_ttl", side.call("PUT", "sys/leases/renew",
                                             {"lease_id": lease, "increment": 3600}),
             ("renewable",), mask_durations=True, nearly=("lease_duration",)),
        Step("revoke", side.call("PUT", "sys/leases/revoke", {"lease_id": lease})),
        Step("renew revoked", side.call("PUT", "sys/leases/renew", {"lease_id": lease})),
    ]


# Scenarios that change the whole server run on servers of their own.
OWN_SERVER = {"sealed"}


class Postgres:
    """Debian's PostgreSQL 15 on 127.0.0.1, in a directory of its own, for the database engine."""

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self, directory: Path):
        if not (self.BIN / "initdb").exists():
            unavailable("PostgreSQL 15 is missing (make packages)")
        self.directory, self.port = directory, free_port()
        self.user = "conformance"
        self.password = secrets.token_hex(16)   # pragma: allowlist secret
        self.process: subprocess.Popen | None = None

    def _as_postgres(self):
        account = pwd.getpwnam("postgres")   # initdb and postgres refuse to run as root
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)

    def start(self) -> "Postgres":
        data, secret = self.directory / "data", self.directory / "password"
        secret.write_text(self.password)
        shutil.chown(self.directory, "postgres")
        shutil.chown(secret, "postgres")
        made = subprocess.run([self.BIN / "initdb", "-D", data, "-U", self.user, "--pwfile",
                               secret, "-A", "scram-sha-256"], preexec_fn=self._as_postgres,
                              capture_output=True, text=True, timeout=120)
        if made.returncode != 0:
            pytest.fail(f"initdb failed: {made.stderr[-1000:]}", pytrace=False)
        self.process = subprocess.Popen(
            [self.BIN / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(self.port),
             "-k", self.directory], preexec_fn=self._as_postgres, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = subprocess.run([self.BIN / "pg_isready", "-h", "127.0.0.1", "-p",
                                    str(self.port)], capture_output=True, timeout=10)
            if ready.returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        pytest.fail("PostgreSQL did not start within 60 s", pytrace=False)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)   # fast shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def postgres():
    # Not under pytest's tmp_path: its parent is root's alone, and postgres runs as `postgres`.
    directory = Path(tempfile.mkdtemp(prefix="shim-conformance-pg-"))
    database = Postgres(directory)
    try:
        yield database.start()
    finally:
        database.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _names() -> dict[str, Any]:
    # The same names and values for both servers; values are canaries, like every test secret.
    return {"values": [f"canary-conformance-{secrets.token_hex(8)}" for _ in range(3)],
            "path": unique_path("conf"), "mount": unique_path("kv1"),
            "namespace": unique_path("ns"), "key": unique_path("key"),
            "role": unique_path("role"),
            "jwt_keys": _jwt_keys(),
            "bad_token": "s." + "".join(secrets.choice("abcdefghijkLMNOPQRSTUVWXYZ0123456789")
                                         for _ in range(24))}


@functools.cache
def _jwt_keys():
    """The identity provider's RSA key, and a stranger's (made once, when a scenario asks)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    return tuple(rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))


@pytest.fixture(scope="module")
def conformance_openbao(tmp_path_factory):
    """An OpenBao of this module's own: namespaces, AppRole and transit are enabled on it."""
    server = OpenBao(tmp_path_factory.mktemp("openbao-conformance")).start()
    yield server
    server.stop()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_double_answers_as_openbao_does(name, conformance_openbao, fresh_openbao, request):
    names = _names()
    server = fresh_openbao() if name in OWN_SERVER else conformance_openbao
    side = OpenBaoSide(server)
    if name == "database_lease":
        side.postgres = request.getfixturevalue("postgres")
    real = SCENARIOS[name](side, names)
    with VaultDouble(root_token=server.root_token) as double:
        ours = SCENARIOS[name](DoubleSide(double), names)
    problems = compare(ours, real)
    assert not problems, "the double disagrees with OpenBao:\n" + "\n".join(problems)
