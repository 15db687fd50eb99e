"""USER[:GROUP] → the identity to become, and the drop itself, with gosu's semantics.

gosu resolves the spec with runc's GetExecUser (libcontainer/user, now moby/sys/user) and then
calls setgroups(Sgids), setgid(Gid), setuid(Uid). We reproduce what that code does, row for row
of gosu's test matrix, so an image can swap `gosu app cmd` for `shim exec --user app -- cmd`:

- A part made only of ASCII digits is an id and is never looked up as a name ("0day" is a name).
- An empty USER means the caller's uid, looked up in passwd like any other uid.
- A uid with a passwd entry takes that entry's gid and home, and in the implicit form the
  supplementary groups are every /etc/group entry listing the name as a member (runc does not add
  the primary gid to that list; the process is in it anyway as its gid).
- A uid without a passwd entry keeps the caller's gid, gets no supplementary groups, HOME=/.
- An explicit GROUP replaces the gid and empties the supplementary groups: the process ends up
  in that one group only.

Names are looked up through the stdlib pwd/grp modules, i.e. NSS, which reads /etc/passwd and
/etc/group in a container image.

The commands that start a program (exec, run) or check that they could (check) call
target_identity() before anything is resolved, warn_if_root() and log_dropped() around the drop.
"""

from __future__ import annotations

import grp
import os
import pwd
import re

from shim.tools import dumpable
from shim.tools.errors import ConfigError, PermissionDenied, UsageError
from shim.tools.records import record

# runc's maxID: larger ids do not fit 32-bit systems, and (uid_t)-1 means "leave unchanged".
MAX_ID = 2**31 - 1

_ID = r"[0-9]+"  # compiled by re on first use: only runs with --user need it
_PR_SET_NO_NEW_PRIVS = 38


@record
class Identity:
    """Who the command runs as: the exact arguments of setgroups, setgid and setuid, and HOME."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str | None


def resolve_identity(spec: str) -> Identity:
    """The identity USER[:GROUP] names; unknown names are a ConfigError, huge ids a UsageError."""
    user_part, _, group_part = spec.partition(":")
    uid, entry = _user(spec, user_part)
    if entry is not None:
        gid, home, name = entry.pw_gid, entry.pw_dir or "/", entry.pw_name
    else:
        gid, home, name = os.getgid(), "/", None
    if group_part:
        return Identity(uid, _group(spec, group_part), (), home, name)
    groups = _memberships(name) if name is not None else ()
    return Identity(uid, gid, groups, home, name)


def check_not_setuid() -> None:
    """Refuse to run setuid/setgid: any local user could then run any command as anyone."""
    real, effective = (os.getuid(), os.getgid()), (os.geteuid(), os.getegid())
    if real != effective:
        raise PermissionDenied(
            f"shim is running setuid/setgid (real uid {real[0]} gid {real[1]}, effective "
            f"uid {effective[0]} gid {effective[1]}), which would let any user run any "
            f"command as root",
            hint="remove the bits (chmod u-s,g-s) and start the container as root instead")


def ensure_may_switch(identity: Identity) -> None:
    """Only root may change users; anyone may ask to stay who they are.

    "Who they are" is the uid and gid. A non-root caller keeps the supplementary
    groups it was started with (it cannot shed them): Kubernetes adds fsGroup and
    supplementalGroups to a runAsUser pod, and an image whose ENTRYPOINT says
    `--user app` must still start there.
    """
    if os.geteuid() == 0:
        return
    if (identity.uid, identity.gid) != (os.getuid(), os.getgid()):
        current = _group_set(os.getegid(), os.getgroups())
        raise PermissionDenied(
            f"--user: cannot switch to {_describe(identity)}: only root can change users and "
            f"shim runs as uid {os.getuid()} gid {os.getgid()} groups "
            f"{_format_ids(current)}",
            hint="start the container as root and let shim drop privileges, or remove --user")


def refuse_root(identity: Identity) -> None:
    """--require-non-root: the command must not run as uid 0."""
    if identity.uid == 0:
        raise ConfigError(
            f"--require-non-root: the command would run as root ({_describe(identity)})",
            hint="set --user to a non-root user or uid")


def drop_privileges(identity: Identity) -> None:
    """setgroups → setgid → setuid (the uid last: it takes away the right to the other two)."""
    # Root always sets the exact list; a non-root caller cannot call setgroups at all
    # and keeps its own (ensure_may_switch allowed only its own uid and gid).
    set_groups = os.geteuid() == 0
    try:
        if set_groups:
            os.setgroups(list(identity.groups))
        os.setresgid(identity.gid, identity.gid, identity.gid)
        os.setresuid(identity.uid, identity.uid, identity.uid)
    except OSError as error:
        raise PermissionDenied(
            f"--user: switching to {_describe(identity)} was refused: {error.strerror}",
            hint="shim needs root with CAP_SETUID, CAP_SETGID and a uid/gid mapping "
                 "that includes the target ids") from None
    _verify_switched(identity, checked_groups=set_groups)
    _ensure_cannot_regain_root(identity)
    # A uid change sets dumpability to fs.suid_dumpable, which may be 1 or 2: say 0 again.
    dumpable.reassert()


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: setuid/setgid bits and file capabilities stop working for CMD."""
    import ctypes  # lazy: only for --no-new-privs; loaded before the drop

    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0),
                        ctypes.c_ulong(0), ctypes.c_ulong(0))
    if result != 0:
        raise PermissionDenied(
            f"--no-new-privs: prctl(PR_SET_NO_NEW_PRIVS) failed: "
            f"{os.strerror(ctypes.get_errno())}",
            hint="it needs Linux 3.5 or newer; drop --no-new-privs on older kernels")


