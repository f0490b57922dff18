"""Rows, slices and batches: exact bytes against what NumPy reads from the same file, on every path and format."""
import io
import json
import re

import numpy as np
import pytest

BIN = {"Accept": "application/octet-stream"}
NPY = {"Accept": "application/x-npy"}


def rows_of(body):
    doc = json.loads(body)
    return doc, np.array(doc["rows"], dtype=np.float32).reshape(doc["shape"])


def test_single_row_json_reads_back_exactly(f32d, data):
    status, h, body = f32d.get("/v1/rows/7")
    assert status == 200
    assert h["content-type"] == "application/json"
    doc, rows = rows_of(body)
    assert doc["shape"] == [1, 48] and doc["dtype"] == "f32" and doc["ids"] == [7]
    assert rows.tobytes() == data["f32"][7:8].tobytes()
    assert h["x-embd-path"] == "gather"
    assert int(h["x-embd-copied-bytes"]) == len(body)
    assert h["x-embd-generation"] == "1"


def test_json_floats_are_shortest(f32d, data):
    _, _, body = f32d.get("/v1/rows/5")
    text = body.decode()
    assert '"rows":[[0.1,1e-05,-0.0,3.4028235e+38,1,7.063,0.1,' in text
    _, _, body = f32d.get("/v1/rows?start=0&stop=50")
    numbers = re.findall(r"-?[0-9][0-9.e+-]*", body.decode().split('"rows":')[1])
    expect = data["f32"][:50].ravel()
    assert len(numbers) == expect.size
    for tok, v in zip(numbers, expect):
        assert np.float32(float(tok)) == v or (np.isnan(v))
        # NumPy's own shortest repr (Dragon4, unique=True) has as many significant digits
        mant = np.format_float_scientific(v, unique=True).split("e")[0].replace("-", "").replace(".", "")
        mine = tok.split("e")[0].replace("-", "").replace(".", "").lstrip("0")
        assert len(mine.rstrip("0") or "0") <= len(mant.rstrip("0") or "0"), (tok, mant)


def test_single_row_binary_is_zero_copy(f32d, data):
    status, h, body = f32d.get("/v1/rows/999", BIN)
    assert status == 200
    assert body == data["f32"][999].tobytes()
    assert h["x-embd-path"] == "zero-copy"
    assert h["x-embd-copied-bytes"] == "0"
    assert h["x-embd-shape"] == "1,48"
    assert h["x-embd-dtype"] == "f32"
    assert h["content-type"] == "application/octet-stream"


def test_slice_binary_and_npy(f32d, data):
    status, h, body = f32d.get("/v1/rows?start=100&stop=356", BIN)
    assert status == 200 and body == data["f32"][100:356].tobytes()
    assert h["x-embd-path"] == "zero-copy" and h["x-embd-copied-bytes"] == "0"
    assert h["x-embd-shape"] == "256,48"
    status, h, body = f32d.get("/v1/rows?start=100&stop=356&format=npy")
    assert status == 200 and h["content-type"] == "application/x-npy"
    arr = np.load(io.BytesIO(body))
    assert arr.dtype == np.float32 and arr.shape == (256, 48)
    assert arr.tobytes() == data["f32"][100:356].tobytes()
    # Only the .npy header is ours; the rows come from the mapping.
    assert h["x-embd-path"] == "zero-copy"
    assert int(h["x-embd-copied-bytes"]) == len(body) - 256 * 48 * 4
    assert int(h["x-embd-copied-bytes"]) % 64 == 0


def test_open_ended_slices(f32d, data):
    _, _, body = f32d.get("/v1/rows?start=990", BIN)
    assert body == data["f32"][990:].tobytes()
    _, _, body = f32d.get("/v1/rows?stop=3", BIN)
    assert body == data["f32"][:3].tobytes()


def test_scattered_ids_are_gathered(f32d, data):
    ids = [3, 17, 42, 999, 0, 17]
    q = ",".join(map(str, ids))
    status, h, body = f32d.get("/v1/rows?ids=" + q, BIN)
    assert status == 200 and body == data["f32"][ids].tobytes()
    assert h["x-embd-path"] == "gather"
    assert int(h["x-embd-copied-bytes"]) == len(body)
    assert h["x-embd-shape"] == "6,48"
    arr = np.load(io.BytesIO(f32d.get("/v1/rows?format=npy&ids=" + q)[2]))
    assert arr.tobytes() == data["f32"][ids].tobytes()
    doc, rows = rows_of(f32d.get("/v1/rows?ids=" + q)[2])
    assert doc["ids"] == ids and rows.tobytes() == data["f32"][ids].tobytes()


