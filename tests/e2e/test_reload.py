"""Hot reload: under load, every response's bytes match the generation its header names; old mappings are
released when their last response completes; failed reloads leave the current generation serving."""
import json
import os
import re
import signal
import socket
import threading
import time

import numpy as np
import pytest

from conftest import Daemon, KeepAlive, wait_for

TOKEN = "t0k3n-for-the-reload-tests-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN}


@pytest.fixture
def two(tmp_path):
    """Two 500 x 32 matrices whose rows differ everywhere: A[i] = i + j/100, B = -A."""
    a = (np.arange(500, dtype=np.float32)[:, None] + np.arange(32, dtype=np.float32)[None, :] / 100).astype(np.float32)
    b = -a
    pa, pb = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(pa, a)
    np.save(pb, b)
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    return {"a": a, "b": b, "pa": str(pa), "pb": str(pb), "token": str(tok), "dir": tmp_path}


def test_reload_under_load_never_mixes_generations(start, two):
    d = start(two["pa"], "--admin.token_file", two["token"])
    stop = threading.Event()
    failures, served, mismatched = [], [0], []

    def client(seed):
        rng = np.random.default_rng(seed)
        conn = KeepAlive(d.port)
        while not stop.is_set():
            if rng.integers(0, 3) == 0:
                path, ids = "/v1/rows?start=0&stop=500&format=bin", slice(0, 500)  # zero-copy, 64 KB
            else:
                ids = rng.integers(0, 500, size=8).tolist()
                path = "/v1/rows?format=bin&ids=" + ",".join(map(str, ids))
            r, body = conn.fetch("GET", path)
            if r is None:
                failures.append(body)
                continue
            if r.status != 200:
                failures.append((r.status, body[:200]))
                continue
            gen = int(r.getheader("X-Embd-Generation"))
            want = (two["a"] if gen % 2 == 1 else two["b"])[ids].tobytes()
            if body != want:
                mismatched.append((gen, path))
            served[0] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    soak = float(os.environ.get("EMBD_SOAK_SECONDS", "0"))  # make soak: as many reloads as fit in that time
    reloads, end = 0, time.time() + soak
    while reloads < 40 or time.time() < end:
        target = two["pb"] if reloads % 2 == 0 else two["pa"]
        s, _, body = d.request("POST", "/v1/admin/reload?path=" + target, b"", AUTH)
        assert s == 200, body
        reloads += 1
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    print("\nreload under load: %d reloads, %d responses checked against their generation, %d failed, %d mixed"
          % (reloads, served[0], len(failures), len(mismatched)))
    assert failures == [] and mismatched == []
    assert served[0] > reloads
    m = d.settled()
    assert m["embd_matrix_generation"] == reloads + 1
    assert m['embd_reloads_total{result="ok"}'] == reloads
    assert m["embd_generations_live"] == 1  # every old mapping was released
    assert m["embd_inflight_accounted_bytes"] == 0


def test_failed_reload_keeps_serving(start, two):
    d = start(two["pa"], "--admin.token_file", two["token"])
    bad = two["dir"] / "bad.npy"
    bad.write_bytes(open(two["pb"], "rb").read()[:200])  # a header that promises more than follows
    for path, fragment in ((str(bad), "needs 64000 data bytes"), ("/nonexistent.npy", "No such file")):
        s, h, body = d.request("POST", "/v1/admin/reload?path=" + path, b"", AUTH)
        assert s == 500 and b'"reload_failed"' in body and fragment.encode() in body, body
    assert d.json("/healthz")["generation"] == 1
    assert d.get("/v1/rows/7?format=bin")[2] == two["a"][7].tobytes()
    m = d.settled()
    assert m['embd_reloads_total{result="failed"}'] == 2 and m["embd_generations_live"] == 1


def test_admin_needs_the_token_and_is_off_without_one(start, two):
    d = start(two["pa"], "--admin.token_file", two["token"])
    s, h, body = d.request("POST", "/v1/admin/reload", b"")
    assert s == 401 and h["www-authenticate"] == "Bearer" and b'"unauthorized"' in body
    s, h, body = d.request("POST", "/v1/admin/reload", b"", {"Authorization": "Bearer wrong"})
    assert s == 401
    s, h, body = d.request("GET", "/v1/admin/reload", headers=AUTH)
    assert s == 405
    off = start(two["pa"])
    s, h, body = off.request("POST", "/v1/admin/reload", b"", AUTH)
    assert s == 404 and b"the admin endpoints are off" in body


