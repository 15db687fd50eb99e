"""Run inside a bundle image by bench/size.py: start-up of /opt/shim/shim beside the image's own
`python3 -c pass`, interleaved. Prints the samples (ms) as JSON.

    docker run --rm -v $PWD/bench:/bench:ro --entrypoint python3 IMAGE /bench/bundle_inside.py

The bundle must run at /opt/shim (its ELF interpreter is an absolute path), which is why this is
measured in a container of the bundle image, not on the host. Docker's own start-up is outside
the figures. The image needs python3 (the bundle image on shim-base:bookworm has Debian's).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import interleaved, secrets_environment

SHIM = "/opt/shim/shim"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        env = secrets_environment(Path(directory))
        commands = {
            "python3 -c pass": ["/usr/bin/python3", "-c", "pass"],
            "python3 -S -c pass": ["/usr/bin/python3", "-S", "-c", "pass"],
            "bundle: shim exec": [SHIM, "exec", "--secrets-dir", directory, "--", "/bin/true"],
            "bundle: shim --version": [SHIM, "--version"],
        }
        print(json.dumps(interleaved(commands, env, args.runs)))


if __name__ == "__main__":
    main()
