"""Every bad input gets the JSON error body with the right status, code and message, and the daemon keeps serving."""
import json

import numpy as np
import pytest

from conftest import npy

JSON = {"Content-Type": "application/json"}
RAW = {"Content-Type": "application/octet-stream"}
NPY = {"Content-Type": "application/x-npy"}


# (method, path, body, headers) -> (status, code, a fragment of the message); the f32 matrix has 1000 rows.
CASES = [
    ("GET", "/v1/rows/1000", None, {}, 404, "row_not_found", "id 1000 is out of range [0, 1000)"),
    ("GET", "/v1/rows/-1", None, {}, 400, "bad_id", "'-1' is negative"),
    ("GET", "/v1/rows/abc", None, {}, 400, "bad_id", "'abc' is not a non-negative decimal integer"),
    ("GET", "/v1/rows/", None, {}, 400, "bad_id", "the path names no id"),
    ("GET", "/v1/rows/1,2", None, {}, 400, "bad_id", "is not one id"),
    ("GET", "/v1/rows/1/2", None, {}, 404, "not_found", "no such path: /v1/rows/1/2"),
    ("GET", "/v1/rows/99999999999999999999", None, {}, 400, "bad_id", "does not fit in a 64-bit id"),
    ("GET", "/v1/rows?ids=1,1000", None, {}, 400, "id_out_of_range", "id 1000 is out of range [0, 1000)"),
    ("GET", "/v1/rows?ids=5,-3", None, {}, 400, "bad_id", "'-3' is negative"),
    ("GET", "/v1/rows?ids=a,b", None, {}, 400, "bad_id", "'a' is not"),
    ("GET", "/v1/rows?ids=1.5", None, {}, 400, "bad_id", "'1.5' is not"),
    ("GET", "/v1/rows?ids=", None, {}, 400, "empty_batch", "the id list is empty"),
    ("GET", "/v1/rows?ids=1,,2", None, {}, 400, "bad_id", "empty id at item 1"),
    ("GET", "/v1/rows?ids=1%2C2%2Cx", None, {}, 400, "bad_id", "'x' is not"),
    ("GET", "/v1/rows?start=5&stop=2", None, {}, 400, "bad_slice", "start 5 is after stop 2"),
    ("GET", "/v1/rows?start=0&stop=1001", None, {}, 400, "id_out_of_range", "stop 1001 is past the end: rows are [0, 1000)"),
    ("GET", "/v1/rows?start=1000", None, {}, 400, "empty_batch", "the slice [1000, 1000) is empty"),
    ("GET", "/v1/rows?start=x&stop=2", None, {}, 400, "bad_slice", "start 'x' is not a non-negative integer"),
    ("GET", "/v1/rows?start=-1&stop=2", None, {}, 400, "bad_slice", "start '-1' is not"),
    ("GET", "/v1/rows?start=99999999999999999999999", None, {}, 400, "bad_slice", "start '99999999999999999999999' is past 2^64-1"),
    ("GET", "/v1/rows?start=0&stop=2x", None, {}, 400, "bad_slice", "stop '2x' is not a non-negative integer"),
    ("GET", "/v1/rows?start=%2B1&stop=2", None, {}, 400, "bad_slice", "start '+1' is not a non-negative integer"),
    ("GET", "/v1/rows/1", None, {"Accept": "application/json;q=5"}, 406, "not_acceptable", "names no format"),
    ("GET", "/v1/rows?start=5&stop=5", None, {}, 400, "empty_batch", "[5, 5) is empty"),
    ("GET", "/v1/rows", None, {}, 400, "bad_parameter", "name the rows"),
    ("GET", "/v1/rows?id=3", None, {}, 400, "bad_parameter", "unknown query parameter 'id'"),
    ("GET", "/v1/rows?ids=1&start=0", None, {}, 400, "bad_parameter", "give one of ?ids=, ?tokens= or ?start=&stop="),
    ("GET", "/v1/rows?ids=1&id_dtype=int32", None, {}, 400, "bad_parameter", "id_dtype goes with a binary POST"),
    ("GET", "/v1/rows/1?format=xml", None, {}, 400, "bad_parameter", "format 'xml' is not one of json, bin, npy"),
    ("GET", "/v1/rows/1?dtype=f64", None, {}, 400, "bad_parameter", "dtype 'f64' is not one of f32, f16, bf16"),
    ("GET", "/v1/rows/1?normalize=l1", None, {}, 400, "bad_parameter", "normalize 'l1' is not l2 or none"),
    ("GET", "/v1/rows/1?dtype=bf16&format=npy", None, {}, 400, "bad_parameter", "NumPy has no bf16 dtype"),
    ("GET", "/v1/rows/1", None, {"Accept": "text/html"}, 406, "not_acceptable", "Accept 'text/html' names no format"),
    ("GET", "/v1/rows/1", None, {"Accept": "application/json;q=0"}, 406, "not_acceptable", "names no format"),
    ("GET", "/nope", None, {}, 404, "not_found", "no such path: /nope"),
    ("GET", "/v1/info?verbose=1", None, {}, 400, "bad_parameter", "unknown query parameter 'verbose'; this path takes none"),
    ("DELETE", "/v1/rows", None, {}, 405, "method_not_allowed", "DELETE is not allowed on /v1/rows"),
    ("POST", "/v1/info", b"{}", JSON, 405, "method_not_allowed", "POST is not allowed on /v1/info"),
    ("PUT", "/v1/rows/1", b"x", {}, 405, "method_not_allowed", "PUT is not allowed"),
    ("POST", "/v1/rows", b'{"ids":[1,"a"]}', JSON, 400, "wrong_json_type", "ids[1] is a string"),
    ("POST", "/v1/rows", b'{"ids":[1,2', JSON, 400, "bad_json", "the body ends"),
    ("POST", "/v1/rows", b'{"ids":[1 2]}', JSON, 400, "bad_json", "at byte 10: expected ',' or ']'"),
    ("POST", "/v1/rows", b'{"ids":[1.5]}', JSON, 400, "wrong_json_type", "ids[0] is 1.5, not an integer"),
    ("POST", "/v1/rows", b'{"ids":{"a":1}}', JSON, 400, "wrong_json_type", "\"ids\" is an object"),
    ("POST", "/v1/rows", b'{"ids":[]}', JSON, 400, "empty_batch", "\"ids\" is an empty list"),
    ("POST", "/v1/rows", b'{"idz":[1]}', JSON, 400, "bad_body", "unknown key \"idz\""),
    ("POST", "/v1/rows", b'{"ids":[1,1000]}', JSON, 400, "id_out_of_range", "id 1000 is out of range"),
    ("POST", "/v1/rows", b'{"ids":[-4]}', JSON, 400, "bad_id", "ids[0] is -4"),
    ("POST", "/v1/rows", b"[1,2]", JSON, 400, "wrong_json_type", "the body is an array"),
    ("POST", "/v1/rows", b"", JSON, 400, "empty_batch", "the request body is empty"),
    ("POST", "/v1/rows", b"1,2", {"Content-Type": "text/plain"}, 415, "unsupported_media_type", "'text/plain' is not supported"),
    ("POST", "/v1/rows", b"ids=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", "x-www-form-urlencoded"),
    ("POST", "/v1/rows", b"{}", {}, 400, "bad_body", "the body has no \"ids\" or \"tokens\""),  # no Content-Type: JSON by its '{'
    ("POST", "/v1/rows", b"\x05\x00\x00\x00\x00\x00\x00\x00", {}, 415, "unsupported_media_type", "the body has no Content-Type and is neither JSON nor .npy"),
    ("POST", "/v1/rows", b"\x05\x00\x00\x00\x00\x00\x00\x00", RAW, 400, "bad_parameter", "needs ?id_dtype=int64 or ?id_dtype=int32"),
    ("POST", "/v1/rows?id_dtype=int64", b"\x01" * 12, RAW, 400, "bad_body", "12 bytes is not a whole number of 8-byte int64 ids"),
    ("POST", "/v1/rows?id_dtype=int16", b"\x01\x00", RAW, 400, "bad_parameter", "id_dtype 'int16' is not int32 or int64"),
    ("POST", "/v1/rows?id_dtype=int32", b'{"ids":[1]}', JSON, 400, "bad_parameter", "id_dtype goes with an application/octet-stream body"),
    ("POST", "/v1/rows?ids=1", b'{"ids":[1]}', JSON, 400, "bad_parameter", "a POST names its rows in the body"),
    ("POST", "/v1/rows?id_dtype=int64", np.array([1, 2], np.int32).tobytes() + b"\xff\xff\xff\xff", {**RAW, "X": "y"}, 400, "bad_body", "not a whole number"),
    ("POST", "/v1/rows?id_dtype=int32", np.array([1, -2], np.int32).tobytes(), RAW, 400, "bad_id", "id -2 at position 1 is negative"),
    ("POST", "/v1/rows?id_dtype=int64", np.array([3, 1000], np.int64).tobytes(), RAW, 400, "id_out_of_range", "id 1000 is out of range"),
    ("POST", "/v1/rows", npy(np.array([1.0, 2.0])), NPY, 400, "bad_body", "dtype '<f8'; ids must be int32 or int64"),
    ("POST", "/v1/rows", npy(np.array([[1, 2]])), NPY, 400, "bad_body", "ids must be 1-D"),
    ("POST", "/v1/rows", npy(np.array([1, 2]))[:-3], NPY, 400, "bad_body", "2 ids but 13 bytes follow"),
    ("POST", "/v1/rows", npy(np.array([], np.int64)), NPY, 400, "empty_batch", "the .npy array is empty"),
    ("POST", "/v1/rows", b"\x93NUMPY\x01\x00\xff\xff{", NPY, 400, "bad_body", "announces 65535 bytes"),
    ("POST", "/v1/rows", b'{"ids":[1]}', NPY, 400, "bad_body", "not a .npy file"),
]


