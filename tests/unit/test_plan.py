"""The plan and the child's environment, in-process: which variables shim takes over, which it
removes, and which never reach the program. Real files, no stores (mutation testing runs these)."""

from __future__ import annotations

import io

import pytest

from shim.delivery.audit import Log
from shim.tools.deadline import Deadline
from shim.pipeline.environment import child_environment
from shim.pipeline.plan import Settings, build_plan
from shim.providers.base import ProviderContext
from shim.pipeline.resolve import ProviderPool, resolve_plan


@pytest.fixture
def secrets_dir(tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir()
    return directory


def resolve(environ, settings):
    plan = build_plan(environ, settings)
    pool = ProviderPool(ProviderContext(environ, Log("json", stream=io.StringIO())))
    return plan, resolve_plan(plan, pool, Deadline(10))


def test_child_environment_swaps_file_vars_and_scrubs_shim_and_vault(secrets_dir, canaries):
    value = canaries.new()
    (secrets_dir / "pg").write_text(value + "\n")
    environ = {"PG_PASSWORD_FILE": str(secrets_dir / "pg"), "VAULT_TOKEN": "t", "VAULT_ADDR": "a",
               "SHIM_USER": "app", "PLAIN": "x"}
    plan, resolution = resolve(environ, Settings(secrets_dirs=(str(secrets_dir),)))
    assert plan.errors == [] and resolution.errors == []
    assert child_environment(plan, resolution) == {"PG_PASSWORD": value, "PLAIN": "x"}
    kept = child_environment(plan, resolution, keep_file_vars=True, passthrough=["VAULT_ADDR"])
    assert kept == {"PG_PASSWORD": value, "PG_PASSWORD_FILE": str(secrets_dir / "pg"),
                    "VAULT_ADDR": "a", "PLAIN": "x"}


def test_an_optional_missing_secret_leaves_the_variable_unset(tmp_path):
    environ = {"MAYBE": f"ref+file://{tmp_path}/absent?optional=true", "OTHER": "y"}
    plan, resolution = resolve(environ, Settings())
    assert resolution.errors == []
    assert child_environment(plan, resolution) == {"OTHER": "y"}


@pytest.mark.parametrize("path, inside", [
    ("{dir}/pg", True),
    ("{dir}/sub/pg", True),
    ("{dir}X/pg", False),           # a sibling sharing the prefix
    ("{dir}/../pg", False),         # out through ..
    ("relative/pg", False),
    ("{dir}", False),               # the directory itself
])
def test_only_paths_under_a_secrets_dir_are_taken_over(secrets_dir, path, inside):
    path = path.format(dir=secrets_dir)
    plan = build_plan({"PG_FILE": path}, Settings(secrets_dirs=(str(secrets_dir) + "/",)))
    assert ("PG" in plan.entries) is inside


def test_file_vars_option_takes_over_a_path_anywhere(tmp_path):
    plan = build_plan({"PG_FILE": str(tmp_path / "pg"), "OTHER_FILE": str(tmp_path / "o")},
                      Settings(file_vars=frozenset({"PG"})))
    assert set(plan.entries) == {"PG"}
    assert set(build_plan({"A_FILE": "/x", "B_FILE": "/y"},
                          Settings(file_vars=frozenset({"*"}))).entries) == {"A", "B"}


def test_both_a_variable_and_its_file_var_is_a_configuration_error(secrets_dir):
    plan = build_plan({"PG": "set", "PG_FILE": str(secrets_dir / "pg")},
                      Settings(secrets_dirs=(str(secrets_dir),)))
    assert [(error.variable, error.exit_code) for error in plan.errors] == [("PG", 78)]


def test_child_environment_goes_on_past_a_variable_without_result(secrets_dir, canaries):
    """A planned variable the resolution has no result for is left as it was; the next is set."""
    for name in ("a", "b"):
        (secrets_dir / name).write_text(canaries.new(name))
    environ = {"A_FILE": str(secrets_dir / "a"), "B_FILE": str(secrets_dir / "b")}
    plan, resolution = resolve(environ, Settings(secrets_dirs=(str(secrets_dir),)))
    del resolution.variables["A"]
    env = child_environment(plan, resolution)
    assert env["A_FILE"] == str(secrets_dir / "a") and "A" not in env
    assert env["B"] == (secrets_dir / "b").read_text() and "B_FILE" not in env


def test_starting_environment_is_the_block_the_process_started_with():
    from shim.pipeline.environment import starting_environment

    with open("/proc/self/environ", "rb") as stream:
        items = [item for item in stream.read().split(b"\0") if item]
    expected = dict(item.decode().split("=", 1) for item in items if b"=" in item[1:])
    assert starting_environment() == expected
    assert "PYTEST_CURRENT_TEST" not in starting_environment()  # set later, in os.environ only


def test_exempt_names_are_not_planned_and_the_rest_still_are(tmp_path):
    (tmp_path / "s").write_text("v")
    environ = {"A_LOOKALIKE": "vault:looks/like#a-ref", "SHIM_X": f"file:{tmp_path}/s",
               "Z": f"file:{tmp_path}/s"}
    plan = build_plan(environ, Settings(skip=frozenset({"A_LOOKALIKE"})))
    assert set(plan.entries) == {"Z"} and plan.errors == []
    assert (plan.entries["Z"].source, plan.entries["Z"].origin) == ("reference", None)


def test_plan_errors_name_their_variable():
    plan = build_plan({"X": "vault:"}, Settings())
    assert [(error.variable, error.exit_code) for error in plan.errors] == [("X", 64)]


def test_file_var_entry_says_where_it_came_from(secrets_dir):
    plan = build_plan({"PG_FILE": str(secrets_dir / "pg")}, Settings(secrets_dirs=(str(secrets_dir),)))
    entry = plan.entries["PG"]
    assert (entry.source, entry.origin, tuple(entry.remove)) == ("file-var", "PG_FILE", ("PG_FILE",))


def test_the_root_directory_as_secrets_dir_holds_every_absolute_path():
    assert "PG" in build_plan({"PG_FILE": "/etc/x"}, Settings(secrets_dirs=("/",))).entries


def url(rest: str) -> str:
    """postgresql://REST, written so that `shim scan` of this repository sees no literal credentials."""
    return "postgresql" + "://" + rest


@pytest.mark.parametrize("template, expected", [
    (url("app:{}@db/app"), url("app:p%40ss%2Fw%3Ard%20x@db/app")),   # user-info
    (url("{}:pw@db/app"), url("p%40ss%2Fw%3Ard%20x:pw@db/app")),
    (url("app:pw@db/{}"), url("app:pw@db/p@ss/w:rd x")),            # path: as is
    ("https://db/?q={}", "https://db/?q=p@ss/w:rd x"),                   # no user-info
    ("{}", "p@ss/w:rd x"),
])
def test_only_placeholders_in_a_urls_user_info_are_percent_encoded(secrets_dir, template, expected):
    (secrets_dir / "PG").write_text("p@ss/w:rd x")
    environ = {"URL": template.format("CHANGEME_PG")}
    plan, resolution = resolve(environ, Settings(secrets_dirs=(str(secrets_dir),)))
    assert resolution.errors == [] and plan.errors == []
    assert child_environment(plan, resolution)["URL"] == expected
    inline = {"URL": template.format("${ref+file://" + str(secrets_dir / "PG") + "}")}
    plan, resolution = resolve(inline, Settings())
    assert child_environment(plan, resolution)["URL"] == expected


def test_placeholder_sources_in_order(secrets_dir, tmp_path):
    from shim.syntax.refs import parse_reference

    source = tmp_path / "source.json"
    source.write_text('{"PG": "from-source", "API": "api-from-source"}')
    (secrets_dir / "pg").write_text("from-dir")
    env_file = tmp_path / "app.env"
    env_file.write_text("TOKEN=from-env-file\n")
    settings = Settings(secrets_dirs=(str(secrets_dir),), env_files=(str(env_file),),
                        placeholder_source=parse_reference(f"ref+file://{source}"))
    environ = {"PG_URL": url("u:CHANGEME_PG@h"), "API_KEY": "CHANGEME_API", "TOKEN_COPY": "CHANGEME_TOKEN"}
    plan, resolution = resolve(environ, settings)
    assert plan.errors == [] and resolution.errors == []
    env = child_environment(plan, resolution)
    assert (env["PG_URL"], env["API_KEY"], env["TOKEN_COPY"]) == \
        (url("u:from-dir@h"), "api-from-source", "from-env-file")
    assert [part.placeholder for part in plan.entries["API_KEY"].secret_parts] == ["CHANGEME_API"]
    assert build_plan({"A": "CHANGEME_NOWHERE"}, Settings(secrets_dirs=(str(secrets_dir),))).errors[0] \
        .variable == "A"


@pytest.mark.parametrize("template, expected", [
    ("a$${b}c", "a${b}c"),                                  # $${ is a literal ${
    ("$${ref+file://{F}}", "${ref+file://{F}}"),            # ...even before a reference
    ("x${ref+file://{F}}y${ref+file://{G}}z", "xFVyGVz"),   # several pieces
    ("${ref+file://{F}}", "FV"),
    ("pre ${NOT_A_REFERENCE} post", "pre ${NOT_A_REFERENCE} post"),
    ("${ref+file://{F}}}", "FV}"),
])
def test_inline_references_and_escapes(tmp_path, template, expected):
    (tmp_path / "f").write_text("FV")
    (tmp_path / "g").write_text("GV")
    value = template.replace("{F}", str(tmp_path / "f")).replace("{G}", str(tmp_path / "g"))
    plan, resolution = resolve({"V": value}, Settings())
    assert plan.errors == [] and resolution.errors == []
    assert child_environment(plan, resolution)["V"] == expected.replace("{F}", str(tmp_path / "f"))


def test_an_unclosed_inline_reference_is_a_usage_error(tmp_path):
    plan = build_plan({"V": f"x${{ref+file://{tmp_path}/f"}, Settings())
    assert [(error.variable, error.exit_code) for error in plan.errors] == [("V", 64)]
    assert "no closing }" in plan.errors[0].message


def test_the_variable_named_file_serves_only_a_whole_value_placeholder(secrets_dir):
    (secrets_dir / "v").write_text("from-v")
    settings = Settings(secrets_dirs=(str(secrets_dir),))
    plan, resolution = resolve({"V": "CHANGEME_K"}, settings)
    assert child_environment(plan, resolution)["V"] == "from-v"
    embedded = build_plan({"V": "x CHANGEME_K"}, settings)
    assert [(error.variable, error.exit_code) for error in embedded.errors] == [("V", 78)]
    assert "unresolved placeholder CHANGEME_K" in embedded.errors[0].message


def test_file_vars_programs_read_themselves_are_never_taken_over(secrets_dir):
    environ = {"AWS_WEB_IDENTITY_TOKEN_FILE": str(secrets_dir / "token"),
               "SKIPPED_FILE": str(secrets_dir / "s"), "KEPT__FILE": str(secrets_dir / "k"),
               "_FILE": str(secrets_dir / "x")}
    plan = build_plan(environ, Settings(secrets_dirs=(str(secrets_dir),),
                                        skip=frozenset({"SKIPPED_FILE"})))
    assert set(plan.entries) == {"KEPT"} and plan.errors == []


def test_an_empty_file_var_leaves_the_variable_as_it_is():
    plan, resolution = resolve({"PG_FILE": "", "PG": "as-is"}, Settings(file_vars=frozenset({"PG"})))
    assert child_environment(plan, resolution) == {"PG": "as-is"}


def test_env_files_fill_only_what_the_environment_lacks_or_holds_a_placeholder(tmp_path):
    (tmp_path / "f").write_text("from-file")
    env_file = tmp_path / "app.env"
    env_file.write_text(f"SHIM_EXEMPT=1\nSET=from-env-file\nHOLDER=from-env-file\nNEW=plain\n"  # pragma: allowlist secret
                        f"REF=ref+file://{tmp_path}/f\nBAD=vault:\nLAST=last\n")
    environ = {"SET": "from-environment", "HOLDER": "CHANGEME"}
    plan, resolution = resolve(environ, Settings(env_files=(str(env_file),)))
    # One error for BAD, not one from the env file and another from the environment it filled.
    assert [(error.variable, error.exit_code) for error in plan.errors] == [("BAD", 64)]
    env = child_environment(plan, resolution)
    assert (env["SET"], env["HOLDER"], env["NEW"], env["REF"], env["LAST"]) == \
        ("from-environment", "from-env-file", "plain", "from-file", "last")
    assert plan.entries["NEW"].source == "env-file"
    assert plan.entries["NEW"].origin == f"{env_file}:4"


@pytest.mark.parametrize("value, source, whole", [
    ("ref+file://{F}", "reference", True),
    ("CHANGEME_K", "placeholder", True),
    ("x://u:CHANGEME_K@h", "placeholder", False),
    ("a${ref+file://{F}}b", "inline", False),
    ("${ref+file://{F}}", "inline", True),
    ("CHANGEME_K${ref+file://{F}}", "inline+placeholder", False),
    ("a$${b}", "literal", False),
])
def test_what_shim_check_calls_each_source(secrets_dir, value, source, whole):
    (secrets_dir / "K").write_text("k")
    (secrets_dir / "f").write_text("f")
    value = value.replace("{F}", str(secrets_dir / "f"))
    entry = build_plan({"V": value}, Settings(secrets_dirs=(str(secrets_dir),))).entries["V"]
    assert (entry.source, entry.whole) == (source, whole)


def test_allow_placeholders_keeps_the_unresolved_ones_and_says_which(secrets_dir):
    plan = build_plan({"V": "x CHANGEME_MISSING y"},
                      Settings(secrets_dirs=(str(secrets_dir),), allow_placeholders=True))
    assert plan.errors == []
    assert plan.entries["V"].kept_placeholders == ("CHANGEME_MISSING",)


def test_a_secrets_dir_whose_name_ends_like_a_strip_set_is_matched_exactly(tmp_path):
    """`/x/secretsX` as secrets dir: `/x/secrets/pg` is its sibling, not inside it."""
    plan = build_plan({"PG_FILE": str(tmp_path / "secrets" / "pg")},
                      Settings(secrets_dirs=(str(tmp_path / "secretsX"),)))
    assert plan.entries == {}