def _user(spec: str, user_part: str) -> tuple[int, pwd.struct_passwd | None]:
    """The uid and its passwd entry, if any; a name without an entry is an error."""
    if not user_part:
        uid = os.getuid()
    elif re.fullmatch(_ID, user_part):
        uid = _in_range(spec, user_part, "uid")
    else:
        try:
            entry = pwd.getpwnam(user_part)
        except KeyError:
            raise ConfigError(
                f"--user {spec}: unknown user \"{user_part}\"",
                hint="add it to /etc/passwd in the image or use a numeric uid") from None
        return entry.pw_uid, entry
    try:
        return uid, pwd.getpwuid(uid)
    except KeyError:
        return uid, None


def _group(spec: str, group_part: str) -> int:
    if re.fullmatch(_ID, group_part):
        return _in_range(spec, group_part, "gid")
    try:
        return grp.getgrnam(group_part).gr_gid
    except KeyError:
        raise ConfigError(
            f"--user {spec}: unknown group \"{group_part}\"",
            hint="add it to /etc/group in the image or use a numeric gid") from None


def _in_range(spec: str, digits: str, kind: str) -> int:
    number = int(digits)
    if number > MAX_ID:
        raise UsageError(f"--user {spec}: {kind} {digits} is out of range",
                         hint=f"uids and gids go from 0 to {MAX_ID}")
    return number


def _memberships(name: str) -> tuple[int, ...]:
    """Every group listing the name as a member, in /etc/group order, each gid once."""
    return tuple(dict.fromkeys(group.gr_gid for group in grp.getgrall()
                               if name in group.gr_mem))


def _group_set(gid: int, groups) -> frozenset[int]:
    """The groups a process is in: access checks do not care whether the gid is also listed."""
    return frozenset(groups) | {gid}


def _verify_switched(identity: Identity, *, checked_groups: bool) -> None:
    uid, gid = identity.uid, identity.gid
    switched = os.getresuid() == (uid, uid, uid) and os.getresgid() == (gid, gid, gid)
    if checked_groups:
        switched = switched and set(os.getgroups()) == set(identity.groups)
    if not switched:
        raise PermissionDenied(
            f"--user: after switching to {_describe(identity)} the process still has "
            f"uids {os.getresuid()} gids {os.getresgid()} groups {_format_ids(os.getgroups())}",
            hint="this kernel or seccomp profile ignored a setgroups/setgid/setuid call")


def _ensure_cannot_regain_root(identity: Identity) -> None:
    """Like su-exec and setpriv users do by hand: prove setuid(0)/setgid(0) now fail."""
    if identity.uid == 0:
        return
    attempts = [("uid", os.setuid)]
    if identity.gid != 0:
        attempts.append(("gid", os.setgid))
    for kind, set_id in attempts:
        try:
            set_id(0)
        except OSError:
            continue
        raise PermissionDenied(
            f"--user: after switching to {_describe(identity)} the process could set {kind} 0 "
            f"again, so the command would have a way back to root",
            hint="something keeps capabilities across setuid (securebits "
                 "SECBIT_NO_SETUID_FIXUP or ambient capabilities); remove it")


def _describe(identity: Identity) -> str:
    if identity.name is None:
        who = f"uid {identity.uid} (no passwd entry"
    else:
        who = f"user \"{identity.name}\" (uid {identity.uid}"
    groups = _format_ids(_group_set(identity.gid, identity.groups))
    return f"{who}, gid {identity.gid}, groups {groups})"


def _format_ids(ids) -> str:
    return ",".join(str(number) for number in sorted(set(ids))) or "none"


# --- the steps a command takes (exec, check, run), with the run's options and log ------------

def target_identity(options, log) -> Identity | None:
    """The identity CMD will run as, checked before anything is resolved."""
    check_not_setuid()
    identity = None
    if options.user is not None:   # '' is the caller's own uid
        identity = resolve_identity(options.user)
        ensure_may_switch(identity)
    if options.require_non_root:
        if identity is not None:
            refuse_root(identity)
            if identity.gid == 0:
                log.warning(f"--user {options.user}: the program runs with gid 0 "
                            f"(no group given and no passwd entry names another)",
                            event="privileges.gid_root")
        elif os.getuid() == 0:
            raise ConfigError("--require-non-root: the command would run as root (no --user given)",
                              hint="set --user to a non-root user or uid")
    return identity


def warn_if_root(options, log, identity) -> None:
    """exec without --user, started as root: the program keeps root; say so once."""
    if identity is None and os.getuid() == 0 and not options.allow_root:
        log.warning("running the program as root: no --user given "
                    "(set --user, or --allow-root to silence this)", event="privileges.root")


def log_dropped(log, identity) -> None:
    log.event("privileges.dropped", "info", user=identity.name, uid=identity.uid,
              gid=identity.gid, groups=list(identity.groups))
