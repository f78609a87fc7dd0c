"""A real PostgreSQL 15 server (Debian 12 package ``postgresql-15``) for
tests: a cluster made with ``initdb`` in a temp dir, started with ``pg_ctl``
on a free loopback port (and a Unix socket in the same dir), password
authentication (scram-sha-256) for every connection, stopped at teardown.

PostgreSQL refuses to run as root, and CI runs as root: then every server
command runs as the ``postgres`` system user the Debian package creates
(``runuser -u postgres --``), in a temp dir under /tmp that user owns.

    srv = PostgresServer(tmp_path).start()
    srv.create_database("tlm")
    srv.conninfo("tlm")            # postgresql://admin@127.0.0.1:PORT/tlm
    srv.sql("SELECT 1", db="tlm")  # -> "1" (psql, unaligned, tuples only)
    srv.stop(); srv.start()        # outage and recovery: same port and data
    srv.close()                    # stop for good, dir removed

fsync is off unless asked for (``fsync=True``, for benchmarks): the tests kill tlmd, never the machine, and a commit is still
acknowledged only after PostgreSQL made it (synchronous_commit stays on).
"""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ._common import (ManagedServer, ServerError, ServerNotInstalled, free_ports,
                      random_password, read_text)

BIN_DIR = "/usr/lib/postgresql/15/bin"
HINT = ("install PostgreSQL 15 with scripts/install-test-servers.sh "
        "(Debian 12 package postgresql)")
START_TIMEOUT = 30
START_ATTEMPTS = 5


def _binary(name):
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        raise ServerNotInstalled(f"'{path}' is not installed: {HINT}")
    return path


class PostgresServer(ManagedServer):
    """One PostgreSQL cluster.  See the module docstring."""

    def __init__(self, base_dir, admin_user="admin", admin_password=None,
                 name="postgres", fsync=False):
        self.initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        self.psql = _binary("psql")
        self.name = name
        self.fsync = fsync
        self.admin_user = admin_user
        self.admin_password = admin_password or random_password()
        self.as_root = os.geteuid() == 0
        self.prefix = []
        if self.as_root:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerNotInstalled(f"no 'postgres' system user: {HINT}") from None
            self.prefix = ["runuser", "-u", "postgres", "--"]
        # Not under base_dir: pytest's tmp dirs are private to root.
        self.dir = Path(tempfile.mkdtemp(prefix=f"tlm-{name}-"))
        if self.as_root:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        os.chmod(self.dir, 0o700)
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self.start_seconds = None
        self._init_cluster()

    def _run(self, argv, check=True, timeout=60):
        out = subprocess.run(self.prefix + argv, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise ServerError(f"{self.name}: {argv[0]} failed ({out.returncode}): "
                              f"{out.stdout}{out.stderr}")
        return out

    def _init_cluster(self):
        pwfile = self.dir / "initdb.pw"
        pwfile.write_text(self.admin_password + "\n")
        if self.as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        try:
            self._run([self.initdb, "-D", str(self.data), "-U", self.admin_user,
                       f"--pwfile={pwfile}", "--auth=scram-sha-256",
                       "-E", "UTF8", "--locale=C.UTF-8"], timeout=120)
        finally:
            pwfile.unlink()

    @property
    def url(self):
        return f"postgresql://{self.host}:{self.port}"

    def conninfo(self, db="postgres", user=None):
        """A libpq URI without a password (tlmd reads it from a file)."""
        return f"postgresql://{user or self.admin_user}@{self.host}:{self.port}/{db}"

    def is_running(self):
        out = self._run([self.pg_ctl, "-D", str(self.data), "status"], check=False)
        return out.returncode == 0

    def start(self, timeout=START_TIMEOUT):
        """Start and wait until a password login works.  The first start
        picks a free port (retrying on a clash); later starts reuse it."""
        if self.port is not None and self.is_running():
            return self
        t0 = time.monotonic()
        restart = self.port is not None
        last = ""
        for _ in range(1 if restart else START_ATTEMPTS):
            if not restart:
                self.port = free_ports(1)[0]
            opts = (f"-k {self.dir} -h {self.host} -p {self.port} "
                    + ("" if self.fsync else "-c fsync=off -c full_page_writes=off"))
            out = self._run([self.pg_ctl, "-D", str(self.data), "-l", str(self.log_path),
                             "-w", "-t", str(timeout), "-o", opts, "start"],
                            check=False, timeout=timeout + 10)
            if out.returncode == 0:
                self.sql("SELECT 1")
                self.start_seconds = time.monotonic() - t0
                return self
            last = out.stdout + out.stderr
            if restart or "already in use" not in self.log():
                break
        raise ServerError(f"{self.name} did not start: {last}\n{self.log_tail()}")

    def stop(self, mode="fast"):
        """Stop (fast: sessions are ended, a clean shutdown), keeping port
        and data for a later start()."""
        if self.port is not None:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w",
                       "stop"], check=False)

    def kill(self):
        """Abrupt stop (immediate shutdown: no checkpoint, like a crash)."""
        self.stop(mode="immediate")

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        return read_text(self.log_path)

    def env(self, password=None):
        env = dict(os.environ)
        env["PGPASSWORD"] = self.admin_password if password is None else password
        env.pop("PGPASSFILE", None)
        return env

    def sql(self, query, db="postgres", user=None, password=None):
        """Runs one query with psql over TCP; returns its output (unaligned,
        tuples only, stripped) or raises ServerError with psql's message."""
        out = subprocess.run([self.psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-h", self.host, "-p", str(self.port),
                              "-U", user or self.admin_user, "-d", db, "-c", query],
                             env=self.env(password), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise ServerError(f"psql: {out.stderr.strip()}")
        return out.stdout.strip()

    def create_database(self, name):
        self.sql(f'CREATE DATABASE "{name}"')
        return name

    def __repr__(self):
        return f"<PostgresServer {self.host}:{self.port} dir={self.dir}>"
