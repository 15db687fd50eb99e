"""The child's environment: resolved values in, shim's own and Vault's variables out."""

from __future__ import annotations

import os
from collections.abc import Iterable

from shim.tools import environ_block
from shim.pipeline.plan import SHIM_PREFIX, Plan
from shim.pipeline.resolve import Resolution

# Vault credentials are for the shim, not the program (bank-vaults does the same), under
# OpenBao's BAO_* names too; so is the age key that opens sops files (SOPS_AGE_KEY,
# SOPS_AGE_KEY_FILE), and the token of each store that has one token for everything it holds
# (docs/doppler.md).
SCRUBBED_PREFIXES = (SHIM_PREFIX, "VAULT_", "BAO_", "SOPS_AGE_KEY",
                     "DOPPLER_TOKEN", "INFISICAL_TOKEN", "INFISICAL_UNIVERSAL_AUTH_",
                     "OP_CONNECT_TOKEN", "BWS_ACCESS_TOKEN")


def child_environment(plan: Plan, resolution: Resolution, *, keep_file_vars: bool = False,
                      passthrough: Iterable[str] = ()) -> dict[str, str]:
    env = dict(plan.environ)
    for name, entry in plan.entries.items():
        result = resolution.variables.get(name)
        if result is None:
            continue
        if result.value is None:
            env.pop(name, None)
        else:
            env[name] = result.value
        if not keep_file_vars:
            for removed in entry.remove:
                env.pop(removed, None)
    return without_credentials(env, passthrough)


def without_credentials(environ: dict[str, str], passthrough: Iterable[str] = ()) -> dict[str, str]:
    """`environ` without shim's settings and the stores' credentials (SCRUBBED_PREFIXES), except
    the names in `passthrough`: what any program shim starts may see of them (the program of
    exec/run, render's --on-change run:CMD)."""
    kept = set(passthrough)
    return {name: value for name, value in environ.items()
            if not name.startswith(SCRUBBED_PREFIXES) or name in kept}


# Set by the bundle's entry script (images/shim/entry.py): its bootloader re-executes itself with
# LD_LIBRARY_PATH and _PYI_* added, and neither shim nor the program may see those. Looked up at
# each call, so it holds whatever module imported starting_environment first.
restore_as_started = None


def starting_environment(block_path: str = environ_block.PROC_PATH) -> dict[str, str]:
    """The environment exactly as the shim was started with it.

    CPython may add variables of its own at start-up (LC_CTYPE=C.UTF-8 when it
    coerces the C locale, PEP 538); the program must not inherit them. The
    kernel keeps the original block in /proc/self/environ (block_path lets the
    unit tests hand it a block of their own). The entry points read it before making the
    process non-dumpable (shim.tools.environ_block), after which a non-root shim may not.
    """
    block = environ_block.captured() if block_path == environ_block.PROC_PATH else None
    if block is None:
        try:
            with open(block_path, "rb") as stream:
                block = stream.read()
        except OSError:
            return dict(os.environ)
    environ = {}
    for item in block.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            environ[os.fsdecode(name)] = os.fsdecode(value)
    return restore_as_started(environ) if restore_as_started else environ
