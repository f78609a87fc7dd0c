"""Helpers for the shared-mode tests (test_multi_instance.py, issue 11):
several tlmd instances over one PostgreSQL database.

* fixtures ``pg`` (the module's PostgreSQL 15 from tests/servers),
  ``database`` (a new, empty database per test) and ``password_file``;
  a test module imports them by name (``from multi_harness import pg, ...``).
* ``start_instances(factory, n, storage, password_file, ...)``: n tlmd over
  one database, started one after the other or all at once.
* ``pipelined(d, requests)``: requests on one TCP connection at once.
* ``RespLog``: a relay in front of redis-server that records every command
  tlmd sends (Redis ``MONITOR`` does not show ``ACL`` commands, they are
  administrative), each with its time and the tlmd instance that sent it
  (the process that owns the connection's client end, from /proc).
* ``stored_ids(pg, db)``: the ids in the ``leases`` table.

Python 3 standard library only, like the rest of the tests.
"""

import os
import re
import secrets
import socket
import threading
import time

import pytest

from tlmd_harness import TcpClient, assert_success


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg(postgres_server_module):
    return postgres_server_module


@pytest.fixture
def database(pg):
    return pg.create_database(f"tlm_{secrets.token_hex(4)}")


@pytest.fixture
def password_file(pg, tmp_path):
    return pg.write_password_file(tmp_path / "pg-password")


def stored_ids(pg, database, where=""):
    out = pg.sql(f"SELECT id FROM leases {where} ORDER BY id", db=database)
    return set(out.split()) if out else set()


def instance_args(password_file, extra=None):
    return ["--storage-password-file", str(password_file)] + list(extra or [])


def start_instances(factory, n, storage, password_file, names=None, config=None,
                    args=None, at_once=False, timeout=30.0):
    """n tlmd instances with the same --storage and config.  at_once: all
    processes are spawned together (a barrier), each waits for its own
    ready line; otherwise one after the other.  Returns the list."""
    names = names or [chr(ord("A") + i) for i in range(n)]
    ds = [factory(start=False, name=nm, storage=storage, config=config,
                  args=instance_args(password_file, args)) for nm in names]
    if not at_once:
        for d in ds:
            d.start(timeout=timeout)
        return ds
    barrier = threading.Barrier(n)
    errors = [None] * n

    def run(i):
        try:
            barrier.wait(10)
            ds[i].start(timeout=timeout)
        except BaseException as e:      # reported below
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 15)
    failed = [(ds[i].name, e) for i, e in enumerate(errors) if e is not None]
    assert not failed, f"instances that did not start: {failed}"
    return ds


# ---------------------------------------------------------------------------
# TCP
# ---------------------------------------------------------------------------

def pipelined(d, requests, timeout=60.0, window=None):
    """All requests on one TCP connection to d; their replies, in order.
    window: at most that many in flight at once (default: all)."""
    out = []
    with TcpClient(d.tcp_port) as c:
        if window is None:
            c.send_many(requests)
            return c.recv_many(len(requests), timeout=timeout)
        sent = 0
        while len(out) < len(requests):
            while sent < len(requests) and sent - len(out) < window:
                c.send(requests[sent])
                sent += 1
            out.append(c.recv(timeout=timeout))
    return out


def gets(d, ids, timeout=60.0):
    return pipelined(d, [{"action": "get", "token_id": i} for i in ids],
                     timeout=timeout)


# ---------------------------------------------------------------------------
# who owns a connection
# ---------------------------------------------------------------------------

def _socket_inodes(pid):
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for fd in names:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _inode_of_connection(port, server_port):
    """The inode of the established IPv4 TCP socket 127.0.0.1:port ->
    127.0.0.1:server_port (a client end), or None.  (Closed connections
    that used the same port linger in TIME_WAIT, with inode 0.)"""
    local = f"0100007F:{port:04X}"
    remote = f"0100007F:{server_port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == local and fields[2] == remote and fields[9] != "0":
                return fields[9]
    return None


def owner_of_connection(port, server_port, processes):
    """The name of the process (processes: {name: pid}) that holds the
    client end 127.0.0.1:port of a connection to server_port, or None."""
    inode = _inode_of_connection(port, server_port)
    if inode is None:
        return None
    for name, pid in processes.items():
        if pid is not None and inode in _socket_inodes(pid):
            return name
    return None


# ---------------------------------------------------------------------------
# a Redis relay that logs commands
# ---------------------------------------------------------------------------

