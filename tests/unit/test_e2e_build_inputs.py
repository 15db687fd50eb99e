"""The e2e image builds depend on nothing made outside the run (a fresh machine has no shim:latest)."""

from tests.e2e.conftest import ROOT, image_arguments_left_to_defaults

POSTGRES_STAND_IN = ROOT / "tests/e2e/images/anylibc/postgres-alpine.Dockerfile"


def test_an_image_argument_not_passed_in_is_named():
    text = "ARG BASE_IMAGE=debian:bookworm-slim\nARG SHIM_IMAGE=shim:latest\nFROM ${SHIM_IMAGE}\n"
    assert image_arguments_left_to_defaults(text, {"BASE_IMAGE": "b"}) == ["SHIM_IMAGE"]
    assert image_arguments_left_to_defaults(text, {"BASE_IMAGE": "b", "SHIM_IMAGE": "s"}) == []


def test_other_arguments_are_not_image_inputs():
    assert image_arguments_left_to_defaults("ARG SHIM_EXTRAS=\nARG PIP_NO_INDEX=1\n", {}) == []


def test_the_postgres_stand_in_builds_from_the_base_image_alone():
    # It was built without SHIM_IMAGE and so fell back to shim:latest (CI failed on a new machine).
    assert image_arguments_left_to_defaults(POSTGRES_STAND_IN.read_text(),
                                            {"BASE_IMAGE": "b"}) == []
