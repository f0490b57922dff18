"""embd_client (clients/python) against a real daemon: exact rows (repeats, out of order, empty; list, NumPy and
torch ids), slices, tokens by each OOV policy, f16 against NumPy's astype and bf16 against torch's, bf16 without
torch, batches split by limits.max_ids and by limits.request_bytes (the daemon never refuses a part), every error
with the server's code, 503 retried honouring Retry-After, a fork after first use, 8 threads on one client, a
daemon restarted between calls, a timeout, the vector operations, a pip install into a venv and the CLI."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import Daemon, get_from, npy

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CLIENT_DIR = os.path.join(ROOT, "clients", "python")
sys.path.insert(0, CLIENT_DIR)

import embd_client  # noqa: E402
from embd_client import Client, EmbdError  # noqa: E402

torch = pytest.importorskip("torch", reason="python3-torch is not installed (scripts/deps.sh test installs it)")


def url(d):
    return "http://127.0.0.1:%d" % d.port


def bf16_bits(a):
    """torch's bf16 of a float32 array, as uint16 bit patterns."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def same(a, b):
    """Equal bit for bit (NaNs included), dtype and shape too."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def rows_ok(d, status="200"):
    """Rows requests answered with status, once every request is finished (one is counted when the daemon has
    finished it, a moment after the client read its last byte)."""
    return d.settled().get('embd_requests_total{route="rows",status="%s"}' % status, 0)


@pytest.fixture
def vocabd(start, tmp_path):
    """A 200 x 16 f32 table with a vocabulary: w0 ... w199."""
    a = np.random.default_rng(3).standard_normal((200, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", a)
    words = ["w%d" % i for i in range(200)]
    (tmp_path / "v.vocab").write_text("\n".join(words) + "\n")
    return start(str(tmp_path / "v.npy"), "--vocab", str(tmp_path / "v.vocab")), a, words


def test_rows_exact(f32d, data):
    a = data["f32"]
    rng = np.random.default_rng(1)
    with Client(url(f32d)) as c:
        assert c.shape == a.shape and c.dtype == "f32" and c.generation == 1
        for n in (1, 2, 7, 300, 1000, 5000):
            ids = rng.integers(0, len(a), n)  # repeats and any order
            assert same(c.rows(ids), a[ids])
        ids = [999, 5, 5, 0, 998, 5, 0]
        assert same(c.rows(ids), a[ids])  # a list; repeats apart and together
        assert same(c.rows(np.array(ids, np.int32)), a[ids])  # int32 ids go as they are
        assert same(c.rows(np.array(ids, np.uint16)), a[ids])
        assert same(c.rows(torch.tensor(ids)), a[ids])
        assert same(c.rows(np.arange(1000)[::-1]), a[::-1])  # out of order, no repeats
        assert same(c.rows(np.zeros(600, np.int64)), a[np.zeros(600, int)])  # one id, many times
        many = rng.integers(0, 20, 900)  # mostly repeats
        assert same(c.rows(many), a[many])
        assert same(c.rows([]), np.zeros((0, 48), np.float32))
        assert same(c.rows(torch.tensor([], dtype=torch.int64)), np.zeros((0, 48), np.float32))
        out = np.full((len(ids), 48), np.nan, np.float32)
        assert c.rows(ids, out=out) is out and same(out, a[ids])
        with pytest.raises(ValueError, match="out must be"):
            c.rows(ids, out=np.empty((len(ids), 47), np.float32))
        with pytest.raises(ValueError, match="1-D"):
            c.rows([[1, 2]])
        with pytest.raises(TypeError, match="integers"):
            c.rows([1.5])
        # A repeat is fetched once: 3 distinct ids, 3 rows on the wire.
        m = f32d.settled()
        before = m["embd_copied_bytes_total"] + m["embd_zerocopy_bytes_total"]
        c.rows([7, 7, 7, 9, 9, 11])
        m = f32d.settled()
        assert m["embd_copied_bytes_total"] + m["embd_zerocopy_bytes_total"] - before == 3 * 48 * 4


def test_half_precision(f32d, data):
    a = data["f32"]
    ids = np.random.default_rng(2).integers(0, len(a), 777)
    with Client(url(f32d)) as c:
        assert same(c.rows(ids, "f16"), a[ids].astype(np.float16))
        assert same(c.rows(ids, np.float16), a[ids].astype(np.float16))
        b = c.rows(ids, "bf16")
        assert isinstance(b, torch.Tensor) and b.dtype == torch.bfloat16 and tuple(b.shape) == (777, 48)
        assert torch.equal(b.view(torch.int16), torch.from_numpy(a[ids]).to(torch.bfloat16).view(torch.int16))
        assert same(c.rows(ids, "bf16", raw=True), bf16_bits(a[ids]))
        assert same(c.rows(ids, "f16", raw=True), a[ids].astype(np.float16))
        out = torch.empty((777, 48), dtype=torch.bfloat16)  # a tensor's memory, filled in place
        c.rows(ids, "bf16", out=out)
        assert same(out.view(torch.int16).numpy().view(np.uint16), bf16_bits(a[ids]))
        assert same(c.slice(100, 300, "f16"), a[100:300].astype(np.float16))
        assert same(c.slice(100, 300, "bf16", raw=True), bf16_bits(a[100:300]))


def test_bf16_without_torch(f32d, data):
    """torch made unimportable in a fresh interpreter: bf16 is an ImportError naming raw=True, raw=True works."""
    code = """
