"""Limits under hostile load: header-only POSTs announcing huge bodies, an exhausted in-flight budget, and more
clients than limits.connections. The daemon charges only what has arrived, answers /healthz and /metrics from its
reserve, serves the connections it holds, refuses the surplus at once, and recovers as soon as the clients go."""
import socket
import threading
import time

import numpy as np

from conftest import npy, wait_for


def connect(port, source="127.0.0.1"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return s


def held_post(port, content_length, send, source="127.0.0.1"):
    """A POST announcing content_length body bytes of which only `send` are sent; the socket is left open."""
    s = connect(port, source)
    s.sendall(b"POST /v1/rows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % content_length + b" " * send)
    return s


def test_header_only_posts_do_not_starve_a_gather(start, big):
    """150 connections announcing 16 MB bodies and sending none of it (2.4 GB announced against the 512 MiB
    budget) hold their request records and nothing more: a 20 MB gather is served meanwhile, and when they go,
    nothing is left in flight."""
    path, E = big
    d = start(path, "--access-log=false")
    # Three source addresses, so that limits.connections_per_ip (128) is not what this test meets.
    held = [held_post(d.port, 16 * 2**20, 0, "127.0.0.%d" % (2 + i % 3)) for i in range(150)]
    assert wait_for(lambda: d.metrics()["embd_connections"] >= 150)
    time.sleep(0.3)
    inflight = d.metrics()["embd_inflight_accounted_bytes"]
    ids = np.arange(0, 20000, 2)  # 10000 scattered rows x 2 KiB = 20 MB gathered (old code had 16 MB left)
    s, h, b = d.request("POST", "/v1/rows?format=bin", npy(ids), {"Content-Type": "application/x-npy"})
    assert s == 200 and h["x-embd-path"] == "gather" and b == E[ids].tobytes(), (s, b[:200])
    assert inflight < 150 * 4096, inflight  # their records only: ~1.2 KB each
    for c in held:
        c.close()
    m = d.settled()
    assert m["embd_inflight_accounted_bytes"] == 0
    assert m['embd_rejected_total{reason="inflight_bytes"}'] == 0


def test_healthz_and_metrics_answer_while_the_budget_is_exhausted(start, data):
    """Bodies held half-sent fill the in-flight budget down to its last bytes: other requests get 503, while
    /healthz and /metrics are still answered 200 from the budget's reserve."""
    # No request deadline, no idle timeout: the held bodies stay held however long a loaded machine takes.
    # 5 MiB: at least twice the reserve of 576 request records (each with room for its access line's client and
    # query) and health and metrics answers.
    d = start(data["f32_path"], "--limits.inflight_bytes", "5MiB", "--limits.request_timeout_s", "0", "--limits.timeout_s", "0",
              "--access-log=false")
    def inflight():
        return d.metrics()["embd_inflight_accounted_bytes"]

    held = [held_post(d.port, 2, 0)]  # a request that has sent no body holds its record only
    assert wait_for(lambda: inflight() > 0)
    record = inflight()
    def refusals():
        return d.metrics()['embd_rejected_total{reason="inflight_bytes"}']

    # Each body is either held (the gauge grows by a record and the body) or refused, which is counted the moment
    # its charge fails: waiting for one or the other needs no guess at how slow a loaded machine is.
    for size in (2**20, 64 * 2**10, 4096, 256, 16, 2):  # each wave fills what the one before left
        while True:
            before, refused = inflight(), refusals()
            held.append(held_post(d.port, size, size - 1))
            # The scrape before this one may not have given its bytes back yet (a record and a metrics page):
            # `before` can read that much high, so the held body is looked for with that much slack. A refusal
            # missed this way is seen on the next round: the loop only adds one more body that does not fit.
            slack = 2 * record + 2 * 16384
            def held_or_refused():
                m = d.metrics()  # one scrape a look: scrapes hold reserve until they finish
                time.sleep(0.05)
                return (m["embd_inflight_accounted_bytes"] >= before + record + size - 1 - slack or
                        m['embd_rejected_total{reason="inflight_bytes"}'] > refused)
            settled = wait_for(held_or_refused, 20)
            if not settled or refusals() > refused:
                # Refused: the budget has less than `size` left. (Neither held nor counted within 20 s has been
                # seen once under ThreadSanitizer on a loaded machine; the wave ends there, and the checks below
                # still fail if the budget was not filled.)
                break
    # A scrape's page (16 KiB) and request record count against the budget until the daemon has finished the
    # scrape, a moment after the client has read it: the last wave may have been refused while one was still
    # held, and a small answer then fits once it goes. Such slack is filled with more held bodies until a small
    # answer is refused (at most a few rounds: a page's worth).
    for _ in range(40):
        status, headers, body = d.get("/v1/info")
        if status != 200:
            break
        held.append(held_post(d.port, 1024, 1023))
        wait_for(lambda: False, 0.05)
    m = d.metrics()
    assert status == 503 and b'"code":"overloaded"' in body and headers["retry-after"] == "1", (
        body, len(held), m["embd_connections"], m["embd_inflight_accounted_bytes"])
    status, _, body = d.get("/healthz")
    assert status == 200 and body == b'{"status":"ok","generation":1}\n', body
    status, _, body = d.get("/metrics")
    assert status == 200 and b"embd_inflight_budget_bytes 5242880" in body
    for c in held:
        c.close()
    m = d.settled()
    assert m["embd_inflight_accounted_bytes"] == 0
    assert d.get("/v1/info")[0] == 200


def test_more_clients_than_the_connection_limit(start, data):
    """60 keep-alive clients against limits.connections 16: the connections held are served throughout, the
    surplus is answered 503 (or closed) at once rather than left hanging, connections whose clients close are
    freed at once, and /healthz answers as soon as the clients are gone."""
    d = start(data["f32_path"], "--limits.connections", "16", "--limits.connections_per_ip", "0",
              "--limits.timeout_s", "30", "--access-log=false")
    want = data["f32"][7].tobytes()
    req = b"GET /v1/rows/7?format=bin HTTP/1.1\r\nHost: x\r\n\r\n"
    stop = threading.Event()
    lock = threading.Lock()
    served, refused, hung, wrong = [0] * 60, [0] * 60, [], []

    def read_response(s):
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None, b""
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                return None, b""
            body += chunk
        return int(head.split(b" ")[1]), body

    def client(i):
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            except OSError:
                refused[i] += 1
                continue
            try:
                while not stop.is_set():
                    s.sendall(req)
                    status, body = read_response(s)
                    if status == 200 and body == want:
                        served[i] += 1
                        continue
                    if status == 503 and b"limits.connections" in body or status is None:
                        refused[i] += 1
                    else:
                        wrong.append((status, body[:200]))
                    break
            except socket.timeout:
                with lock:
                    hung.append(i)
            except OSError:
                refused[i] += 1
            finally:
                s.close()
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    mid = list(served)
    time.sleep(2.0)
    end = list(served)
    stop.set()
    for t in threads:
        t.join()
    t0 = time.time()
    status, _, body = d.get("/healthz")
    assert status == 200 and time.time() - t0 < 3, time.time() - t0
    assert wrong == [] and hung == [], (wrong, hung)
    # The held connections were served all along, not only at first...
    assert sum(1 for a, b in zip(mid, end) if b - a >= 10) >= 8, (mid, end)
    assert sum(end) > 1000
    # ...and the surplus was turned away, not kept waiting.
    assert sum(refused) >= 44
    assert wait_for(lambda: d.metrics()["embd_connections"] <= 1, 3.0)
    m = d.settled()
    assert m['embd_rejected_total{reason="connections"}'] >= 44
    assert m["embd_inflight_accounted_bytes"] == 0
