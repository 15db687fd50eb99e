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
if "--init" in sys.argv[2:]:
    # Under --init the supervisor replaces itself with the lean loop (shim/delivery/initloop.py) once the
    # program runs; execve makes a process dumpable, and the loop says non-dumpable again first
    # thing. Attack the supervisor it settles into (its moment in between holds no secret:
    # tests/integration/test_supervise.py reads its environment and memory then).
    import time
    for _ in range(500):
        try:
            with open(f"/proc/{parent}/cmdline", "rb") as stream:
                settled = b"initloop" in stream.read() and os.stat(f"/proc/{parent}/environ").st_uid == 0
        except OSError:
            settled = False
        if settled:
            break
        time.sleep(0.01)
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
