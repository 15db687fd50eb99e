"""Target 3, size: the installed core, each extra, and the images/shim bundle.

Installed: `pip install .[extra]` of the working tree into throwaway venvs under .cache/bench;
sizes are the bytes of the files each distribution's RECORD lists (bytecode included), the
venv's own pip and setuptools left out. Target: the core (no extras) at most 3 MB beyond click,
tenacity and python-dotenv.

Bundle: images/shim/Dockerfile (PyInstaller one-dir in /opt/shim) built with each SHIM_EXTRAS
from a wheelhouse made on the host (`pip wheel .[all] pyinstaller==6.*`), in a build context of
its own under .cache/bench (so the checkout is never sent to the daemon); size = `du -sb
/opt/shim`. Target: no extras at most 25 MB. Start-up is measured inside a container of each
bundle image (bench/bundle_inside.py: the bundle only runs at /opt/shim), interleaved with that
image's `python3 -c pass` (Debian's 3.11, the interpreter the bundle carries); target: `shim
exec` within 3x. The core bundle is also built with `noarchive=False` (the compressed archive)
to show what that option buys. Needs a running Docker Engine and the
base image (SHIM_BASE_IMAGE, default shim-base:bookworm from `make docker`); without them the
bundle part prints "skipped: ...".

    .venv/bin/python bench/size.py [--no-bundle] [--runs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

from _common import (CACHE, DEV_PYTHON, ROOT, installed_venv, median, p90, source_copy, table,
                     verdict)

MB = 1_000_000
CORE_LIMIT = 3 * MB
BUNDLE_LIMIT = 25 * MB
EXTRAS = ["", "vault", "aws", "azure", "all"]
CORE_DEPENDENCIES = {"click", "tenacity", "python-dotenv"}
VENV_OWN = {"pip", "setuptools"}

_SIZES = """
import importlib.metadata as metadata, json, os
sizes = {}
for dist in metadata.distributions():
    total = 0
    for file in dist.files or []:
        path = file.locate()
        if os.path.isfile(path):
            total += os.path.getsize(path)
    sizes[dist.metadata["Name"].lower().replace("_", "-")] = total
print(json.dumps(sizes))
"""


def distribution_sizes(venv: Path) -> dict[str, int]:
    result = subprocess.run([str(venv / "bin" / "python"), "-c", _SIZES], capture_output=True,
                            text=True, check=True)
    return {name: size for name, size in json.loads(result.stdout).items() if name not in VENV_OWN}


def mb(size: int) -> str:
    return f"{size / MB:.2f}"


def installed(rows_out: list, targets: list) -> None:
    sizes = {extra: distribution_sizes(installed_venv(extra or "core", extra)) for extra in EXTRAS}
    core = sizes[""]
    core_total = sum(core.values())
    beyond = sum(size for name, size in core.items() if name not in CORE_DEPENDENCIES)
    rows = [["core (no extras)", mb(core_total), mb(beyond),
             ", ".join(f"{n} {mb(s)}" for n, s in sorted(core.items(), key=lambda i: -i[1]))]]
    for extra in EXTRAS[1:]:
        added = {name: size for name, size in sizes[extra].items() if name not in core}
        largest = sorted(added.items(), key=lambda item: -item[1])
        shown = ", ".join(f"{n} {mb(s)}" for n, s in largest[:4])
        if len(largest) > 4:
            shown += f", {len(largest) - 4} more"
        rows.append([f"[{extra}]", mb(sum(sizes[extra].values())), f"+{mb(sum(added.values()))}",
                     shown])
    rows_out.append(table("Installed size (pip install .[extra], MB = 10^6 bytes, bytecode "
                          "included, the venv's pip/setuptools left out)",
                          ["install", "total", "beyond click/tenacity/dotenv or core", "largest"],
                          rows))
    targets.append(["installed core beyond click, tenacity, python-dotenv", f"{mb(beyond)} MB",
                    "3 MB", verdict(beyond <= CORE_LIMIT)])


# --- the bundle -------------------------------------------------------------------------------------

def docker_ready() -> str | None:
    """None when a bundle can be built here, else why not."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    if not (ROOT / "images" / "shim" / "Dockerfile").is_file():
        return "images/shim/Dockerfile does not exist yet"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker Engine is not running (make docker)"
    if subprocess.run(["docker", "image", "inspect", base_image()], capture_output=True).returncode:
        return f"base image {base_image()} is missing (make docker, or set SHIM_BASE_IMAGE)"
    return None


def base_image() -> str:
    return os.environ.get("SHIM_BASE_IMAGE", "shim-base:bookworm")


