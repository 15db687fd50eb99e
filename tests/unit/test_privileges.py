"""privileges.py in-process: USER[:GROUP] resolution against this machine's passwd and group
files, the range and refuse-root checks, and the switch itself in a forked child (the test
process keeps its own uid)."""

from __future__ import annotations

import grp
import os
import pickle
import pwd
import subprocess
import sys
from dataclasses import dataclass

import pytest

from shim.tools.errors import ConfigError, PermissionDenied, UsageError
from shim.delivery.privileges import MAX_ID, Identity, _ensure_cannot_regain_root, _verify_switched, check_not_setuid, drop_privileges, ensure_may_switch, refuse_root, resolve_identity, set_no_new_privs
from tests.conftest import unavailable


def _needs_root():
    if os.geteuid() != 0:
        unavailable("creating accounts and switching ids need root")


@pytest.fixture(autouse=True)
def _root_only():
    _needs_root()


def _exists(database: str, key: str) -> bool:
    return subprocess.run(["getent", database, key], capture_output=True).returncode == 0


@dataclass(frozen=True)
class Account:
    name: str        # own group `name`; member of `extra` and of `twin`, which shares extra's gid
    uid: int
    gid: int
    extra: str
    extra_gid: int
    free_id: int     # neither a passwd nor a group entry


def _remove_stale_accounts():
    """Accounts of an earlier run that was killed before its teardown (mutmut ends a worker
    that times out): their names end in the pid of a process that is gone."""
    for entry in pwd.getpwall():
        pid = entry.pw_name.removeprefix("shimpriv")
        if pid != entry.pw_name and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            subprocess.run(["userdel", entry.pw_name], check=False)
            for group in (f"shimpriv{pid}", f"shimtwin{pid}", f"shimextra{pid}"):
                if _exists("group", group):
                    subprocess.run(["groupdel", group], check=False)


