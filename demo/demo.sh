#!/usr/bin/env bash
# The main job on the embedded default, no server needed: Docker-style secret
# files stand in for /run/secrets, and shim turns a _FILE variable, a CHANGEME
# placeholder and an inline reference inside a DATABASE_URL into real values,
# then execs the program as nobody. The program prints which variables it got
# (never the values) and its ids.
set -euo pipefail
SHIM=${SHIM:-.venv/bin/shim}

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
secrets="$workdir/run-secrets"
mkdir -m 0700 "$secrets"
# Random demo values, made fresh each run and never printed.
head -c 18 /dev/urandom | base64 > "$secrets/pg_password"
head -c 18 /dev/urandom | base64 > "$secrets/redis_password"
head -c 32 /dev/urandom | base64 > "$secrets/JWT_SECRET"
chmod 0400 "$secrets"/*

user_option=()
if [ "$(id -u)" = 0 ]; then
  user_option=(--user nobody)
  echo "demo: running as root, so the program will run as nobody"
else
  echo "demo: not root, so the drop to nobody is skipped"
fi

child='
echo "program: uid=$(id -u) gid=$(id -g) home=$HOME"
for name in POSTGRES_PASSWORD REDIS_PASSWORD JWT_SECRET DATABASE_URL POSTGRES_PASSWORD_FILE; do
  eval "value=\${$name-}"
  if [ -n "$value" ]; then echo "program: $name is set (${#value} characters)"; else echo "program: $name is not set"; fi
done'

echo "demo: shim check (the plan, never a value):"
env -i PATH="$PATH" \
  POSTGRES_PASSWORD_FILE="$secrets/pg_password" \
  REDIS_PASSWORD=CHANGEME_REDIS_PASSWORD \
  JWT_SECRET=CHANGEME \
  DATABASE_URL='postgresql://app:${file:'"$secrets"'/pg_password}@db:5432/app' \
  "$SHIM" check --secrets-dir "$secrets"

echo "demo: shim exec ${user_option[*]} -- sh -c '...':"
env -i PATH="$PATH" \
  POSTGRES_PASSWORD_FILE="$secrets/pg_password" \
  REDIS_PASSWORD=CHANGEME_REDIS_PASSWORD \
  JWT_SECRET=CHANGEME \
  DATABASE_URL='postgresql://app:${file:'"$secrets"'/pg_password}@db:5432/app' \
  "$SHIM" exec --secrets-dir "$secrets" "${user_option[@]}" -- sh -c "$child"
