"""Hand-checked vectors for the sops rules shim follows (docs/sops.md).

Each expected value below is derived by hand from the rule, not by running the
code under test: the additional data is the path's keys each followed by ':',
list positions are not part of it; the MAC is SHA-512 over the leaves' text
forms in file order (nulls skipped, booleans as True/False, floats in Go's
shortest form), upper-case hex; mac_only_encrypted hashes SHA-256(b"sops")
first and only the encrypted leaves.
"""

from __future__ import annotations

import hashlib

import pytest

from shim.providers.sops import cipher, metadata, stores, tree
from shim.providers.sops.tree import Branch, Rules

KEY = bytes(range(32))
DEFAULT = Rules(unencrypted_suffix="_unencrypted")


def _doc():
    return [Branch([
        ("a", "x"),
        ("b", Branch([("c", 5), ("d", True), ("e", 0.5), ("f", None)])),
        ("l", ["y", "z"]),
        ("n_unencrypted", "plain"),
    ])]


def test_additional_data_is_the_keys_each_followed_by_a_colon():
    assert tree.additional_data(["database", "password"]) == "database:password:"
    assert tree.additional_data([]) == ""


def test_mac_is_sha512_of_the_leaves_in_file_order_upper_hex():
    _encrypted, mac = tree.encrypt(_doc(), KEY, DEFAULT)
    assert mac == hashlib.sha512(b"x" + b"5" + b"True" + b"0.5" + b"y" + b"z" + b"plain").hexdigest().upper()


def test_mac_only_encrypted_starts_with_sha256_of_sops_and_skips_unencrypted_leaves():
    rules = Rules(unencrypted_suffix="_unencrypted", mac_only_encrypted=True)
    _encrypted, mac = tree.encrypt(_doc(), KEY, rules)
    expected = hashlib.sha512(hashlib.sha256(b"sops").digest() + b"x5True0.5yz").hexdigest().upper()
    assert mac == expected


def test_list_items_are_encrypted_with_the_lists_path():
    encrypted, _mac = tree.encrypt(_doc(), KEY, DEFAULT)
    items = dict(encrypted[0])["l"]
    assert [cipher.decrypt(item, KEY, "l:") for item in items] == ["y", "z"]
    with pytest.raises(cipher.CipherError):
        cipher.decrypt(items[0], KEY, "l:0:")


def test_nested_value_authenticates_only_at_its_own_path():
    encrypted, _mac = tree.encrypt(_doc(), KEY, DEFAULT)
    nested = dict(dict(encrypted[0])["b"])
    assert cipher.decrypt(nested["c"], KEY, "b:c:") == 5
    with pytest.raises(cipher.CipherError):
        cipher.decrypt(nested["c"], KEY, "b:d:")
    assert nested["f"] is None                              # nulls are neither encrypted nor hashed
    assert dict(encrypted[0])["n_unencrypted"] == "plain"   # the default suffix rule


def test_decrypt_round_trip_gives_the_same_mac_and_types():
    encrypted, mac = tree.encrypt(_doc(), KEY, DEFAULT)
    decrypted, computed = tree.decrypt(encrypted, KEY, DEFAULT)
    assert computed == mac
    assert tree.plain(decrypted[0]) == {"a": "x", "b": {"c": 5, "d": True, "e": 0.5, "f": None},
                                        "l": ["y", "z"], "n_unencrypted": "plain"}


def test_value_form_and_fixed_iv_vector():
    iv = bytes(32)
    text = cipher.encrypt("hello", KEY, "a:", iv=iv)
    assert text.startswith("ENC[AES256_GCM,data:") and text.endswith(",type:str]")
    assert ",iv:" + "A" * 43 + "=," in text             # 32 zero bytes in base64
    assert cipher.encrypt("hello", KEY, "a:", iv=iv) == text
    assert cipher.decrypt(text, KEY, "a:") == "hello"
    assert cipher.encrypt("", KEY, "a:") == ""          # sops leaves empty strings empty


@pytest.mark.parametrize("value, kind", [(7, "int"), (True, "bool"), (False, "bool"),
                                         (2.5, "float"), (b"\x00\x01", "bytes")])