@pytest.fixture(scope="module")
def account():
    _needs_root()
    _remove_stale_accounts()
    suffix = os.getpid()
    name, extra, twin = f"shimpriv{suffix}", f"shimextra{suffix}", f"shimtwin{suffix}"
    subprocess.run(["groupadd", "--system", extra], check=True)
    extra_gid = grp.getgrnam(extra).gr_gid
    subprocess.run(["groupadd", "--system", "--non-unique", "--gid", str(extra_gid), twin],
                   check=True)
    subprocess.run(["useradd", "--system", "--user-group", "--groups", f"{extra},{twin}",
                    "--no-create-home", "--home-dir", "/var/empty-shim",
                    "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        entry = pwd.getpwnam(name)
        free_id = next(number for number in range(4200, 5200)
                       if not _exists("passwd", str(number)) and not _exists("group", str(number)))
        yield Account(name, entry.pw_uid, entry.pw_gid, extra, extra_gid, free_id)
    finally:
        subprocess.run(["userdel", name], check=True)
        for group in (name, twin, extra):
            if _exists("group", group):
                subprocess.run(["groupdel", group], check=True)


def test_a_name_takes_its_passwd_entry_and_its_memberships_each_gid_once(account):
    assert resolve_identity(account.name) == Identity(
        account.uid, account.gid, (account.extra_gid,), "/var/empty-shim", account.name)


def test_a_uid_with_an_entry_is_looked_up_like_the_name(account):
    assert resolve_identity(str(account.uid)) == resolve_identity(account.name)


def test_an_explicit_group_replaces_the_gid_and_empties_the_groups(account):
    expected = Identity(account.uid, account.extra_gid, (), "/var/empty-shim", account.name)
    assert resolve_identity(f"{account.name}:{account.extra}") == expected
    assert resolve_identity(f"{account.uid}:{account.extra_gid}") == expected


def test_a_uid_without_an_entry_keeps_the_callers_gid_and_gets_no_groups(account):
    assert resolve_identity(str(account.free_id)) == Identity(
        account.free_id, os.getgid(), (), "/", None)
    assert resolve_identity(f"{account.free_id}:{account.free_id}") == Identity(
        account.free_id, account.free_id, (), "/", None)


def test_an_empty_user_is_the_callers_uid():
    root = pwd.getpwuid(os.getuid())
    assert resolve_identity("") == resolve_identity(root.pw_name)
    assert resolve_identity(":0").gid == 0 and resolve_identity(":0").uid == os.getuid()


def test_a_part_with_a_non_digit_is_a_name_never_an_id():
    for spec in ("0day", "0x1", " 0", "0 ", "+0", "٣"):
        with pytest.raises(ConfigError) as error:
            resolve_identity(spec)
        assert error.value.exit_code == 78
        assert error.value.message == f'--user {spec}: unknown user "{spec}"'
    with pytest.raises(ConfigError) as error:
        resolve_identity("0:0day")
    assert error.value.exit_code == 78
    assert error.value.message == '--user 0:0day: unknown group "0day"'


@pytest.mark.parametrize("kind, spec", [("uid", f"{MAX_ID + 1}"), ("gid", f"0:{MAX_ID + 1}"),
                                        ("uid", "99999999999999999999")])
def test_ids_beyond_max_id_are_a_usage_error(kind, spec):
    with pytest.raises(UsageError) as error:
        resolve_identity(spec)
    assert error.value.exit_code == 64
    assert error.value.message == (
        f"--user {spec}: {kind} {spec.rpartition(':')[2]} is out of range")


def test_max_id_itself_is_accepted():
    assert MAX_ID == 2**31 - 1
    identity = resolve_identity(f"{MAX_ID}:{MAX_ID}")
    assert (identity.uid, identity.gid) == (MAX_ID, MAX_ID)


def test_refuse_root_refuses_uid_0_only():
    with pytest.raises(ConfigError) as error:
        refuse_root(Identity(0, 1, (), "/", "root"))
    assert error.value.exit_code == 78
    assert error.value.message == ('--require-non-root: the command would run as root '
                                   '(user "root" (uid 0, gid 1, groups 1))')
    with pytest.raises(ConfigError) as error:
        refuse_root(Identity(0, 5, (7, 5, 3), "/", None))
    assert error.value.message.endswith("root (uid 0 (no passwd entry, gid 5, groups 3,5,7))")
    refuse_root(Identity(1, 0, (0,), "/", None))


def _mutmut_hits() -> set | None:
    """The functions mutmut saw called while it maps tests to functions, or None outside mutmut.

    mutmut runs a mutant's tests only if they called its function in the pytest process; calls
    in a forked child are lost with the child, so the child sends its own back."""
    state = sys.modules.get("mutmut.state")
    hits = getattr(state.state(), "_stats", None) if state is not None else None
    return hits if isinstance(hits, set) else None


def _in_child(become, action):
    """Run action() in a forked child that first became `become` (uids, gids as for
    setresuid/setresgid, or None to stay root); return what it returned or raised."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        try:
            if become is not None:
                uids, gids = become
                os.setgroups([])
                os.setresgid(*gids)
                os.setresuid(*uids)
            outcome = ("returned", action())
        except BaseException as error:  # noqa: BLE001 - carried back to the parent
            outcome = ("raised", (type(error).__name__, getattr(error, "message", str(error))))
        with os.fdopen(writer, "wb") as stream:
            pickle.dump((outcome, set(_mutmut_hits() or ())), stream)
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as stream:
        data = stream.read()
    os.waitpid(pid, 0)
    outcome, hits = pickle.loads(data)
    if _mutmut_hits() is not None:
        _mutmut_hits().update(hits)
    return outcome


def test_root_may_switch_to_anyone(account):
    ensure_may_switch(resolve_identity(account.name))
    ensure_may_switch(Identity(0, 0, (), "/root", "root"))


def test_a_non_root_caller_may_stay_itself_but_not_switch(account):
    me = ((account.uid,) * 3, (account.gid,) * 3)
    stay = Identity(account.uid, account.gid, (1, 2), "/", None)
    assert _in_child(me, lambda: ensure_may_switch(stay)) == ("returned", None)
    for other in (Identity(account.uid, 0, (), "/", None),
                  Identity(0, account.gid, (), "/", None)):
        kind, (name, message) = _in_child(me, lambda: ensure_may_switch(other))
        assert (kind, name) == ("raised", "PermissionDenied")
        assert message.endswith(f": only root can change users and shim runs as uid "
                                f"{account.uid} gid {account.gid} groups {account.gid}")


def test_setuid_and_setgid_are_refused(account):
    assert _in_child(None, check_not_setuid) == ("returned", None)
    for become, ids in [(((0, account.uid, 0), (0, 0, 0)), f"uid {account.uid} gid 0"),
                        (((0, 0, 0), (0, account.gid, 0)), f"uid 0 gid {account.gid}")]:
        kind, (name, message) = _in_child(become, check_not_setuid)
        assert (kind, name) == ("raised", "PermissionDenied")
        assert message.startswith(f"shim is running setuid/setgid (real uid 0 gid 0, "
                                  f"effective {ids}), ")
    kind, (name, message) = _in_child(((0, 0, 0), (account.gid, 0, 0)), check_not_setuid)
    assert message.startswith(f"shim is running setuid/setgid (real uid 0 gid {account.gid}, "
                              f"effective uid 0 gid 0), ")


def _ids_after_drop(identity):
    def act():
        drop_privileges(identity)
        return os.getresuid(), os.getresgid(), sorted(os.getgroups())
    return _in_child(None, act)


def test_the_drop_sets_exactly_the_identity_and_root_is_out_of_reach(account):
    identity = resolve_identity(account.name)
    assert _ids_after_drop(identity) == (
        "returned", ((account.uid,) * 3, (account.gid,) * 3, [account.extra_gid]))
    explicit = resolve_identity(f"{account.name}:0")
    assert _ids_after_drop(explicit) == ("returned", ((account.uid,) * 3, (0,) * 3, []))


def test_dropping_to_root_keeps_root():
    identity = Identity(0, 0, (), "/root", "root")
    assert _ids_after_drop(identity) == ("returned", ((0,) * 3, (0,) * 3, []))


def test_a_non_root_drop_to_itself_keeps_its_groups(account):
    me = ((account.uid,) * 3, (account.gid,) * 3)

    def act():
        drop_privileges(Identity(account.uid, account.gid, (), "/", None))
        return os.getresuid(), os.getresgid()
    assert _in_child(me, act) == ("returned", ((account.uid,) * 3, (account.gid,) * 3))


def test_a_refused_switch_is_permission_denied(account):
    me = ((account.uid,) * 3, (account.gid,) * 3)
    kind, (name, message) = _in_child(me, lambda: drop_privileges(
        Identity(0, 0, (), "/", None)))
    assert (kind, name) == ("raised", "PermissionDenied")
    assert "was refused" in message


def test_dropping_to_uid_1_is_not_mistaken_for_a_way_back():
    daemon = Identity(1, 1, (), "/", None)
    assert _ids_after_drop(daemon) == ("returned", ((1,) * 3, (1,) * 3, []))


def test_the_switch_is_verified_against_every_id_and_the_groups():
    # The test process is root with no supplementary groups beyond what getgroups says.
    groups = tuple(os.getgroups())
    _verify_switched(Identity(0, 0, groups, "/", None), checked_groups=True)
    _verify_switched(Identity(0, 0, groups + (4242,), "/", None), checked_groups=False)
    for wrong, checked in [(Identity(0, 4242, groups, "/", None), False),
                           (Identity(4242, 0, groups, "/", None), False),
                           (Identity(0, 0, groups + (4242,), "/", None), True)]:
        with pytest.raises(PermissionDenied, match="the process still has") as error:
            _verify_switched(wrong, checked_groups=checked)
        assert error.value.exit_code == 77


def test_a_process_that_could_set_uid_0_again_is_refused():
    # Still root in the child, so setuid(0) succeeds: exactly what must not happen after a drop.
    # A child, because a mutant of the check may call setuid with another id.
    kind, (name, message) = _in_child(None, lambda: _ensure_cannot_regain_root(
        Identity(1, 1, (), "/", None)))
    assert (kind, name) == ("raised", "PermissionDenied")
    assert "could set uid 0 again" in message
    assert _in_child(None, lambda: _ensure_cannot_regain_root(
        Identity(0, 0, (), "/", None))) == ("returned", None)


def test_a_process_that_could_set_gid_0_again_is_refused(account):
    # uid switched, gids left at 0: setuid(0) fails, setgid(0) must be tried and succeed.
    kept_gid = ((account.uid,) * 3, (0, 0, 0))
    kind, (name, message) = _in_child(kept_gid, lambda: _ensure_cannot_regain_root(
        Identity(account.uid, account.gid, (), "/", None)))
    assert (kind, name) == ("raised", "PermissionDenied")
    assert "could set gid 0 again" in message
    # gid 0 was the target: only the uid is tried.
    assert _in_child(kept_gid, lambda: _ensure_cannot_regain_root(
        Identity(account.uid, 0, (), "/", None))) == ("returned", None)


def _no_new_privs() -> str:
    with open("/proc/self/status") as status:
        return next(line.split()[1] for line in status if line.startswith("NoNewPrivs:"))


def test_no_new_privs_is_set_for_the_process_and_stays():
    # In a child: the flag can never be cleared, and the test process must keep its own.
    assert _in_child(None, _no_new_privs) == ("returned", "0")
    assert _in_child(None, lambda: (set_no_new_privs(), _no_new_privs())) == (
        "returned", (None, "1"))
