#!/usr/bin/env bash
# A minimal stand-in for the official postgres image's docker-entrypoint.sh, installed only when
# the base image has none (a plain Debian base, as in the e2e tests). It keeps the contract that
# matters here: started as root it prepares $PGDATA and re-runs itself as postgres (setpriv in
# place of gosu: a second shim would resolve the environment again, and a password that looks
# like a reference or a placeholder would be taken for one); on an empty $PGDATA it runs initdb
# with POSTGRES_PASSWORD for POSTGRES_USER (default postgres), then starts postgres listening on
# every address with scram-sha-256 for TCP connections. Not supported: POSTGRES_DB,
# POSTGRES_INITDB_ARGS, /docker-entrypoint-initdb.d.
set -Eeuo pipefail

if [ "${1:0:1}" = - ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "docker-entrypoint.sh: POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    # The password reaches initdb through a pipe (/dev/fd/N), never argv or a file.
    initdb --username="${POSTGRES_USER:-postgres}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi

unset POSTGRES_PASSWORD
exec "$@"
