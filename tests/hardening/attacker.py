"""The program under a non-root shim, trying to get at its supervisor (run with python3 -S).

Writes what it saw to argv[1] as JSON, then sends its parent SIGABRT.
"""
import json
import os
import signal
import sys


def attempt(path):
    try:
        with open(path, "rb") as stream:
            stream.read(1)
        return "read"
    except OSError as error:
        return type(error).__name__


def core_soft_limit(pid):
    with open(f"/proc/{pid}/limits") as stream:
        for line in stream:
            if line.startswith("Max core file size"):
                return line.split()[4]


parent = os.getppid()
seen = {
    "uid": os.getuid(),
    "parent_uid": int(open(f"/proc/{parent}/status").read().split("Uid:")[1].split()[0]),
    "environ": attempt(f"/proc/{parent}/environ"),
    "mem": attempt(f"/proc/{parent}/mem"),
    "parent_proc_owner": os.stat(f"/proc/{parent}/environ").st_uid,
    "parent_core_soft_limit": core_soft_limit(parent),
    "own_core_soft_limit": core_soft_limit("self"),
}
with open(sys.argv[1], "w") as stream:
    json.dump(seen, stream)
os.kill(parent, signal.SIGABRT)
