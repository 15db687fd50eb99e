"""The child the tests exec through shim: it records what it received.

Started through probe.sh; runs on the system python so any uid can execute it.
Writes JSON to argv[1]; prints nothing, so shim's own output stays checkable.
"""
import json
import os
import sys


def status_fields():
    fields = {}
    with open("/proc/self/status") as stream:
        for line in stream:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def starting_environment():
    # os.environ may hold what CPython added at start-up (LC_CTYPE, PEP 538).
    with open("/proc/self/environ", "rb") as stream:
        items = stream.read().split(b"\0")
    pairs = (item.partition(b"=") for item in items if item)
    return {os.fsdecode(k): os.fsdecode(v) for k, _, v in pairs}


def starting_signals(out):
    fields = {}
    with open(out + ".signals") as stream:
        for line in stream:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def main():
    out = sys.argv[1]
    status = status_fields()
    signals = starting_signals(out)
    record = {
        "env": starting_environment(),
        "argv": sys.argv,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "uid": os.getuid(), "euid": os.geteuid(),
        "gid": os.getgid(), "egid": os.getegid(),
        "groups": sorted(os.getgroups()),
        "sig_ign": signals.get("SigIgn"), "sig_blk": signals.get("SigBlk"),
        "no_new_privs": status.get("NoNewPrivs"),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "cwd": os.getcwd(),
    }
    with open(out, "w") as stream:
        json.dump(record, stream)
    code = os.environ.get("PROBE_EXIT")
    sys.exit(int(code) if code else 0)


main()
