"""The tier's premise: a real OpenBao server and shim reading a KV v2 secret from it."""

from tests.real.conftest import unique_path


def test_shim_reads_a_kv2_secret_from_openbao(openbao, run_shim, canaries, probe):
    value = canaries.new("kv2")
    path = unique_path("smoke")
    openbao.put_kv2(path, {"password": value})
    result = run_shim(["exec", "--", *probe.argv],
                      env={**openbao.vault_env(), "DB_PASSWORD": f"vault:secret/data/{path}#password"})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["DB_PASSWORD"] == value


def test_sops_binary_round_trips_with_age(sops, age_identity, tmp_path, canaries):
    recipient, identity = age_identity()
    plain = tmp_path / "app.yaml"
    value = canaries.new("sops")
    plain.write_text(f"password: {value}\n")
    encrypted = sops.run("encrypt", "--age", recipient, str(plain)).stdout
    assert value.encode() not in encrypted
    (tmp_path / "app.enc.yaml").write_bytes(encrypted)
    decrypted = sops.run("decrypt", str(tmp_path / "app.enc.yaml"),
                         env={"SOPS_AGE_KEY_FILE": str(identity)}).stdout
    assert value.encode() in decrypted
