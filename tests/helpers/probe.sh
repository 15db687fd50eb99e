#!/bin/sh
# Record the signal state this process was started with, then hand over to
# probe.py. Python itself ignores SIGPIPE and SIGXFSZ at start-up, so the
# Python probe cannot observe them about itself. Only builtins here: a forked
# grep would race sh, which blocks every signal around its own fork().
while read -r line; do
  case $line in SigIgn:*|SigBlk:*) echo "$line" ;; esac
done < /proc/self/status > "$1.signals"
exec /usr/bin/python3 -S "$(dirname "$0")/probe.py" "$@"