def check_error(status, headers, body, want_status, code, fragment):
    assert status == want_status, body
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"status", "code", "message"}
    assert doc["error"]["status"] == want_status
    assert doc["error"]["code"] == code, doc
    assert fragment in doc["error"]["message"], doc


def test_bad_inputs(f32d):
    for method, path, body, headers, want, code, fragment in CASES:
        status, h, b = f32d.request(method, path, body, headers)
        try:
            check_error(status, h, b, want, code, fragment)
        except AssertionError as e:
            raise AssertionError("%s %s %r: %s" % (method, path, body, e)) from None
    # Still serving, and every one of them was counted.
    assert f32d.json("/healthz")["status"] == "ok"
    m = f32d.settled()
    assert sum(v for k, v in m.items() if k.startswith("embd_requests_total") and 'status="200"' not in k) == len(CASES)
    assert m["embd_inflight_accounted_bytes"] == 0


# Percent-encoded bytes that are not UTF-8: an overlong '/', a surrogate, a code point past U+10FFFF, a C0 lead
# and a byte that never occurs in UTF-8. The message quotes the id, so each must come back as U+FFFD.
NOT_UTF8 = [("%E0%80%AF", 3), ("%ED%A0%80", 3), ("%F4%90%80%80", 4), ("%C0%AF", 2), ("%FF", 1)]


