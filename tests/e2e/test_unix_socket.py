"""listen.unix: embd serves on a Unix-domain socket beside TCP, with the same answers byte for byte; the per-IP limit
does not count its peers; a stale socket file is replaced, a live one or any other file refused and left alone; the
file takes listen.unix_mode and goes at SIGTERM, after the requests in flight over it are drained; a slow reader on it
holds up no TCP client."""
import http.client
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile

import numpy as np
import pytest

from conftest import EMBD, UnixHTTPConnection, npy, wait_for


@pytest.fixture
def sock():
    """A socket path in a fresh directory under /tmp (pytest's own directories can pass the 107 bytes it may hold)."""
    d = tempfile.mkdtemp(prefix="embd-uds-", dir="/tmp")
    yield os.path.join(d, "embd.sock")
    shutil.rmtree(d, ignore_errors=True)


def serve(*args):
    """(exit status, standard error) of an embd serve that is expected to refuse to start."""
    p = subprocess.run([EMBD, "serve", "--port", "0", *args], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr


def over_both(d, method, path, body=None, headers=None):
    """The same request over TCP and over the socket: (status, headers, body) of each."""
    return d.request(method, path, body, headers), d.request(method, path, body, headers, unix=True)


def test_rows_over_the_socket_are_tcp_rows_byte_for_byte(start, big, sock):
    path, a = big
    d = start(path, "--unix", sock)
    ids = np.random.default_rng(3).integers(0, a.shape[0], 300)
    ids[7] = ids[100]  # a duplicate
    cases = [
        ("GET", "/v1/rows?ids=%s&format=bin" % ",".join(map(str, ids)), None, {}, a[ids].tobytes(), "gather"),
        ("POST", "/v1/rows?format=npy", npy(ids.astype(np.int64)), {"Content-Type": "application/x-npy"},
         npy(a[ids]), "gather"),
        # A slice is sent zero-copy from the mapping: 10 MB, more than a socket buffer holds.
        ("GET", "/v1/rows?start=100&stop=5100&format=bin", None, {}, a[100:5100].tobytes(), "zero-copy"),
        ("GET", "/v1/rows?start=0&stop=3&format=npy", None, {}, npy(a[0:3]), "zero-copy"),
    ]
    for method, target, body, headers, want, how in cases:
        (ts, th, tb), (us, uh, ub) = over_both(d, method, target, body, headers)
        assert ts == us == 200, (target, tb[:200], ub[:200])
        assert ub == tb == want, target
        assert uh["x-embd-path"] == th["x-embd-path"] == how
        assert uh["x-embd-shape"] == th["x-embd-shape"]
    (_, _, tb), (_, _, ub) = over_both(d, "GET", "/v1/rows/5")
    assert ub == tb and b'"rows":[[' in ub
    # Errors are the same JSON too.
    (ts, _, tb), (us, _, ub) = over_both(d, "GET", "/v1/rows/20000")
    assert ts == us == 404 and ub == tb
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660 and stat.S_ISSOCK(os.stat(sock).st_mode)


def test_healthz_metrics_info_and_the_access_log_over_the_socket(start, data, sock):
    d = start(data["f32_path"], "--unix", sock)
    s, h, b = d.request("GET", "/healthz", unix=True)
    assert s == 200 and b'"status":"ok"' in b
    s, h, b = d.request("GET", "/metrics", unix=True)
    assert s == 200 and h["content-type"].startswith("text/plain") and b"\nembd_connections " in b
    # The health check is counted once its request is finished, a moment after its client has the answer.
    assert wait_for(lambda: b'\nembd_requests_total{route="healthz",status="200"} 1\n' in
                    d.request("GET", "/metrics", unix=True)[2])
    s, _, b = d.request("GET", "/v1/info", unix=True)
    assert s == 200 and b'"unix":"%s"' % sock.encode() in b
    d.request("GET", "/v1/rows/1?format=bin", unix=True)
    assert wait_for(lambda: "access GET /v1/rows/1 200" in d.output())
    line = [x for x in d.output().splitlines() if "access GET /v1/rows/1 200" in x][0]
    assert " client=unix " in line, line
    d.request("GET", "/v1/rows/2?format=bin")
    assert wait_for(lambda: "access GET /v1/rows/2 200" in d.output())
    line = [x for x in d.output().splitlines() if "access GET /v1/rows/2 200" in x][0]
    assert " client=127.0.0.1 " in line, line


def test_the_per_ip_limit_does_not_count_unix_peers(start, data, sock):
    d = start(data["f32_path"], "--unix", sock, "--limits.connections_per_ip", "1")
    conns = [UnixHTTPConnection(sock, timeout=10) for _ in range(3)]
    for c in conns:
        c.connect()
    assert wait_for(lambda: d.metrics()["embd_connections"] >= 4)  # the three and the scrape's own
    for i, c in enumerate(conns):  # all three open at once, each served, twice
        for _ in range(2):
            c.request("GET", "/v1/rows/%d?format=bin" % i)
            r = c.getresponse()
            assert r.status == 200 and r.read() == data["f32"][i].tobytes()
    # The limit holds for TCP meanwhile: a second connection from 127.0.0.1 is refused.
    held = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    held.request("GET", "/healthz")
    assert held.getresponse().read()
    second = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    second.request("GET", "/healthz")
    r = second.getresponse()
    assert r.status == 503 and b"too_many_connections" in r.read()
    for c in conns + [held, second]:
        c.close()


def test_a_stale_socket_is_replaced(start, data, sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    s.close()  # the file stays, nobody listens: what a killed daemon leaves
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    d = start(data["f32_path"], "--unix", sock)
    assert "replaced a stale socket (nothing listened on it)" in d.output()
    s, _, b = d.request("GET", "/v1/rows/3?format=bin", unix=True)
    assert s == 200 and b == data["f32"][3].tobytes()


def test_a_live_socket_is_refused_not_stolen(data, sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    s.listen(4)
    ino = os.stat(sock).st_ino
    try:
        rc, err = serve(data["f32_path"], "--unix", sock)
        assert rc == 1, err
        assert err.endswith("embd: cannot listen on unix:%s: another process listens there (stop it, or choose "
                            "another --unix path)\n" % sock), err
        assert os.stat(sock).st_ino == ino
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # still the listener's
        c.connect(sock)
        a, _ = s.accept()
        a.close()
        c.close()
    finally:
        s.close()


def test_a_path_that_is_not_a_socket_is_refused_and_left_alone(data, sock):
    with open(sock, "w") as f:
        f.write("not a socket\n")
    rc, err = serve(data["f32_path"], "--unix", sock)
    assert rc == 1, err
    assert err.endswith("embd: cannot listen on unix:%s: it exists and is not a socket (left as it is)\n" % sock), err
    with open(sock) as f:
        assert f.read() == "not a socket\n"


def test_a_path_too_long_for_a_socket_address_is_a_config_error(data, sock):
    long = os.path.join(os.path.dirname(sock), "s" * 110)
    rc, err = serve(data["f32_path"], "--unix", long)
    assert rc == 2 and err == "embd: listen.unix: longer than 107 bytes\n", err
    assert not os.path.exists(long)
    rc, err = serve(data["f32_path"], "--unix", sock, "--listen.unix_mode", "0980")
    assert rc == 2, err
    assert err == "embd: listen.unix_mode: '0980' is not a permission mode (octal, 0000 to 0777, e.g. 0660)\n"
    assert not os.path.exists(sock)


def test_the_mode_is_applied_and_the_file_goes_at_sigterm(start, data, sock):
    d = start(data["f32_path"], "--unix", sock, "--listen.unix_mode", "0640")
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    d.stop()
    assert not os.path.exists(sock)


def test_sigterm_drains_a_request_in_flight_over_the_socket(start, big, sock):
    path, a = big
    d = start(path, "--unix", sock, "--limits.min_send_rate", "0")
    c = UnixHTTPConnection(sock, timeout=30)
    c.request("GET", "/v1/rows?start=0&stop=20000&format=bin")  # 40 MB, zero-copy
    r = c.getresponse()
    assert r.status == 200
    got = r.read(1 << 16)
    d.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "SIGTERM: stopping" in d.output())
    # The file goes at once: a new client finds nothing there, while the one in flight is still served.
    assert wait_for(lambda: not os.path.exists(sock))
    with pytest.raises(OSError):
        UnixHTTPConnection(sock, timeout=5).connect()
    got += r.read()
    c.close()
    assert got == a.tobytes()
    assert d.proc.wait(timeout=30) == 0
    d.stop()


def test_a_slow_reader_on_the_socket_holds_up_no_tcp_client(start, big, sock):
    path, a = big
    d = start(path, "--unix", sock, "--threads", "1", "--limits.min_send_rate", "0")
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(sock)
    slow.sendall(b"GET /v1/rows?start=0&stop=20000&format=bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
    slow.recv(1024)  # its answer has begun; the rest waits for a reader that does not come
    try:
        for i in range(20):
            s, _, b = d.get("/v1/rows?ids=%d,%d&format=bin" % (i, 19999 - i))
            assert s == 200 and b == a[[i, 19999 - i]].tobytes()
        s, _, b = d.get("/v1/rows?start=1000&stop=9000&format=bin")  # a large one too
        assert s == 200 and b == a[1000:9000].tobytes()
        s, _, b = d.request("GET", "/v1/rows?ids=4,5&format=bin", unix=True)  # and another on the socket
        assert s == 200 and b == a[[4, 5]].tobytes()
    finally:
        slow.close()