import sys
sys.modules["torch"] = None  # import torch raises ImportError
sys.path.insert(0, %r)
import numpy as np
from embd_client import Client
c = Client(%r)
try:
    c.rows([1, 2], "bf16")
except ImportError as e:
    print("ERR", e)
print("RAW", c.rows([1, 2], "bf16", raw=True).dtype, c.rows([1, 2], "f16").dtype)
print("MODULES", "torch" in sys.modules and sys.modules["torch"] is not None)
""" % (CLIENT_DIR, url(f32d))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("ERR dtype='bf16' answers a torch.bfloat16 tensor") and "raw=True" in lines[0], lines
    assert lines[1:] == ["RAW uint16 float16", "MODULES False"]


def test_slice(f32d, data):
    a = data["f32"]
    with Client(url(f32d)) as c:
        assert same(c.slice(0, 1000), a)
        assert same(c.slice(10, 11), a[10:11])
        assert same(c.slice(990), a[990:])
        assert same(c.slice(stop=3), a[:3])
        out = np.empty((5, 48), np.float32)
        assert c.slice(5, 10, out=out) is out and same(out, a[5:10])
        assert same(c.slice(5, 5), np.zeros((0, 48), np.float32))  # as a[5:5], and as rows([])
        with pytest.raises(EmbdError) as e:
            c.slice(6, 5)
        assert (e.value.status, e.value.code) == (400, "bad_slice")
        with pytest.raises(EmbdError) as e:
            c.slice(0, 1001)
        assert (e.value.status, e.value.code) == (400, "id_out_of_range")


def test_tokens(vocabd):
    d, a, words = vocabd
    with Client(url(d)) as c:
        assert same(c.tokens(["w3", "w17", "w3"]), a[[3, 17, 3]])
        assert same(c.tokens(["w3", "w17"], dtype="f16"), a[[3, 17]].astype(np.float16))
        with pytest.raises(EmbdError) as e:
            c.tokens(["w3", "nope", "w5"])
        assert (e.value.status, e.value.code) == (404, "token_not_found")
        assert e.value.message == "1 token is not in the vocabulary: 'nope'"
        z = c.tokens(["w3", "nope", "w5"], oov="zero")
        assert same(z, np.stack([a[3], np.zeros(16, np.float32), a[5]]))
        rows, kept = c.tokens(["w3", "nope", "w5", "zz"], oov="skip")
        assert kept == ["w3", "w5"] and same(rows, a[[3, 5]])
        rows, kept = c.tokens(["w9", "w1"], oov="skip")  # none unknown: one request
        assert kept == ["w9", "w1"] and same(rows, a[[9, 1]])
        rows, kept = c.tokens(["nope"], oov="skip")
        assert kept == [] and rows.shape == (0, 16)
        b = c.tokens(["w3", "w4"], dtype="bf16")
        assert torch.equal(b.view(torch.int16), torch.from_numpy(a[[3, 4]]).to(torch.bfloat16).view(torch.int16))
        with pytest.raises(EmbdError) as e:
            c.tokens([""])
        assert (e.value.status, e.value.code) == (400, "bad_token")
        with pytest.raises(ValueError):
            c.tokens(["w1"], oov="maybe")


def test_tokens_split(start, tmp_path):
    """More tokens than limits.max_ids: parts, in order, each policy."""
    a = np.random.default_rng(4).standard_normal((300, 8)).astype(np.float32)
    np.save(tmp_path / "t.npy", a)
    (tmp_path / "t.vocab").write_text("".join("w%d\n" % i for i in range(300)))
    d = start(str(tmp_path / "t.npy"), "--vocab", str(tmp_path / "t.vocab"), "--limits.max_ids", "50")
    ids = np.random.default_rng(5).integers(0, 300, 170)
    words = ["w%d" % i for i in ids]
    with Client(url(d)) as c:  # the limits from /v1/info
        assert same(c.tokens(words), a[ids])
        words[60] = words[120] = "nope"
        rows, kept = c.tokens(words, oov="skip")
        keep = [i for i in range(170) if i not in (60, 120)]
        assert kept == [words[i] for i in keep] and same(rows, a[ids[keep]])
    assert d.settled().get('embd_rejected_total{reason="max_ids"}', 0) == 0


def test_errors(f32d, vocabd, data):
    """Each error raised with the server's status, code and message, as the server wrote them."""
    vd, _, _ = vocabd
    with Client(url(f32d)) as c, Client(url(vd)) as cv:
        post_npy = {"Content-Type": "application/x-npy"}
        cases = [
            (lambda: c.rows([1, 1000]), f32d, "POST", "/v1/rows?format=bin", npy(np.array([1, 1000])), post_npy),
            (lambda: c.rows([-1]), f32d, "POST", "/v1/rows?format=bin", npy(np.array([-1])), post_npy),
            (lambda: c.slice(7, 3), f32d, "GET", "/v1/rows?start=7&stop=3", None, None),
            (lambda: c.tokens(["king"]), f32d, "GET", "/v1/rows?tokens=king", None, None),
            (lambda: cv.tokens(["king"]), vd, "GET", "/v1/rows?tokens=king", None, None),
            (lambda: c.similar(id=1, k=100000), f32d, "GET", "/v1/similar?id=1&k=100000", None, None),
            (lambda: c.similar(id=1, metric="manhattan"), f32d, "GET", "/v1/similar?id=1&metric=manhattan", None,
             None),
            (lambda: c.pool([1, 2], weights=[1, -1]), f32d, "POST", "/v1/pool", b'{"ids":[1,2],"weights":[1,-1]}',
             {"Content-Type": "application/json"}),
            (lambda: c._get_json("/v1/nothing"), f32d, "GET", "/v1/nothing", None, None),
        ]
        seen = []
        for call, d, method, path, body, headers in cases:
            status, _, want = d.request(method, path, body, headers)
            want = json.loads(want)["error"]
            with pytest.raises(EmbdError) as e:
                call()
            assert (e.value.status, e.value.code, e.value.message) == (want["status"], want["code"],
                                                                      want["message"]), (path, want)
            assert str(e.value) == "%d %s: %s" % (want["status"], want["code"], want["message"])
            seen.append((want["status"], want["code"]))
        assert seen == [(400, "id_out_of_range"), (400, "bad_id"), (400, "bad_slice"), (400, "no_vocabulary"),
                        (404, "token_not_found"), (413, "too_many_ids"), (400, "bad_parameter"),
                        (400, "bad_parameter"), (404, "not_found")], seen


