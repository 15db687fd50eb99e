"""shim.delivery.privileges against real processes: gosu's test matrix, refusals, no_new_privs, setuid.

Every test starts a fresh Python process (the harness below) that becomes the caller with plain
os calls, runs shim.delivery.privileges, and execs a shell that reports what the kernel says the process
is: `id` (as gosu's matrix reads it) and /proc/self/status. Nothing is mocked; this needs root.

gosu's matrix (tianon/gosu hack/test.sh, identical in DockerTestDebian/Dockerfile and
Dockerfile.test-alpine) runs as a caller with gid nogroup and extra groups; the matrix caller
here is likewise uid 0 with gid nogroup and the extra groups daemon and users, so a row that
forgets to replace the caller's groups shows it. Two names are replaced:

- uid/gid 1000 (no passwd or group entry in gosu's images) is a free id found at test time,
  because uid 1000 exists on this machine;
- "games" (a user whose own group is "games" and who is a member of "users") is a user created
  for the session with exactly that shape, so no system account is modified.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
       # gosu's matrix sets a bogus HOME to prove it is replaced.
       "HOME": "/omg/really/gosu/nowhere"}
NOBODY = 65534


@pytest.fixture(autouse=True)
def _needs_root():
    if os.geteuid() != 0:
        unavailable("privilege drops need root")


# Imports happen before becoming the caller: a non-root caller cannot read this interpreter's
# stdlib under /root. Becoming the caller uses plain os calls, never shim's own code.
HARNESS = textwrap.dedent("""
    import ctypes, json, os, sys
    sys.path.insert(0, sys.argv[2])
    from shim.delivery import privileges
    from shim.tools.errors import ShimError

    config = json.loads(sys.argv[1])
    caller = config.get("caller")
    if caller:
        os.setgroups(caller["groups"])
        os.setresgid(caller["gid"], caller["gid"], caller["gid"])
        os.setresuid(caller["uid"], caller["uid"], caller["uid"])
    if config.get("keep_capabilities_across_setuid"):
        PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP = 28, 1 << 2
        arguments = [ctypes.c_ulong(n) for n in (SECBIT_NO_SETUID_FIXUP, 0, 0, 0)]
        assert ctypes.CDLL(None).prctl(PR_SET_SECUREBITS, *arguments) == 0
    try:
        privileges.check_not_setuid()
        identity = privileges.resolve_identity(config["spec"])
        privileges.ensure_may_switch(identity)
        if config.get("require_non_root"):
            privileges.refuse_root(identity)
        privileges.drop_privileges(identity)
        if config.get("no_new_privs"):
            privileges.set_no_new_privs()
    except ShimError as error:
        print(error.line(), file=sys.stderr)
        sys.exit(error.exit_code)
    os.environ["HOME"] = identity.home
    os.execvp("sh", ["sh", "-c", config["report"]])
""")

# What the kernel says the exec'd process is; `id` prints numbers for ids without names.
REPORT = """
printf 'ids=%s:%s:%s\\n' "$(id -u)" "$(id -g)" "$(id -G)"
printf 'names=%s:%s:%s\\n' "$(id -un 2>/dev/null)" "$(id -gn 2>/dev/null)" "$(id -Gn 2>/dev/null)"
printf 'HOME=%s\\n' "$HOME"
sed -n -e 's/^\\(Uid\\|Gid\\|Groups\\|NoNewPrivs\\):[[:space:]]*/\\1=/p' /proc/self/status
"""


@dataclass(frozen=True)
class Caller:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, str]:
        assert self.returncode == 0, self.stderr
        return dict(line.split("=", 1) for line in self.stdout.splitlines())


def run_harness(spec: str, caller: Caller | None, *, argv_prefix: list[str] | None = None,
                popen_args: dict | None = None, **options) -> Outcome:
    config = {"spec": spec, "report": REPORT, **options}
    if caller is not None:
        config["caller"] = {"uid": caller.uid, "gid": caller.gid, "groups": list(caller.groups)}
    argv = [*(argv_prefix or [sys.executable]), "-B", "-c", HARNESS, json.dumps(config),
            str(ROOT)]
    result = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=60, cwd="/",
                            **(popen_args or {}))
    assert "Traceback" not in result.stderr, result.stderr
    return Outcome(result.returncode, result.stdout, result.stderr)


def id_of(*args: str) -> str:
    """`id ARGS` as root sees it: the oracle, independent of shim's own lookups."""
    return subprocess.run(["id", *args], capture_output=True, text=True, check=True,
                          env=ENV).stdout.strip()