class RespLog:
    """A TCP relay to redis-server at (host, port) on a free loopback port
    (``.port``) that parses what clients send (RESP arrays of bulk strings)
    and records each command: ``(wall time s, instance name or None,
    [args as str])``.  The instance is the tlmd (``watch(name, tlmd)``)
    whose process owns the connection's client end, found when the
    connection is accepted.  Passwords in AUTH and ACL SETUSER are
    replaced with '***'.

    Faults for one instance's connections (to make it die with work
    under way):

    * ``hold_commands(name, prefix)``: a command of that instance that
      starts with prefix (e.g. ``("ACL", "DELUSER")``), and everything
      after it on its connection, is kept back and never reaches Redis
      (recorded with ``held=True``, left out of ``deletions()``);
    * ``hold_replies(name)``: Redis carries out the instance's commands,
      but their replies are kept back.
    """

    def __init__(self, port, host="127.0.0.1"):
        self.target = (host, port)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.commands = []
        self.held = []
        self.watched = {}
        self.connections = []
        self.hold_prefix = {}         # instance -> command prefix (upper case)
        self.replies_held = set()     # instances
        self.closed = False
        threading.Thread(target=self._accept, daemon=True,
                         name="resp-log-accept").start()

    def watch(self, name, tlmd):
        self.watched[name] = tlmd

    def hold_commands(self, name, prefix):
        with self.lock:
            self.hold_prefix[name] = [w.upper() for w in prefix]

    def hold_replies(self, name):
        with self.lock:
            self.replies_held.add(name)

    def release(self):
        """Stops holding for the connections accepted from now on (what
        was held stays held)."""
        with self.lock:
            self.hold_prefix.clear()
            self.replies_held.clear()

    def _pids(self):
        return {name: (d.proc.pid if d.proc is not None and d.proc.poll() is None
                       else None) for name, d in self.watched.items()}

    def _accept(self):
        while True:
            try:
                client, addr = self.sock.accept()
            except OSError:
                return
            owner = owner_of_connection(addr[1], self.port, self._pids())
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for sk in (client, server):
                sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += [client, server]
            threading.Thread(target=self._upstream, args=(client, server, owner),
                             daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, owner),
                             daemon=True).start()

    @staticmethod
    def _shutdown(*socks):
        for sk in socks:
            try:
                sk.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _upstream(self, src, dst, owner):
        buf, parsing, holding = b"", True, False
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not parsing:
                    if not holding:
                        dst.sendall(data)
                    continue
                buf += data
                while True:
                    try:
                        cmd, raw, buf = _parse_resp_command(buf)
                    except Exception as e:   # never break the relay
                        with self.lock:
                            self.commands.append((time.time(), owner,
                                                  ["<unparsed>", repr(e)]))
                        parsing = False
                        if not holding:
                            dst.sendall(buf)
                        buf = b""
                        break
                    if cmd is None:
                        break
                    words = _redacted([w.decode("utf-8", "replace") for w in cmd])
                    with self.lock:
                        prefix = self.hold_prefix.get(owner)
                        if prefix and [w.upper() for w in words[:len(prefix)]] == prefix:
                            holding = True
                        if holding:
                            self.held.append((time.time(), owner, words))
                        else:
                            self.commands.append((time.time(), owner, words))
                    if not holding:
                        dst.sendall(raw)
        except OSError:
            pass
        finally:
            self._shutdown(src, dst)

    def _downstream(self, src, dst, owner):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    holding = owner in self.replies_held
                if not holding:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            self._shutdown(src, dst)

    def log(self):
        with self.lock:
            return list(self.commands)

    def held_commands(self):
        with self.lock:
            return list(self.held)

    def deletions(self):
        """{user: [(time, instance), ...]} of every ACL DELUSER sent on to
        Redis."""
        out = {}
        for t, owner, words in self.log():
            if [w.upper() for w in words[:2]] == ["ACL", "DELUSER"]:
                for user in words[2:]:
                    out.setdefault(user, []).append((t, owner))
        return out

    def close(self):
        self.closed = True
        self.sock.close()
        with self.lock:
            for sk in self.connections:
                try:
                    sk.close()
                except OSError:
                    pass


def _redacted(words):
    upper = [w.upper() for w in words]
    if upper[:1] == ["AUTH"]:
        return [words[0]] + ["***"] * (len(words) - 1)
    if upper[:2] == ["ACL", "SETUSER"]:
        return [w if not w.startswith(">") else ">***" for w in words]
    return words


def _parse_resp_command(buf):
    """(list of bytes, its raw bytes, rest) for the first complete command
    in buf (a RESP array of bulk strings, or an inline line of words), or
    (None, b"", buf)."""
    if not buf:
        return None, b"", buf
    end = buf.find(b"\r\n")
    if end < 0:
        return None, b"", buf
    if buf[:1] != b"*":
        return buf[:end].split(), buf[:end + 2], buf[end + 2:]
    n = int(buf[1:end])
    pos = end + 2
    words = []
    for _ in range(max(n, 0)):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None, b"", buf
        if buf[pos:pos + 1] != b"$":
            raise ValueError(f"not a bulk string in a command: {buf[pos:pos + 20]!r}")
        length = int(buf[pos + 1:end])
        start = end + 2
        if len(buf) < start + length + 2:
            return None, b"", buf
        words.append(buf[start:start + length])
        pos = start + length + 2
    return words, buf[:pos], buf[pos:]


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

TLM_USER_RE = re.compile(r"^tlm_[A-Za-z0-9_-]+$")


def tlm_users(redis_srv):
    """The tlm_ users redis-server has now (asked directly, not via a relay)."""
    return {u for u in redis_srv.acl_users() if TLM_USER_RE.match(u)}


def health_of(d):
    with TcpClient(d.tcp_port) as c:
        return assert_success(c.request({"action": "health"}))