def test_split_max_ids(start, data):
    """A batch of 3 x limits.max_ids (and more, with repeats) comes back whole, in order, from parts the daemon
    never refused."""
    a = data["f32"]
    d = start(data["f32_path"], "--limits.max_ids", "100")
    rng = np.random.default_rng(6)
    with Client(url(d)) as c:
        assert c.limits["max_ids"] == 100  # from /v1/info
        ids = rng.permutation(1000)[:300]  # distinct: exactly 3 parts
        assert same(c.rows(ids), a[ids])
        assert rows_ok(d) == 3
        ids = rng.integers(0, 1000, 1000)  # about 632 distinct: 7 parts
        assert same(c.rows(ids), a[ids])
        assert rows_ok(d) == 3 + -(-len(np.unique(ids)) // 100)
        before = rows_ok(d)
        ids = rng.integers(0, 250, 1000)  # mostly repeats: a scratch buffer, 3 parts
        assert same(c.rows(ids), a[ids])
        assert rows_ok(d) - before == 3
        assert same(c.slice(0, 1000), a)  # a slice in parts too
        with np.errstate(over="ignore"):  # row 5 holds 3.4e38: inf as f16, on both sides
            assert same(c.rows(ids, "f16"), a[ids].astype(np.float16))
    m = d.settled()
    assert m.get('embd_rejected_total{reason="max_ids"}', 0) == 0
    assert m.get('embd_requests_total{route="rows",status="413"}', 0) == 0


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_split_request_bytes(start, big, dtype):
    """A batch whose answer passes limits.request_bytes is fetched in parts sized by the charge formula: none is
    refused, and the parts are few (each near the limit)."""
    path, a = big
    d = start(path, "--limits.request_bytes", "1MiB")
    rng = np.random.default_rng(7)
    ids = rng.integers(0, len(a), 3000)
    want = a[ids] if dtype == "f32" else a[ids].astype(np.float16)
    with Client(url(d), parallel=3, part_bytes=None) as c:  # parts as large as request_bytes allows
        assert c.limits["request_bytes"] == 1 << 20
        got = c.rows(ids, dtype)
        assert same(got, want)
        per_part = c.part_size(dtype)
        nparts = -(-len(np.unique(ids)) // per_part)
        row = 512 * (4 if dtype == "f32" else 2)
        assert nparts > len(np.unique(ids)) * row / (1 << 20)  # it had to split
        assert per_part * row > 0.75 * (1 << 20)  # and did not split much more than it had to
        assert same(c.slice(0, 5000, dtype), a[:5000] if dtype == "f32" else a[:5000].astype(np.float16))
    m = d.settled()
    assert rows_ok(d) >= nparts + 1
    assert m.get('embd_rejected_total{reason="request_bytes"}', 0) == 0
    assert m.get('embd_requests_total{route="rows",status="413"}', 0) == 0


def test_limits_of_an_older_daemon(f32d, data):
    """A daemon whose /v1/info has no "limits" (older than them): the client assumes the defaults, or its own
    limits=. A proxy in front of the daemon drops the key."""
    import http.server
    import urllib.request

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def relay(self, body=None):
            req = urllib.request.Request(url(f32d) + self.path, body, dict(self.headers), method=self.command)
            with urllib.request.urlopen(req) as r:
                data = r.read()
                headers = r.getheaders()
            if self.path == "/v1/info":
                j = json.loads(data)
                del j["limits"]
                data = json.dumps(j).encode()
            self.send_response(200)
            for k, v in headers:
                if k.lower() not in ("content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.relay()

        def do_POST(self):
            self.relay(self.rfile.read(int(self.headers["Content-Length"])))

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        u = "http://127.0.0.1:%d" % srv.server_address[1]
        with Client(u) as c:
            assert "limits" not in c.info() and c.limits == embd_client.DEFAULT_LIMITS
        with Client(u, limits={"max_ids": 10}) as c:
            assert c.limits["max_ids"] == 10 and c.part_size("f32") == 10
            before = rows_ok(f32d)
            assert same(c.rows(np.arange(25)), data["f32"][:25])
            assert rows_ok(f32d) - before == 3
    finally:
        srv.shutdown()
        srv.server_close()


def test_charge_formula_is_the_daemons(big):
    """The client's batch_charge, given the real runs and record, is what the daemon charges a gather (its
    X-Embd-Accounted-Bytes), byte for byte, for bodies under and over 64 KiB, int32 and int64 ids, f32 and f16."""
    from embd_client.client import batch_charge
    path, a = big
    d = Daemon([path], os.path.dirname(path))
    try:
        record = int(d.get("/v1/rows/0?format=bin")[1]["x-embd-accounted-bytes"])
        rng = np.random.default_rng(9)
        for n in (5, 100, 4000, 9000, 20000):
            for id_dtype in (np.int64, np.int32):
                ids = rng.permutation(len(a))[:n].astype(id_dtype)
                runs = 1 + int(np.count_nonzero(np.diff(ids) != 1))
                for dtype, item in (("f32", 4), ("f16", 2)):
                    status, h, _ = d.request("POST", "/v1/rows?format=bin&dtype=" + dtype, npy(ids),
                                             {"Content-Type": "application/x-npy"})
                    assert status == 200 and h["x-embd-path"] == "gather"
                    want = batch_charge(n, 512 * item, 512, ids.itemsize, dtype != "f32", runs, record)
                    assert int(h["x-embd-accounted-bytes"]) == want, (n, id_dtype, dtype)
    finally:
        d.stop()


def test_charge_formula_example():
    """The README's worked example: 4,096 random int64 ids of 200,000 x 768 (R = 2272)."""
    from embd_client.client import batch_charge
    assert batch_charge(4096, 3072, 768, 8, False, record=2272) == 12695872
    assert batch_charge(4096, 1536, 768, 8, True, record=2272) == 6407536


def metrics_from_elsewhere(d):
    """/metrics asked from 127.0.0.2: 127.0.0.1 holds its one connection (or one closing a moment ago)."""
    status, body = get_from(d.port, "127.0.0.2", "/metrics")
    assert status == 200, body
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in body.decode().splitlines()
                                     if line and not line.startswith("#"))}


def hold_connection(d):
    s = socket.create_connection(("127.0.0.1", d.port))
    time.sleep(0.2)  # accepted and counted before the client's request arrives
    return s


def test_503_retried_then_raised(start, data):
    """An address holding limits.connections_per_ip (1): each request is answered 503 too_many_connections with
    Retry-After 1; the client waits that long before each of its retries, then raises the server's error."""
    d = start(data["f32_path"], "--limits.connections_per_ip", "1", "--limits.retry_after_s", "1")
    holder = hold_connection(d)
    try:
        with Client(url(d), retries=2, backoff=0.01) as c:
            t0 = time.monotonic()
            with pytest.raises(EmbdError) as e:
                c.rows([1, 2])
            took = time.monotonic() - t0
            assert (e.value.status, e.value.code) == (503, "too_many_connections")
            assert c.stats["retries_503"] == 2
            assert 2.0 <= took < 10, took  # Retry-After: 1 s before each retry, not the 10 ms backoff
    finally:
        holder.close()
    assert metrics_from_elsewhere(d)['embd_rejected_total{reason="connections_per_ip"}'] == 3  # 1 + 2 retries


def test_503_retried_then_served(start, data):
    d = start(data["f32_path"], "--limits.connections_per_ip", "1", "--limits.retry_after_s", "1")
    holder = hold_connection(d)
    threading.Timer(0.3, holder.close).start()  # gone before the first retry (1 s after the 503)
    with Client(url(d), retries=3) as c:
        assert same(c.rows([1, 2, 3]), data["f32"][[1, 2, 3]])
        assert c.stats["retries_503"] == 1
    assert metrics_from_elsewhere(d)['embd_rejected_total{reason="connections_per_ip"}'] == 1


def test_fork_after_first_use(f32d, data):
    """A client used before a fork (a pooled connection, and a thread holding its lock at the fork) works in the
    children on sockets of their own; the parent's connection is untouched."""
    a = data["f32"]
    c = Client(url(f32d))
    assert same(c.rows([1, 2]), a[[1, 2]])
    parent_port = c._idle[0].sock.getsockname()[1]
    held = threading.Event()
    release = threading.Event()

    def hold_lock():
        with c._lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold_lock)
    t.start()
    held.wait(5)
    kids = []
    for k in range(2):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: exact rows on its own connection, within 20 s (a lock copied held would hang)
            try:
                os.close(r)
                signal_alarm = __import__("signal")
                signal_alarm.alarm(20)
                ids = np.random.default_rng(k).integers(0, 1000, 500)
                ok = all(same(c.rows(ids), a[ids]) for _ in range(3))
                port = c._idle[0].sock.getsockname()[1]
                os.write(w, json.dumps({"ok": ok, "port": port, "conns": c.stats["connections"]}).encode())
            finally:
                os._exit(0)
        os.close(w)
        kids.append((pid, r))
    release.set()
    t.join()
    ports = set()
    for pid, r in kids:
        with os.fdopen(r) as f:
            got = f.read()
        os.waitpid(pid, 0)
        res = json.loads(got)
        assert res["ok"]
        ports.add(res["port"])
    assert parent_port not in ports and len(ports) == 2
    assert same(c.rows([3, 4]), a[[3, 4]])
    assert c._idle[0].sock.getsockname()[1] == parent_port  # the parent kept its own socket, still working
    assert c.stats["connections"] == 1
    c.close()