def test_types_round_trip(value, kind):
    text = cipher.encrypt(value, KEY, "k:")
    assert text.endswith(f"type:{kind}]")
    assert cipher.decrypt(text, KEY, "k:") == value


@pytest.mark.parametrize("number, text", [(1.0, "1"), (0.1, "0.1"), (1e21, "1000000000000000000000"),
                                          (-0.0, "-0"), (1.5e-7, "0.00000015"), (123456.789, "123456.789")])
def test_floats_in_gos_shortest_form(number, text):
    assert cipher.go_float(number) == text


@pytest.mark.parametrize("written, aad", [
    ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z"),
    ("2024-05-01T10:00:00.123456Z", "2024-05-01T10:00:00Z"),   # Go's RFC 3339 layout drops fractions
    ("2024-05-01T10:00:00+00:00", "2024-05-01T10:00:00Z"),     # and writes a zero offset as Z
    ("2024-05-01T12:00:00+02:00", "2024-05-01T12:00:00+02:00"),
])
def test_lastmodified_as_the_macs_additional_data(written, aad):
    assert metadata.go_rfc3339(written) == aad


@pytest.mark.parametrize("rules, path, encrypted", [
    (Rules(unencrypted_suffix="_unencrypted"), ["a", "b_unencrypted", "c"], False),
    (Rules(unencrypted_suffix="_unencrypted"), ["a", "b"], True),
    (Rules(encrypted_suffix="_secret"), ["db_secret", "x"], True),
    (Rules(encrypted_suffix="_secret"), ["db", "x"], False),
    (Rules(encrypted_regex="^(data|stringData)$"), ["data", "x"], True),
    (Rules(encrypted_regex="^(data|stringData)$"), ["metadata", "name"], False),
    (Rules(unencrypted_regex="^public"), ["public_url"], False),
    (Rules(unencrypted_regex="word"), ["password"], False),    # found anywhere in the key
])
def test_which_values_are_encrypted(rules, path, encrypted):
    assert rules.encrypts(path) is encrypted


def test_metadata_without_a_rule_uses_the_unencrypted_suffix_and_rejects_two_rules():
    meta = metadata.parse({"lastmodified": "2024-05-01T10:00:00Z", "mac": "", "age": []})
    assert meta.rules.unencrypted_suffix == "_unencrypted"
    with pytest.raises(stores.FormatError):
        metadata.parse({"lastmodified": "2024-05-01T10:00:00Z", "encrypted_suffix": "_s",
                        "encrypted_regex": "x"})


def test_flat_metadata_keys_as_sops_writes_them():
    meta = {"version": "3.9.0", "age": [{"recipient": "R", "enc": "E"}], "lastmodified": "T"}
    flat = stores.flatten(meta, "sops_")
    assert flat == [("sops_age__list_0__map_enc", "E"), ("sops_age__list_0__map_recipient", "R"),
                    ("sops_lastmodified", "T"), ("sops_version", "3.9.0")]
    unprefixed = Branch((key[len("sops_"):], value) for key, value in flat)
    assert stores.unflatten(unprefixed, False) == meta


def test_format_from_the_file_name_as_sops_chooses_it():
    assert [stores.format_for_path(p) for p in ("a.yaml", "a.yml", "a.json", "a.env", "a.ini",
                                                "a.enc", "Dockerfile")] == \
        ["yaml", "yaml", "json", "dotenv", "ini", "binary", "binary"]


def test_yaml_scalars_resolve_as_yaml_1_2():
    from shim.providers.sops.yamlstore import load_yaml
    branch = load_yaml("a: yes\nb: 010\nc: true\nd: '5'\ne: 0x1F\nf: ~\ng: 1.5\n")[0]
    assert dict(branch) == {"a": "yes", "b": 10, "c": True, "d": "5", "e": 31, "f": None, "g": 1.5}


def test_the_sops_rows_of_the_references_table():
    import re
    from pathlib import Path
    from shim.syntax.refs import parse_reference
    text = (Path(__file__).resolve().parents[2] / "docs" / "references.md").read_text()
    rows = re.findall(r"^\| `(ref\+sops://[^`]+)` \| (?:`([^`]+)`|same)", text, re.M)
    assert len(rows) == 2
    for written, canonical in rows:
        assert parse_reference(written).canonical == (canonical or written)
        assert parse_reference(written).provider == "sops"
