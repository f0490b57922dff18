"""Fixtures for the end-to-end tests: matrix files made with NumPy, and a real embd on a free port."""
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

EMBD = os.environ.get("EMBD_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "embd"))


LISTENING = re.compile(r"\S+ notice embd \S+: listening on http://127\.0\.0\.1:\d+/(?: and unix:[^\n]*?)?, loading "
                       r"[^\n]*\n")


def after_listening(err):
    """What a start-up that failed after the bind printed past its first line, the log's (notice) line naming the
    port and the file being loaded: the start-up error must still be one line, the last, saying everything."""
    m = LISTENING.match(err)
    assert m, err
    return err[m.end():]


def get_from(port, source, path):
    """(status, body) of a GET sent from another loopback address (127.0.0.0/8 all reaches 127.0.0.1)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    """An http.client connection over a Unix-domain socket (listen.unix), as curl --unix-socket: Host: localhost."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


class KeepAlive:
    """One keep-alive client connection, as a data loader keeps it; after an error it reconnects."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def fetch(self, method, path, body=None, headers=None):
        """(response, body bytes), or (None, the error's repr) when the connection failed."""
        try:
            self.conn.request(method, path, body, headers or {})
            r = self.conn.getresponse()
            return r, r.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            return None, repr(e)

    def close(self):
        self.conn.close()


class Daemon:
    """One running embd, started with the given arguments on 127.0.0.1 and a free port."""

    def __init__(self, args, tmpdir):
        self.log_path = os.path.join(tmpdir, "embd-%d.log" % id(self))
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen([EMBD, "serve", "--port", "0", *args], stdout=self.log, stderr=self.log)
        self.port = None
        self.unix = args[args.index("--unix") + 1] if "--unix" in args else None  # listen.unix's path, if any
        # The start-up line (with the port) goes to the log file when there is one.
        started = args[args.index("--log-file") + 1] if "--log-file" in args else self.log_path
        for _ in range(500):
            try:
                with open(started, errors="replace") as f:
                    m = re.search(r"on http://127\.0\.0\.1:(\d+)/", f.read())
            except FileNotFoundError:
                m = None
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            threading.Event().wait(0.01)
        # The port is bound (and logged) before the table loads, which answers 503 loading meanwhile: wait for the
        # line logged once the table is served (from then on /healthz answers 200), so that no test races the load.
        # The log, not /healthz probes: a probe's connection closes a moment after the client's close, and a test
        # counting connections (or holding an address's share of them) would count it.
        if self.port is not None and not self.loaded(started):
            self.port = None
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("embd did not start: " + self.output())

    def loaded(self, log, timeout=60.0):
        """Whether the daemon logged that it serves on its port within timeout seconds (False once it exited)."""
        serving = re.compile(r" serving .* on http://127\.0\.0\.1:%d/(?: and unix:[^\n]*)?\n" % self.port)
        end = time.time() + timeout
        while time.time() < end and self.proc.poll() is None:
            with open(log, errors="replace") as f:
                if serving.search(f.read()):
                    return True
            time.sleep(0.01)
        return False

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, headers=None, unix=False):
        """(status, headers as a lower-cased dict, body bytes) of one request on a new connection (unix: over
        listen.unix's socket)."""
        c = UnixHTTPConnection(self.unix) if unix else http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def json(self, path):
        status, _, body = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def metrics(self):
        status, _, body = self.get("/metrics")
        assert status == 200
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def settled(self, timeout=10.0):
        """Metrics once nothing is in flight: a request is counted and released when the daemon has finished
        it, which can be a moment after the client has read its last byte."""
        end = time.time() + timeout
        while True:
            m = self.metrics()
            if m["embd_inflight_accounted_bytes"] == 0 or time.time() > end:
                return m
            time.sleep(0.01)

    def stop(self):
        """SIGTERM; the daemon must exit 0 (it exits 1 if any accounted bytes were left in flight)."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        out = self.output()
        self.log.close()
        assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out
        assert "LeakSanitizer" not in out, out
        assert rc == 0, "embd exited %d:\n%s" % (rc, out[-4000:])
        return out


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """Matrix files and the arrays NumPy reads from them."""
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(20261122)
    f32 = rng.standard_normal((1000, 48)).astype(np.float32)
    f32[5] = [0.1, 1e-5, -0.0, 3.4028235e38, 1.0, 7.063] * 8  # values with known shortest forms
    f16 = rng.standard_normal((300, 32)).astype(np.float16)
    raw = rng.standard_normal((200, 16)).astype(np.float32)
    np.save(d / "f32.npy", f32)
    np.save(d / "f16.npy", f16)
    raw.tofile(d / "raw.f32")
    return {"dir": str(d), "f32": f32, "f16": f16, "raw": raw,
            "f32_path": str(d / "f32.npy"), "f16_path": str(d / "f16.npy"), "raw_path": str(d / "raw.f32")}


@pytest.fixture
def start(tmp_path):
    """start(args...) -> Daemon; every daemon started is stopped and checked at the end of the test."""
    daemons = []

    def _start(*args):
        d = Daemon(list(args), str(tmp_path))
        daemons.append(d)
        return d

    yield _start
    for d in daemons:
        d.stop()


@pytest.fixture
def f32d(start, data):
    return start(data["f32_path"])


@pytest.fixture(scope="session")
def big(tmp_path_factory):
    """A 20000 x 512 float32 matrix (40 MB): gathers big enough to outlast the socket buffers."""
    d = tmp_path_factory.mktemp("big")
    a = np.random.default_rng(7).standard_normal((20000, 512)).astype(np.float32)
    np.save(d / "big.npy", a)
    return str(d / "big.npy"), a


def npy(a):
    """The bytes np.save writes for a."""
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def wait_for(pred, timeout=10.0):
    """Whether pred() became true within timeout seconds."""
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False