def test_ids_forming_one_run_are_zero_copy(f32d, data):
    status, h, body = f32d.get("/v1/rows?ids=10,11,12,13", BIN)
    assert status == 200 and body == data["f32"][10:14].tobytes()
    assert h["x-embd-path"] == "zero-copy"


def test_iovec_and_gather_give_identical_bytes(start, data):
    """The same scattered runs, once as an I/O vector from the mapping and once gathered."""
    ids = list(range(10, 30)) + list(range(500, 520)) + list(range(7, 9))
    q = "/v1/rows?ids=" + ",".join(map(str, ids))
    iov = start(data["f32_path"], "--plan.iov_min_run_bytes", "0", "--plan.iov_max_segments", "8")
    gat = start(data["f32_path"], "--plan.iov_max_segments", "1")
    for headers in (BIN, NPY):
        s1, h1, b1 = iov.get(q, headers)
        s2, h2, b2 = gat.get(q, headers)
        assert s1 == s2 == 200
        assert h1["x-embd-path"] == "zero-copy" and h2["x-embd-path"] == "gather"
        assert b1 == b2
    assert iov.get(q, BIN)[2] == data["f32"][ids].tobytes()
    assert np.load(io.BytesIO(iov.get(q, NPY)[2])).tobytes() == data["f32"][ids].tobytes()


def test_post_json_npy_and_raw_ids(f32d, data):
    ids = [5, 900, 6, 7, 123]
    want = data["f32"][ids].tobytes()
    s, h, b = f32d.request("POST", "/v1/rows", json.dumps({"ids": ids}),
                           {"Content-Type": "application/json", **BIN})
    assert s == 200 and b == want
    for dt in (np.int32, np.int64):
        buf = io.BytesIO()
        np.save(buf, np.array(ids, dtype=dt))
        s, h, b = f32d.request("POST", "/v1/rows", buf.getvalue(), {"Content-Type": "application/x-npy", **BIN})
        assert s == 200 and b == want, b
    s, h, b = f32d.request("POST", "/v1/rows?id_dtype=int64", np.array(ids, dtype=np.int64).tobytes(),
                           {"Content-Type": "application/octet-stream", **BIN})
    assert s == 200 and b == want
    s, h, b = f32d.request("POST", "/v1/rows?id_dtype=int32", np.array(ids, dtype=np.int32).tobytes(),
                           {"Content-Type": "application/octet-stream", **NPY})
    assert s == 200 and np.load(io.BytesIO(b)).tobytes() == want
    # JSON responses to binary id bodies still name the ids.
    s, h, b = f32d.request("POST", "/v1/rows?id_dtype=int64", np.array(ids, dtype=np.int64).tobytes(),
                           {"Content-Type": "application/octet-stream"})
    doc, rows = rows_of(b)
    assert doc["ids"] == ids and rows.tobytes() == want


@pytest.mark.parametrize("accept,ctype", [
    ("application/x-npy", "application/x-npy"),
    ("application/octet-stream", "application/octet-stream"),
    ("application/json", "application/json"),
    ("*/*", "application/json"),
    ("application/*", "application/json"),
    ("text/html, application/x-npy;q=0.9, application/json;q=0.5", "application/x-npy"),
    ("application/json;q=0.1, application/octet-stream", "application/octet-stream"),
    # RFC 9110: each type takes the q of the most specific range naming it, so JSON is ruled out here.
    ("application/json;q=0, */*", "application/octet-stream"),
    ("*/*;q=0.5, application/x-npy", "application/x-npy"),
    ("application/x-npy;q=0.9, application/octet-stream;q=0.9", "application/x-npy"),
    ("APPLICATION/X-NPY", "application/x-npy"),
])
def test_accept_negotiation(f32d, accept, ctype):
    s, h, _ = f32d.get("/v1/rows/1", {"Accept": accept})
    assert s == 200 and h["content-type"] == ctype


def test_format_parameter_wins_over_accept(f32d, data):
    s, h, b = f32d.get("/v1/rows/1?format=bin", {"Accept": "application/json"})
    assert s == 200 and h["content-type"] == "application/octet-stream" and b == data["f32"][1].tobytes()