@pytest.mark.parametrize("path,replaced", NOT_UTF8)
def test_error_bodies_are_valid_utf8(f32d, path, replaced):
    status, h, b = f32d.get("/v1/rows/" + path)
    assert status == 400, b
    assert h["content-type"] == "application/json"
    doc = json.loads(b.decode("utf-8"))  # strict: no errors="replace"
    assert doc["error"] == {"status": 400, "code": "bad_id",
                            "message": "id '%s' is not a non-negative decimal integer" % ("\ufffd" * replaced)}


def test_line_separators_are_escaped(f32d):
    """U+2028 and U+2029 are valid JSON but end a JavaScript string: escaped, the body is safe to embed."""
    status, _, b = f32d.get("/v1/rows/%E2%80%A8%E2%80%A9")
    assert status == 400 and b"\\u2028\\u2029" in b and b"\xe2\x80\xa8" not in b, b
    assert json.loads(b.decode("utf-8"))["error"]["message"] == "id '\u2028\u2029' is not a non-negative decimal integer"


def test_nul_in_a_json_body_is_bad_json(f32d):
    for body, at in [(b'{"ids":[1,\x002]}', 10), (b'\x00{"ids":[1]}', 0), (b'{"ids":[1]}\x00', 11)]:
        status, h, b = f32d.request("POST", "/v1/rows", body, JSON)
        check_error(status, h, b, 400, "bad_json", "malformed JSON at byte %d: a NUL byte" % at)
    assert f32d.json("/healthz")["status"] == "ok"


