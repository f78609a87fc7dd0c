"""Shared plumbing for the real test servers: free ports, process start and
stop, random passwords.  Python 3 standard library only."""

import atexit
import os
from pathlib import Path
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
import weakref

INSTALL_HINT = ("install the test servers with scripts/install-test-servers.sh "
                "(Debian 12 packages influxdb influxdb-client redis-server redis-tools "
                "postgresql-15)")

PASSWORD_ALPHABET = string.ascii_letters + string.digits + "_-"

# Every process started here, so that an interpreter exit (e.g. a test run
# interrupted with Ctrl-C) does not leave servers running.
_live = weakref.WeakSet()


class ServerError(RuntimeError):
    """A test server could not be started or did not answer."""


class ServerNotInstalled(ServerError):
    """The server binary is missing: run scripts/install-test-servers.sh."""


def find_binary(name, hint=INSTALL_HINT):
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if not path:
        raise ServerNotInstalled(f"'{name}' is not installed: {hint}")
    return path


def random_password(n=24):
    """A password from [A-Za-z0-9_-]: safe inside InfluxQL quotes and in
    Redis ACL rules without any escaping."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(n))


def free_ports(n=1, host="127.0.0.1"):
    """n distinct ports that were free a moment ago (bind to port 0, read the
    port, close).  All n sockets are held open together so they differ.
    Another process may still take one before the server binds it: callers
    retry the start on a clash."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port, host="127.0.0.1"):
    """True unless a socket listens on the port. SO_REUSEADDR, as influxd
    and redis-server set it themselves: leftover connections of a stopped
    server (a client's idle keep-alive, FIN-WAIT-2) do not block a restart."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _preexec_pdeathsig():
    """In the child: get SIGTERM when the parent (the test run) dies, so a
    killed pytest does not leak servers.  Linux only; best effort."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # pragma: no cover - best effort only
        pass


def spawn(argv, log_path, cwd=None, env=None):
    """Start argv with stdin from /dev/null and stdout+stderr appended to
    log_path.  Returns the Popen."""
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(argv, stdin=devnull, stdout=log,
                                stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                close_fds=True, preexec_fn=_preexec_pdeathsig)
    _live.add(proc)
    return proc


def stop_process(proc, timeout=10.0, sig=signal.SIGTERM):
    """Send sig to proc (only this pid), wait up to timeout, then SIGKILL.
    Returns the exit status (None if proc is None)."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    _live.discard(proc)
    return proc.returncode


@atexit.register
def _kill_leftovers():
    for proc in list(_live):
        if proc.poll() is None:
            try:
                proc.kill()
                proc.wait(timeout=5)
            except Exception:
                pass


def wait_port_free(port, timeout=5.0, host="127.0.0.1"):
    """After a stop: wait until port can be bound again (it normally can at
    once, both servers set SO_REUSEADDR)."""
    deadline = time.monotonic() + timeout
    while not port_is_free(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def read_text(path, limit=None):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ""
    if limit is not None and len(data) > limit:
        data = b"...[cut]...\n" + data[-limit:]
    return data.decode("utf-8", "replace")


class ManagedServer:
    """What both test servers share: a child process (``self.proc``) with
    a log file (``self.log_path``) that a test stops, kills and reads."""

    def kill(self):
        """Abrupt stop (SIGKILL); start() again works."""
        return stop_process(self.proc, timeout=5.0, sig=signal.SIGKILL)

    def close(self):
        """Stop for good (fixture teardown): the dir is thrown away."""
        self.kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def log(self):
        return read_text(self.log_path)

    def log_tail(self, limit=4000):
        return f"--- {self.log_path} (tail) ---\n" + read_text(self.log_path, limit)

    def write_password_file(self, path, password=None):
        """Write the admin password (or the one given) as one line to path,
        mode 0600.  Returns the path as str."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write((password if password is not None else self.admin_password) + "\n")
        os.chmod(path, 0o600)
        return str(path)
