"""What the Vault tests of the real-server tier share: running shim against OpenBao, and making
what a user of OpenBao makes (mounts, policies, tokens) with the real server's own API.

Every credential handed to shim (root and policy tokens, role and secret ids, JWTs) is registered
as a canary, so `run_shim` fails a test whose shim output holds one.
"""

from __future__ import annotations

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
    server.ok("POST", f"sys/mounts/{path}", {"type": "kv", "options": {"version": str(version)}},
              namespace=namespace)
    return path


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

