"""Issue 12, "Also": the NUL-byte error suggested `shim render --dir`, which refuses NUL too.

The hint must name something that works; the test follows it: render --dir refuses the
value as well, and SHIM_SKIP with the program reading the file itself delivers it intact.
"""

from __future__ import annotations

import os


def test_the_nul_hint_suggests_what_works(run_shim, canaries, tmp_path, probe):
    secret = tmp_path / "blob"
    secret.write_bytes(canaries.new("a").encode() + b"\0" + canaries.new("b").encode())
    out = tmp_path / "out"
    out.mkdir()
    rendered = run_shim(["render", "--dir", str(out)], {"BLOB_FILE": str(secret),
                                                          "SHIM_FILE_VARS": "BLOB"})
    assert rendered.returncode == 65 and os.listdir(out) == []  # render --dir cannot do it either
    line = rendered.stderr.strip()
    assert "render --dir" not in line
    assert line.endswith("; store it base64-encoded, or deliver it with shim exec --as-files DIR, "
                         "or mount it as a file and give the program "
                         "the file's path in a variable shim does not resolve (a NAME_FILE the "
                         "program reads, listed in SHIM_SKIP)")
    # Following the hint: shim leaves BLOB_FILE alone and the program reads the file.
    result = run_shim(["exec", "--", *probe.argv], {"BLOB_FILE": str(secret), "SHIM_FILE_VARS": "BLOB",
                                                     "SHIM_SKIP": "BLOB_FILE"})
    assert result.returncode == 0, result.stderr
    assert probe.read()["env"]["BLOB_FILE"] == str(secret)
