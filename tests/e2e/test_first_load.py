"""The first load runs while the main thread serves: request deadlines are enforced, SIGTERM, SIGINT, SIGUSR1 and
SIGHUP are acted on, the real port is logged at the bind, and a failed SIGUSR1 reopen is said on stderr and counted.
The load is held by locking the pair's directory as `embd convert` does (test_ops.held_pair)."""
import fcntl
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import EMBD, Daemon, wait_for
from test_ops import files, free_port, get, held_pair  # noqa: F401 (fixtures)

LISTENING = r"notice embd \S+: listening on http://127\.0\.0\.1:(\d+)/, loading (\S+)\n"


class Held:
    """`embd serve ARGS` whose first load waits for the held lock. On --port 0 (port None) its port is read from the
    listening line; otherwise it is on a free port, found listening."""

    def __init__(self, args, tmp_path, log_file=None, port=-1):
        port = free_port() if port == -1 else port
        self.out = open(tmp_path / "out.log", "w+")
        self.p = subprocess.Popen([EMBD, "serve", *args, "--port", str(port or 0)], stdout=self.out, stderr=self.out)
        self.log = log_file or str(tmp_path / "out.log")
        self.port, self.loading = port, None
        if port:
            assert wait_for(lambda: get(port, "/healthz") is not None or self.p.poll() is not None)
            assert self.p.poll() is None, self.output()
            return
        m = None
        for _ in range(1000):
            m = re.search(LISTENING, open(self.log).read()) if os.path.exists(self.log) else None
            if m or self.p.poll() is not None:
                break
            time.sleep(0.01)
        assert m, self.output()
        self.port, self.loading = int(m.group(1)), m.group(2)

    def output(self):
        self.out.seek(0)
        return self.out.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def test_the_port_is_logged_at_the_bind_with_what_is_loading(held_pair, tmp_path):
    """--port 0: the port is found while the table loads (it used to be named only once loaded)."""
    args, _ = held_pair
    h = Held(args, tmp_path, port=None)
    try:
        assert h.loading == args[0]
        assert get(h.port, "/healthz")[0] == 503  # that port, and still loading
        assert " serving " not in h.output()
    finally:
        h.stop()


def test_a_slow_request_is_timed_out_during_the_first_load(held_pair, tmp_path):
    """The request deadline holds during the load as once serving: a header a line at a time is closed after
    limits.request_timeout_s, not kept for the whole load (the sweep ran only once serving)."""
    args, _ = held_pair
    h = Held([*args, "--limits.request_timeout_s", "1"], tmp_path)
    try:
        s = socket.create_connection(("127.0.0.1", h.port))
        s.settimeout(0.2)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0, closed = time.time(), None
        while time.time() - t0 < 4:
            try:
                s.sendall(b"X-Slow: 1\r\n")
                if s.recv(4096) == b"":
                    closed = time.time() - t0
                    break
            except socket.timeout:
                pass
            except OSError:
                closed = time.time() - t0
                break
            time.sleep(0.1)
        s.close()
        assert closed is not None and 0.9 < closed < 2.5, closed
        assert h.p.poll() is None
    finally:
        h.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_during_the_first_load_stops_gracefully_without_waiting(held_pair, tmp_path, sig):
    """Exit 0 with a line, at once, though the load cannot finish (it used to die by the default action)."""
    args, _ = held_pair
    h = Held(args, tmp_path)
    try:
        t0 = time.time()
        h.p.send_signal(sig)
        rc = h.p.wait(timeout=10)
        assert time.time() - t0 < 5
        out = h.output()
        assert rc == 0, out
        assert "notice %s: stopping during the first load (not waiting for it)\n" % sig.name in out
        assert re.search(r" notice stopped during the first load; in-flight accounted bytes 0\n", out), out
    finally:
        h.stop()


def test_sigusr1_during_the_first_load_reopens_the_log(held_pair, tmp_path):
    args, fd = held_pair
    log = tmp_path / "embd.log"
    h = Held([*args, "--log-file", str(log)], tmp_path, log_file=str(log))
    try:
        os.rename(log, tmp_path / "embd.log.1")
        h.p.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: log.exists() and "SIGUSR1: log file reopened\n" in log.read_text())
        assert h.p.poll() is None and get(h.port, "/healthz")[0] == 503
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert wait_for(lambda: (get(h.port, "/healthz") or [0])[0] == 200)
        assert " serving " in log.read_text()
        h.p.send_signal(signal.SIGTERM)
        assert h.p.wait(timeout=30) == 0
    finally:
        h.stop()


def test_sighup_during_the_first_load_reloads_once_it_is_served(held_pair, tmp_path):
    """The file may have changed while it loaded: one reload after the first load (generation 2), with a line."""
    args, fd = held_pair
    h = Held(args, tmp_path)
    try:
        h.p.send_signal(signal.SIGHUP)
        h.p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "SIGHUP: the first load is still running" in h.output())
        assert h.p.poll() is None and get(h.port, "/healthz")[0] == 503
        fcntl.flock(fd, fcntl.LOCK_UN)

        def generation():
            r = get(h.port, "/metrics")
            m = r and re.search(rb"\nembd_matrix_generation (\d+)\n", r[2])
            return int(m.group(1)) if m and r[0] == 200 else 0
        assert wait_for(lambda: generation() == 2)
        time.sleep(0.3)
        assert generation() == 2  # two SIGHUPs during the load: one reload
        h.p.send_signal(signal.SIGTERM)
        assert h.p.wait(timeout=30) == 0
    finally:
        h.stop()


def test_a_failed_log_reopen_is_said_on_stderr_and_counted(data, tmp_path):
    """The log's directory removed: SIGUSR1 cannot reopen the file; the line goes to the old file and to stderr
    (it used to go only into the deleted file), and embd_log_reopen_failures_total counts it."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "embd.log"
    d = Daemon([data["f32_path"], "--log-file", str(log)], str(tmp_path))
    try:
        assert d.metrics()["embd_log_reopen_failures_total"] == 0
        os.rename(log, tmp_path / "embd.log.1")
        os.rmdir(logs)
        d.proc.send_signal(signal.SIGUSR1)
        want = "SIGUSR1: cannot reopen %s: No such file or directory; still writing to the old file\n" % log
        assert wait_for(lambda: want in d.output())
        assert "embd: " + want in d.output()  # stderr
        assert want in (tmp_path / "embd.log.1").read_text()
        assert d.metrics()["embd_log_reopen_failures_total"] == 1
        assert d.get("/healthz")[0] == 200
    finally:
        d.stop()
