"""What the Vault tests of the real-server tier share: running shim against OpenBao, and making
what a user of OpenBao makes (mounts, policies, tokens) with the real server's own API.

Every credential handed to shim (root and policy tokens, role and secret ids, JWTs) is registered
as a canary, so `run_shim` fails a test whose shim output holds one.
"""

from __future__ import annotations

from pathlib import Path

from tests.real.conftest import OpenBao, unique_path


def credential(canaries, value: str) -> str:
    """A credential shim is given: it must never reach shim's output."""
    canaries.values.append(value)
    return value


def shim_env(server: OpenBao, canaries, home, token: str | None = None, **extra) -> dict:
    """VAULT_ADDR, a token (the root token unless given) and an empty HOME (no ~/.vault-token)."""
    env = {"VAULT_ADDR": server.address,
           "VAULT_TOKEN": credential(canaries, token or server.root_token), "HOME": str(home)}
    env.update(extra)
    return env


def exec_probe(run_shim, probe, env: dict, *options: str, deadline: str = "20s", timeout=60):
    """`shim exec` of the probe (the child's real environment lands in probe.read())."""
    return run_shim(["exec", "--deadline", deadline, *options, "--", *probe.argv], env,
                    timeout=timeout)


def error_line(result) -> str:
    """shim's one error line (the test fails if there is not exactly one)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("shim: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def enable_kv(server: OpenBao, path: str, version: int, namespace: str | None = None) -> str:
    """A KV mount of the given version at `path`; its path."""
    return server.mount_kv(path, version, namespace)


def put(server: OpenBao, mount: str, name: str, data: dict, version: int,
        namespace: str | None = None) -> None:
    """Writes a secret into a KV mount of the given version."""
    if version == 2:
        server.ok("POST", f"{mount}/data/{name}", {"data": data}, namespace=namespace)
    else:
        server.ok("POST", f"{mount}/{name}", data, namespace=namespace)


def policy_token(server: OpenBao, canaries, rules: str, namespace: str | None = None) -> str:
    """A token whose only policy (besides OpenBao's default) is `rules` (HCL)."""
    name = unique_path("policy")
    server.ok("PUT", f"sys/policies/acl/{name}", {"policy": rules}, namespace=namespace)
    answer = server.ok("POST", "auth/token/create", {"policies": [name], "ttl": "1h"},
                       namespace=namespace)
    return credential(canaries, answer["auth"]["client_token"])


def create_namespace(server: OpenBao, path: str) -> None:
    """A namespace at `path` (parent/child: the parent must exist)."""
    parent, _, name = path.rpartition("/")
    server.ok("POST", f"sys/namespaces/{name}", {}, namespace=parent or None)


# --- logins: auth methods on mounts of the test's own ------------------------------------------

def approle_mount(server: OpenBao, canaries, policy: str, **token_options: str) -> tuple[str, str]:
    """AppRole enabled at a path of its own, with a role `app` that has `policy` and the given
    token options (token_ttl, token_max_ttl...): (auth path, role id)."""
    path = unique_path("approle")
    server.ok("POST", f"sys/auth/{path}", {"type": "approle"})
    server.ok("POST", f"auth/{path}/role/app", {"token_policies": [policy], **token_options})
    role_id = server.ok("GET", f"auth/{path}/role/app/role-id")["data"]["role_id"]
    return path, credential(canaries, role_id)


def new_secret_id(server: OpenBao, canaries, path: str, *, wrap_ttl: str | None = None) -> str:
    """A secret id of the role `app` at auth/`path`; with `wrap_ttl`, response-wrapped by the
    real CLI (an `s.` token that can be unwrapped once), as a trusted orchestrator hands it over."""
    if wrap_ttl is None:
        answer = server.ok("POST", f"auth/{path}/role/app/secret-id", {})
        return credential(canaries, answer["data"]["secret_id"])
    return credential(canaries, server.cli("write", f"-wrap-ttl={wrap_ttl}", "-field=wrapping_token",
                                           "-f", f"auth/{path}/role/app/secret-id").stdout.strip())


def jwt_mount(server: OpenBao, policy: str, *, role: str, audience: str, **token_options: str):
    """OpenBao's jwt method at a path of its own, trusting an RSA key made here, with a role that
    binds `audience` and has `policy`: (auth path, the private key to sign JWTs with)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    path = unique_path("jwt")
    server.ok("POST", f"sys/auth/{path}", {"type": "jwt"})
    server.ok("POST", f"auth/{path}/config", {"jwt_validation_pubkeys": [public.decode()]})
    server.ok("POST", f"auth/{path}/role/{role}", {
        "role_type": "jwt", "user_claim": "sub", "bound_audiences": [audience],
        "token_policies": [policy], **token_options})
    return path, key


def signed_jwt(key, claims: dict) -> str:
    """A JWT of `claims`, RS256-signed with `key`."""
    import base64
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signed = part(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + \
        part(json.dumps(claims).encode())
    return f"{signed}.{part(key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256()))}"



VAULT_MD = Path(__file__).resolve().parents[2] / "docs" / "vault.md"


def doc_example(start: str) -> str:
    """The code span of docs/vault.md that begins with `start` (line breaks read as spaces), so a
    test can hold shim's real output to the page's example word for word."""
    text = " ".join(VAULT_MD.read_text().split())
    at = text.find(start)
    assert at > 0 and text[at - 1] == "`", f"docs/vault.md has no example starting {start!r}"
    fence = "``" if text[at - 2:at] == "``" else "`"
    end = text.find(fence, at)
    assert end > at, f"docs/vault.md: the example starting {start!r} is not closed"
    return text[at:end].strip()


def doc_table(heading: str) -> list[list[str]]:
    """The body rows of the first table under `## heading` in docs/vault.md, cell by cell."""
    lines = VAULT_MD.read_text().split(f"## {heading}\n", 1)[1].splitlines()
    rows: list[list[str]] = []
    for line in lines:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]     # past the header and its |---| line
