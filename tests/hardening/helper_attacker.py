"""The program under a non-root `shim exec --watch`: for SECONDS it polls every process of its
own uid (but itself) for VAULT_TOKEN in /proc/PID/environ and in the stack it can read through
/proc/PID/mem, as a hostile program sharing shim's uid would. Run with python3 -S.

Writes a JSON report to argv[1]: how many other processes of its uid it saw, how many it could
read, and whether any held the credential. Never prints or writes the credential itself.
"""
import json
import os
import sys
import time

report_path, seconds = sys.argv[1], float(sys.argv[2])
me, uid = os.getpid(), os.getuid()
NEEDLE = b"VAULT_TOKEN="
seen, readable, found = set(), set(), []


def stack_holds_needle(pid):
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[stack]"):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                break
        else:
            return False
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(start)
        return NEEDLE in mem.read(end - start)


def attack(pid):
    seen.add(pid)
    for attempt in ("environ", "mem"):
        try:
            if attempt == "environ":
                with open(f"/proc/{pid}/environ", "rb") as stream:
                    hit = NEEDLE in stream.read()
            else:
                hit = stack_holds_needle(pid)
        except OSError:
            continue
        readable.add(pid)
        if hit and [pid, attempt] not in found:
            found.append([pid, attempt])


def children_of_the_supervisor():
    """The supervisor's children (helpers are started by its threads): the fast way to catch a
    helper in its first milliseconds."""
    children = []
    try:
        for task in os.listdir(f"/proc/{supervisor}/task"):
            with open(f"/proc/{supervisor}/task/{task}/children") as stream:
                children += [int(pid) for pid in stream.read().split()]
    except OSError:
        pass
    return [pid for pid in children if pid != me]


def same_uid_processes():
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            # /proc/PID/status says the real uid (a non-dumpable process's /proc is root's).
            with open(f"/proc/{entry}/status") as stream:
                if int(stream.read().split("Uid:")[1].split()[0]) == uid:
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


supervisor = os.getppid()
deadline = time.monotonic() + seconds
sweeps = 0
while time.monotonic() < deadline:
    for pid in children_of_the_supervisor():
        attack(pid)
    sweeps += 1
    if sweeps % 200 == 0:
        for pid in same_uid_processes():
            attack(pid)
with open(report_path, "w") as stream:
    json.dump({"seen": len(seen), "readable": len(readable), "found": found}, stream)