def entry_exists(database: str, key: str) -> bool:
    return subprocess.run(["getent", database, key], capture_output=True).returncode == 0


@dataclass(frozen=True)
class Accounts:
    free_id: int    # stands for gosu's 1000: no passwd entry, no group entry
    games: str      # stands for gosu's "games": own group "games", member of "users"


@pytest.fixture(scope="session")
def accounts():
    games = f"shimgames{os.getpid()}"
    subprocess.run(["useradd", "--system", "--user-group", "--groups", "users",
                    "--no-create-home", "--home-dir", "/usr/games",
                    "--shell", "/usr/sbin/nologin", games], check=True)
    try:
        free_id = next(number for number in range(4200, 5200)
                       if not entry_exists("passwd", str(number))
                       and not entry_exists("group", str(number)))
        yield Accounts(free_id=free_id, games=games)
    finally:
        subprocess.run(["userdel", games], check=True)
        if entry_exists("group", games):
            subprocess.run(["groupdel", games], check=True)


@dataclass(frozen=True)
class Row:
    spec: str
    ids: str          # `id -u`:`id -g`:`id -G`, exactly as gosu's matrix compares them
    names: str        # `id -un`:`id -gn`:`id -Gn`
    home: str
    groups: str       # /proc/self/status "Groups:": the exact setgroups() list gosu makes


# The caller of gosu's matrix has gid nogroup and extra groups; so does ours (uid 0 to switch).
MATRIX_CALLER_GROUPS = ("daemon", "users")


def user_row(spec: str, user: str, *, home: str, explicit: str | None = None) -> Row:
    """A spec whose USER has a passwd entry: its uid and home; groups implicit or explicit."""
    uid, name = id_of("-u", user), id_of("-un", user)
    if explicit is not None:
        gid, group = id_of_group(explicit)
        return Row(spec, f"{uid}:{gid}:{gid}", f"{name}:{group}:{group}", home, "")
    gid = id_of("-g", user)
    # runc lists only the groups naming the user as a member, not the primary gid.
    memberships = [number for number in id_of("-G", user).split() if number != gid]
    return Row(spec, f"{uid}:{gid}:{id_of('-G', user)}",
               f"{name}:{id_of('-gn', user)}:{id_of('-Gn', user)}", home,
               " ".join(sorted(memberships, key=int)))


def id_of_group(group: str) -> tuple[str, str]:
    if group.isdigit() and not entry_exists("group", group):
        return group, group
    fields = subprocess.run(["getent", "group", group], capture_output=True, text=True,
                            check=True).stdout.split(":")
    return fields[2], fields[0]


