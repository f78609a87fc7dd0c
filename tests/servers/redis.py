"""A real Redis server (Debian 12 package ``redis-server``, 7.0.x) for tests:
loopback only, a free port, all state in one temp dir, ACL users on.

Users come from an ACL file in the temp dir:

    user admin on >PASSWORD ~* &* +@all
    user default off

so every connection must ``AUTH admin PASSWORD`` (or a user created with
``ACL SETUSER``).  A minimal RESP client is included; Python 3 standard
library only.

    srv = RedisServer(tmp_path).start()
    srv.command("ACL", "SETUSER", "u", "on", ">pw", "~tlm:*", "+@all")
    srv.command("SET", "tlm:a", "1", user="u", password="pw")   # -> "OK"
    srv.stop(); srv.start()        # outage and recovery: same port and users
    srv.close()                    # stop for good

Note the module name shadows the PyPI ``redis`` package only inside this
package (it is imported as ``servers.redis``).
"""

import os
import signal
import socket
import time
from pathlib import Path

from ._common import (ManagedServer, ServerError, find_binary, free_ports, random_password,
                      read_text, spawn, stop_process, wait_port_free)

START_TIMEOUT = 15.0
IO_TIMEOUT = 10.0
START_ATTEMPTS = 5


class RedisReplyError(Exception):
    """An error reply (-ERR, -NOPERM, -WRONGPASS ...).  .code is the first
    word (e.g. "NOPERM"), str(e) the whole message."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message
        self.code = message.split(" ", 1)[0] if message else ""


class RedisAuthError(RedisReplyError):
    """AUTH was refused (WRONGPASS: bad password, unknown or disabled user)."""


# ---------------------------------------------------------------------------
# RESP (version 2) client
# ---------------------------------------------------------------------------

def encode_command(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode("utf-8")
        elif isinstance(a, int):
            a = str(a).encode()
        elif not isinstance(a, (bytes, bytearray)):
            raise TypeError(f"RESP argument must be str, bytes or int: {a!r}")
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RedisConnection:
    """One RESP2 connection.  call() returns the parsed reply: str (simple
    and bulk strings, decoded as UTF-8 unless decode=False), int, None (nil),
    list; an error reply raises RedisReplyError (or is returned, with
    raise_errors=False)."""

    def __init__(self, host, port, timeout=IO_TIMEOUT, decode=True):
        self.decode = decode
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def auth(self, user, password):
        try:
            return self.call("AUTH", user, password)
        except RedisReplyError as e:
            raise RedisAuthError(e.message) from None

    def call(self, *args, raise_errors=True):
        self.sock.sendall(encode_command(args))
        reply = self._read()
        if isinstance(reply, RedisReplyError) and raise_errors:
            raise reply
        return reply

    def _line(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"truncated RESP line: {line!r}")
        return line[:-2]

    def _str(self, b):
        return b.decode("utf-8", "replace") if self.decode else b

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return self._str(rest)
        if kind == b"-":
            return RedisReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("truncated RESP bulk string")
            return self._str(data[:-2])
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP reply: {line!r}")


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------

class RedisServer(ManagedServer):
    """One redis-server process.  See the module docstring."""

    def __init__(self, base_dir, admin_user="admin", admin_password=None,
                 binary=None, name="redis"):
        self.binary = binary or find_binary("redis-server")
        self.dir = Path(base_dir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.admin_user = admin_user
        self.admin_password = admin_password or random_password()
        self.acl_path = self.dir / "users.acl"
        self.log_path = self.dir / "redis.log"
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self.start_seconds = None
        self.restart_port_wait = 5.0  # s to wait for the port on a restart
        self.acl_path.write_text(
            f"user {self.admin_user} on >{self.admin_password} ~* &* +@all\n"
            "user default off\n")
        os.chmod(self.acl_path, 0o600)

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}"

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def _argv(self):
        return [self.binary,
                "--port", str(self.port),
                "--bind", self.host,
                "--dir", str(self.dir),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--protected-mode", "yes",
                "--logfile", "",
                "--loglevel", "notice",
                "--aclfile", str(self.acl_path)]

    def start(self, timeout=START_TIMEOUT):
        """Start redis-server and wait until the admin user gets PONG.  The
        first start picks a free port (retrying on a clash); later starts
        reuse port, dir and ACL file (a restart)."""
        if self.is_running():
            return self
        t0 = time.monotonic()
        restart = self.port is not None
        attempts = 1 if restart else START_ATTEMPTS
        last = None
        for _ in range(attempts):
            if restart:
                if not wait_port_free(self.port, timeout=self.restart_port_wait):
                    raise ServerError(f"{self.name}: cannot restart, port "
                                      f"{self.port} is taken\n{self.log_tail()}")
            else:
                self.port = free_ports(1)[0]
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.proc = spawn(self._argv(), self.log_path, cwd=str(self.dir))
            ok, last = self._wait_ready(time.monotonic() + timeout, offset)
            if ok:
                break
            stop_process(self.proc, timeout=2.0, sig=signal.SIGKILL)
            new_log = read_text(self.log_path)[offset:]
            if restart or "Address already in use" not in new_log:
                raise ServerError(f"{self.name} did not start ({last})\n"
                                  f"{self.log_tail()}")
        else:
            raise ServerError(f"{self.name}: port clash on {attempts} attempts "
                              f"({last})\n{self.log_tail()}")
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline, log_offset):
        # First its log says it listens (so a clash is seen at once, and no
        # PING goes to whoever holds the port), then PONG for our admin's
        # random password proves it is our server.
        last = "no answer yet"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                return False, f"redis-server exited with status {rc}"
            if "Ready to accept connections" not in read_text(self.log_path)[log_offset:]:
                last = "log does not say 'Ready to accept connections' yet"
            else:
                try:
                    if self.command("PING", timeout=2.0) == "PONG":
                        return True, "PONG"
                except (OSError, RedisReplyError) as e:
                    last = f"PING: {e}"
            if time.monotonic() >= deadline:
                return False, f"not ready before the deadline, last: {last}"
            time.sleep(0.02)

    def stop(self, timeout=10.0, save_acl=True):
        """Graceful stop (SIGTERM, SIGKILL after timeout), keeping port, dir
        and users for a later start().  With save_acl (default) the current
        ACL users, including those made with ACL SETUSER, are written to
        the ACL file first (ACL SAVE), so they are back after start(), as on
        a server whose ACLs persist.  Keys are not kept (no RDB, no AOF)."""
        if save_acl and self.is_running():
            try:
                self.command("ACL", "SAVE", timeout=2.0)
            except (OSError, RedisReplyError):
                pass
        return stop_process(self.proc, timeout=timeout)

    # -- client -------------------------------------------------------------

    def connect(self, user=None, password=None, auth=True, timeout=IO_TIMEOUT,
                decode=True):
        """A RedisConnection, AUTHed as user (default: the admin) unless
        auth=False.  Raises RedisAuthError if AUTH is refused."""
        conn = RedisConnection(self.host, self.port, timeout=timeout, decode=decode)
        if auth:
            if user is None:
                user, password = self.admin_user, self.admin_password
            try:
                conn.auth(user, password if password is not None else "")
            except BaseException:
                conn.close()
                raise
        return conn

    def command(self, *args, user=None, password=None, auth=True,
                raise_errors=True, timeout=IO_TIMEOUT):
        """Open a connection, AUTH as user/password (default: the admin;
        auth=False: none), run one command, close.  Returns the parsed
        reply.  A refused AUTH raises RedisAuthError; an error reply raises
        RedisReplyError (or is returned, with raise_errors=False)."""
        with self.connect(user, password, auth, timeout) as conn:
            return conn.call(*args, raise_errors=raise_errors)

    def can_auth(self, user, password):
        """True if AUTH user password succeeds."""
        try:
            self.connect(user, password, timeout=2.0).close()
            return True
        except RedisAuthError:
            return False

    def acl_users(self):
        return self.command("ACL", "USERS")

    def __repr__(self):
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state} dir={self.dir}>"