def test_sighup_reloads_a_file_replaced_by_rename(start, two):
    live = two["dir"] / "live.npy"
    os.link(two["pa"], live)
    d = start(str(live))
    tmp = two["dir"] / "live.npy.tmp"
    os.link(two["pb"], tmp)
    os.rename(tmp, live)  # replace by rename, never truncate in place
    d.proc.send_signal(signal.SIGHUP)
    end = time.time() + 10
    while d.json("/healthz")["generation"] != 2 and time.time() < end:
        time.sleep(0.02)
    s, h, body = d.get("/v1/rows/7?format=bin")
    assert h["x-embd-generation"] == "2" and body == two["b"][7].tobytes()


def test_a_reload_to_a_fifo_fails_at_once(start, two):
    """A FIFO (or a device) is refused before a byte is read: the reload answers 500 at once instead of
    hanging until a writer comes, and the current generation serves on."""
    d = start(two["pa"], "--admin.token_file", two["token"], "--threads", "1")
    fifo = two["dir"] / "slow.npy"
    os.mkfifo(fifo)
    t0 = time.time()
    s, h, body = d.request("POST", "/v1/admin/reload?path=" + str(fifo), b"", AUTH)
    assert time.time() - t0 < 5
    assert s == 500 and json.loads(body)["error"]["code"] == "reload_failed", body
    assert b"not a regular file (a FIFO)" in body, body
    assert d.json("/healthz")["generation"] == 1
    for i in range(20):
        assert d.get("/v1/rows/%d?format=bin" % i)[2] == two["a"][i].tobytes()
    assert d.settled()['embd_reloads_total{result="failed"}'] == 1


def test_an_empty_path_is_400_never_the_demo(start, two):
    """?path= names no file: 400, nothing loads, and matrix.path stays what it was, so the next SIGHUP
    reloads the file (not the built-in demo matrix)."""
    live = two["dir"] / "live.npy"
    os.link(two["pa"], live)
    d = start(str(live), "--admin.token_file", two["token"])
    for query in ("?path=", "?path"):
        s, h, body = d.request("POST", "/v1/admin/reload" + query, b"", AUTH)
        assert s == 400 and json.loads(body)["error"]["code"] == "bad_parameter", (query, body)
    assert d.json("/healthz")["generation"] == 1
    tmp = two["dir"] / "live.npy.tmp"
    os.link(two["pb"], tmp)
    os.rename(tmp, live)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.json("/healthz")["generation"] == 2)
    info = d.json("/v1/info")
    assert info["source"] == str(live) and info["rows"] == 500 and info["dim"] == 32
    assert d.get("/v1/rows/7?format=bin")[2] == two["b"][7].tobytes()


# Signals during a reload. A reload must take long enough for signals to arrive while it runs: a 200 MB
# matrix, evicted from the page cache before each load, is read from disk by --populate (~0.1-1 s).

@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    d = tmp_path_factory.mktemp("slow")
    path = d / "slow.npy"
    np.save(path, np.ones((100000, 512), dtype=np.float32))
    small = d / "small.npy"
    np.save(small, np.zeros((10, 512), dtype=np.float32))
    return {"dir": d, "path": str(path), "small": str(small)}


