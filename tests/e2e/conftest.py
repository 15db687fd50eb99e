"""End-to-end fixtures: the real Docker Engine, images built from images/, cleanup.

Session fixtures other e2e tests reuse (keep their names and signatures):

    docker_ready              the engine answers and the local base image exists; starts both
                              (scripts/docker-up.sh, scripts/base-image.sh) when root. Without a
                              Docker engine the tests skip loudly, or fail under CI=true.
    wheelhouse                Path of host-built wheels (.cache/wheelhouse): shim's own wheel,
                              rebuilt every session, plus every dependency of shim-secrets[all] and
                              pyinstaller, rebuilt only when pyproject.toml changes.
    build_image(name, context_dir, *, build_args=None, dockerfile=None) -> tag
                              `docker build` (legacy builder) tagged shim-e2e-<name>:<hash of the
                              context, Dockerfile, build args and the images they name>; an
                              existing tag is reused, so unchanged images cost nothing.
                              BASE_IMAGE defaults to the local base (shim-base:bookworm).
    shim_images               {"bundle", "app", "redis", "postgres", "vault-double"} -> tag,
                              built from images/ (the bundle with SHIM_EXTRAS=all).
    stage_context(image_dir) -> Path
                              a build context holding what images/<x>/Dockerfile.dockerignore
                              lets in, repository layout kept, `wheelhouse/` from the fixture.

Function fixtures: `docker_objects` (unique names for containers, networks and volumes; removes
each at the end of the test), `canaries` (as tests/conftest.py's, and every canary is also
remembered for the session in SESSION_CANARIES).

Everything this creates is named shim-e2e-*: the engine is shared with other sessions, so
nothing here prunes, removes other objects or touches swarm.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import Canaries
from tests.e2e.docker_helpers import (SESSION_CANARIES, docker, engine_answers, image_exists,
                                      image_id, unavailable)

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
E2E_CACHE = CACHE / "e2e"
WHEELHOUSE = CACHE / "wheelhouse"
BASE_IMAGE = os.environ.get("SHIM_E2E_BASE_IMAGE", "shim-base:bookworm")
PREFIX = "shim-e2e-"
# What the wheelhouse holds besides shim: the bundle's build needs PyInstaller.
WHEELHOUSE_REQUIREMENTS = ("pyinstaller==6.*",)
BUNDLE_EXTRAS = "all"

def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_ready() -> None:
    if not engine_answers() or not image_exists(BASE_IMAGE):
        if os.geteuid() != 0:
            unavailable("`docker info` fails (or the base image is missing) and we are not root "
                        "to run scripts/docker-up.sh and scripts/base-image.sh")
        setup = subprocess.run(
            ["bash", "-c", "bash scripts/docker-up.sh && bash scripts/base-image.sh"],
            cwd=ROOT, capture_output=True, text=True, timeout=900,
            env={**os.environ, "BASE_IMAGE": BASE_IMAGE})
        if setup.returncode != 0:
            unavailable(f"scripts/docker-up.sh or base-image.sh failed: {setup.stderr[-1500:]}")
    if not engine_answers():
        unavailable("`docker info` still fails after scripts/docker-up.sh")
    if not image_exists(BASE_IMAGE):
        unavailable(f"base image {BASE_IMAGE} missing after scripts/base-image.sh")


# --------------------------------------------------------------------------------------------
# Wheels and images
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive lock shared with concurrent pytest sessions on this machine."""
    E2E_CACHE.mkdir(parents=True, exist_ok=True)
    with open(E2E_CACHE / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip_wheel(*args: str) -> None:
    # SOURCE_DATE_EPOCH makes shim's wheel byte-identical for identical sources, so the bundle's
    # content hash (and so its cached image) only changes when shim does.
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "pip", "wheel", "-q",
                             *args], capture_output=True, text=True, timeout=900, env=env)
    if result.returncode != 0:
        pytest.fail(f"pip wheel {' '.join(args)} failed:\n{result.stderr[-3000:]}", pytrace=False)


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    stamp_text = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()
                                + repr(WHEELHOUSE_REQUIREMENTS).encode()).hexdigest()
    with _locked("wheelhouse"), tempfile.TemporaryDirectory(prefix="shim-src-") as source:
        # Build from a copy: no build/ or egg-info appears in the work tree, and a concurrent
        # editable install there is not disturbed.
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, Path(source) / name)
        shutil.copytree(ROOT / "shim", Path(source) / "shim",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        stamp = WHEELHOUSE / ".requirements-stamp"
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        current = stamp.exists() and stamp.read_text() == stamp_text
        # Only shim's wheel when the requirements are unchanged, else every wheel afresh (no
        # outdated dependency may stay behind for --no-index to pick).
        for old in WHEELHOUSE.glob("shim_secrets-*.whl" if current else "*.whl"):
            old.unlink()
        if not current:
            _pip_wheel("-w", str(WHEELHOUSE), f"{source}[all]", *WHEELHOUSE_REQUIREMENTS)
            stamp.write_text(stamp_text)
        else:
            _pip_wheel("--no-deps", "-w", str(WHEELHOUSE), source)
    return WHEELHOUSE


def _hash_tree(digest, directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        relative = path.relative_to(directory).as_posix()
        executable = os.access(path, os.X_OK)
        digest.update(f"{relative}\0{executable}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)


def image_arguments_left_to_defaults(dockerfile_text: str, arguments: dict[str, str]) -> list[str]:
    """The `ARG *_IMAGE=default` lines a build would take the default of.

    A default such as `shim:latest` names an image that exists only where someone built it by
    hand (elsewhere the engine goes to a registry and fails), so every image a test builds on
    must come from this run: the base image, or a tag the run built and passes in.
    """
    declared = re.findall(r"^ARG\s+([A-Z0-9_]*IMAGE)(?:=\S*)?\s*$", dockerfile_text, re.M)
    return [name for name in declared if name not in arguments]


def _build(name: str, context_dir: Path, build_args: dict[str, str] | None = None,
           dockerfile: str | Path | None = None) -> str:
    context_dir = Path(context_dir)
    arguments = {"BASE_IMAGE": BASE_IMAGE, **(build_args or {})}
    digest = hashlib.sha256()
    _hash_tree(digest, context_dir)
    dockerfile_path = Path(dockerfile) if dockerfile is not None else context_dir / "Dockerfile"
    if not dockerfile_path.is_absolute():
        dockerfile_path = context_dir / dockerfile_path
    missing = image_arguments_left_to_defaults(dockerfile_path.read_text(), arguments)
    if missing:
        pytest.fail(f"build of {name}: {dockerfile_path.name} takes {', '.join(missing)} from its "
                    "default, an image this run did not build; pass it in build_args",
                    pytrace=False)
    if dockerfile is None:
        dockerfile_path = None
    else:
        digest.update(b"dockerfile\0" + dockerfile_path.read_bytes())
    for key, value in sorted(arguments.items()):
        digest.update(f"arg\0{key}={value}\0".encode())
        # An image named by a build argument (BASE_IMAGE, SHIM_IMAGE) is part of the input.
        if key.endswith("IMAGE"):
            digest.update(f"id\0{image_id(value)}\0".encode())
    tag = f"{PREFIX}{name}:{digest.hexdigest()[:16]}"
    if image_exists(tag):
        return tag
    # A concurrent session on this machine may be building the same tag: build it once.
    with _locked(f"build-{name}"):
        if not image_exists(tag):
            _run_build(name, tag, context_dir, arguments, dockerfile_path)
    return tag


def _run_build(name: str, tag: str, context_dir: Path, arguments: dict[str, str],
               dockerfile_path: Path | None) -> None:
    # --force-rm: the legacy builder otherwise leaves a failed step's container behind.
    command = ["build", "--force-rm", "-t", tag, "--label", "shim-e2e=1"]
    for key, value in sorted(arguments.items()):
        command += ["--build-arg", f"{key}={value}"]
    if dockerfile_path is not None:
        command += ["-f", str(dockerfile_path)]
    command.append(str(context_dir))
    log = E2E_CACHE / "logs" / f"build-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "w") as output:
        result = subprocess.run(["docker", *command], stdout=output, stderr=subprocess.STDOUT,
                                timeout=1200, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if result.returncode != 0:
        pytest.fail(f"docker build of {name} failed; last lines of {log}:\n"
                    + "".join(log.read_text().splitlines(keepends=True)[-40:]), pytrace=False)
    with open(log, "a") as output:
        output.write(f"\nbuilt {tag} in {time.monotonic() - started:.1f}s\n")


@pytest.fixture(scope="session")
def build_image(docker_ready) -> Callable[..., str]:
    return _build


def context_paths(image_dir: Path) -> list[str]:
    """The repository paths images/<x>/Dockerfile.dockerignore lets in ("*" then "!path")."""
    ignore = image_dir / "Dockerfile.dockerignore"
    lines = [line.strip() for line in ignore.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert lines[0] == "*" and all(line.startswith("!") for line in lines[1:]), (
        f"{ignore}: only '*' followed by '!path' lines are supported here")
    return [line[1:].rstrip("/") for line in lines[1:]]


def _stage(image_dir: Path, destination: Path, wheels: Path | None) -> Path:
    for relative in context_paths(image_dir):
        source = wheels if relative == "wheelhouse" else ROOT / relative
        assert source is not None, f"{image_dir} needs the wheelhouse fixture"
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if relative == "wheelhouse":
            with _locked("wheelhouse"):   # a concurrent session may be renewing shim's wheel
                shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*"))
        elif source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    return destination


@pytest.fixture(scope="session")
def stage_context(tmp_path_factory, wheelhouse) -> Callable[[Path], Path]:
    def stage(image_dir: Path) -> Path:
        image_dir = Path(image_dir)
        return _stage(image_dir, tmp_path_factory.mktemp(f"context-{image_dir.name}"), wheelhouse)
    return stage


@pytest.fixture(scope="session")
def shim_images(build_image, stage_context) -> dict[str, str]:
    images = ROOT / "images"

    def build(name: str, directory: str, **build_args: str) -> str:
        context = stage_context(images / directory)
        return build_image(name, context, build_args=build_args,
                           dockerfile=images / directory / "Dockerfile")

    # The bundle first (the others copy /opt/shim out of it); two builds at a time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        vault_double = pool.submit(build, "vault-double", "vault-double")
        bundle = build("bundle", "shim", SHIM_EXTRAS=BUNDLE_EXTRAS)
        dependents = {name: pool.submit(build, name, name, SHIM_IMAGE=bundle)
                      for name in ("app", "redis", "postgres")}
        tags = {"bundle": bundle, "vault-double": vault_double.result()}
        tags.update({name: future.result() for name, future in dependents.items()})
    return tags


# --------------------------------------------------------------------------------------------
# Per-test objects
# --------------------------------------------------------------------------------------------

class DockerObjects:
    """Unique shim-e2e-* names; whatever was named here is removed at the end of the test."""

    def __init__(self) -> None:
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []

    @staticmethod
    def _name(kind: str) -> str:
        return f"{PREFIX}{kind}-{secrets.token_hex(4)}"

    def container(self, kind: str = "c") -> str:
        self.containers.append(self._name(kind))
        return self.containers[-1]

    def network(self, kind: str = "net") -> str:
        name = self._name(kind)
        docker("network", "create", "--label", "shim-e2e=1", name)
        self.networks.append(name)
        return name

    def volume(self, kind: str = "vol") -> str:
        self.volumes.append(self._name(kind))
        return self.volumes[-1]

    def remove_all(self) -> None:
        if self.containers:
            docker("rm", "-f", "-v", *self.containers, check=False, timeout=60)
        for network in self.networks:
            docker("network", "rm", network, check=False, timeout=60)
        if self.volumes:
            docker("volume", "rm", "-f", *self.volumes, check=False, timeout=60)


@pytest.fixture
def docker_objects(docker_ready) -> Iterator[DockerObjects]:
    objects = DockerObjects()
    try:
        yield objects
    finally:
        objects.remove_all()


class SessionCanaries(Canaries):
    def new(self, label: str = "secret") -> str:
        value = super().new(label)
        SESSION_CANARIES.append(value)
        return value


@pytest.fixture
def canaries() -> SessionCanaries:
    return SessionCanaries()
