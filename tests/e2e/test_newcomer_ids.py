"""What a newcomer sends: raw ids that must say their width, bodies without a Content-Type, a few thousand ids in
a GET, and JSON bodies that end their line (issue 16)."""
import json

import numpy as np
import pytest
import requests

from conftest import npy

RAW = {"Content-Type": "application/octet-stream"}
BIN = {"Accept": "application/octet-stream"}
NO_ID_DTYPE = ("an application/octet-stream body of ids needs ?id_dtype=int64 or ?id_dtype=int32: raw bytes do not "
               "say their width (a .npy body, application/x-npy, says it itself)")
NO_CONTENT_TYPE = ("the body has no Content-Type and is neither JSON nor .npy; send Content-Type: application/json "
                   "({\"ids\": [...]} or {\"tokens\": [...]}) or application/x-npy, or raw little-endian ids with "
                   "?id_dtype=int64 or ?id_dtype=int32")


def error_body(status, code, message):
    """The exact bytes of an error answer."""
    return (json.dumps({"error": {"status": status, "code": code, "message": message}}, separators=(",", ":"))
            + "\n").encode()


def test_raw_ids_without_id_dtype_are_refused_not_misread(f32d, data):
    """int32 ids [5, 0, 7, 0] read as int64 were rows [5, 7] with a 200: now the body must say its width."""
    body = np.array([5, 0, 7, 0], np.int32).tobytes()
    s, h, b = f32d.request("POST", "/v1/rows", body, {**RAW, **BIN})
    assert (s, h["content-type"], b) == (400, "application/json", error_body(400, "bad_parameter", NO_ID_DTYPE))
    s, h, b = f32d.request("POST", "/v1/rows?id_dtype=int32", body, {**RAW, **BIN})
    assert s == 200 and b == data["f32"][[5, 0, 7, 0]].tobytes()
    s, h, b = f32d.request("POST", "/v1/rows?id_dtype=int64", body, {**RAW, **BIN})
    assert s == 200 and b == data["f32"][[5, 7]].tobytes()  # what was asked for, said out loud
    # A .npy body says its own dtype, so it needs no id_dtype.
    s, h, b = f32d.request("POST", "/v1/rows", npy(np.array([5, 0, 7, 0], np.int32)),
                           {"Content-Type": "application/x-npy", **BIN})
    assert s == 200 and b == data["f32"][[5, 0, 7, 0]].tobytes()


def test_bodies_without_content_type(f32d, data):
    """requests.post(url, data=bytes) sends no Content-Type: a JSON or .npy body says what it is, a raw one cannot."""
    url = "http://127.0.0.1:%d" % f32d.port
    ids = [3, 17, 42, 999]
    want = data["f32"][ids].tobytes()
    for body in (json.dumps({"ids": ids}).encode(), b"\n  " + json.dumps({"ids": ids}).encode(),
                 npy(np.array(ids, np.int64)), npy(np.array(ids, np.int32))):
        r = requests.post(url + "/v1/rows?format=bin", data=body)
        assert "Content-Type" not in r.request.headers
        assert r.status_code == 200 and r.content == want, r.content
    # With id_dtype the body is raw, whatever it looks like: id 123 as int64 starts with '{'.
    r = requests.post(url + "/v1/rows?format=bin&id_dtype=int64", data=np.array([123, 5], np.int64).tobytes())
    assert r.status_code == 200 and r.content == data["f32"][[123, 5]].tobytes()
    r = requests.post(url + "/v1/rows?format=bin&id_dtype=int32", data=np.array(ids, np.int32).tobytes())
    assert r.status_code == 200 and r.content == want
    # Without it, a body that could be anything is refused, saying what to send.
    for body in (np.array(ids, np.int64).tobytes(), np.array([123, 5], np.int64).tobytes(), b"3,17,42"):
        r = requests.post(url + "/v1/rows?format=bin", data=body)
        assert r.status_code == 415 and r.content == error_body(415, "unsupported_media_type", NO_CONTENT_TYPE)
    # The vector endpoints read a JSON body without a Content-Type too.
    r = requests.post(url + "/v1/similar?k=3", data=json.dumps({"ids": [1, 2]}).encode())
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    r = requests.post(url + "/v1/pool?format=bin", data=json.dumps({"ids": [1, 2]}).encode())
    assert r.status_code == 200 and r.content == data["f32"][[1, 2]].mean(axis=0, dtype=np.float32).tobytes()


