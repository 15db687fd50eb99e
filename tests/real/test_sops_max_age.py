"""A sops file's age is its `sops.lastmodified`, as the real sops writes it: `--max-age` and
`--enforce-max-age` hold for sops secrets too (found by make mutate-subprocess: dropping the
date left every sops secret of unknown age, and every test passed)."""

from __future__ import annotations

import time


def test_the_age_of_a_sops_secret_is_its_lastmodified(sops, age_identity, run_shim, probe,
                                                      canaries, tmp_path):
    recipient, identity = age_identity()
    plain = tmp_path / "app.yaml"
    plain.write_text(f"password: {canaries.new('sops')}\n")
    encrypted = tmp_path / "app.enc.yaml"
    encrypted.write_bytes(sops.run("encrypt", "--age", recipient, str(plain)).stdout)
    plain.unlink()
    env = {"DB_PASSWORD": f"ref+sops://{encrypted}#/password", "SOPS_AGE_KEY_FILE": str(identity)}
    time.sleep(2.5)      # lastmodified is in whole seconds: now more than 1 s in the past

    refused = run_shim(["exec", "--max-age", "1s", "--enforce-max-age", "--", *probe.argv], env,
                       timeout=30)
    assert refused.returncode == 78, refused.stderr
    assert "DB_PASSWORD" in refused.stderr and "rotation overdue" in refused.stderr
    assert not probe.ran

    allowed = run_shim(["exec", "--max-age", "1h", "--enforce-max-age", "--", *probe.argv], env,
                       timeout=30)
    assert allowed.returncode == 0, allowed.stderr
    assert probe.ran