def test_405_says_what_is_allowed(f32d):
    s, h, _ = f32d.request("DELETE", "/v1/rows")
    assert s == 405 and h["allow"] == "GET, HEAD, POST"
    s, h, _ = f32d.request("POST", "/metrics", b"x", JSON)
    assert s == 405 and h["allow"] == "GET, HEAD"


def test_limits_answer_413_with_the_figures(start, data):
    d = start(data["f32_path"], "--limits.max_ids", "10", "--limits.max_body_bytes", "1000",
              "--limits.request_bytes", "64KiB")
    ids = ",".join(str(i) for i in range(11))
    check_error(*d.get("/v1/rows?ids=" + ids), 413, "too_many_ids", "?ids= names 11 ids; limits.max_ids is 10")
    check_error(*d.request("POST", "/v1/rows", json.dumps({"ids": list(range(11))}), JSON), 413, "too_many_ids",
                "the body names 11 ids; limits.max_ids is 10")
    check_error(*d.request("POST", "/v1/rows", npy(np.arange(11)), NPY), 413, "too_many_ids",
                "the request names 11 ids; limits.max_ids is 10")
    check_error(*d.request("POST", "/v1/rows", b"1" * 2000, JSON), 413, "body_too_large",
                "the body is 2000 bytes; limits.max_body_bytes is 1000")
    # 1000 rows x 48 floats as JSON needs ~800 KB: refused before any work, saying what and how much.
    s, h, b = d.get("/v1/rows?start=0&stop=1000")
    check_error(s, h, b, 413, "request_too_large", "limits.request_bytes is 65536")
    assert "the JSON response needs this request to hold" in json.loads(b)["error"]["message"]
    # The same rows as binary go out zero-copy: no buffer, so no limit to hit.
    s, h, b = d.get("/v1/rows?start=0&stop=1000&format=bin")
    assert s == 200 and h["x-embd-path"] == "zero-copy" and b == data["f32"].tobytes()
    assert int(h["x-embd-accounted-bytes"]) < 4096
    # Gathering 10 rows fits; the response says what it was charged.
    s, h, b = d.get("/v1/rows?ids=9,7,5,3,1,0,2,4,6,8&format=bin")
    assert s == 200 and h["x-embd-path"] == "gather"
    assert int(h["x-embd-accounted-bytes"]) >= 10 * 48 * 4
    m = d.settled()
    assert m['embd_rejected_total{reason="max_ids"}'] == 3
    assert m['embd_rejected_total{reason="max_body_bytes"}'] == 1
    assert m['embd_rejected_total{reason="request_bytes"}'] == 1
    assert m["embd_inflight_accounted_bytes"] == 0