@pytest.fixture(scope="module")
def rows200k(tmp_path_factory):
    """200,000 rows like the bench's table (ids up to 6 digits), 2 wide so that it is small."""
    p = tmp_path_factory.mktemp("ids") / "t200k.npy"
    a = np.arange(400000, dtype=np.float32).reshape(200000, 2)
    np.save(p, a)
    return str(p), a


def test_a_get_of_4096_six_digit_ids_fits(start, rows200k):
    """limits.connection_memory 32KiB: 4,096 six-digit ids (a 28.7 KB URL) fit with requests' headers; 4,500 leave
    too little of it for the headers and are embd's JSON 414 uri_too_long (test_uri_length.py sweeps the edge)."""
    path, a = rows200k
    d = start(path)
    rng = np.random.default_rng(16)
    for n in (4096, 4500):
        ids = rng.integers(100000, 200000, size=n)
        url = "http://127.0.0.1:%d/v1/rows?format=bin&ids=%s" % (d.port, ",".join(map(str, ids)))
        r = requests.get(url)
        if n == 4096:
            assert r.status_code == 200, r.content[:200]
            assert r.content == a[ids].tobytes()
        else:
            assert (r.status_code, r.json()["error"]["code"]) == (414, "uri_too_long")


def test_json_bodies_end_with_a_newline(f32d):
    """Every JSON body, answers and errors alike, is one line ending in "\\n" (curl's output, `jq -c` habits)."""
    s, h, b = f32d.get("/healthz")
    assert (s, b) == (200, b'{"status":"ok","generation":1}\n')
    s, h, b = f32d.get("/v1/rows/1/2")
    assert (s, b) == (404, error_body(404, "not_found", "no such path: /v1/rows/1/2"))
    answers = [("GET", "/v1/info", None), ("GET", "/v1/rows/5", None), ("GET", "/v1/rows?ids=1,2", None),
               ("GET", "/v1/rows?start=3&stop=5", None), ("POST", "/v1/rows", b'{"ids":[1,2]}'),
               ("GET", "/v1/similar?id=1&k=2", None), ("POST", "/v1/similar?k=2", b'{"ids":[1,2]}'),
               ("POST", "/v1/similarity", b'{"pairs":[[1,2],[3,4]]}'),
               ("POST", "/v1/similarity", b'{"a":[1],"b":[2]}'), ("POST", "/v1/pool", b'{"ids":[1,2]}')]
    errors = [("GET", "/v1/rows/abc", None, 400), ("GET", "/nope", None, 404), ("DELETE", "/v1/info", None, 405),
              ("POST", "/v1/rows", b'{"ids":[1', 400), ("POST", "/v1/similar?k=2", b'{"ids":[5000]}', 400),
              ("POST", "/v1/admin/reload", b"", 404)]
    for method, path, body in answers:
        s, h, b = f32d.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        assert s == 200 and h["content-type"] == "application/json", (path, s, b)
        assert b.endswith(b"}\n") and b.count(b"\n") == 1, (path, b[-40:])
        json.loads(b)
    for method, path, body, status in errors:
        s, h, b = f32d.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        assert s == status and h["content-type"] == "application/json", (path, s, b)
        assert b.endswith(b"}}\n") and b.count(b"\n") == 1, (path, b)
        assert json.loads(b)["error"]["status"] == status
    # The metrics page was text ending in a newline already; the raw rows are untouched.
    s, h, b = f32d.get("/metrics")
    assert s == 200 and b.endswith(b"\n")
    s, h, b = f32d.get("/v1/rows/5?format=bin")
    assert s == 200 and len(b) == 48 * 4
