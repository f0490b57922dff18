"""Large responses take turns (limits.large_responses): a few are sent at once, the others wait in line, first come
first served; a client that does not read holds its turn a quarter of a second at most; small answers never wait."""
import signal
import socket
import time

import pytest

from conftest import wait_for

SLICE = "/v1/rows?start=0&stop=4096&format=bin"  # 4096 x 512 float32: 8 MiB, more than the socket buffers hold


def ask(port, path, rcvbuf=None):
    """A connection that has sent GET path; with rcvbuf, its receive buffer is made that small first."""
    s = socket.socket()
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    return s


def answer(s, head=b""):
    """Status and body of the answer on s (head: bytes of it already read)."""
    buf = head
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "closed before the headers"
        buf += chunk
    headers, body = buf.split(b"\r\n\r\n", 1)
    lines = headers.decode().split("\r\n")
    length = [int(v) for k, v in (x.split(": ", 1) for x in lines[1:]) if k.lower() == "content-length"][0]
    while len(body) < length:
        chunk = s.recv(1 << 20)
        assert chunk, "closed after %d of %d body bytes" % (len(body), length)
        body += chunk
    return int(lines[0].split()[1]), body


def test_large_answers_wait_their_turn_and_a_stalled_reader_holds_it_a_slice(start, big):
    path, a = big
    d = start(path, "--limits.large_responses", "1", "--limits.large_response_bytes", "1MiB")
    want = a[:4096].tobytes()
    stalled = ask(d.port, SLICE, rcvbuf=4096)  # takes the only turn, then reads nothing
    head = stalled.recv(64)
    assert head.startswith(b"HTTP/1.1 200")
    second = ask(d.port, SLICE)
    assert wait_for(lambda: d.metrics().get("embd_large_responses_waiting") == 1), d.metrics()
    # Small answers never wait, whatever the line.
    status, _, body = d.get("/v1/rows/7?format=bin")
    assert (status, body) == (200, a[7].tobytes())
    # The stalled reader's turn goes to the next in line after a quarter of a second (it keeps sending, turnless).
    t0 = time.time()
    assert answer(second) == (200, want)
    assert time.time() - t0 < 5
    m = d.metrics()
    assert (m["embd_large_responses_waited_total"], m["embd_large_responses_waiting"]) == (1, 0)
    assert answer(stalled, head) == (200, want)
    assert d.settled()["embd_inflight_accounted_bytes"] == 0
    stalled.close()
    second.close()


def test_turns_off_nothing_waits(start, big):
    path, a = big
    d = start(path, "--limits.large_responses", "0", "--limits.large_response_bytes", "1MiB")
    stalled = ask(d.port, SLICE, rcvbuf=4096)
    head = stalled.recv(64)
    second = ask(d.port, SLICE)
    assert answer(second) == (200, a[:4096].tobytes())
    assert d.metrics()["embd_large_responses_waited_total"] == 0
    assert answer(stalled, head)[0] == 200
    stalled.close()
    second.close()


@pytest.mark.parametrize("how", ["client_leaves", "shutdown"])
def test_an_answer_waiting_in_line_is_released(start, big, how):
    """A client that leaves while its answer waits, or a SIGTERM meanwhile: nothing is left held (the daemon exits 0,
    its in-flight total 0), and the answer waiting is sent during the drain."""
    path, a = big
    d = start(path, "--limits.large_responses", "1", "--limits.large_response_bytes", "1MiB",
              "--limits.shutdown_s", "5")
    stalled = ask(d.port, SLICE, rcvbuf=4096)
    head = stalled.recv(64)
    waiting = ask(d.port, SLICE)
    assert wait_for(lambda: d.metrics().get("embd_large_responses_waiting") == 1)
    if how == "client_leaves":
        waiting.close()
        # Its turn comes after the stalled reader's slice; the answer to nobody is dropped.
        assert wait_for(lambda: d.metrics()["embd_large_responses_waiting"] == 0)
        assert answer(stalled, head) == (200, a[:4096].tobytes())
        assert d.settled()["embd_inflight_accounted_bytes"] == 0
    else:
        d.proc.send_signal(signal.SIGTERM)
        assert answer(waiting) == (200, a[:4096].tobytes())
        assert answer(stalled, head) == (200, a[:4096].tobytes())
        d.proc.wait(timeout=30)  # the fixture's stop then checks its exit status and log
        waiting.close()
    stalled.close()
