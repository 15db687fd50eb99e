"""Issue 22 item 2: a program sharing shim's uid reads no credential from a --watch helper.

shim is started as uid 65534 (Kubernetes runAsUser, `USER app`), so the program it supervises
has its uid. Each --watch tick runs a helper; it used to be a new interpreter given the store's
credentials in its environment, readable through /proc/PID/environ until it had made itself
non-dumpable (the review read VAULT_TOKEN from five helpers in 8 s). The program here
(helper_attacker.py) polls every process of its uid, helpers included, for VAULT_TOKEN in
/proc/PID/environ and in its stack through /proc/PID/mem, for several ticks, against a real
OpenBao server.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.hardening.conftest import as_nobody
from tests.real.conftest import openbao  # noqa: F401 - the session's real server

ATTACKER = Path(__file__).with_name("helper_attacker.py")
SECONDS = 8


def test_the_program_reads_no_credential_from_any_helper(run_shim, canaries, openbao,  # noqa: F811
                                                        nobody_python_with_vault, shared_dir):
    python, env = nobody_python_with_vault
    token = canaries.new("vault-token")
    openbao.ok("POST", "auth/token/create", {"id": token, "policies": ["root"], "ttl": "1h"})
    path = f"harden-{token[-8:]}"
    value = canaries.new("kv")
    openbao.put_kv2(path, {"password": value})
    report, delivered = shared_dir / "report.json", shared_dir / "delivered"
    env = dict(env, VAULT_ADDR=openbao.address, VAULT_TOKEN=token, HOME=str(shared_dir),
               DB_PASSWORD=f"vault:secret/data/{path}#password")
    result = run_shim(
        ["exec", "--watch", "500ms", "--", "/bin/sh", "-c",
         f'[ "$DB_PASSWORD" = "{value}" ] && touch {delivered}; '
         f'exec /usr/bin/python3 -S {ATTACKER} {report} {SECONDS}'],
        env, python=python, cwd=shared_dir, preexec_fn=as_nobody(), timeout=SECONDS + 60)
    assert result.returncode == 0, result.stderr
    assert delivered.exists(), "the program did not get the secret: nothing was attacked"
    seen = json.loads(report.read_text())
    # The supervisor and the helpers of about 16 ticks were there to attack.
    assert seen["seen"] >= 4, seen
    assert seen["found"] == [], seen