def evict(path):
    """Drop path's pages from the page cache (they must not be mapped), so the next load reads the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def swap_in(slow, name):
    """A file name that names the small matrix; returns (name, a function that renames the slow one in)."""
    live = os.path.join(str(slow["dir"]), name)
    for p in (live, live + ".tmp"):
        if os.path.exists(p):
            os.unlink(p)
    os.link(slow["small"], live)

    def replace():
        os.link(slow["path"], live + ".tmp")
        os.rename(live + ".tmp", live)
        evict(slow["path"])
    return live, replace


def test_signals_during_a_reload_never_kill(start, slow):
    """HUP, HUP, TERM 20 ms apart while the first reload reads its file: the daemon stops cleanly (exit 0)
    every time. A thread that leaves these signals at their default action (OpenBLAS starts its workers
    before main, with no signal blocked) would die of the second SIGHUP (exit -1)."""
    codes = []
    for i in range(5):
        live, replace = swap_in(slow, "live%d.npy" % i)
        d = start(live, "--populate")
        replace()
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.02)
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.02)
        d.proc.send_signal(signal.SIGTERM)
        codes.append(d.proc.wait(timeout=30))
    assert codes == [0] * 5


def test_a_burst_of_sighups_makes_at_most_two_reloads(start, slow):
    """SIGHUPs that arrive during a reload coalesce into at most one more."""
    live, replace = swap_in(slow, "burst.npy")
    d = start(live, "--populate")
    replace()
    for _ in range(10):
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.002)
    assert wait_for(lambda: d.json("/healthz")["generation"] >= 2)
    time.sleep(1.5)  # room for any further reload to happen, and be counted
    m = d.settled()
    assert d.proc.poll() is None
    ok, failed = m['embd_reloads_total{result="ok"}'], m['embd_reloads_total{result="failed"}']
    assert failed == 0 and 1 <= ok <= 2, (ok, d.output())
    assert m["embd_matrix_generation"] == ok + 1
    assert d.json("/v1/info")["rows"] == 100000


def test_sighup_during_an_admin_reload(start, slow, two):
    """SIGHUPs while an admin reload reads its file wait their turn on the one reload thread: nothing dies,
    the admin reload answers 200, then the SIGHUPs reload the path it loaded (matrix.path)."""
    d = start(slow["small"], "--admin.token_file", two["token"], "--populate")
    evict(slow["path"])
    result = {}

    def reload():
        result["r"] = d.request("POST", "/v1/admin/reload?path=" + slow["path"], b"", AUTH)

    t = threading.Thread(target=reload)
    t.start()
    for _ in range(3):
        time.sleep(0.02)
        d.proc.send_signal(signal.SIGHUP)
    t.join(30)
    s, h, body = result["r"]
    assert s == 200 and json.loads(body)["generation"] == 2, body
    assert wait_for(lambda: d.metrics()['embd_reloads_total{result="ok"}'] >= 2)
    assert d.proc.poll() is None
    assert d.json("/v1/info")["source"] == slow["path"]
    # And a SIGHUP while an admin reload of a FIFO fails.
    fifo = slow["dir"] / "hup.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    t = threading.Thread(target=lambda: result.update(f=d.request("POST", "/v1/admin/reload?path=" + str(fifo),
                                                                   b"", AUTH)))
    t.start()
    d.proc.send_signal(signal.SIGHUP)
    t.join(30)
    assert result["f"][0] == 500 and b"not a regular file (a FIFO)" in result["f"][2]
    assert d.proc.poll() is None


def test_sigterm_abandons_a_reload_past_the_shutdown_deadline(tmp_path, slow, two):
    """limits.shutdown_s 0 and SIGTERM while a reload reads its file: the daemon does not wait for it; it
    stops at once and exits 1, saying so, and the admin client is not left hanging."""
    d = Daemon([two["pa"], "--admin.token_file", two["token"], "--populate", "--limits.shutdown_s", "0"],
               str(tmp_path))
    evict(slow["path"])
    result = {}

    def reload():
        try:
            result["r"] = d.request("POST", "/v1/admin/reload?path=" + slow["path"], b"", AUTH)
        except OSError as e:  # the daemon may close the connection before the answer goes out
            result["r"] = e

    t = threading.Thread(target=reload)
    t.start()
    try:
        assert wait_for(lambda: "reload: opening " + slow["path"] in d.output(), 10)
    finally:
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(timeout=30)
        d.log.close()
        t.join(30)
    assert not t.is_alive()
    out = d.output()
    if "reload done" in out.split("SIGTERM: stopping")[1]:
        pytest.skip("the load finished before the deadline check: the disk was too fast to test this")
    assert rc == 1, out
    assert "a reload still opening its file: abandoned it" in out and ", a reload abandoned" in out
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out
    if not isinstance(result["r"], OSError):
        assert result["r"][0] == 500 and b"reload_failed" in result["r"][2]


def test_a_zero_copy_response_read_slowly_across_a_reload(start, big, two):
    """A zero-copy response pins the generation it points into: while it is read, a reload makes two
    generations live; every byte of it is the old file's; when it completes, the old one is unmapped."""
    path, a = big
    live = two["dir"] / "big-live.npy"
    os.link(path, live)
    d = start(str(live))
    n = 8000  # 16 MB: far more than the socket buffers hold
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", d.port))
    sock.sendall(b"GET /v1/rows?start=0&stop=%d&format=bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % n)
    got = b""
    while b"\r\n\r\n" not in got or len(got) < 8192:
        got += sock.recv(4096)
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"X-Embd-Path: zero-copy" in head and b"X-Embd-Generation: 1" in head
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    assert length == n * 512 * 4
    tmp = two["dir"] / "big-live.tmp"
    os.link(two["pb"], tmp)
    os.rename(tmp, live)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.json("/healthz")["generation"] == 2)
    assert d.metrics()["embd_generations_live"] == 2
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
        if len(body) < length // 2:
            time.sleep(0.001)  # slowly, for the first half
    sock.close()
    assert len(body) == length and body == a[:n].tobytes()
    assert d.get("/v1/rows/7?format=bin")[2] == two["b"][7].tobytes()
    assert wait_for(lambda: d.metrics()["embd_generations_live"] == 1)
    assert d.settled()["embd_inflight_accounted_bytes"] == 0
