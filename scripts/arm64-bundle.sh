#!/usr/bin/env bash
# Build the shim bundle for linux/arm64 on an x86_64 Debian machine, under emulation, and run
# tests/e2e/test_any_image.py ((a) scratch, (b) musl, (c) glibc) against it. Not part of
# `make test` (it takes about 20 minutes on 2 cores; docs/images.md, "Arm64").
#
#     sudo bash scripts/arm64-bundle.sh            # tags shim-base:bookworm-arm64, shim-arm64:latest
#
# Everything comes from Debian and the package index: qemu-user-static and binfmt-support
# (aarch64 binaries run through qemu, also inside containers: the handler has the F flag),
# debootstrap --arch arm64 (the base image, as scripts/base-image.sh makes the x86_64 one), and
# aarch64 wheels (pip download --platform; shim's own wheel is pure Python). Environment:
# SHIM_EXTRAS (default "": the core bundle), PYTHON (default .venv/bin/python).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
extras=${SHIM_EXTRAS-}
base=shim-base:bookworm-arm64
bundle=shim-arm64:latest
cache=$root/.cache/arm64
rootfs=$cache/rootfs
context=$cache/context

fail() { echo "arm64-bundle: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (apt-get, binfmt_misc, debootstrap)"

# 1. Emulation.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static binfmt-support >/dev/null
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc none /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64
fi
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || fail "the qemu-aarch64 handler lacks the F flag: containers could not find qemu"

# 2. The arm64 base image (minbase with python3, like shim-base:bookworm).
if ! docker image inspect "$base" >/dev/null 2>&1; then
    mirror=$(awk '/^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++)
                  if ($i == "bookworm") { print u; exit } }' /etc/apt/sources.list.d/*.sources)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    rm -rf "$rootfs"
    mkdir -p "$cache"
    debootstrap --arch arm64 --variant=minbase --include=python3,ca-certificates \
        bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
        || fail "debootstrap failed; see $cache/debootstrap.log"
    rm -f "$rootfs/etc/apt/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: %s\n' \
        "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg \
        >"$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/tmp/*
    : >"$rootfs/etc/hostname"
    : >"$rootfs/etc/resolv.conf"
    tar --numeric-owner -C "$rootfs" -c . \
        | docker import --platform linux/arm64 --change 'ENV LANG=C.UTF-8' - "$base" >/dev/null
    rm -rf "$rootfs"
fi

# 3. aarch64 wheels and the bundle's build context (what images/shim/Dockerfile.dockerignore lets in).
rm -rf "$context"
mkdir -p "$context/wheelhouse" "$context/images"
requirements=('pyinstaller==6.*' click tenacity python-dotenv)
case $extras in *vault* | *all*) requirements+=(hvac) ;; esac
case $extras in *aws* | *azure* | *all*) fail "SHIM_EXTRAS=$extras: only \"\" and vault here" ;; esac
"$python" -m pip download -q --disable-pip-version-check --platform manylinux2014_aarch64 \
    --python-version 3.11 --implementation cp --abi cp311 --only-binary=:all: \
    -d "$context/wheelhouse" "${requirements[@]}"
source=$(mktemp -d)
cp "$root/pyproject.toml" "$root/README.md" "$source/"
cp -r "$root/shim" "$source/shim"
SOURCE_DATE_EPOCH=315532800 "$python" -m pip wheel -q --disable-pip-version-check --no-deps \
    -w "$context/wheelhouse" "$source"
rm -rf "$source"
cp -r "$root/images/shim" "$context/images/shim"

# 4. The bundle, then the same e2e checks as on x86_64.
DOCKER_BUILDKIT=0 docker build -q --force-rm -f "$context/images/shim/Dockerfile" \
    --build-arg "BASE_IMAGE=$base" --build-arg "SHIM_EXTRAS=$extras" -t "$bundle" "$context" \
    >/dev/null
echo "arm64-bundle: built $bundle ($(docker run --rm --entrypoint du "$bundle" -sb /opt/shim | cut -f1) bytes)"
SHIM_E2E_BASE_IMAGE=$base SHIM_E2E_BUNDLE_IMAGE=$bundle \
    "$python" -m pytest -q -p no:cacheprovider "$root/tests/e2e/test_any_image.py"
