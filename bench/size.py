"""Target 3, size: the installed core, each extra, and the images/shim bundle.

Installed: `pip install .[extra]` of the working tree into throwaway venvs under .cache/bench;
sizes are the bytes of the files each distribution's RECORD lists (bytecode included), the
venv's own pip and setuptools left out. Target: the core (no extras) at most 3 MB beyond click,
tenacity and python-dotenv.

Bundle: images/shim/Dockerfile (PyInstaller one-dir in /opt/shim) built with each SHIM_EXTRAS
from a wheelhouse made on the host (`pip wheel .[all] pyinstaller==6.*`), in a build context of
its own under .cache/bench (so the checkout is never sent to the daemon); size = `du -sb
/opt/shim`. Target: no extras at most 25 MB. The core bundle is then copied out and started on
this machine next to the start-up benchmark's baselines. Needs a running Docker Engine and the
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
import tempfile
from pathlib import Path

from _common import (CACHE, DEV_PYTHON, ROOT, installed_venv, interleaved, median, p90,
                     secrets_environment, source_copy, table, verdict)

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


def noarchive_context(context: Path) -> Path | None:
    """A copy of the build context whose spec keeps modules as plain .pyc files (PyInstaller
    `noarchive=True`) instead of a compressed PYZ archive: the start-up option measured beside
    the real bundle. None when the spec has no `noarchive=False` to flip."""
    spec = (context / "images" / "shim" / "shim.spec").read_text()
    if "noarchive=False" not in spec:
        return None
    variant = CACHE / "bundle-context-noarchive"
    shutil.rmtree(variant, ignore_errors=True)
    shutil.copytree(context, variant)
    (variant / "images" / "shim" / "shim.spec").write_text(
        spec.replace("noarchive=False", "noarchive=True"))
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


def copy_out(tag: str, destination: Path) -> Path:
    shutil.rmtree(destination, ignore_errors=True)
    container = subprocess.run(["docker", "create", tag], capture_output=True, text=True,
                               check=True).stdout.strip()
    try:
        subprocess.run(["docker", "cp", f"{container}:/opt/shim", str(destination)], check=True,
                       capture_output=True)
    finally:
        subprocess.run(["docker", "rm", container], capture_output=True)
    return destination / "shim"


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
    variant = noarchive_context(context)
    if variant is not None:
        noarchive_size = bundle_size(build_bundle(variant, "", "core-noarchive"))
        rows.append(["no extras, spec with noarchive=True (option, not shipped)",
                     mb(noarchive_size), f"+{mb(noarchive_size - sizes[''])}"])
    rows_out.append(table(f"Bundle size (images/shim, PyInstaller one-dir /opt/shim, du -sb, MB; "
                          f"base {base_image()})", ["SHIM_EXTRAS", "size", "beyond no extras"], rows))
    targets.append(["bundle without extras", f"{mb(sizes[''])} MB", "25 MB",
                    verdict(sizes[""] <= BUNDLE_LIMIT)])

    # Start-up of the core bundle, on this machine, beside the start-up baselines.
    executable = copy_out("shim-bench-bundle:core", CACHE / "bundle-core")
    everything = copy_out("shim-bench-bundle:all", CACHE / "bundle-all")
    noarchive = copy_out("shim-bench-bundle:core-noarchive", CACHE / "bundle-core-noarchive") \
        if variant is not None else None
    probe = subprocess.run([str(executable), "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        why = f"the bundle does not start on this host ({probe.stderr.strip()[-200:]})"
        print(f"skipped: bundle start-up: {why}\n")
        targets.append(["bundle start-up / python -c pass", "skipped", "4x", f"skipped: {why}"])
        return
    venv_python = installed_venv("core") / "bin" / "python"
    directory = Path(tempfile.mkdtemp(prefix="shim-bench-secrets-"))
    try:
        env = secrets_environment(directory)
        commands = {
            "python -c pass (venv baseline)": [str(venv_python), "-c", "pass"],
            "/usr/bin/python3 -c pass (Debian's, as bundled)": ["/usr/bin/python3", "-c", "pass"],
            "bundle: shim exec": [str(executable), "exec", "--secrets-dir", str(directory), "--",
                                  "/bin/true"],
            "pip install .: shim exec": [str(venv_python.parent / "shim"), "exec", "--secrets-dir",
                                         str(directory), "--", "/bin/true"],
        }
        # The SDKs are in the [all] bundle but not imported on a local-only run.
        commands["bundle [all]: shim exec"] = [str(everything), "exec", "--secrets-dir",
                                               str(directory), "--", "/bin/true"]
        if noarchive is not None:
            commands["bundle, noarchive=True (option): shim exec"] = [
                str(noarchive), "exec", "--secrets-dir", str(directory), "--", "/bin/true"]
        if shutil.which("tini"):
            commands["tini -s -- /bin/true"] = [shutil.which("tini"), "-s", "--", "/bin/true"]
        if shutil.which("gosu") and os.getuid() == 0:
            commands["gosu nobody /bin/true"] = [shutil.which("gosu"), "nobody", "/bin/true"]
        samples = interleaved(commands, env, runs)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    baseline = median(samples["python -c pass (venv baseline)"])
    debian = median(samples["/usr/bin/python3 -c pass (Debian's, as bundled)"])
    rows_out.append(table(f"Bundle start-up ({runs} interleaved runs, ms; ratio to the venv's "
                          f"python -c pass)", ["command", "median", "p90", "ratio"],
                          [[name, median(v), p90(v), f"{median(v) / baseline:.2f}x"]
                           for name, v in samples.items()]))
    bundle = median(samples["bundle: shim exec"])
    targets.append(["bundle start-up / python -c pass (venv)", f"{bundle / baseline:.2f}x", "4x",
                    verdict(bundle / baseline <= 4)])
    targets.append(["bundle start-up / /usr/bin/python3 -c pass", f"{bundle / debian:.2f}x", "4x",
                    verdict(bundle / debian <= 4)])


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
