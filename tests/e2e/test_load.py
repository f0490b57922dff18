"""Concurrent clients, the in-flight budget (503), client disconnects: bytes stay right and accounting returns to 0."""
import http.client
import io
import json
import socket
import threading
import time

import numpy as np
import pytest

from conftest import npy, wait_for




def test_concurrent_clients_get_exact_bytes_and_accounting_returns_to_zero(f32d, data):
    E = data["f32"]
    errors = []
    done = [0]

    def client(seed):
        rng = np.random.default_rng(seed)
        conn = http.client.HTTPConnection("127.0.0.1", f32d.port, timeout=30)  # keep-alive
        try:
            for i in range(60):
                kind = i % 5
                ids = rng.integers(0, 1000, size=int(rng.integers(1, 64))).tolist()
                if kind == 0:
                    conn.request("GET", "/v1/rows/%d?format=bin" % ids[0])
                    want = E[ids[0]].tobytes()
                elif kind == 1:
                    a = int(rng.integers(0, 900))
                    conn.request("GET", "/v1/rows?start=%d&stop=%d&format=npy" % (a, a + 100))
                    want = E[a:a + 100].tobytes()
                elif kind == 2:
                    conn.request("GET", "/v1/rows?format=bin&ids=" + ",".join(map(str, ids)))
                    want = E[ids].tobytes()
                elif kind == 3:
                    conn.request("POST", "/v1/rows?format=npy", npy(np.array(ids, np.int32)),
                                 {"Content-Type": "application/x-npy"})
                    want = E[ids].tobytes()
                else:
                    conn.request("POST", "/v1/rows", json.dumps({"ids": ids}), {"Content-Type": "application/json"})
                    want = E[ids].tobytes()
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    errors.append((r.status, body))
                    continue
                if r.getheader("Content-Type") == "application/x-npy":
                    body = np.load(io.BytesIO(body)).tobytes()
                elif kind == 4:
                    body = np.array(json.loads(body)["rows"], dtype=np.float32).tobytes()
                if body != want:
                    errors.append(("bytes differ", kind, ids))
                done[0] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(s,)) for s in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert done[0] == 16 * 60
    m = f32d.settled()
    assert m["embd_inflight_accounted_bytes"] == 0
    assert m['embd_requests_total{route="row",status="200"}'] == 16 * 12
    assert m['embd_requests_total{route="rows",status="200"}'] == 16 * 48
    assert m["embd_zerocopy_bytes_total"] > 0 and m["embd_copied_bytes_total"] > 0
    assert m["embd_accounted_bytes_peak"] > 0
    assert m["embd_generations_live"] == 1 and m["embd_matrix_generation"] == 1


def slow_request(port, ids):
    """Send a gather request and read nothing, so its response stays in flight."""
    s = socket.create_connection(("127.0.0.1", port))
    body = npy(ids)
    s.sendall(b"POST /v1/rows?format=bin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return s


def read_response(s):
    f = s.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += f.read(1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    return head, f.read(length)


def test_inflight_budget_503_then_recovery(start, big):
    path, E = big
    d = start(path, "--limits.inflight_bytes", "48MiB", "--limits.request_bytes", "40MiB")
    ids = np.arange(16000, dtype=np.int64)[::-1].copy()  # 16000 x 2 KiB = 32 MB, gathered
    a = slow_request(d.port, ids)
    assert wait_for(lambda: d.metrics()["embd_inflight_accounted_bytes"] >= 32_000_000)
    # A second one does not fit in what is left of the budget: 503, Retry-After, and the figures.
    s, h, b = d.request("POST", "/v1/rows?format=bin", npy(ids), {"Content-Type": "application/x-npy"})
    assert s == 503 and h["retry-after"] == "1"
    err = json.loads(b)["error"]
    assert err["code"] == "overloaded" and "limits.inflight_bytes 50331648" in err["message"]
    # Small requests still fit, and health is always answered.
    assert d.get("/v1/rows/3?format=bin")[2] == E[3].tobytes()
    assert d.json("/healthz")["status"] == "ok"
    # The slow client reads its response: every byte right, then the budget is free again.
    head, body = read_response(a)
    a.close()
    assert b"X-Embd-Path: gather" in head and body == E[ids].tobytes()
    assert wait_for(lambda: d.metrics()["embd_inflight_accounted_bytes"] == 0)
    s, h, b = d.request("POST", "/v1/rows?format=bin", npy(ids), {"Content-Type": "application/x-npy"})
    assert s == 200 and b == E[ids].tobytes()
    m = d.metrics()
    assert m['embd_rejected_total{reason="inflight_bytes"}'] == 1
    assert 32_000_000 <= m["embd_accounted_bytes_peak"] <= 48 * 2**20


def test_client_disconnect_releases_everything(start, big):
    path, E = big
    d = start(path)
    ids = np.arange(16000, dtype=np.int64)[::-1].copy()
    socks = [slow_request(d.port, ids) for _ in range(3)]
    assert wait_for(lambda: d.metrics()["embd_inflight_accounted_bytes"] >= 3 * 32_000_000)
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        s.close()
    assert wait_for(lambda: d.metrics()["embd_inflight_accounted_bytes"] == 0)
    # Zero-copy responses abandoned mid-send release their pin on the matrix too.
    socks = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"GET /v1/rows?start=0&stop=20000&format=bin HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    time.sleep(0.2)
    for s in socks:
        s.close()
    assert d.get("/v1/rows/19999?format=bin")[2] == E[19999].tobytes()
    assert wait_for(lambda: d.metrics()["embd_inflight_accounted_bytes"] == 0)


def test_sigterm_refuses_new_connections_finishes_inflight_and_exits_0(start, big):
    import signal
    path, E = big
    d = start(path)
    ids = np.arange(16000, dtype=np.int64)[::-1].copy()
    a = slow_request(d.port, ids)
    assert wait_for(lambda: d.metrics()["embd_inflight_accounted_bytes"] >= 32_000_000)
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", d.port), timeout=2)
    head, body = read_response(a)  # the response in flight is finished, every byte
    a.close()
    assert body == E[ids].tobytes()
    assert d.proc.wait(timeout=10) == 0


def test_shutdown_deadline_closes_what_is_left(start, big):
    import signal
    path, E = big
    d = start(path, "--limits.shutdown_s", "1")
    a = slow_request(d.port, np.arange(16000, dtype=np.int64)[::-1].copy())
    assert wait_for(lambda: d.metrics()["embd_inflight_accounted_bytes"] >= 32_000_000)
    t0 = time.time()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=10) == 0  # the abandoned gather is released, so nothing is left accounted
    assert 0.9 < time.time() - t0 < 5
    a.close()
