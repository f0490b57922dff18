"""What a binary batch is charged: the README's formula (section "Memory: zero-copy, gather, accounting") against
the daemon's X-Embd-Accounted-Bytes, exactly, and /v1/info's limits a client splits a batch by.

A client sizes the parts of a large batch by this formula so that none passes limits.request_bytes; so it is checked
byte for byte (f32 and f16 tables, dtype conversions, zero-copy runs and gathers, int64 and int32 ids, bodies under
and over the first 64 KiB body buffer), and at the limit itself: a request_bytes equal to the formula is served, one
byte less is 413.
"""
import numpy as np
import pytest

from conftest import npy

KIB = 1 << 10


def heap(x):
    """What glibc's malloc takes for x bytes, as lib/acct.c embd_acct_heap_bytes counts it."""
    if x >= 128 * KIB:
        return (x + 16 + 4095) // 4096 * 4096
    return max(32, (x + 8 + 15) // 16 * 16)


def block(n):
    """The charge of a buffer of n bytes: its pool class (a quarter power of two, 4 KiB to 1 GiB) and 32-byte
    header, as the heap holds them."""
    if 4 * KIB <= n <= 1 << 30:
        q = 1 << (n.bit_length() - 1 - 2)
        n = -(-n // q) * q
    return heap(n + 32)


def runs(ids):
    """How many runs of consecutive ids (each one more than the one before)."""
    ids = np.asarray(ids, dtype=np.int64)
    return 1 + int(np.count_nonzero(np.diff(ids) != 1)) if len(ids) else 0


def segments(r):
    """The I/O vector of a zero-copy answer of r runs: 4 segments inline, then an array doubling from 8, the old
    one held while the new one is filled."""
    if r <= 4:
        return 0
    c = 8
    while c < r:
        c *= 2
    return block(16 * c) + (block(8 * c) if c > 8 else 0)


def plan(ids, row_bytes, convert, iov_max_segments=256, iov_min_run_bytes=3 * KIB):
    """The path lib/plan.c takes (the plan.* defaults): converted rows are gathered; one run, or at most
    iov_max_segments runs averaging iov_min_run_bytes, go out zero-copy."""
    r = runs(ids)
    if convert:
        return "gather"
    if r <= 1 or (r <= iov_max_segments and len(ids) * row_bytes // r >= iov_min_run_bytes):
        return "zero-copy"
    return "gather"


def growth(b):
    """P: the largest buffer a body of b bytes may have grown through (64 KiB, then a quarter more each time),
    held beside the next one while it is copied; 0 for a body that fits the first."""
    if b <= 64 * KIB:
        return 0
    c = 64 * KIB
    while c + c // 4 < b:
        c += c // 4
    return c


def answer(ids, dim, out_size, path, convert):
    """G: what the request holds beside its body once the body is in: the runs, then the rows (gather) or the
    I/O vector (zero-copy)."""
    r = runs(ids)
    if path == "gather":
        return block(16 * r) + (block(4 * dim) if convert else 0) + block(len(ids) * dim * out_size)
    return block(16 * r) + segments(r)


def charge(record, body, ids, dim, out_size, path, convert):
    """The README's formula: R + block(B) + max(G, block(P))."""
    p = growth(len(body))
    return record + block(len(body)) + max(answer(ids, dim, out_size, path, convert), block(p) if p else 0)


def post(d, body, query=""):
    return d.request("POST", "/v1/rows?format=bin" + query, body=body,
                     headers={"Content-Type": "application/x-npy"})


def record_bytes(d):
    """R: a one-row zero-copy answer allocates nothing, so it is charged the request's record alone."""
    status, h, _ = d.get("/v1/rows/0?format=bin")
    assert status == 200 and h["x-embd-path"] == "zero-copy"
    return int(h["x-embd-accounted-bytes"])


def consecutive(starts, length):
    return np.concatenate([np.arange(s, s + length) for s in starts])


def test_info_limits(start, data):
    d = start(data["f32_path"], "--limits.max_ids", "777", "--limits.request_bytes", "5MiB",
              "--limits.max_body_bytes", "123456")
    assert d.json("/v1/info")["limits"] == {"max_ids": 777, "request_bytes": 5 << 20, "max_body_bytes": 123456}


def test_charge_formula(start, big, data):
    path, a = big  # 20000 x 512 f32: a 2 KiB row, under plan.iov_min_run_bytes (3 KiB)
    d = start(path)
    h16 = start(data["f16_path"])  # 300 x 32 f16
    rng = np.random.default_rng(17)
    cases = []
    for n in (1, 3, 100, 4096, 10000):  # 10000 int64 ids: an 80 KiB body, grown past its first 64 KiB buffer
        ids = rng.integers(0, 20000, n)
        cases += [(d, a, ids, np.int64, "", "zero-copy" if n == 1 else "gather", 4, False),
                  (d, a, ids, np.int32, "&dtype=f16", "gather", 2, True),
                  (d, a, ids, np.int64, "&dtype=bf16", "gather", 2, True)]
    for r in (1, 4, 5, 8, 9, 100, 256):  # runs of 2 rows (4 KiB each): zero-copy up to plan.iov_max_segments
        ids = consecutive(rng.choice(np.arange(0, 20000, 3), r, replace=False), 2)
        cases.append((d, a, ids, np.int64, "", "zero-copy", 4, False))
    cases.append((d, a, np.arange(5000, 15000), np.int64, "", "zero-copy", 4, False))  # one run, 80 KiB body
    cases.append((d, a, consecutive([0, 9, 99], 2), np.int64, "&dtype=f16", "gather", 2, True))  # runs, converted
    f16 = data["f16"]
    for n in (1, 50, 1000):
        ids = rng.integers(0, 300, n)
        cases += [(h16, f16, ids, np.int64, "", "zero-copy" if n == 1 else "gather", 2, False),
                  (h16, f16, ids, np.int64, "&dtype=f32", "gather", 4, True)]
    records = {id(x): record_bytes(x) for x in (d, h16)}
    for daemon, table, ids, id_dtype, query, want_path, out_size, convert in cases:
        body = npy(ids.astype(id_dtype))
        status, h, got = post(daemon, body, query)
        assert status == 200, got
        assert want_path == plan(ids, table.shape[1] * table.itemsize, convert), (len(ids), query)
        assert h["x-embd-path"] == want_path, (len(ids), query, h["x-embd-path"])
        assert len(got) == len(ids) * table.shape[1] * out_size
        want = charge(records[id(daemon)], body, ids, table.shape[1], out_size, want_path, convert)
        assert int(h["x-embd-accounted-bytes"]) == want, (len(ids), id_dtype, query, runs(ids))


def test_charge_bound_past_the_first_body_buffer(start, big):
    """One run named by 20,000 ids (a 160 KiB body): the answer holds next to nothing, so the peak is the body's
    growth, whose steps follow how the body arrived: never above the formula, never below the grown body."""
    path, a = big
    d = start(path)
    ids = np.arange(20000)
    body = npy(ids)
    assert growth(len(body)) == 160000
    record = record_bytes(d)
    status, h, _ = post(d, body)
    assert status == 200 and h["x-embd-path"] == "zero-copy"
    got = int(h["x-embd-accounted-bytes"])
    assert record + block(len(body)) + block(64 * KIB) <= got <= charge(record, body, ids, 512, 4, "zero-copy", False)


@pytest.mark.parametrize("query,out_size,convert", [("", 4, False), ("&dtype=f16", 2, True)])
def test_charge_at_the_limit(start, big, query, out_size, convert):
    """A part sized by the formula to exactly limits.request_bytes is served; one byte less is refused."""
    path, a = big
    ids = np.random.default_rng(5).integers(0, 20000, 1500)
    body = npy(ids)
    probe = start(path)
    need = charge(record_bytes(probe), body, ids, a.shape[1], out_size, "gather", convert)
    for limit, status in ((need, 200), (need - 1, 413)):
        d = start(path, "--limits.request_bytes", str(limit))
        got, h, _ = post(d, body, query)
        assert got == status, (limit, need)
        if status == 413:
            assert int(h["x-embd-accounted-bytes"]) < limit
