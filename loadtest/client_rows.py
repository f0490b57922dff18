"""Rows/s of one thread fetching random batches through embd_client, against a hand-written http.client loop
(one keep-alive connection, .npy ids out, readinto a preallocated buffer: the least a client can do).

    /usr/bin/python3 loadtest/client_rows.py URL [--batches 256,4096,65536] [--seconds 1] [--rounds 5] [--dtype f32]
    /usr/bin/python3 loadtest/client_rows.py - --repeats 0.05,0.25,0.4,0.5,0.6,0.75,0.95

Indicative figures only on a shared machine: run it a few times and take the medians.
"""
import argparse
import http.client
import io
import os
import sys
import time
import urllib.parse

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
from embd_client import Client  # noqa: E402
from embd_client.client import WIRE_DTYPES  # noqa: E402


def hand_loop(host, port, batches, dim, dtype, seconds, part):
    """The lower bound of a client's overhead: one connection, one request a part (parts of at most part ids, one
    after the other), readinto one buffer reused for every batch, no repeat handling."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    item = 4 if dtype == "f32" else 2
    out = np.empty((len(batches[0]), dim), WIRE_DTYPES[dtype])
    mv = memoryview(out).cast("B")
    n = rows = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ids = batches[n % len(batches)]
        for a in range(0, len(ids), part):
            body = io.BytesIO()
            np.save(body, ids[a:a + part])
            conn.request("POST", "/v1/rows?format=bin&dtype=" + dtype, body.getvalue(),
                         {"Content-Type": "application/x-npy"})
            r = conn.getresponse()
            if r.status != 200:
                raise SystemExit("hand loop: %d %s" % (r.status, r.read()[:200]))
            got = a * dim * item
            want = min(a + part, len(ids)) * dim * item
            while got < want:
                got += r.readinto(mv[got:want])
        n += 1
        rows += len(ids)
    return rows / (time.perf_counter() - t0), n


def client_loop(c, batches, dtype, seconds, reuse=False):
    n = rows = 0
    out = np.empty((len(batches[0]), c.shape[1]), WIRE_DTYPES[dtype]) if reuse else None
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ids = batches[n % len(batches)]
        c.rows(ids, dtype, raw=True, out=out)
        n += 1
        rows += len(ids)
    return rows / (time.perf_counter() - t0), n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--batches", default="256,4096,65536")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dtype", default="f32")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--repeats", help="instead (no daemon needed; give any URL): the client's CPU to expand "
                   "4,096-id batches with these shares of repeats (0.05,0.5,0.95), in place or through a scratch "
                   "buffer: what Client.SCRATCH_REPEATS is set by")
    a = p.parse_args()
    if a.repeats:
        return repeats(a)
    if a.url == "-":
        p.error("give the daemon's URL")
    u = urllib.parse.urlsplit(a.url)
    c = Client(a.url, parallel=a.parallel)
    rows_total, dim = c.shape
    rng = np.random.default_rng(1)
    print("(%s, %d x %d, one thread; rows/s, the median of %d rounds of %.1f s each, the three loops interleaved; client: "
          "a new array each batch, out=: one reused; hand: http.client, one connection, parts one after the other, "
          "one reused buffer)" % (a.dtype, rows_total, dim, a.rounds, a.seconds))
    print("batch  parts       client        out=        hand   client/hand  out=/hand")
    for size in (int(x) for x in a.batches.split(",")):
        batches = [rng.integers(0, rows_total, size) for _ in range(8)]
        c.rows(batches[0], a.dtype, raw=True)  # warm: connections, info
        part = c.part_size(a.dtype)
        got = {"client": [], "out": [], "hand": []}
        for _ in range(a.rounds):
            got["client"].append(client_loop(c, batches, a.dtype, a.seconds)[0])
            got["out"].append(client_loop(c, batches, a.dtype, a.seconds, reuse=True)[0])
            got["hand"].append(hand_loop(u.hostname, u.port, batches, dim, a.dtype, a.seconds, part)[0])
        cl, reuse, hand = (float(np.median(got[k])) for k in ("client", "out", "hand"))
        print("%6d %5d %12.0f %11.0f %11.0f %9.2f %10.2f" % (size, -(-size // part), cl, reuse, hand, cl / hand,
                                                            reuse / hand))
    c.close()


def repeats(a):
    """The client-side CPU time of the two ways to expand repeats (the server's part is the same: the distinct ids),
    with the answer's bytes copied from memory instead of a socket: in place run by run, repeats copied from their
    first occurrence; or a scratch buffer of the distinct rows and one np.take. Needs no daemon."""
    from embd_client.client import _runs
    n, dim = 4096, 768
    rng = np.random.default_rng(0)
    out = np.empty((n, dim), np.float32)
    out_mv = memoryview(out).cast("B")
    src = rng.standard_normal((n, dim), dtype=np.float32)
    src_mv = memoryview(src).cast("B")
    rb = dim * 4
    print("repeats  in place ms  scratch ms   runs   (client-side copies of a 4,096 x 768 f32 batch, CPU time, median)")
    for share in (float(x) for x in a.repeats.split(",")):
        d = max(1, int(n * (1 - share)))
        u = rng.choice(200000, d, replace=False)
        ids = np.concatenate([u, rng.choice(u, n - d)])
        rng.shuffle(ids)
        order = np.argsort(ids, kind="stable")
        s = ids[order]
        starts = np.concatenate(([True], s[1:] != s[:-1]))
        gf = order[starts]
        group = np.cumsum(starts) - 1
        firsts = np.sort(gf)
        dup_pos, dup_src = order[~starts], gf[group[~starts]]
        runs = _runs(firsts)
        by = np.argsort(gf)
        rank = np.empty(len(gf), np.intp)
        rank[by] = np.arange(len(gf))
        take = np.empty(n, np.intp)
        take[order] = rank[group]
        res = []
        for mode in ("in place", "scratch"):
            t = []
            for _ in range(15):
                t0 = time.process_time()
                if mode == "in place":
                    k = 0
                    for f, c in runs:
                        out_mv[f * rb:(f + c) * rb] = src_mv[k * rb:(k + c) * rb]
                        k += c
                    out[dup_pos] = out[dup_src]
                else:
                    sc = np.empty((d, dim), np.float32)
                    memoryview(sc).cast("B")[:] = src_mv[:d * rb]
                    np.take(sc, take, axis=0, out=out, mode="clip")
                t.append(time.process_time() - t0)
            res.append(np.median(t) * 1e3)
        print("%7.2f %12.2f %11.2f %6d" % (share, res[0], res[1], len(runs)))


if __name__ == "__main__":
    main()
