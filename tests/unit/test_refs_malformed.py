"""refs.py in-process: a malformed reference is named by its spelling, never by its text."""

from __future__ import annotations

import pytest

from shim.tools.errors import UsageError
from shim.syntax.refs import parse_import_reference, parse_reference


def _message(text: str, parse=parse_reference) -> str:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert caught.value.exit_code == 64
    return caught.value.message


@pytest.mark.parametrize("text, expected", [
    ("ref+vault://", "malformed ref+vault reference: the path is empty"),
    ("ref+awssecrets://d b?version_stage=A&version_id=B",
     "malformed ref+awssecrets reference: version_stage and version_id are exclusive"),
    ("ref+awssecrets://db://x?version_stage=A&version_id=B",
     "malformed ref+awssecrets reference: version_stage and version_id are exclusive"),
    ("file:", "malformed file: reference: the file path is empty"),
    ("arn:aws:secretsmanager:us-east-1:123:secret:db:key:AWSCURRENT:abc",
     "malformed arn:aws:secretsmanager: reference: version stage and version id are exclusive"),
])
def test_a_malformed_reference_is_named_by_its_spelling(text, expected):
    assert _message(text) == expected


def test_an_unknown_scheme_is_never_quoted(canaries):
    scheme = canaries.new().replace("-", "")  # what [a-z0-9]+ takes as a scheme
    assert _message(f"ref+{scheme}://x") == (
        "malformed ref+ reference: unknown provider after ref+")
    for text in (f"ref+{scheme}", f"ref+vault:{scheme}", f"ref+ {scheme}://x"):
        message = _message(text)
        assert message == "malformed ref+ reference: a ref+ reference needs a scheme and ://"
        assert not canaries.leaked(message)


def test_text_of_no_spelling_is_reference_like_and_never_quoted(canaries):
    secret = canaries.new()
    assert _message(secret) == "malformed reference-like reference: not a reference"
    assert _message(f"REF+{secret}") == "malformed reference-like reference: not a reference"
    assert _message(secret, parse_import_reference) == (
        "malformed reference-like reference: not a reference")
