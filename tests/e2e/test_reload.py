"""Hot reload: under load, every response's bytes match the generation its header names; old mappings are
released when their last response completes; failed reloads leave the current generation serving."""
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from conftest import KeepAlive

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
    """A FIFO (or a device) is refused before a byte is read: opening it never blocks the reload, whoever
    writes to it or not, and the current generation serves on."""
    d = start(two["pa"], "--admin.token_file", two["token"], "--threads", "1")
    fifo = two["dir"] / "slow.npy"
    os.mkfifo(fifo)
    t0 = time.time()
    s, h, body = d.request("POST", "/v1/admin/reload?path=" + str(fifo), b"", AUTH)
    assert time.time() - t0 < 5
    assert s == 500 and json.loads(body)["error"]["code"] == "reload_failed", body
    assert json.loads(body)["error"]["message"] == "%s: not a regular file (a FIFO)" % fifo
    for i in range(5):
        assert d.get("/v1/rows/%d?format=bin" % i)[2] == two["a"][i].tobytes()
    assert d.json("/healthz")["generation"] == 1
