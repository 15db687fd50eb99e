"""`exec --watch` with VAULT_TOKEN_FILE against a real OpenBao: a Vault Agent sink rotates the
file and revokes the old token; the next helper must read the file again, never carry the old
token over (issue 31: carrying it passed every test before this one)."""

from __future__ import annotations

import os
import signal

from tests.integration.test_supervise import finish, shim_pid_inside, start_shim, wait_for  # noqa: F401
from tests.real.conftest import unique_path


def child_token(openbao) -> str:
    """A token of its own (a child of the root token), as Vault Agent would write to its sink."""
    return openbao.ok("POST", "auth/token/create", {"ttl": "1h"})["auth"]["client_token"]


def test_a_rotated_token_file_is_read_again_by_the_next_helper(openbao, start_shim, canaries,
                                                               tmp_path, shared_dir):
    path = unique_path("sink")
    first, second = canaries.new("v1"), canaries.new("v2")
    openbao.put_kv2(path, {"password": first})
    old_token, new_token = child_token(openbao), child_token(openbao)
    canaries.values.extend([old_token, new_token])
    sink = tmp_path / "vault-token"
    sink.write_text(old_token + "\n")
    starts = shared_dir / "starts"
    process = start_shim(["exec", "--watch", "500ms", "--deadline", "10s", "--",
                          "sh", "-c", f'echo "$DB_PASSWORD" >> {starts}; exec sleep 60'],
                         {"VAULT_ADDR": openbao.address, "VAULT_TOKEN_FILE": str(sink),
                          "DB_PASSWORD": f"vault:secret/data/{path}#password"})
    try:
        assert wait_for(lambda: starts.exists() and starts.read_text().split() == [first])
        # The agent's rotation: the new token in the sink, the old one revoked.
        sink.write_text(new_token + "\n")
        openbao.ok("POST", "auth/token/revoke", {"token": old_token})
        openbao.put_kv2(path, {"password": second})
        assert wait_for(lambda: starts.read_text().split() == [first, second], timeout=20), \
            "the helpers kept the revoked token instead of reading the sink again"
    finally:
        os.kill(shim_pid_inside(process), signal.SIGTERM)
    code, _, stderr = finish(process, canaries, timeout=20)
    assert code == 143, stderr
