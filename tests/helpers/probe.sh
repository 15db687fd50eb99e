#!/bin/sh
# Record the signal state this process was started with (sh changes none of
# it), then hand over to probe.py. Python itself ignores SIGPIPE and SIGXFSZ
# at start-up, so the Python probe cannot observe them about itself.
grep -E '^Sig(Ign|Blk):' /proc/$$/status > "$1.signals"
exec /usr/bin/python3 -S "$(dirname "$0")/probe.py" "$@"
