"""The loopback guard: no test sends a packet anywhere but this machine's loopback.

An SDK without credentials probes its cloud's metadata address (169.254.169.254,
metadata.google.internal); a reference that names a real host would resolve it through the
network's DNS server. Either would be a test reaching out of the machine. This module installs a
CPython audit hook (PEP 578) that refuses, before anything is sent:

- `socket.connect` / `connect_ex` / `sendto` / `sendmsg` to an internet address that is not
  loopback (127.0.0.0/8, ::1, ::ffff:127.x) and not the name `localhost`;
- `socket.getaddrinfo` / `gethostbyname` / `gethostbyname_ex` of a host name other than
  `localhost` (the lookup itself goes to the DNS server), and `gethostbyaddr` of an address
  that is not loopback (a PTR query). Numeric addresses are looked up without traffic, so they
  pass here and are judged at connect time.

Unix sockets, netlink and every other family pass. A refusal raises `LoopbackOnly` (an
`OSError`, which clients treat like any network failure) and appends one line to the report file
named by SHIM_TEST_LOOPBACK_GUARD, where tests/conftest.py finds it after the test and fails the
test, even when the code under test swallowed the error.

One answer needs no network: a name under `.invalid` (RFC 2606: reserved, it never resolves) is
answered here as every resolver answers it, `socket.gaierror` EAI_NONAME, and not reported. The
DNS-failure tests name such hosts; they get the real failure without a packet leaving.

It runs in two places: the pytest process (tests/conftest.py calls `install()`), and every
Python process started with the venv's interpreter while SHIM_TEST_LOOPBACK_GUARD is set (shim
under run_shim/start_shim, the doubles run as servers): a `.pth` file that tests/conftest.py
writes into the venv's site-packages runs this file at interpreter start-up when the variable is
set, and does nothing otherwise. The variable starts with SHIM_, so shim scrubs it from the
environment of the program it execs; the program sees exactly what the test gave it.

Everything the hook needs is imported here, at start-up: shim drops root before it reads some
stores, and a module imported after the drop may be unreadable (tests/integration/test_imports.py).
"""

from __future__ import annotations

import os
import sys

import _socket   # the C module: `socket` would build its enums (milliseconds at every start-up)

REPORT_VARIABLE = "SHIM_TEST_LOOPBACK_GUARD"
LOCAL_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
_INTERNET = (_socket.AF_INET, _socket.AF_INET6)
_CONNECTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_LOOKUPS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                      "socket.gethostbyaddr"})
_WATCHED = _CONNECTS | _LOOKUPS


class LoopbackOnly(ConnectionRefusedError):
    """A test tried to reach beyond loopback; nothing was sent."""


def _packed(host: str) -> bytes | None:
    """The address bytes of a numeric IPv4 or IPv6 host (a zone suffix ignored), else None."""
    host = host.split("%", 1)[0]
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            return _socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
    return None


_V4_MAPPED = bytes(10) + b"\xff\xff"


def is_loopback(host) -> bool:
    """Whether connecting to `host` stays on this machine's loopback."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in LOCAL_NAMES:
        return True
    packed = _packed(host)
    if packed is None:
        return False
    if len(packed) == 16 and packed.startswith(_V4_MAPPED):
        packed = packed[12:]
    return packed[0] == 127 if len(packed) == 4 else packed == bytes(15) + b"\x01"


def lookup_stays_local(host) -> bool:
    """Whether resolving `host` needs no DNS server: no host, localhost, or a numeric address."""
    if host in (None, "", b""):
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return isinstance(host, str) and (host.lower() in LOCAL_NAMES or _packed(host) is not None)


def violation(event: str, args: tuple) -> str | None:
    """What is wrong with this event, or None when it stays on loopback."""
    if event in _CONNECTS:
        # (socket, address); a connected socket's sendmsg names no address.
        family = getattr(args[0], "family", None)
        address = args[1] if len(args) > 1 else None
        if family not in _INTERNET or not isinstance(address, tuple) or not address:
            return None
        if is_loopback(address[0]):
            return None
        return f"{event} to {address[0]!r} port {address[1] if len(address) > 1 else '?'}"
    if event == "socket.gethostbyaddr" and args and not is_loopback(args[0]):
        return f"{event} of {args[0]!r} (a reverse DNS query)"
    if event in _LOOKUPS and args and not lookup_stays_local(args[0]):
        return f"{event} of {args[0]!r} (a DNS query)"
    return None


def _report(line: str) -> None:
    path = _report_path or os.environ.get(REPORT_VARIABLE)
    if not path:
        return
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError:
        return
    try:
        os.write(descriptor, f"{line}\n".encode("utf-8", "replace"))
    finally:
        os.close(descriptor)


def never_resolves(host) -> bool:
    """A name in the reserved `.invalid` domain (RFC 2606)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return isinstance(host, str) and host.lower().rstrip(".").endswith(".invalid")


def _hook(event: str, args: tuple) -> None:
    if event not in _WATCHED:
        return
    if event in _LOOKUPS and args and never_resolves(args[0]):
        raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
    problem = violation(event, args)
    if problem is not None:
        _report(f"pid {os.getpid()} ({os.path.basename(sys.argv[0] or 'python')}): {problem}")
        raise LoopbackOnly(f"tests stay on loopback: refused {problem}")


_installed = False
_report_path: str | None = None


def install(report: str | None = None) -> None:
    """Add the audit hook to this process (once; audit hooks cannot be removed); reports go to
    `report`, else to the file SHIM_TEST_LOOPBACK_GUARD names."""
    global _installed, _report_path
    _report_path = report or _report_path
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


def pth_line(guard_file: str) -> str:
    """The `.pth` line that loads this file at start-up when the report variable is set.

    site.py runs a .pth line that starts with `import`. The module is imported (its bytecode is
    cached) from its directory, which is taken off sys.path again; a process that cannot read the
    tree (a uid that may not enter it) starts without the guard rather than with a traceback.
    """
    directory = os.path.dirname(guard_file)
    return (f"import os, sys; {REPORT_VARIABLE!r} in os.environ and os.access({guard_file!r}, "
            f"os.R_OK) and (sys.path.insert(0, {directory!r}), __import__('loopback_guard')"
            f".install(), sys.path.remove({directory!r}))\n")

