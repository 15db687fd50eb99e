"""Where a placeholder's value may live, and what counts as one (in-process, for mutation testing)."""

from shim.syntax.placeholders import find_placeholders, has_placeholder, secrets_dir_candidates


def test_candidates_in_order_for_a_whole_value():
    assert secrets_dir_candidates(["/run/secrets", "/s"], "PG_PASS", "DB_Pw", True) == [
        "/run/secrets/DB_Pw", "/run/secrets/db_pw", "/run/secrets/pg_pass",
        "/s/DB_Pw", "/s/db_pw", "/s/pg_pass"]


def test_candidates_for_an_embedded_placeholder_skip_the_variable_name():
    # The variable-named file would hold the whole URL, not the part the placeholder stands for.
    assert secrets_dir_candidates(["/run/secrets"], "DATABASE_URL", "PG", False) == [
        "/run/secrets/PG", "/run/secrets/pg"]


def test_candidates_name_a_repeated_file_once():
    assert secrets_dir_candidates(["/d"], "key", "key", True) == ["/d/key"]


def test_has_placeholder_agrees_with_find():
    for text, expected in (("CHANGEME", True), ("x CHANGEME_A y", True), ("CHANGEMEX", False),
                           ("xCHANGEME", False), ("changeme", False), ("", False)):
        assert has_placeholder(text) is expected
        assert bool(find_placeholders("V", text)) is expected


def test_bare_placeholder_takes_the_variable_name_as_key():
    [found] = find_placeholders("REDIS_PASSWORD", "redis://:CHANGEME@cache")
    assert (found.token, found.key, found.start, found.end) == ("CHANGEME", "REDIS_PASSWORD", 9, 17)
