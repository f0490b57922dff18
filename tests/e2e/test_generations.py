"""Old generations stay bounded (design §7): slow readers pin generations, but never more than
limits.generations are alive; a reload past it waits limits.generation_drain_s for the oldest one's readers,
closes their connections and loads; what each live generation holds is in /metrics and /v1/info; a client
taking a response more slowly than limits.min_send_rate is cut."""
import json
import re
import signal
import socket
import threading
import time

import numpy as np
import pytest

from conftest import wait_for

TOKEN = "t0k3n-for-the-generation-tests-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN}


@pytest.fixture(scope="module")
def glove(tmp_path_factory):
    """A 24000 x 100 GloVe text file (parsed into the heap, as glove100.txt is): a whole-table slice is 9.6 MB,
    far more than a 4 KB receive buffer and the socket's send buffer (at most 4 MB here) hold."""
    d = tmp_path_factory.mktemp("gens")
    rows, dim = 24000, 100
    a = (np.random.default_rng(15).integers(-999, 999, (rows, dim)) / 100).astype(np.float32)
    words = np.array(["w%d" % i for i in range(rows)])[:, None]
    with open(d / "g.txt", "w") as f:
        f.write("\n".join(" ".join(r) for r in np.hstack([words, np.char.mod("%.2f", a)])) + "\n")
    tok = d / "token"
    tok.write_text(TOKEN + "\n")
    return {"path": str(d / "g.txt"), "token": str(tok), "rows": rows, "dim": dim}


class SlowReader:
    """A client with a 4 KB receive buffer that asks for a whole-table slice and then reads `chunk` bytes every
    `every` seconds (never, with every=None) until the connection ends or close() is called."""

    def __init__(self, port, rows, every=0.1, chunk=4096):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET /v1/rows?start=0&stop=%d&format=bin HTTP/1.1\r\nHost: x\r\n\r\n" % rows)
        got = b""
        while b"\r\n\r\n" not in got:
            got += self.sock.recv(1024)
        self.head, rest = got.split(b"\r\n\r\n", 1)
        assert self.head.startswith(b"HTTP/1.1 200"), self.head
        self.generation = int(re.search(rb"X-Embd-Generation: (\d+)", self.head).group(1))
        self.length = int(re.search(rb"Content-Length: (\d+)", self.head).group(1))
        self.received = len(rest)
        self.ended_at = None  # when the server ended the connection
        self.stop = threading.Event()
        self.every, self.chunk = every, chunk
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        if self.every is None:
            self.stop.wait()
            return
        while not self.stop.wait(self.every):
            try:
                data = self.sock.recv(self.chunk)
            except OSError:
                data = b""
            if not data:
                self.ended_at = time.time()
                return
            self.received += len(data)

    def drain(self, timeout=5.0):
        """Read what is left: the time the response's last byte or the server's end came (None if neither came
        within timeout)."""
        self.stop.set()
        self.thread.join()
        self.sock.settimeout(timeout)
        try:
            while self.received < self.length:
                data = self.sock.recv(65536)
                if not data:
                    return time.time()
                self.received += len(data)
            return time.time()
        except socket.timeout:
            return None
        except OSError:
            return time.time()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def gens(d):
    """(generations live, {generation: (bytes, readers)}) from /metrics."""
    m = d.metrics()
    out = {}
    for k, v in m.items():
        g = re.match(r'embd_generation_(bytes|readers)\{generation="(\d+)"\}', k)
        if g:
            out.setdefault(int(g.group(2)), {})[g.group(1)] = int(v)
    return int(m["embd_generations_live"]), {g: (e["bytes"], e["readers"]) for g, e in out.items()}