def test_threads(f32d, data):
    """8 threads on one client at once: every answer exact."""
    a = data["f32"]
    c = Client(url(f32d))
    errors = []
    barrier = threading.Barrier(8)

    def work(k):
        rng = np.random.default_rng(100 + k)
        barrier.wait()
        try:
            for i in range(40):
                ids = rng.integers(0, 1000, int(rng.integers(0, 2000)))
                if i % 4 == 3:
                    got = c.slice(int(ids.min(initial=0)), 1000)
                    assert same(got, a[int(ids.min(initial=0)):])
                else:
                    assert same(c.rows(ids), a[ids])
        except Exception as e:  # noqa: BLE001: reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert 1 < c.stats["connections"] <= 8 and c.stats["reconnects"] == 0
    c.close()


def test_daemon_restarted(start, data, tmp_path):
    """The daemon restarts between two calls: the pooled connection is dead, the client reconnects once."""
    a = data["f32"]
    d = start(data["f32_path"])
    port = d.port
    c = Client(url(d))
    assert same(c.rows([1, 2]), a[[1, 2]])
    d.stop()
    with pytest.raises(EmbdError) as e:
        c.rows([1])  # nothing listening: the retry on a fresh connection is refused too
    assert e.value.code == "connection_failed" and isinstance(e.value, ConnectionError)
    d2 = start(data["f32_path"], "--port", str(port))
    assert d2.port == port
    assert same(c.rows([5, 6]), a[[5, 6]])
    c2 = Client(url(d2))
    assert same(c2.rows([1]), a[[1]])
    d2.stop()
    d3 = start(data["f32_path"], "--port", str(port))
    assert same(c2.rows([7, 8]), a[[7, 8]])  # the keep-alive socket was closed under it: one reconnect
    assert c2.stats["reconnects"] == 1
    c.close()
    c2.close()
    d3.stop()


