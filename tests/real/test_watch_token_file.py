"""`exec --watch` and the Vault token, against a real OpenBao: a Vault Agent sink rotates the
file and revokes the old token, so the next helper must read the file again, never carry the old
token over (issue 31: carrying it passed every test before this one); and a renewal the server
refuses is reported with the server's reason, the program kept running."""

from __future__ import annotations

import json
import os
import signal
import time

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


def test_a_refused_token_renewal_is_reported_with_the_servers_reason(openbao, start_shim, canaries,
                                                                     shared_dir):
    """The helper whose job fails (renewing a token revoked since) answers with the error; the
    supervisor logs OpenBao's reason as a warning and the program keeps running."""
    path = unique_path("norenew")
    openbao.put_kv2(path, {"password": canaries.new("v1")})
    token = openbao.ok("POST", "auth/token/create", {"ttl": "6s"})["auth"]["client_token"]
    canaries.values.append(token)
    starts = shared_dir / "starts"
    process = start_shim(["exec", "--watch", "1h", "--log-format", "json", "--",
                          "sh", "-c", f'echo started >> {starts}; exec sleep 60'],
                         {**openbao.vault_env(token), "DB_PASSWORD": f"vault:secret/data/{path}#password"})
    try:
        assert wait_for(starts.exists)
        openbao.ok("POST", "auth/token/revoke", {"token": token})
        time.sleep(5.0)      # the renewal is due at 2/3 of the 6 s
    finally:
        os.kill(shim_pid_inside(process), signal.SIGTERM)
    code, _, stderr = finish(process, canaries, timeout=20)    # and no traceback
    assert code == 143, stderr
    failed = [json.loads(line) for line in stderr.splitlines()
              if line.startswith("{") and '"token.renew_failed"' in line]
    assert failed, stderr[-2000:]
    assert failed[0]["message"].startswith("token renewal failed: ")
    assert "resolution helper" not in failed[0]["message"]     # the server's reason, not the pipe's
    assert starts.read_text().split() == ["started"]