def test_generations_stay_bounded(start, glove):
    """Three slow readers on three generations and a SIGHUP after each: the third reload waits
    limits.generation_drain_s for the oldest generation's reader, closes its connection and loads; the
    generations alive never pass limits.generations; every reload is done; the gauges and /v1/info are exact."""
    d = start(glove["path"], "--admin.token_file", glove["token"], "--limits.generations", "3",
              "--limits.generation_drain_s", "2", "--limits.min_send_rate", "0")
    info = d.json("/v1/info")
    held = info["heap_bytes"] + info["vocabulary"]["bytes"]  # rows parsed into the heap, and the words
    assert held > glove["rows"] * glove["dim"] * 4
    assert info["generations"] == [{"generation": 1, "bytes": held, "readers": 0}]
    peak = {"live": 0}
    watching = threading.Event()

    def watch():
        while not watching.is_set():
            peak["live"] = max(peak["live"], gens(d)[0])
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    readers = []
    try:
        for n in (1, 2, 3):
            r = SlowReader(d.port, glove["rows"])
            readers.append(r)
            assert r.generation == n
            if n < 3:
                d.proc.send_signal(signal.SIGHUP)
                assert wait_for(lambda: d.json("/healthz")["generation"] == n + 1)
        # A request the client has finished may still hold its generation for a moment on the server: wait for it.
        assert wait_for(lambda: gens(d) == (3, {1: (held, 1), 2: (held, 1), 3: (held, 1)}))
        want = [{"generation": n, "bytes": held, "readers": 1} for n in (1, 2, 3)]
        assert wait_for(lambda: d.json("/v1/info")["generations"] == want), d.json("/v1/info")

        # The third SIGHUP: generation 1's reader is given 2 s, then closed; generation 4 loads.
        t0 = time.time()
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: d.json("/healthz")["generation"] == 4, timeout=15)
        took = time.time() - t0
        assert 2.0 <= took < 8.0, took
        end = readers[0].drain()
        assert end is not None and end - t0 >= 2.0 and readers[0].received < readers[0].length
        assert readers[1].ended_at is None and readers[2].ended_at is None
        assert wait_for(lambda: gens(d) == (3, {2: (held, 1), 3: (held, 1), 4: (held, 0)}))

        # An admin reload past the limit: answered 200 once generation 2's reader has been closed.
        t0 = time.time()
        s, h, body = d.request("POST", "/v1/admin/reload", b"", AUTH)
        assert s == 200 and json.loads(body)["generation"] == 5, body
        assert time.time() - t0 >= 2.0
        assert readers[1].drain() is not None and readers[1].received < readers[1].length
        assert readers[2].ended_at is None
        # Generation 4 had no reader: it went when 5 took its place.
        assert wait_for(lambda: gens(d) == (2, {3: (held, 1), 5: (held, 0)}))
        want = [{"generation": 3, "bytes": held, "readers": 1}, {"generation": 5, "bytes": held, "readers": 0}]
        assert wait_for(lambda: d.json("/v1/info")["generations"] == want), d.json("/v1/info")
    finally:
        for r in readers:
            r.close()
        watching.set()
        watcher.join()
    assert peak["live"] == 3
    assert wait_for(lambda: gens(d) == (1, {5: (held, 0)}))
    m = d.settled()
    assert m["embd_inflight_accounted_bytes"] == 0
    assert m['embd_rejected_total{reason="generations"}'] == 2
    assert m['embd_reloads_total{result="ok"}'] == 4 and m['embd_reloads_total{result="failed"}'] == 0
    out = d.output()
    assert len(re.findall(r"generation 1: closed the connection of 127\.0\.0\.1:\d+ \(sending its response", out)) == 1
    assert len(re.findall(r"generation 2: closed the connection of 127\.0\.0\.1:\d+ \(sending its response", out)) == 1
    assert "generation 1 still had 1 reader(s) after limits.generation_drain_s (2 s): closed 1 connection(s)" in out
    assert len(re.findall(r"reload done: generation \d+", out)) == 4


def test_a_reader_that_leaves_in_time_is_not_closed(start, glove):
    """A reload past the limit whose oldest generation's reader finishes within the drain time closes nothing."""
    d = start(glove["path"], "--admin.token_file", glove["token"], "--limits.generations", "2",
              "--limits.generation_drain_s", "20", "--limits.min_send_rate", "0")
    r = SlowReader(d.port, glove["rows"], every=None)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.json("/healthz")["generation"] == 2)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=d.request("POST", "/v1/admin/reload", b"", AUTH)))
    t.start()
    time.sleep(0.5)
    assert t.is_alive() and gens(d)[0] == 2  # waiting for generation 1's reader, not loading a third
    t0 = time.time()
    assert r.drain() is not None and r.received == r.length  # read it all: the whole response, then the end
    r.close()
    t.join(10)
    assert result["r"][0] == 200 and json.loads(result["r"][2])["generation"] == 3
    assert time.time() - t0 < 5
    m = d.settled()
    assert m['embd_rejected_total{reason="generations"}'] == 0 and m["embd_inflight_accounted_bytes"] == 0