def test_timeout():
    """A server that accepts and never answers: EmbdTimeout (an EmbdError and a TimeoutError) after read_timeout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        c = Client("http://127.0.0.1:%d" % srv.getsockname()[1], read_timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(embd_client.EmbdTimeout) as e:
            c.info()
        assert time.monotonic() - t0 < 3
        assert isinstance(e.value, EmbdError) and isinstance(e.value, TimeoutError)
        assert e.value.code == "timeout" and "0.3 s" in e.value.message
    finally:
        srv.close()


def test_vector_operations(vocabd):
    d, a, _ = vocabd
    with Client(url(d)) as c:
        for call, path in (
                (lambda: c.similar(id=3, k=4), "/v1/similar?k=4&id=3"),
                (lambda: c.similar(token="w3", k=2, metric="dot", include_self=True),
                 "/v1/similar?k=2&metric=dot&include_self=1&token=w3")):
            assert call() == d.json(path)
        got = c.similar(tokens=["w1", "nope"], k=3, oov="skip")
        assert len(got["results"]) == 2 and got["results"][1] == [] and len(got["results"][0]) == 3
        by_ids = c.similar(ids=[1, 2], k=3)
        assert [r[0]["id"] for r in by_ids["results"]] == [r[0]["id"] for r in got["results"][:1]] + \
            [c.similar(id=2, k=1)["results"][0]["id"]]
        v = c.similar(vectors=a[[5, 6]], k=1, include_self=True)
        assert [r[0]["id"] for r in v["results"]] == [5, 6]
        assert c.similar(vectors=a[[5, 6]].tolist(), k=1)["results"] == v["results"]
        an = c.similar(positive=["w1", 2], negative=["w3"], k=3)
        assert len(an["results"]) == 3
        s = c.similarity([("w1", "w2"), (3, 4)])
        assert len(s["scores"]) == 2
        assert "score" in c.similarity(a=["w1", "w2"], b=[3])
        p = c.pool([1, 2, 3], weights=[1, 2, 3])
        status, _, body = d.request("POST", "/v1/pool?format=npy", b'{"ids":[1,2,3],"weights":[1,2,3]}',
                                    {"Content-Type": "application/json"})
        import io
        assert same(p, np.load(io.BytesIO(body))[0])
        assert same(c.pool(tokens=["w1"], dtype="f16"), a[1].astype(np.float16))


def test_pip_install_into_venv(f32d, data, tmp_path):
    """clients/python copied elsewhere, installed into a --system-site-packages venv with no index, and imported
    from a directory outside the tree."""
    src = tmp_path / "src"
    shutil.copytree(CLIENT_DIR, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    p = subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", str(src)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import embd_client, numpy; c = embd_client.Client(%r); print(embd_client.__file__); "
            "print(c.rows([3, 1]).tobytes().hex())" % url(f32d))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    where, hexrows = p.stdout.split()
    assert where.startswith(str(venv)), where
    assert hexrows == data["f32"][[3, 1]].tobytes().hex()


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=CLIENT_DIR)
    return subprocess.run([sys.executable, "-m", "embd_client", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60)


def test_cli(vocabd, tmp_path):
    d, a, _ = vocabd
    u = url(d)
    p = cli("--help")
    assert p.returncode == 0 and "python3 -m embd_client" in p.stdout and "tokens" in p.stdout
    p = cli(u, "info")
    assert p.returncode == 0 and json.loads(p.stdout)["rows"] == 200
    p = cli(u, "ids", "3,1")
    j = json.loads(p.stdout)
    assert (j["shape"], j["dtype"], j["ids"]) == ([2, 16], "f32", [3, 1])
    assert same(np.array(j["rows"], np.float32), a[[3, 1]])
    assert json.loads(p.stdout) == json.loads(d.get("/v1/rows?ids=3,1")[2])  # the server's own JSON, value for value
    p = cli(u, "slice", "4", "9", "--format", "npy", str(tmp_path / "s.npy"))
    assert p.returncode == 0 and same(np.load(tmp_path / "s.npy"), a[4:9])
    p = cli(u, "tokens", "w1", "nope", "w2", "--oov", "skip", "--dtype", "f16")
    j = json.loads(p.stdout)
    assert (j["shape"], j["dtype"], j["tokens"]) == ([2, 16], "f16", ["w1", "w2"])
    assert same(np.array(j["rows"], np.float32).astype(np.float16), a[[1, 2]].astype(np.float16))
    p = cli(u, "ids", "1", "--dtype", "bf16", "--format", "npy", str(tmp_path / "b.npy"))
    assert p.returncode == 0 and "uint16 bit patterns" in p.stderr
    assert same(np.load(tmp_path / "b.npy"), bf16_bits(a[[1]]))
    p = cli(u, "ids", "500")
    assert p.returncode == 1 and p.stderr.startswith("embd_client: 400 id_out_of_range: id 500 is out of range")
    p = cli(u, "tokens", "nope")
    assert p.returncode == 1 and "404 token_not_found" in p.stderr


def test_a_unix_socket_url(start, big):
    """Client("unix:/path") reaches listen.unix: the same rows as over TCP (a split batch, parts in parallel, and a
    slice), its connections are Unix ones (the access log says client=unix), and a bad URL is refused."""
    import tempfile
    path, a = big
    tmp = tempfile.mkdtemp(prefix="embd-uds-", dir="/tmp")
    sockpath = os.path.join(tmp, "embd.sock")
    try:
        d = start(path, "--unix", sockpath, "--limits.max_ids", "1000")
        ids = np.random.default_rng(11).integers(0, a.shape[0], 2500)
        with Client("unix:" + sockpath) as c, Client(url(d)) as t:
            got = c.rows(ids)
            assert same(got, a[ids]) and same(got, t.rows(ids))
            assert same(c.slice(10, 2010), a[10:2010])
            assert c.shape == a.shape and c.info()["unix"] == sockpath
            assert c.stats["requests"] >= 4  # 3 parts of at most 1,000 ids, and a slice
        with Client("unix://" + sockpath) as c:
            assert same(c.rows([3, 1, 3]), a[[3, 1, 3]])
        d.settled()
        assert "client=unix" in d.output()
        for bad in ("unix:relative.sock", "ftp://x"):
            with pytest.raises(ValueError):
                Client(bad)
        with pytest.raises(embd_client.EmbdConnectionError):
            Client("unix:" + os.path.join(tmp, "nobody.sock"), connect_timeout=1).rows([1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- a fake server, for answers embd never gives (a client must still behave) -------------------------------------

FAKE_INFO = json.dumps({"rows": 10, "dim": 4, "dtype": "f32", "generation": 1,
                        "limits": {"max_ids": 100, "request_bytes": 1 << 26, "max_body_bytes": 1 << 24}}).encode()
FAKE_ROWS = np.arange(40, dtype=np.float32).reshape(10, 4)


def fake_head(n, extra=b"", gen=b"1"):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Embd-Shape: %d,4\r\nX-Embd-Dtype: f32\r\n"
            b"X-Embd-Generation: %s\r\nContent-Length: %d\r\n%s\r\n" % (n, gen, 16 * n, extra))


class FakeServer:
    """A loopback server answering /v1/info with FAKE_INFO and every other request with answer(conn, request_line,
    body): a thread per connection, requests read whole (Content-Length bodies)."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                n = 0
                for h in lines[1:]:
                    if h.lower().startswith(b"content-length:"):
                        n = int(h.split(b":")[1])
                while len(buf) < n:
                    buf += c.recv(65536)
                body, buf = buf[:n], buf[n:]
                line = lines[0].decode()
                if " /v1/info" in line:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                              % len(FAKE_INFO) + FAKE_INFO)
                elif self.answer(c, line, body) == "close":
                    c.close()
                    return
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