def gosu_matrix(accounts: Accounts) -> dict[str, Row]:
    """Every row of gosu's hack/test.sh, keyed by the spec as gosu writes it."""
    free, games = str(accounts.free_id), accounts.games
    caller_gid, caller_group = id_of_group(str(NOBODY))   # nogroup, as in gosu's matrix
    rows = [
        user_row("0", "root", home="/root"),
        user_row("0:0", "root", home="/root", explicit="0"),
        user_row("root", "root", home="/root"),
        user_row("0:root", "root", home="/root", explicit="root"),
        user_row("root:0", "root", home="/root", explicit="0"),
        user_row("root:root", "root", home="/root", explicit="root"),
        # No passwd entry: the caller's gid stays, no supplementary groups, HOME=/.
        Row(free, f"{free}:{caller_gid}:{caller_gid}", f"{free}:{caller_group}:{caller_group}",
            "/", ""),
        user_row(f"0:{free}", "root", home="/root", explicit=free),
        Row(f"{free}:{free}", f"{free}:{free}:{free}", f"{free}:{free}:{free}", "/", ""),
        user_row(f"root:{free}", "root", home="/root", explicit=free),
        Row(f"{free}:root", f"{free}:0:0", f"{free}:root:root", "/", ""),
        Row(f"{free}:daemon", f"{free}:{id_of('-g', 'daemon')}:{id_of('-g', 'daemon')}",
            f"{free}:daemon:daemon", "/", ""),
        user_row(games, games, home="/usr/games"),
        user_row(f"{games}:daemon", games, home="/usr/games", explicit="daemon"),
        # Only in gosu's HOME checks; ids follow from the rows above.
        Row(f"{free}:0", f"{free}:0:0", f"{free}:root:root", "/", ""),
        user_row("0:", "root", home="/root"),
        # gosu expects "$(id -u):$(id -g):$(id -G)": the caller's uid looked up in passwd, which
        # equals the caller's own state in gosu's image; our caller's gid is deliberately not its
        # passwd gid, so the passwd entry is what the row must show.
        user_row("", "root", home="/root"),
        user_row(":0", "root", home="/root", explicit="0"),
    ]
    gosu_names = {free: "1000", games: "games"}
    return {_gosu_spelling(row.spec, gosu_names): row for row in rows}


def _gosu_spelling(spec: str, names: dict[str, str]) -> str:
    return ":".join(names.get(part, part) for part in spec.split(":"))


GOSU_SPECS = ["0", "0:0", "root", "0:root", "root:0", "root:root", "1000", "0:1000",
              "1000:1000", "root:1000", "1000:root", "1000:daemon", "games", "games:daemon",
              "1000:0", "0:", "", ":0"]


@pytest.fixture(scope="session")
def matrix(accounts) -> dict[str, Row]:
    rows = gosu_matrix(accounts)
    assert sorted(rows) == sorted(GOSU_SPECS)
    return rows


@pytest.fixture(scope="session")
def matrix_caller() -> Caller:
    groups = tuple(int(id_of_group(name)[0]) for name in MATRIX_CALLER_GROUPS)
    return Caller(uid=0, gid=NOBODY, groups=groups)


@pytest.mark.parametrize("gosu_spec", GOSU_SPECS, ids=[repr(spec) for spec in GOSU_SPECS])
def test_gosu_matrix_row(gosu_spec, matrix, matrix_caller):
    row = matrix[gosu_spec]
    report = run_harness(row.spec, matrix_caller).report
    uid, gid = row.ids.split(":")[:2]
    assert report["ids"] == row.ids
    assert report["names"] == row.names
    assert report["HOME"] == row.home
    assert report["Uid"].split() == [uid] * 4
    assert report["Gid"].split() == [gid] * 4
    assert report["Groups"].strip() == row.groups


@pytest.mark.parametrize("spec, message", [
    ("bogus", '--user bogus: unknown user "bogus"; add it to /etc/passwd in the image or use '
              'a numeric uid'),
    ("0day", '--user 0day: unknown user "0day"; add it to /etc/passwd in the image or use '
             'a numeric uid'),
    ("0:bogus", '--user 0:bogus: unknown group "bogus"; add it to /etc/group in the image or '
                'use a numeric gid'),
    ("0:0day", '--user 0:0day: unknown group "0day"; add it to /etc/group in the image or use '
               'a numeric gid'),
    # gosu (runc) ignores everything after a second ':'; the group part here is "root:root".
    ("root:root:root", '--user root:root:root: unknown group "root:root"; add it to /etc/group '
                       'in the image or use a numeric gid'),
])
def test_unknown_user_or_group_is_a_configuration_error(spec, message, matrix_caller):
    outcome = run_harness(spec, matrix_caller)
    assert (outcome.returncode, outcome.stderr.strip(), outcome.stdout) == (78, message, "")


