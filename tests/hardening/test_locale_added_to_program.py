"""Issue 22 item 15: the program gets exactly the starting environment, whoever starts shim.

Started as root or as uid 65534 with no locale variable at all, CPython coerces the C locale
and adds LC_CTYPE=C.UTF-8 to its own environment (PEP 538). shim reads the kernel's copy,
/proc/self/environ, instead; but a non-root shim could not read it any more once it had made
itself non-dumpable, fell back to Python's copy, and the program got an LC_CTYPE it was never
given.
"""

from __future__ import annotations

import pytest

from tests.hardening.conftest import as_nobody


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_the_program_gets_no_locale_it_was_not_given(run_shim, nobody_python, shared_dir, who):
    python, extra = nobody_python
    dump = shared_dir / f"env-{who}.json"
    env = {"PATH": "/usr/bin:/bin", "KEEP": "me", **extra}
    # The program reads its own kernel block: as a Python program, its os.environ would show
    # the LC_CTYPE its own interpreter adds.
    result = run_shim(["exec", "--", "/usr/bin/python3", "-I", "-S", "-c",
                       f"open({str(dump)!r}, 'wb').write(open('/proc/self/environ', 'rb').read())"],
                      env, python=python, base_env=False, cwd=shared_dir,
                      preexec_fn=as_nobody() if who == "nobody" else None)
    assert result.returncode == 0, result.stderr
    received = dict(item.split("=", 1) for item in dump.read_text().split("\0") if item)
    assert received == env