def test_min_send_rate_cuts_a_reader_that_never_reads(start, glove):
    """A client that never reads is closed once a window has passed under limits.min_send_rate (long before
    limits.timeout_s); a slow-but-steady reader above the rate is not."""
    d = start(glove["path"], "--limits.min_send_rate", "32KiB", "--limits.send_rate_window_s", "1")
    stalled = SlowReader(d.port, glove["rows"], every=None)
    steady = SlowReader(d.port, glove["rows"], every=0.01, chunk=8192)  # ~400 KB/s at most, well above 32 KiB/s
    t0 = time.time()
    try:
        assert wait_for(lambda: d.metrics()['embd_rejected_total{reason="min_send_rate"}'] == 1, timeout=5)
        took = time.time() - t0  # t0 is a moment after its response began: the window is 1 s, the sweep 0.25 s
        assert 0.8 <= took < 4.0, took
        # Its connection is gone on the server's side: only the steady reader's and this scrape's are open.
        assert wait_for(lambda: d.metrics()["embd_connections"] == 2)
        end = stalled.drain()
        assert end is not None and stalled.received < stalled.length
        before = steady.received
        time.sleep(2.5)  # more windows: the steady reader stays
        assert steady.ended_at is None and steady.received > before + 32768 * 2
        assert d.metrics()['embd_rejected_total{reason="min_send_rate"}'] == 1
    finally:
        stalled.close()
        steady.close()
    m = d.settled()
    assert m["embd_inflight_accounted_bytes"] == 0
    out = d.output()
    assert len(re.findall(r"closed the connection of 127\.0\.0\.1:\d+ \(generation 1\): its client took \d+ bytes "
                          r"in 1\.\d s \(\d+ bytes/s\), under limits\.min_send_rate 32768 bytes/s", out)) == 1


def test_min_send_rate_zero_is_off(start, glove):
    """limits.min_send_rate 0: a stalled reader stays (until limits.timeout_s)."""
    d = start(glove["path"], "--limits.min_send_rate", "0", "--limits.send_rate_window_s", "1")
    stalled = SlowReader(d.port, glove["rows"], every=None)
    time.sleep(2.0)
    assert d.metrics()['embd_rejected_total{reason="min_send_rate"}'] == 0
    # Still open: its connection and a scrape's (an earlier scrape's may take a moment to be closed).
    assert wait_for(lambda: d.metrics()["embd_connections"] == 2)
    stalled.close()
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


def test_sigterm_during_a_drain_stops_at_once(start, glove):
    """A reload waiting for an old generation's readers does not hold up SIGTERM: the daemon stops within
    limits.shutdown_s (closing the slow readers) and exits 0 with nothing left in flight; the waiting admin
    reload is answered."""
    d = start(glove["path"], "--admin.token_file", glove["token"], "--limits.generations", "2",
              "--limits.generation_drain_s", "60", "--limits.min_send_rate", "0", "--limits.shutdown_s", "1")
    r = SlowReader(d.port, glove["rows"], every=None)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.json("/healthz")["generation"] == 2)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=d.request("POST", "/v1/admin/reload", b"", AUTH)))
    t.start()
    assert wait_for(lambda: "waiting up to 60 s for the 1 reader(s) of generation 1" in d.output())
    t0 = time.time()
    out = d.stop()
    assert time.time() - t0 < 4
    t.join(10)
    assert result["r"][0] == 500 and b"shutting down" in result["r"][2], result
    assert "stopped; in-flight accounted bytes 0, generations live 0" in out
    r.close()


def test_a_queued_admin_reload_is_never_drained_as_a_reader(start, glove):
    """An admin reload waiting its turn holds no generation: two reloads sent while generation 1 is current, the
    second past limits.generations, drain only the real reader of generation 1; the second reload's own
    connection (which held generation 1 when it arrived) is not closed under it: it is answered."""
    d = start(glove["path"], "--admin.token_file", glove["token"], "--limits.generations", "2",
              "--limits.generation_drain_s", "1", "--limits.min_send_rate", "0")
    r = SlowReader(d.port, glove["rows"], every=None)
    assert r.generation == 1
    results = {}

    def reload(name):
        try:
            results[name] = d.request("POST", "/v1/admin/reload", b"", AUTH)
        except Exception as e:  # noqa: BLE001
            results[name] = repr(e)

    ts = [threading.Thread(target=reload, args=(n,)) for n in ("a", "b")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    statuses = [v[0] if isinstance(v, tuple) else v for v in results.values()]
    assert statuses == [200, 200], results
    gens = sorted(json.loads(v[2])["generation"] for v in results.values())
    assert gens == [2, 3]
    out = d.output()
    # Only the slow reader held generation 1 after the drain: one connection closed, not the waiting reload's.
    closed = re.findall(r"generation 1 still had (\d+) reader\(s\) after .*: closed (\d+) connection", out)
    assert closed in ([], [("1", "1")]), out
    assert d.settled()["embd_inflight_accounted_bytes"] == 0
    r.close()