@pytest.mark.parametrize("spec, kind, number", [
    ("2147483648", "uid", "2147483648"),
    ("0:4294967295", "gid", "4294967295"),
])
def test_id_out_of_range_is_a_usage_error(spec, kind, number, matrix_caller):
    outcome = run_harness(spec, matrix_caller)
    assert outcome.returncode == 64, outcome.stderr
    assert outcome.stderr.strip() == (f"--user {spec}: {kind} {number} is out of range; "
                                      f"uids and gids go from 0 to 2147483647")


def test_largest_id_is_accepted(matrix_caller):
    report = run_harness("2147483647:2147483647", matrix_caller).report
    assert report["ids"] == "2147483647:2147483647:2147483647"
    assert report["HOME"] == "/"


NOBODY_CALLER = Caller(uid=NOBODY, gid=NOBODY)


@pytest.mark.parametrize("spec", ["root", "daemon", ":0", "nobody:daemon", "4242", "0:65534"])
def test_non_root_caller_cannot_switch_to_someone_else(spec):
    outcome = run_harness(spec, NOBODY_CALLER)
    assert outcome.returncode == 77, outcome.stderr
    assert outcome.stdout == ""
    assert outcome.stderr.startswith("--user: cannot switch to ")
    assert ("only root can change users and shim runs as uid 65534 gid 65534 groups 65534; "
            "start the container as root") in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("spec", ["nobody", "65534", "nobody:nogroup", "65534:65534", "", ":"])
def test_non_root_caller_may_ask_for_itself(spec):
    report = run_harness(spec, NOBODY_CALLER).report
    assert report["ids"] == "65534:65534:65534"
    assert report["HOME"] == id_of_home("nobody")


def test_empty_spec_from_a_non_root_caller_is_gosus_literal_row():
    """gosu's '' row as written: "$(id -u):$(id -g):$(id -G)" of a caller matching passwd."""
    caller_view = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "sh", "-c",
         'printf "%s:%s:%s" "$(id -u)" "$(id -g)" "$(id -G)"'],
        capture_output=True, text=True, check=True, env=ENV).stdout
    assert run_harness("", NOBODY_CALLER).report["ids"] == caller_view


def test_non_root_caller_listing_its_gid_as_a_group_is_still_itself():
    """initgroups() callers list the primary gid too; the group set is the same."""
    report = run_harness("nobody", Caller(uid=NOBODY, gid=NOBODY, groups=(NOBODY,))).report
    assert report["ids"] == "65534:65534:65534"


def test_non_root_caller_keeps_the_groups_it_was_started_with():
    """Kubernetes runAsUser + fsGroup: --user <that same user> runs, groups unchanged."""
    users = int(id_of_group("users")[0])
    report = run_harness("nobody", Caller(uid=NOBODY, gid=NOBODY, groups=(users,))).report
    assert report["ids"].split(":")[:2] == ["65534", "65534"]
    assert str(users) in report["ids"].split(":")[2].split()


def id_of_home(user: str) -> str:
    return subprocess.run(["getent", "passwd", user], capture_output=True, text=True,
                          check=True).stdout.split(":")[5]


@pytest.mark.parametrize("spec", ["root", "0", "0:65534", "", ":daemon"])
def test_require_non_root_refuses_uid_0(spec, matrix_caller):
    outcome = run_harness(spec, matrix_caller, require_non_root=True)
    assert outcome.returncode == 78, outcome.stderr
    assert outcome.stderr.startswith("--require-non-root: the command would run as root")
    assert outcome.stdout == ""


@pytest.mark.parametrize("spec", ["daemon", "nobody", "4242:0", "daemon:root"])
def test_require_non_root_accepts_other_uids(spec, matrix_caller):
    report = run_harness(spec, matrix_caller, require_non_root=True).report
    assert report["Uid"].split()[0] != "0"


