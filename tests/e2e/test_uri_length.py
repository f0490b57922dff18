"""A GET whose request target nears limits.connection_memory: libmicrohttpd's one per-connection pool holds the
request line, its headers and then the answer's headers, and a target that just fitted left no room for the
answer's (the client got an empty reply while the access log and embd_requests_total said 200). Every request across
the edge gets a status: 200, embd's own 414 uri_too_long in JSON, or libmicrohttpd's 414/431; never an empty reply."""
import json
import socket

import numpy as np
import pytest

ROWS = 200000
# The most six-digit ids a GET ?ids= may carry with the default limits.connection_memory (32 KiB): the target
# ("/v1/rows?ids=" and 7 bytes an id, less the last comma) plus 64 for its argument's record leaves 2 KiB.
MOST = 4377


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("uri") / "big.npy"
    np.save(path, np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4))
    return str(path)


def curl_headers(port):
    return "Host: 127.0.0.1:%d\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n" % port


def requests_headers(port):
    return ("Host: 127.0.0.1:%d\r\nUser-Agent: python-requests/2.31.0\r\nAccept-Encoding: gzip, deflate\r\n"
            "Accept: */*\r\nConnection: keep-alive\r\n" % port)


def send(port, target, headers):
    """(status line, body) of one GET on a raw socket, read to the end of its body or of the stream; ("", b"")
    for an empty reply."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(("GET %s HTTP/1.1\r\n%s\r\n" % (target, headers)).encode())
        got = b""
        while True:
            try:
                chunk = s.recv(1 << 20)
            except ConnectionResetError:  # libmicrohttpd closes with the rest of the request unread
                break
            if not chunk:
                break
            got += chunk
            head, sep, body = got.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if sep and length and len(body) >= length[0]:
                break
    finally:
        s.close()
    if not got:
        return "", b""
    head, _, body = got.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


def ids_target(n):
    return "/v1/rows?ids=" + ",".join(str(ROWS - 1 - i) for i in range(n))


def embd_414(target):
    return (b'{"error":{"status":414,"code":"uri_too_long","message":"the request target is %d bytes; '
            b'limits.connection_memory (32768 bytes) holds it only with 2048 bytes to spare for the headers: POST '
            b'the ids in the body instead ({\\"ids\\": [...]}, a .npy array, or raw ids with ?id_dtype=int64), or '
            b'raise limits.connection_memory"}}\n' % len(target))


MHD_TOO_BIG = (b"<html><head><title>Request too big</title></head><body>Your HTTP header was too big for the memory "
               b"constraints of this webserver.</body></html>")


@pytest.mark.parametrize("headers", [curl_headers, requests_headers])
def test_every_long_get_across_the_edge_is_answered(start, big, headers):
    d = start(big)
    hdrs = headers(d.port)
    answers = {}
    for n in list(range(4000, MOST - 40, 37)) + list(range(MOST - 40, 4720)):
        target = ids_target(n)
        status, body = send(d.port, target, hdrs)
        assert status != "", "empty reply for %d ids (%d bytes)" % (n, len(target))
        if n <= MOST:
            assert status == "HTTP/1.1 200 OK", (n, status, body[:200])
            assert np.array(json.loads(body)["rows"]).shape == (n, 4)
        elif body == embd_414(target):  # embd's own answer, before any gather is built
            assert status == "HTTP/1.1 414 URI Too Long"
        else:  # past the request line libmicrohttpd's pool can hold: its own answer, before embd sees the request
            assert (status, body) == ("HTTP/1.1 414 URI Too Long", MHD_TOO_BIG), (n, status, body[:300])
            assert len(target) > 32768 - 64, n
            status = "libmicrohttpd"
        answers[status] = answers.get(status, 0) + 1
    assert answers["libmicrohttpd"] > 0
    m = d.settled()
    assert m['embd_requests_total{route="rows",status="414"}'] == answers["HTTP/1.1 414 URI Too Long"]
    assert m['embd_requests_total{route="rows",status="200"}'] == answers["HTTP/1.1 200 OK"]
    assert m["embd_inflight_accounted_bytes"] == 0
    # 4,096 six-digit ids still fit, with either client's headers.
    assert send(d.port, ids_target(4096), hdrs)[0] == "HTTP/1.1 200 OK"


@pytest.mark.parametrize("headers", [curl_headers, requests_headers])
def test_long_targets_past_libmicrohttpds_own_limit_are_answered_too(start, big, headers):
    """Any path, from well below to past the point where libmicrohttpd itself answers 414 (the request line no
    longer fits in the pool): embd's 414, or libmicrohttpd's own 414 or 431, never an empty reply."""
    d = start(big)
    hdrs = headers(d.port)
    seen = set()
    for n in list(range(30000, 30600, 50)) + list(range(30600, 33200, 3)):
        target = "/healthz?x=" + "a" * n
        status, body = send(d.port, target, hdrs)
        assert status != "", "empty reply for a %d-byte target" % len(target)
        if len(target) + 64 <= 32768 - 2048:
            assert status.startswith("HTTP/1.1 400 "), (n, status)  # /healthz takes no arguments: answered
        elif body == embd_414(target):
            assert status == "HTTP/1.1 414 URI Too Long"
            seen.add("embd")
        else:
            assert status in ("HTTP/1.1 414 URI Too Long", "HTTP/1.1 431 Request Header Fields Too Large"), status
            assert body == MHD_TOO_BIG
            seen.add("libmicrohttpd")
    assert seen == {"embd", "libmicrohttpd"}
    assert d.get("/healthz")[0] == 200


def test_a_refused_target_whose_headers_never_end_is_not_also_a_timeout(start, big):
    """The 414 goes out as the request line arrives; a client that then never ends its headers is not also counted
    a request timed out (one request, one status)."""
    import time
    d = start(big, "--limits.request_timeout_s", "1")
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    target = "/v1/rows?ids=" + ",".join(str(100000 + i) for i in range(MOST + 1))
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n" % target).encode())  # no blank line: the headers never end
    got = b""
    while b"}}\n" not in got:
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    assert got.startswith(b"HTTP/1.1 414 ")
    time.sleep(2.5)  # past the request deadline, and the sweep's tick
    s.close()
    m = d.metrics()
    assert m['embd_requests_total{route="rows",status="414"}'] == 1
    assert m['embd_rejected_total{reason="request_timeout"}'] == 0


def test_a_too_long_target_pipelined_behind_a_big_answer_gets_its_414_whole(start, big):
    """Pipelined behind an answer the client has not read yet (its bytes still in the socket's send queue), the
    414 cannot be written at once whole: the handler answers it, after the first answer, and both arrive whole."""
    import re
    import time
    d = start(big)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.settimeout(10)
    s.connect(("127.0.0.1", d.port))
    target = "/v1/rows?ids=" + ",".join(str(100000 + i) for i in range(MOST + 20))
    s.sendall(b"GET /v1/rows?start=0&stop=200000&format=bin HTTP/1.1\r\nHost: x\r\n\r\n"
              + ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target).encode())
    time.sleep(0.5)  # the first answer fills the socket's buffers; the long target arrives meanwhile
    got = b""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    s.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    n = ROWS * 4 * 4
    assert rest[:n] == np.arange(ROWS * 4, dtype=np.float32).tobytes()
    head2, _, body2 = rest[n:].partition(b"\r\n\r\n")
    assert head2.startswith(b"HTTP/1.1 414 "), rest[n:n + 200]
    length = int(re.search(rb"Content-Length: (\d+)", head2, re.I).group(1))
    assert len(body2) == length
    e = json.loads(body2)["error"]
    assert (e["status"], e["code"]) == (414, "uri_too_long")
