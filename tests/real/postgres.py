"""A throwaway PostgreSQL cluster (Debian's PostgreSQL 15) on loopback, for OpenBao's database
secrets engine to mint users in, and `psql` to prove which users exist and which can log in.

The cluster runs as the `postgres` account (initdb refuses root) in a temporary directory of
its own (removed by stop()), listening on 127.0.0.1 only; its superuser password is made per cluster.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import unavailable
from tests.real.conftest import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OWNER = "postgres"


class PostgreSQL:
    def __init__(self):
        # Not under pytest's temporary directory: that is root's alone (0700), and the
        # cluster's files belong to the postgres account.
        self.directory = Path(tempfile.mkdtemp(prefix="shim-postgres-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.password = secrets.token_hex(12)

    def start(self) -> "PostgreSQL":
        if not (PG_BIN / "initdb").exists():
            unavailable(f"PostgreSQL 15 is not installed ({PG_BIN})")
        if os.getuid() != 0:
            unavailable("starting a PostgreSQL cluster as the postgres account needs root")
        try:
            account = pwd.getpwnam(OWNER)
        except KeyError:
            unavailable("the postgres account is missing (apt-get install postgresql)")
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
        return self

    def stop(self) -> None:
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