@pytest.fixture
def fake():
    servers = []

    def make(answer):
        servers.append(FakeServer(answer))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


@pytest.mark.parametrize("value,waits", [
    ("1", [0.2]),  # capped at max_backoff
    ("0.05", [0.1]),  # at least the backoff
    ("86400", [0.2]),
    ("inf", [0.1]), ("1e400", [0.1]), ("nan", [0.1]), ("-3", [0.1]), ("0x10", [0.1]), ("", [0.1]),
    ("Wed, 21 Oct 2015 07:28:00 GMT", [0.1]),  # an HTTP-date: the backoff
])
def test_retry_after_parsed_and_capped(fake, monkeypatch, value, waits):
    """Retry-After: a non-negative finite number of seconds, waited at most max_backoff; an HTTP-date or garbage
    falls back to the backoff. Whatever it says, the caller gets the 503 as an EmbdError once retries run out."""
    body = b'{"error":{"status":503,"code":"overloaded","message":"busy"}}'
    srv = fake(lambda c, line, _: c.sendall(b"HTTP/1.1 503 x\r\nRetry-After: %s\r\nContent-Length: %d\r\n\r\n"
                                            % (value.encode(), len(body)) + body))
    slept = []
    monkeypatch.setattr(embd_client.client.time, "sleep", slept.append)
    c = Client(srv.url, retries=1, backoff=0.1, max_backoff=0.2)
    with pytest.raises(EmbdError) as e:
        c.rows([1, 2])
    assert (e.value.status, e.value.code, e.value.message) == (503, "overloaded", "busy")
    assert slept == waits
    c.close()


