"""Large responses take turns (limits.large_responses): a few are sent at once, the others wait in line, first come
first served; a client that does not read holds its turn 0.25 to 0.5 s (the slice, checked at the sweep's tick); small answers never wait."""
import fcntl
import os
import signal
import socket
import threading
import time

import numpy as np

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
    # The counter, not the gauge: the gauge reads 1 only until the stalled turn's slice ends (0.25-0.5 s).
    assert wait_for(lambda: d.metrics().get("embd_large_responses_waited_total") == 1), d.metrics()
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
    assert wait_for(lambda: d.metrics().get("embd_large_responses_waited_total") == 1)
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


def test_a_shutdown_waiting_on_a_stuck_reload_still_sends_the_answers_in_line(start, big, tmp_path):
    """SIGTERM while an admin reload is stuck opening its file (its pair's directory locked, as `embd convert` locks
    it) and an answer waits behind a stalled reader's turn: the drain may wait the whole limits.shutdown_s for the
    reload, but the waiting answer is sent whole meanwhile, not cut at the deadline."""
    path, a = big
    pair = tmp_path / "pair"
    pair.mkdir()
    np.save(pair / "w.npy", np.ones((2, 3), np.float32))
    (pair / "words").write_text("a\nb\n")
    token = "t0k3n-for-the-turns-test-0123456789abcdef"
    (tmp_path / "token").write_text(token + "\n")
    os.chmod(tmp_path / "token", 0o600)
    d = start(path, "--limits.large_responses", "1", "--limits.large_response_bytes", "1MiB",
              "--limits.shutdown_s", "3", "--admin.token_file", str(tmp_path / "token"))
    fd = os.open(pair, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        def reload():
            d.request("POST", "/v1/admin/reload?path=%s&vocab=%s" % (pair / "w.npy", pair / "words"),
                      b"", {"Authorization": "Bearer " + token})

        threading.Thread(target=reload, daemon=True).start()
        assert wait_for(lambda: "reload: opening" in d.output())
        stalled = ask(d.port, SLICE, rcvbuf=4096)
        head = stalled.recv(64)
        waiting = ask(d.port, SLICE)
        assert wait_for(lambda: d.metrics().get("embd_large_responses_waited_total") == 1)
        d.proc.send_signal(signal.SIGTERM)
        assert answer(waiting) == (200, a[:4096].tobytes())
        assert answer(stalled, head) == (200, a[:4096].tobytes())
        fcntl.flock(fd, fcntl.LOCK_UN)  # within the deadline: the reload ends (its answer and the exit status 0)
        d.proc.wait(timeout=30)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    waiting.close()
    stalled.close()
