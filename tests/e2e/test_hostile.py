"""Hostile HTTP on raw sockets: malformed request lines, odd methods, bad encodings, enormous headers, lying
Content-Length, truncated and oversized bodies. Each gets an answer (or a closed connection where HTTP allows
nothing else), and the daemon keeps serving with nothing left accounted."""
import json
import socket
import time

import pytest


def raw(port, data, read_timeout=3.0):
    """Send bytes, half-close, return everything the daemon answers (b'' if it just closes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # answered and closed before the rest was sent: read what came
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
            if complete(out):
                break
        return out
    finally:
        s.close()


def complete(resp):
    """Whether resp holds a whole response (head and Content-Length bytes of body)."""
    head, sep, body = resp.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_of(resp):
    if not resp.startswith(b"HTTP/1."):
        return None
    return int(resp.split(b" ", 2)[1])


def json_error(resp):
    body = resp.split(b"\r\n\r\n", 1)[1]
    return json.loads(body)["error"]


H = b"Host: x\r\n"


def post_json(body):
    return (b"POST /v1/rows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(body) + body)


# (request bytes, expected status, expected JSON error code or None when libmicrohttpd answers itself)
CASES = [
    (b"GET /v1/rows?ids=1%zz2 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/rows?ids=%31%2C%32 HTTP/1.1\r\n" + H + b"Accept: application/octet-stream\r\n\r\n", 200, None),
    (b"GET /v1/rows?ids=1%00 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/rows?start=1e3&stop=2000 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_slice"),
    (b"GET /v1/rows?start=0x10&stop=20 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_slice"),
    (b"GET /v1/rows?start=18446744073709551616&stop=1 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_slice"),
    (b"GET /v1/rows/18446744073709551615 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/rows/+5 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/rows/5%20 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/rows/1%0a HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/rows?ids=1,%202 HTTP/1.1\r\n" + H + b"Accept: application/octet-stream\r\n\r\n", 200, None),
    (b"GET /v1/rows?ids=" + b"1," * 3000 + b"1 HTTP/1.1\r\n" + H + b"\r\n", 200, None),  # 6 KB: fits
    (b"GET /v1/rows?ids=" + b"1," * 20000 + b"1 HTTP/1.1\r\n" + H + b"\r\n", 414, None),  # 40 KB: does not
    (b"GET /v1/rows/5%00 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/rows?ids=1%002 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/rows?start=0&stop=%00 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_slice"),
    (b"GET /v1/info?%00=1 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_parameter"),
    (b"FOO /v1/rows HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    (b"OPTIONS /v1/rows HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    (b"TRACE /v1/info HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    (b"DELETE /v1/rows/1 HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    (b"GET /../../etc/passwd HTTP/1.1\r\n" + H + b"\r\n", 404, "not_found"),
    (b"GET /v1/rows/1\xff HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/info HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 40000 + b"\r\n\r\n", 431, None),
    (b"GET /v1/info HTTP/1.1\r\n" + H + b"".join(b"X-%d: y\r\n" % i for i in range(3000)) + b"\r\n", 431, None),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{\"ids\":[1]}",
     400, "bad_json"),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: abc\r\n\r\n{}", 400, None),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: -1\r\n\r\n{}", 400, None),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 99999999999999999999\r\n\r\n",
     413, None),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"ids\r\n0\r\n\r\n", 400, None),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"c\r\n{\"ids\":[1,2]\r\n1\r\n}\r\n0\r\n\r\n", 200, None),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\n{}\r\n0\r\n\r\n", 400, None),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n", 413,
     "body_too_large"),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 12\r\n\r\n" + b"{\"ids\":" +
     b"[" * 5, 400, "wrong_json_type"),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json; charset=utf-8\r\nContent-Length: 11\r\n\r\n"
     b"{\"ids\":[1]}", 200, None),
    (b"POST /v1/rows HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\nContent-Length: 14\r\n\r\n"
     b"\xef\xbb\xbf{\"ids\":[1]}", 400, "bad_json"),
    (b"GET /v1/rows/1 HTTP/1.1\r\n" + H + b"Accept: \x01\x02\r\n\r\n", 406, "not_acceptable"),
    (b"GET /v1/rows/1 HTTP/1.1\r\n" + H + b"Accept: application/json;q=abc\r\n\r\n", 406, "not_acceptable"),
    (b"GET /v1/rows/1 HTTP/1.1\r\n" + H + b"Accept: " + b"a/b, " * 1000 + b"\r\n\r\n", 406, "not_acceptable"),
    (post_json(b'{"ids":' + b"[" * 100000 + b"]" * 100000 + b"}"), 400, "wrong_json_type"),  # deep nesting
    (post_json(b'{"ids":[99999999999999999999]}'), 400, "bad_id"),
    (post_json(b'{"ids":[1e400]}'), 400, "wrong_json_type"),
    (post_json(b'{"ids":[1],"ids":[2]}'), 400, "bad_body"),
    (post_json(b'{"ids":[1]}garbage'), 400, "bad_json"),
    (post_json(b'{"ids":["\\ud800"]}'), 400, "wrong_json_type"),
    (post_json(b'{"ids":[1\x00]}'), 400, "bad_json"),
    (b"GET /v1/rows/1 HTTP/1.0\r\n\r\n", 200, None),
    (b"GET /v1/rows/1 HTTP/1.1\r\n\r\n", 400, "bad_request"),  # HTTP/1.1 requires one Host
    (b"GET /v1/rows/1 HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "bad_request"),
    (b"GET http://x/v1/rows/1 HTTP/1.1\r\n" + H + b"\r\n", 200, None),  # absolute form
    (b"GET v1/rows/1 HTTP/1.1\r\n" + H + b"\r\n", 404, "not_found"),
    (b"get /v1/rows/1 HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),  # methods are case-sensitive
    (b"GET /v1/rows/1 HTTP/1.1\r\n" + H + b"Bad Header\r\n\r\n", 400, None),
    (b"GET /v1/rows/1%0d%0aX-Injected:%201 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_id"),
    (b"GET /v1/rows/1 HTTP/9.9\r\n" + H + b"\r\n", 505, None),
    (b"GET\r\n\r\n", None, None),  # no request line to answer: closed
    (b"\r\n\r\n\r\n", None, None),
    (b"GET /v1/rows/1 HTTP/1.1\n" + b"Host: x\n\n", 200, None),
]


@pytest.fixture
def d(start, data):
    return start(data["f32_path"], "--limits.timeout_s", "2")


def test_hostile_requests(d):
    wrong = []
    for req, want, code in CASES:
        resp = raw(d.port, req)
        got = status_of(resp)
        if got != want or (code is not None and json_error(resp)["code"] != code):
            wrong.append((req[:80], want, code, resp[:300]))
        # ...and the daemon is still there after every one of them.
        assert status_of(raw(d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == 200
    for w in wrong:
        print(w)
    assert wrong == []
    m = d.settled()
    assert m["embd_inflight_accounted_bytes"] == 0


def test_truncated_body_times_out_and_is_released(d):
    """A body that never arrives: the daemon holds what has arrived (not what was announced) while it waits, the
    idle timeout closes the connection without an answer, and what it held is given back."""
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"POST /v1/rows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n"
              b"\r\n{\"ids\"")
    time.sleep(0.3)
    held = d.metrics()["embd_inflight_accounted_bytes"]
    assert 6 <= held <= 128 * 1024, held  # its record and a first body buffer, not the 10 MB it announced
    s.settimeout(10)
    t0 = time.time()
    assert s.recv(65536) == b""  # closed by the 2 s idle timeout, without an answer
    assert time.time() - t0 < 5
    s.close()
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


def test_access_log_escapes_client_bytes_and_follows_the_level(start, data, tmp_path):
    log = tmp_path / "access.log"
    d = start(data["f32_path"], "--log-file", str(log))
    raw(d.port, b"GET /v1/rows/1%0a2026-01-01T00:00:00.000Z%20info%20forged HTTP/1.1\r\n" + H + b"\r\n")
    raw(d.port, b"GET /v1/rows/\xff\\ HTTP/1.1\r\n" + H + b"\r\n")
    d.settled()
    lines = log.read_text().splitlines()
    assert not any("forged" in l and "access" not in l for l in lines)  # no line of the client's making
    assert any(" access GET /v1/rows/1\\x0a2026-01-01T00:00:00.000Z\\x20info\\x20forged 400 " in l for l in lines)
    assert any(" access GET /v1/rows/\\xff\\x5c 400 " in l for l in lines)
    quiet_log = tmp_path / "quiet.log"
    q = start(data["f32_path"], "--log-file", str(quiet_log), "--log-level", "notice")
    assert q.get("/v1/rows/1")[0] == 200
    q.settled()
    text = quiet_log.read_text()
    assert " notice embd " in text and " access " not in text
