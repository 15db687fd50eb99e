"""A throwaway PostgreSQL cluster (Debian's PostgreSQL 15) on loopback, for OpenBao's database
secrets engine to mint users in, and `psql` to prove which users exist and which can log in.

The cluster runs as the `postgres` account (initdb refuses root) in a temporary directory of
its own (removed by stop()), listening on 127.0.0.1 only; its superuser password is made per cluster.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.real.conftest import free_port, unique_path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OWNER = "postgres"


class PostgreSQL:
    def __init__(self):
        self.directory: Path | None = None     # made by start()
        self.port = free_port()
        self.password = secrets.token_hex(12)

    def start(self) -> "PostgreSQL":
        if not (PG_BIN / "initdb").exists():
            unavailable(f"PostgreSQL 15 is not installed ({PG_BIN})")
        if os.getuid() != 0:
            unavailable("starting a PostgreSQL cluster as the postgres account needs root")
        try:
            pwd.getpwnam(OWNER)
        except KeyError:
            unavailable("the postgres account is missing (apt-get install postgresql)")
        # Not under pytest's temporary directory: that is root's alone (0700), and the
        # cluster's files belong to the postgres account.
        self.directory = Path(tempfile.mkdtemp(prefix="shim-postgres-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        account = pwd.getpwnam(OWNER)
        password_file = self.directory / "superuser-password"
        password_file.write_text(self.password + "\n")
        for path in (self.directory, password_file):
            os.chown(path, account.pw_uid, account.pw_gid)
        self._as_owner(PG_BIN / "initdb", "-D", self.data, "-U", "postgres",
                       "--auth=scram-sha-256", f"--pwfile={password_file}")
        password_file.unlink()
        self._as_owner(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.directory / "log", "-w",
                       "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1",
                       "start")

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def stop(self) -> None:
        if self.directory is None:
            return
        if self.data.exists():
            self._as_owner(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop",
                           check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _as_owner(self, *argv, check: bool = True) -> None:
        result = subprocess.run(["runuser", "-u", OWNER, "--", *map(str, argv)],
                                capture_output=True, text=True, timeout=120, cwd=self.directory)
        if check and result.returncode != 0:
            raise RuntimeError(f"{Path(str(argv[0])).name} failed: {result.stderr[-1500:]}")

    @property
    def connection_url(self) -> str:
        """What OpenBao's postgresql plugin connects with (its template fills in the admin)."""
        return (f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{self.port}/postgres"
                f"?sslmode=disable")

    def psql(self, sql: str, user: str = "postgres", password: str | None = None
             ) -> subprocess.CompletedProcess:
        """`psql -c SQL` as `user` over TCP (a password login, as the program would make)."""
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                       "PGPASSWORD": self.password if password is None else password,
                       "PGCONNECT_TIMEOUT": "10"}
        return subprocess.run([PG_BIN / "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", user,
                               "-d", "postgres", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              env=environment, capture_output=True, text=True, timeout=30)

    def can_log_in(self, user: str, password: str) -> bool:
        result = self.psql("select current_user", user, password)
        return result.returncode == 0 and result.stdout.strip() == user

    def users(self, prefix: str) -> set[str]:
        """The login roles whose names start with `prefix` (the ones a Vault role minted)."""
        result = self.psql(f"select rolname from pg_roles where rolname like '{prefix}%'")
        assert result.returncode == 0, result.stderr
        return set(result.stdout.split())


@pytest.fixture(scope="module")
def postgres():
    """One cluster per test module (import this fixture into the module)."""
    cluster = PostgreSQL().start()
    yield cluster
    cluster.stop()


class DatabaseRole:
    """A database engine mounted for one test, with one role minting PostgreSQL users."""

    def __init__(self, openbao, postgres, *, default_ttl: str = "1h", max_ttl: str = "24h"):
        self.mount = unique_path("db")
        self.prefix = self.mount.replace("-", "")      # every user this role mints starts so
        openbao.ok("POST", f"sys/mounts/{self.mount}", {"type": "database"})
        openbao.ok("POST", f"{self.mount}/config/pg", {
            "plugin_name": "postgresql-database-plugin", "connection_url": postgres.connection_url,
            "username": "postgres", "password": postgres.password, "allowed_roles": "*",
            "username_template": self.prefix + "-{{random 12}}"})
        openbao.ok("POST", f"{self.mount}/roles/app", {
            "db_name": "pg", "default_ttl": default_ttl, "max_ttl": max_ttl,
            "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
                                    "VALID UNTIL '{{expiration}}';"]})
        self.path = f"{self.mount}/creds/app"

    def environment(self) -> dict[str, str]:
        return {"DB_USER": f"vault:{self.path}#username", "DB_PASS": f"vault:{self.path}#password"}


def credentials_seen(seen, canaries) -> list[tuple[str, str]]:
    """(user, password) per start of the program, in order; each password becomes a canary."""
    lines = [line.split() for line in seen.read_text().splitlines()] if seen.exists() else []
    pairs = [(line[0], line[1]) for line in lines if len(line) == 2]
    for _, password in pairs:
        if password not in canaries.values:
            canaries.values.append(password)
    return pairs


def credentials_keep_working(postgres: PostgreSQL, seen, canaries, process, *,
                             until_starts: int, within: float) -> None:
    """Until the program has been started `until_starts` times, the credentials it was last
    started with log in to PostgreSQL at every moment (a restart in progress excepted)."""
    started = time.monotonic()
    while len(credentials_seen(seen, canaries)) < until_starts:
        assert time.monotonic() < started + within, (
            f"the program was not started {until_starts} times within {within}s")
        assert process.poll() is None, "shim exited"
        user, password = credentials_seen(seen, canaries)[-1]
        if not postgres.can_log_in(user, password):
            time.sleep(0.5)     # the program may be restarting right now
            assert credentials_seen(seen, canaries)[-1] != (user, password), (
                f"the program's credentials stopped working {time.monotonic() - started:.1f}s "
                f"into the check, and shim had not replaced them")
        time.sleep(0.2)


def events(stderr: str, name: str) -> list[dict]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == name]


# The program of the --watch tests: appends the credentials it was started with, then waits
# (its output closed, so that only shim holds the test's pipes).
RECORD_CREDENTIALS = 'echo "$DB_USER $DB_PASS" >> {seen}; exec sleep 600 </dev/null >/dev/null 2>&1'