def test_start_up_errors_name_the_problem(tmp_path, data):
    import subprocess
    from conftest import EMBD

    def run(*args):
        p = subprocess.run([EMBD, *args], capture_output=True, text=True, timeout=30)
        return p.returncode, p.stderr

    bad = tmp_path / "lying.npy"
    raw = open(data["f32_path"], "rb").read()
    bad.write_bytes(raw[: len(raw) // 2])
    rc, err = run("serve", str(bad), "--port", "0")
    assert rc == 1 and "lying.npy: header says shape (1000, 48)" in err and "needs 192000 data bytes" in err
    rc, err = run("serve", "/nonexistent.npy")
    assert rc == 1 and "/nonexistent.npy: No such file or directory" in err
    rc, err = run("serve", "--limits.max_ids", "many")
    assert rc == 2 and "limits.max_ids: 'many' is not an integer" in err
    rc, err = run("serve", "--bogus")
    assert rc == 2 and "unknown option '--bogus'" in err
    cfg = tmp_path / "c.json"
    cfg.write_text('{"limits": {"max_idz": 3}}')
    rc, err = run("serve", "--config", str(cfg))
    assert rc == 2 and "c.json: limits.max_idz: unknown key" in err
    cfg.write_text('{"listen": {"port": "eighty"}}')
    rc, err = run("serve", "--config", str(cfg))
    assert rc == 2 and "c.json: listen.port: must be an integer" in err
    cfg.write_text('{"listen": {"port": 80,}}')
    rc, err = run("serve", "--config", str(cfg))
    assert rc == 2 and "c.json:1:" in err
    rc, err = run("serve", data["raw_path"])
    assert rc == 1 and "unknown format: not .npy" in err and "for a raw matrix give --dim and --dtype" in err
    rc, err = run("serve", "--format", "csv")
    assert rc == 2 and "matrix.format: 'csv' is not one of auto, npy, safetensors, raw, glove, word2vec, word2vec_bin, demo" in err


def test_a_busy_port_is_an_error_not_a_shared_one(f32d, data):
    """A second daemon on a port in use must fail, not share it (SO_REUSEPORT would split the traffic)."""
    import subprocess
    from conftest import EMBD
    p = subprocess.run([EMBD, "serve", data["f32_path"], "--port", str(f32d.port)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1 and "cannot listen on 127.0.0.1 port %d" % f32d.port in p.stderr


def test_the_format_is_settled_before_any_id_is_parsed(f32d):
    """Negotiation comes first, so a response nobody can accept costs no parsing: a 406 or a bad format wins over
    ids that are malformed, too many or out of range (before, the ids were parsed and refused first)."""
    many = ",".join(["7"] * 70000)  # past limits.max_ids, in a POST body
    cases = [
        ("GET", "/v1/rows?ids=-1,abc", None, {"Accept": "text/html"}, 406, "not_acceptable"),
        ("GET", "/v1/rows?ids=1,5000", None, {"Accept": "text/html"}, 406, "not_acceptable"),
        ("GET", "/v1/rows/abc?format=xml", None, {}, 400, "bad_parameter"),
        ("GET", "/v1/rows/5000", None, {"Accept": "image/png"}, 406, "not_acceptable"),
        ("POST", "/v1/rows", b'{"ids":[%s]}' % many.encode(), {**JSON, "Accept": "text/html"}, 406, "not_acceptable"),
        ("POST", "/v1/rows?dtype=bf16&format=npy", b'{"ids":[1,', JSON, 400, "bad_parameter"),
    ]
    for method, path, body, headers, want, code in cases:
        status, h, b = f32d.request(method, path, body, headers)
        assert status == want and json.loads(b)["error"]["code"] == code, (path, b[:200])
    assert f32d.settled()["embd_inflight_accounted_bytes"] == 0


def test_info_of_a_file_named_in_broken_utf8_is_valid_json(start, data, tmp_path):
    """The source path is the operator's bytes, not necessarily UTF-8: /v1/info and the reload answer carry it as
    valid JSON (ASCII, the broken bytes as U+FFFD), never as the raw bytes."""
    import os
    import shutil
    odd = os.path.join(os.fsencode(str(tmp_path)), b"m\xe0\x80\xaf\xff.npy")
    shutil.copy(data["f32_path"], odd)
    d = start(os.fsdecode(odd))
    status, h, b = d.get("/v1/info")
    assert status == 200 and max(b) < 0x80, b  # ASCII: every other character escaped
    info = json.loads(b.decode("utf-8"))
    assert info["source"].endswith("m\ufffd\ufffd\ufffd\ufffd.npy") and info["rows"] == 1000


def test_pipelined_requests_after_an_error_are_answered(f32d):
    """A 404 or 405 found from the request line alone is answered like every other answer, so the connection stays
    open and the requests pipelined behind it are answered too (before, the first error closed the connection)."""
    import re
    import socket
    s = socket.create_connection(("127.0.0.1", f32d.port), timeout=10)
    reqs = [b"GET /v1/rows/1 HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            b"DELETE /v1/rows HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /v1/rows/99999 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /v1/info?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
    s.sendall(b"".join(reqs))
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    assert re.findall(rb"HTTP/1.1 (\d+)", buf) == [b"200", b"404", b"405", b"404", b"400", b"200"], buf
    assert buf.count(b"Connection: close") == 1, buf  # only the last, which asked for it
