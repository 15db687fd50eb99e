"""Secret Manager's three syntaxes, its canonical form, and the CRC32C it checks payloads with."""

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from shim.tools.errors import UsageError
from shim.providers.gcp import crc32c, endpoint_for, parse_time
from shim.syntax.refs import looks_like_reference, parse_reference

CANONICAL = [
    ("sm://my-project/db-password", "ref+gcpsecrets://my-project/db-password"),
    ("sm://my-project/db-password#3", "ref+gcpsecrets://my-project/db-password?version=3"),
    ("sm://my-project/db-password#latest", "ref+gcpsecrets://my-project/db-password"),
    ("sm://123456789012/db#prod", "ref+gcpsecrets://123456789012/db?version=prod"),
    ("ref+gcpsecrets://my-project/db", "ref+gcpsecrets://my-project/db"),
    ("ref+gcpsecrets://my-project/db?version=2#/password", "ref+gcpsecrets://my-project/db?version=2#/password"),
    ("ref+gcpsecrets://my-project/db#password", "ref+gcpsecrets://my-project/db#/password"),
    ("ref+gcpsecrets://my-project/db?location=europe-west1&optional=true",
     "ref+gcpsecrets://my-project/db?location=europe-west1&optional=true"),
    ("gcp:secretmanager:projects/my-project/secrets/db", "ref+gcpsecrets://my-project/db"),
    ("gcp:secretmanager:projects/my-project/secrets/db/versions/7",
     "ref+gcpsecrets://my-project/db?version=7"),
    ("gcp:secretmanager:projects/my-project/locations/us-east4/secrets/db/versions/latest",
     "ref+gcpsecrets://my-project/db?location=us-east4"),
    ("sm://example.com:my-project/db", "ref+gcpsecrets://example.com:my-project/db"),
]


@pytest.mark.parametrize("text,canonical", CANONICAL)
def test_every_syntax_parses_to_its_canonical_form(text, canonical):
    assert looks_like_reference(text)
    reference = parse_reference(text)
    assert reference.provider == "gcpsecrets"
    assert reference.canonical == canonical
    assert parse_reference(canonical).fetch_key == reference.fetch_key


def test_spellings_of_one_version_share_one_fetch():
    keys = {parse_reference(text).fetch_key for text in (
        "sm://p1/db", "sm://p1/db#latest", "ref+gcpsecrets://p1/db?version=latest",
        "gcp:secretmanager:projects/p1/secrets/db/versions/latest",
        "ref+gcpsecrets://p1/db#/user", "ref+gcpsecrets://p1/db?optional=true")}
    assert len(keys) == 1


def test_regional_locator_and_endpoint():
    reference = parse_reference("gcp:secretmanager:projects/p1/locations/europe-west1/secrets/db")
    assert reference.locator == "projects/p1/locations/europe-west1/secrets/db"
    assert endpoint_for(reference.locator, None) == "https://secretmanager.europe-west1.rep.googleapis.com"
    assert endpoint_for("projects/p1/secrets/db", None) == "https://secretmanager.googleapis.com"
    assert endpoint_for(reference.locator, "https://psc.example/") == "https://psc.example"


@pytest.mark.parametrize("text,fragment", [
    ("sm://my-project", "expected sm://<project>/<secret>"),
    ("sm://my-project/db/extra", "expected sm://<project>/<secret>"),
    ("sm://my-project/db?destination=tempfile", "expected sm://<project>/<secret>"),
    ("sm://my-project/db#", "the version is empty or not valid"),
    ("sm://My_Project/db", "the project is empty or not valid"),
    ("sm://my-project/bad.name", "the secret is empty or not valid"),
    ("sm://my-project/db#0", "the version is empty or not valid"),
    ("gcp:secretmanager:my-project/db", "expected projects/<project>/secrets/<secret>"),
    ("gcp:secretmanager:projects/p/secrets/db/versions/", "the version is empty or not valid"),
    ("gcp:secretmanager:projects/p/locations/EU/secrets/db", "the location is empty or not valid"),
    ("ref+gcpsecrets://my-project", "expected <project>/<secret>"),
    ("ref+gcpsecrets://my-project/db?version=1&version=2", "given twice"),
    ("ref+gcpsecrets://my-project/db?region=x", "unknown option"),
])
def test_malformed_references_are_usage_errors(text, fragment):
    with pytest.raises(UsageError) as caught:
        parse_reference(text)
    assert fragment in caught.value.message
    assert caught.value.exit_code == 64


def test_messages_never_quote_the_text():
    secret_looking = "sm://s3cr3t-" + "x" * 20
    with pytest.raises(UsageError) as caught:
        parse_reference(secret_looking)
    assert "s3cr3t" not in caught.value.line()


# RFC 3720 (iSCSI) appendix B.4 test vectors, plus the usual check value.
@pytest.mark.parametrize("data,expected", [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_crc32c_known_vectors(data, expected):
    assert crc32c(data) == expected


def test_create_time_with_nanoseconds():
    assert parse_time("2026-01-02T03:04:05.123456789Z") == \
        datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert parse_time("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_the_documented_rows_parse_as_documented():
    """Every Secret Manager row of docs/references.md and docs/gcp.md's syntax table."""
    root = Path(__file__).resolve().parents[2]
    rows = []
    for doc in ("docs/references.md", "docs/gcp.md"):
        for line in (root / doc).read_text().splitlines():
            match = re.fullmatch(r"\| `((?:sm://|gcp:secretmanager:|ref\+gcpsecrets://)[^`]*)` \| `([^`]*)` \|", line)
            if match:
                rows.append(match.groups())
    assert len(rows) >= 6
    for text, canonical in rows:
        assert parse_reference(text).canonical == canonical, text
