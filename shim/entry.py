"""The `shim` console script: `exec`'s usual command line without click, the rest with it.

shim.commands.fastpath reads the common `shim exec` line from the option table; anything it does not
read (another command, --help, a usage error, anything ambiguous) goes to click in shim.commands.cli,
imported only then. Both paths report failures the same way (shim.commands.failures).

Imports follow one rule (docs/performance.md, "Lazy imports: the rule"): at the top of the
module, except for the modules tests/integration/test_imports.py keeps off this path, which are
imported where they are needed and tagged `# lazy: <why>`. This module has the one exception:
protect() runs before shim imports the rest of itself, so those imports sit after it, tagged
`# lazy: after protect()`.
"""

from __future__ import annotations

import os
import sys

from shim.tools import environ_block
from shim.tools.dumpable import protect


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    environ_block.capture()  # before protect(): a non-root shim cannot read it afterwards
    protect()  # first: the environment may already hold store credentials
    from shim.commands.fastpath import parse_exec  # lazy: after protect()
    parsed = parse_exec(args, os.environ)
    if parsed is None:
        from shim.commands.cli import main as click_main  # lazy: click only when the fast path hands over
        click_main(args)
        return
    raw, command = parsed
    from shim.commands.failures import reported_failures  # lazy: after protect()
    with reported_failures(args):
        from shim.commands.execute import run_exec  # lazy: after protect()
        from shim.pipeline.options import parse_options  # lazy: after protect()
        from shim.pipeline.run import Pipeline  # lazy: after protect()
        run_exec(Pipeline(parse_options("exec", raw)), command)