def build_context() -> Path:
    """.cache/bench/bundle-context: wheelhouse/ (host-built wheels) and images/shim/."""
    context = CACHE / "bundle-context"
    wheelhouse = context / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for old in wheelhouse.glob("shim_secrets-*.whl"):
        old.unlink()
    source = source_copy()
    try:
        subprocess.run([str(DEV_PYTHON), "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                        f"{source}[all]", "pyinstaller==6.*", "-w", str(wheelhouse)],
                       check=True, capture_output=True)
    finally:
        shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(context / "images", ignore_errors=True)
    shutil.copytree(ROOT / "images" / "shim", context / "images" / "shim")
    return context


def archive_context(context: Path) -> Path | None:
    """A copy of the build context whose spec keeps modules in PyInstaller's compressed PYZ
    archive (`noarchive=False`, the earlier layout) instead of plain .pyc files: the start-up
    option measured beside the real bundle. None when the spec has no `noarchive=True`."""
    spec = (context / "images" / "shim" / "shim.spec").read_text()
    if "noarchive=True" not in spec:
        return None
    variant = CACHE / "bundle-context-archive"
    shutil.rmtree(variant, ignore_errors=True)
    shutil.copytree(context, variant)
    (variant / "images" / "shim" / "shim.spec").write_text(
        spec.replace("noarchive=True", "noarchive=False"))
    return variant


def build_bundle(context: Path, extra: str, name: str | None = None) -> str:
    tag = f"shim-bench-bundle:{name or extra or 'core'}"
    result = subprocess.run(
        ["docker", "build", "-q", "-f", "images/shim/Dockerfile", "--build-arg",
         f"SHIM_EXTRAS={extra}", "--build-arg", f"BASE_IMAGE={base_image()}", "-t", tag, "."],
        cwd=context, capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if result.returncode != 0:
        raise RuntimeError(f"docker build ({extra or 'no extras'}) failed:\n{result.stderr[-3000:]}")
    return tag


def bundle_size(tag: str) -> int:
    result = subprocess.run(["docker", "run", "--rm", "--entrypoint", "du", tag, "-sb", "/opt/shim"],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.split()[0])


def startup_inside(tag: str, runs: int) -> dict[str, list[float]]:
    """bench/bundle_inside.py in a container of the bundle image (the bundle only runs at
    /opt/shim, so not on the host)."""
    result = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{ROOT / 'bench'}:/bench:ro", "--entrypoint", "python3",
         tag, "/bench/bundle_inside.py", "--runs", str(runs)],
        capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"start-up in {tag} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


def bundles(rows_out: list, targets: list, runs: int) -> None:
    reason = docker_ready()
    if reason:
        print(f"skipped: bundle sizes and start-up: {reason}\n")
        rows_out.append(f"skipped: bundle sizes and start-up: {reason}\n")
        targets.append(["bundle without extras", "skipped", "25 MB", f"skipped: {reason}"])
        return
    context = build_context()
    sizes = {}
    for extra in EXTRAS:
        sizes[extra] = bundle_size(build_bundle(context, extra))
    rows = [["no extras" if not extra else f"[{extra}]", mb(size),
             "-" if not extra else f"+{mb(size - sizes[''])}"] for extra, size in sizes.items()]
    variant = archive_context(context)
    if variant is not None:
        archive_size = bundle_size(build_bundle(variant, "", "core-archive"))
        rows.append(["no extras, spec with noarchive=False (option, not shipped)",
                     mb(archive_size), f"{(archive_size - sizes['']) / MB:+.1f}"])
    rows_out.append(table(f"Bundle size (images/shim, PyInstaller one-dir /opt/shim, du -sb, MB; "
                          f"base {base_image()})", ["SHIM_EXTRAS", "size", "beyond no extras"], rows))
    targets.append(["bundle without extras", f"{mb(sizes[''])} MB", "25 MB",
                    verdict(sizes[""] <= BUNDLE_LIMIT)])

    # Start-up, inside a container of each bundle image, beside that image's python3.
    bundles_timed = {"no extras": "shim-bench-bundle:core", "[all]": "shim-bench-bundle:all"}
    if variant is not None:
        bundles_timed["no extras, noarchive=False (option)"] = "shim-bench-bundle:core-archive"
    rows = []
    for label, tag in bundles_timed.items():
        samples = startup_inside(tag, runs)
        baseline = median(samples["python3 -c pass"])
        for name, values in samples.items():
            rows.append([label, name, median(values), p90(values),
                         f"{median(values) / baseline:.2f}x"])
        if label == "no extras":
            ratio = median(samples["bundle: shim exec"]) / baseline
            targets.append(["bundle shim exec / python3 -c pass (same container)",
                            f"{ratio:.2f}x", "3x", verdict(ratio <= 3)])
    rows_out.append(table(f"Bundle start-up, inside the bundle image ({runs} interleaved runs, "
                          f"ms; ratio to that image's python3 -c pass, Debian's 3.11 as bundled)",
                          ["bundle", "command", "median", "p90", "ratio"], rows))


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-bundle", action="store_true", help="skip the Docker bundle builds")
    parser.add_argument("--runs", type=int, default=40, help="start-up runs of the bundle")
    args = parser.parse_args(argv)
    out: list[str] = []
    targets: list[list] = []
    installed(out, targets)
    if args.no_bundle:
        print("skipped: bundle (--no-bundle)\n")
        targets.append(["bundle without extras", "skipped", "25 MB", "skipped: --no-bundle"])
    else:
        bundles(out, targets, args.runs)
    out.append(table("Size targets", ["target", "measured", "limit", "verdict"], targets))
    return out


if __name__ == "__main__":
    main()