def test_read_timeout_is_a_deadline_for_the_whole_answer(fake):
    """read_timeout bounds the whole answer, from the request: a server trickling a byte every 0.9 s (each read
    well within read_timeout) is cut at read_timeout, not served 16 bytes later."""
    stop = threading.Event()

    def trickle(c, line, body):
        c.sendall(fake_head(1))
        for b in FAKE_ROWS[1].tobytes():
            if stop.wait(0.9):
                return "close"
            c.sendall(bytes([b]))

    srv = fake(trickle)
    c = Client(srv.url, read_timeout=2, retries=0)
    try:
        with pytest.raises(embd_client.EmbdTimeout) as e:
            c.rows([1])
        assert e.value.code == "timeout" and "within 2 s" in e.value.message
    finally:
        stop.set()
        c.close()


def test_ids_checked(f32d, data):
    """Ids are integers in int64, 1-D: float ids are refused whatever their values (no silent truncation or
    wrapping), a uint64 or Python int past 2^63-1 is refused by value, strings and bools are refused, an empty 2-D
    array is refused as any 2-D one."""
    a = data["f32"]
    with Client(url(f32d)) as c:
        for ids in ([1.0, 2.0], np.array([1.0, 2.0]), np.array([3], np.float16), np.array([2.0 ** 63]),
                    torch.tensor([1.0]), np.array([1.5])):
            with pytest.raises(TypeError, match="ids must be integers, not float"):
                c.rows(ids)
        for ids in (np.array([3, 2 ** 63], np.uint64), [1, -1, 2 ** 63], [2 ** 70], np.array([2 ** 64 - 1], np.uint64)):
            with pytest.raises(ValueError, match=r"id \d+ does not fit in int64"):
                c.rows(ids)
        for ids in (["1", "2"], np.array(["1"])):
            with pytest.raises(TypeError, match=r"ids must be integers, not strings \(tokens\(\) looks words up\)"):
                c.rows(ids)
        for ids in ([True, False], torch.tensor([True]), [1, None]):
            with pytest.raises(TypeError, match="ids must be integers"):
                c.rows(ids)
        for ids in (np.zeros((0, 3), np.int64), [[1, 2], [3, 4]], 5):
            with pytest.raises(ValueError, match="ids must be 1-D"):
                c.rows(ids)
        assert same(c.rows(np.array([3, 2], np.uint64)), a[[3, 2]])
        assert same(c.rows([-0, 2 ** 3]), a[[0, 8]])
        with pytest.raises(EmbdError) as e:
            c.rows([-1])
        assert (e.value.status, e.value.code) == (400, "bad_id")  # the server says what is wrong with -1


