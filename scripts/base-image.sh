#!/usr/bin/env bash
# Build the local base image shim-base:bookworm when that tag does not exist yet.
#
# No registry can be pulled from here, so the base is a Debian bookworm minbase made by
# debootstrap from the machine's own Debian mirror, with python3 and ca-certificates, and
# imported with `docker import`. Images in images/ build on it through ARG BASE_IMAGE.
# Silent when the tag exists; one line with the time taken when it builds; one line on
# stderr naming the log on failure. Needs dockerd up and debootstrap (scripts/docker-up.sh).
#
# Environment: BASE_IMAGE (tag to build, default shim-base:bookworm).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/.cache"
image=${BASE_IMAGE:-shim-base:bookworm}
suite=bookworm
rootfs="$cache/base-rootfs"
log="$cache/base-image.log"

fail() { echo "base-image: $*" >&2; exit 1; }

docker image inspect "$image" >/dev/null 2>&1 && exit 0
command -v debootstrap >/dev/null || fail "debootstrap missing; run scripts/docker-up.sh first"
docker info >/dev/null 2>&1 || fail "no Docker engine answers; run scripts/docker-up.sh first"

# The machine's Debian mirror for a suite: the URIs of the deb822 .sources stanza that lists
# it, else the first one-line `deb` entry for it. Prints nothing when the machine has none.
mirror_for() {
    local found
    found=$(awk -v suite="$1" '
        /^URIs:/ { uris = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) { print uris; exit } }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$found" ]; then
        found=$(awk -v suite="$1" '$1 == "deb" && $3 == suite { print $2; exit }' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    fi
    echo "$found"
}
mirror=$(mirror_for "$suite")
security_mirror=$(mirror_for "$suite-security")
[ -n "$mirror" ] || fail "no Debian $suite mirror found in /etc/apt/sources.list{,.d}"

start=$SECONDS
mkdir -p "$cache"
rm -rf "${rootfs:?}"
debootstrap --variant=minbase --include=python3,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$log" 2>&1 \
    || fail "debootstrap $suite from $mirror failed; see $log"

# Make it behave like the official debian image: apt sources for the release, its updates and
# security, so `apt-get update && apt-get install` in a Dockerfile works as usual; no package
# lists or caches; no host files (docker provides /etc/hostname, /etc/hosts, /etc/resolv.conf).
stanza() {
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "$1" "$2"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
}
rm -f "$rootfs/etc/apt/sources.list"
{
    stanza "$mirror" "$suite $suite-updates"
    if [ -n "$security_mirror" ]; then echo; stanza "$security_mirror" "$suite-security"; fi
} >"$rootfs/etc/apt/sources.list.d/debian.sources"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log "$rootfs"/tmp/*
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/resolv.conf"

tar --numeric-owner -C "$rootfs" -c . \
    | docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$image" \
        >>"$log" 2>&1 \
    || fail "docker import of $rootfs as $image failed; see $log"
rm -rf "${rootfs:?}"
echo "base-image: built $image in $((SECONDS - start))s"
