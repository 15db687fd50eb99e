#!/bin/sh
# Stand-in for the official image's entrypoint: what it was started with, not PostgreSQL.
echo "docker-entrypoint.sh $* uid=$(id -u)"
printf 'POSTGRES_PASSWORD sha256 %s\n' "$(printf %s "$POSTGRES_PASSWORD" | sha256sum | cut -c1-64)"
env | grep -c '^VAULT_' | sed 's/^/VAULT_ variables: /'