def test_malformed_generation_header(fake):
    """An answer whose X-Embd-Generation is not a number is a bad answer (EmbdError), not a ValueError."""
    srv = fake(lambda c, line, body: c.sendall(fake_head(2, gen=b"abc") + FAKE_ROWS[[1, 2]].tobytes()))
    with Client(srv.url) as c:
        with pytest.raises(EmbdError) as e:
            c.rows([1, 2])
        assert (e.value.status, e.value.code) == (200, "bad_answer") and "'abc'" in e.value.message


def test_tokens_split_by_body_bytes(start, tmp_path):
    """Long tokens under a small limits.max_body_bytes: parts sized by their JSON bodies' real bytes (not 64 bytes a
    token), so no part is refused 413; in order, each policy."""
    a = np.random.default_rng(6).standard_normal((300, 8)).astype(np.float32)
    np.save(tmp_path / "t.npy", a)
    words = ["w%d_" % i + "\u00e9" * 150 for i in range(300)]  # ~300 bytes of JSON each (\u00e9 escaped: 6 bytes)
    (tmp_path / "t.vocab").write_text("".join(w + "\n" for w in words))
    d = start(str(tmp_path / "t.npy"), "--vocab", str(tmp_path / "t.vocab"), "--limits.max_body_bytes", "4096")
    ids = np.random.default_rng(7).integers(0, 300, 100)
    asked = [words[i] for i in ids]
    with Client(url(d)) as c:
        assert same(c.tokens(asked), a[ids])
        asked[10] = "nope" * 200
        rows, kept = c.tokens(asked, oov="skip")
        keep = [i for i in range(100) if i != 10]
        assert kept == [asked[i] for i in keep] and same(rows, a[ids[keep]])
    assert d.settled().get('embd_rejected_total{reason="max_body_bytes"}', 0) == 0


def test_cli_user_errors(f32d, tmp_path):
    """Every user error is one line, 'embd_client: ...', on stderr, exit 2 for a usage error and 1 for a runtime
    one; never a traceback."""
    u = url(f32d)
    for args, rc in ((("https://127.0.0.1:1", "info"), 2), (("http://127.0.0.1:99999", "info"), 2),
                     (("http://127.0.0.1:port", "info"), 2), ((u, "ids", "1,x"), 2), ((u, "ids", "1.5"), 2),
                     ((u, "ids", str(2 ** 63)), 2), ((u, "slice", "a", "3"), 2), ((u, "slice", "1"), 2),
                     ((u, "nothing"), 2), ((u, "ids", "1", "--format", "npy"), 2),
                     ((u, "ids", "1", "--format", "npy", str(tmp_path / "no" / "such" / "dir.npy")), 1),
                     ((u, "ids", "5000"), 1), (("http://127.0.0.1:1", "info"), 1)):
        p = cli(*args)
        assert p.returncode == rc, (args, p.returncode, p.stderr)
        assert p.stderr.startswith("embd_client: ") and p.stderr.count("\n") == 1, (args, p.stderr)
        assert p.stdout == ""