def bf16_bytes(a):
    """float32 -> bfloat16 with round-to-nearest-even, as uint16 bytes."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # row 5's 3.4e38 is inf in f16, as in embd
def test_dtype_conversion(f32d, data):
    s, h, b = f32d.get("/v1/rows?start=0&stop=20&dtype=f16", BIN)
    assert s == 200 and b == data["f32"][:20].astype(np.float16).tobytes()
    assert h["x-embd-path"] == "gather" and h["x-embd-dtype"] == "f16"
    arr = np.load(io.BytesIO(f32d.get("/v1/rows?start=0&stop=20&dtype=f16&format=npy")[2]))
    assert arr.dtype == np.float16 and arr.tobytes() == data["f32"][:20].astype(np.float16).tobytes()
    s, h, b = f32d.get("/v1/rows?ids=3,1,4&dtype=bf16", BIN)
    assert s == 200 and b == bf16_bytes(data["f32"][[3, 1, 4]])
    doc, rows = rows_of(f32d.get("/v1/rows?ids=3&dtype=f16")[2])
    assert doc["dtype"] == "f16"
    assert rows.tobytes() == data["f32"][[3]].astype(np.float16).astype(np.float32).tobytes()


def test_l2_normalisation(f32d, data):
    s, h, b = f32d.get("/v1/rows?start=0&stop=30&normalize=l2", BIN)
    assert s == 200 and h["x-embd-path"] == "gather"
    got = np.frombuffer(b, dtype=np.float32).reshape(30, 48)
    e = data["f32"][:30].astype(np.float64)
    want = (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
    # Row 5 holds 3.4e38, whose square overflows float32: the norm is summed in double.
    assert np.all(np.isfinite(got)) and abs(got[5, 3] - want[5, 3]) < 1e-7
    # BLAS and NumPy sum in different orders: equal to within an ulp, not always bit for bit.
    assert np.max(np.abs(got - want)) < 1e-7
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_f16_matrix(start, data):
    d = start(data["f16_path"])
    info = d.json("/v1/info")
    assert info["dtype"] == "f16" and info["rows"] == 300 and info["dim"] == 32
    s, h, b = d.get("/v1/rows?ids=4,2", BIN)
    assert b == data["f16"][[4, 2]].tobytes() and h["x-embd-dtype"] == "f16"
    arr = np.load(io.BytesIO(d.get("/v1/rows?start=3&stop=9&format=npy")[2]))
    assert arr.dtype == np.float16 and arr.tobytes() == data["f16"][3:9].tobytes()
    doc, rows = rows_of(d.get("/v1/rows/9")[2])
    assert doc["dtype"] == "f16" and rows.tobytes() == data["f16"][9:10].astype(np.float32).tobytes()
    s, h, b = d.get("/v1/rows/9?dtype=f32", BIN)
    assert b == data["f16"][9].astype(np.float32).tobytes()


def test_raw_matrix(start, data):
    d = start(data["raw_path"], "--dim", "16", "--dtype", "f32")
    info = d.json("/v1/info")
    assert (info["rows"], info["dim"], info["format"]) == (200, 16, "raw")
    assert d.get("/v1/rows?start=10&stop=20", BIN)[2] == data["raw"][10:20].tobytes()


def test_demo_matrix(start):
    d = start()
    info = d.json("/v1/info")
    assert (info["rows"], info["dim"], info["source"]) == (10000, 64, "builtin:demo")
    doc = json.loads(d.get("/v1/rows/7")[2])
    assert doc["rows"][0][:3] == [7, 7.001, 7.002] and doc["rows"][0][63] == 7.063


def test_info_healthz_and_head(f32d, data):
    info = f32d.json("/v1/info")
    assert info["rows"] == 1000 and info["dim"] == 48 and info["dtype"] == "f32"
    assert info["format"] == "npy" and info["source"] == data["f32_path"] and info["generation"] == 1
    assert info["vocab"] is False and info["data_bytes"] == 1000 * 48 * 4
    assert info["bytes"] == len(open(data["f32_path"], "rb").read())
    assert f32d.json("/healthz") == {"status": "ok", "generation": 1}
    s, h, b = f32d.request("HEAD", "/v1/rows/3", headers=BIN)
    assert s == 200 and b == b"" and h["content-length"] == str(48 * 4)