@pytest.mark.parametrize("asked, expected", [(True, "1"), (False, "0")])
def test_no_new_privs_reaches_the_exec_child(asked, expected, matrix_caller):
    report = run_harness("daemon", matrix_caller, no_new_privs=asked).report
    assert report["NoNewPrivs"] == expected
    assert report["ids"].startswith(id_of("-u", "daemon") + ":")


def test_no_new_privs_without_a_user_switch(matrix_caller):
    report = run_harness("", matrix_caller, no_new_privs=True).report
    assert report["NoNewPrivs"] == "1"


def test_a_way_back_to_root_is_refused(matrix_caller):
    """With SECBIT_NO_SETUID_FIXUP, setuid() keeps capabilities: setuid(0) would work again."""
    outcome = run_harness("daemon", matrix_caller, keep_capabilities_across_setuid=True)
    assert outcome.returncode == 77, outcome.stderr
    assert "could set uid 0 again" in outcome.stderr
    assert outcome.stdout == ""


WRAPPER_SOURCE = """
#include <stdio.h>
#include <unistd.h>
/* Installed setuid/setgid: runs the harness interpreter with whatever ids exec gave us. */
int main(int argc, char **argv) {
    (void)argc;
    argv[0] = PYTHON;
    execv(PYTHON, argv);
    perror("execv " PYTHON);
    return 127;
}
"""


@pytest.fixture(scope="module")
def wrapper_dir():
    """A directory nobody can traverse (pytest's own tmp dirs are root-only)."""
    if shutil.which("gcc") is None:
        unavailable("gcc is needed to build the setuid test wrapper")
    path = Path(tempfile.mkdtemp(prefix="shim-setuid-"))
    path.chmod(0o755)
    source = path / "wrapper.c"
    source.write_text(WRAPPER_SOURCE)
    subprocess.run(["gcc", f'-DPYTHON="{sys.executable}"', "-o", str(path / "wrapper"),
                    str(source)], check=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def installed_wrapper(wrapper_dir: Path, mode: int) -> Path:
    installed = wrapper_dir / f"wrapper-{mode:o}"
    shutil.copy(wrapper_dir / "wrapper", installed)
    os.chown(installed, 0, 0)
    installed.chmod(mode)
    return installed


def test_refuses_to_run_installed_setuid_root(wrapper_dir):
    wrapper = installed_wrapper(wrapper_dir, 0o4755)
    outcome = run_harness("", None, argv_prefix=[str(wrapper)],
                          popen_args={"user": NOBODY, "group": NOBODY, "extra_groups": []})
    assert outcome.returncode == 77, outcome.stderr
    assert outcome.stdout == ""
    assert outcome.stderr.strip() == (
        "shim is running setuid/setgid (real uid 65534 gid 65534, effective uid 0 gid 65534), "
        "which would let any user run any command as root; remove the bits (chmod u-s,g-s) "
        "and start the container as root instead")


def test_refuses_to_run_installed_setgid(wrapper_dir):
    # A root caller whose real gid is nogroup: the setgid-root bit makes only the egid differ.
    wrapper = installed_wrapper(wrapper_dir, 0o2755)
    outcome = run_harness("", None, argv_prefix=[str(wrapper)],
                          popen_args={"group": NOBODY, "extra_groups": []})
    assert outcome.returncode == 77, outcome.stderr
    assert "(real uid 0 gid 65534, effective uid 0 gid 0)" in outcome.stderr


def test_the_same_wrapper_without_the_bits_runs(wrapper_dir):
    wrapper = installed_wrapper(wrapper_dir, 0o755)
    outcome = run_harness("", None, argv_prefix=[str(wrapper)],
                          popen_args={"group": NOBODY, "extra_groups": []})
    assert outcome.report["ids"].startswith("0:0:")
