"""limits.connections_per_ip: a connection past an address's share is answered 503 too_many_connections (with
Retry-After, then closed), counted and logged, never dropped without a word; a flood past it holds no more than the
surplus, so other addresses are still served."""
import http.client
import json
import re
import socket
import time

from conftest import get_from, wait_for

LIMIT = 4


def metrics(port):
    """The metrics, scraped from 127.0.0.2 (not counted against 127.0.0.1's share)."""
    status, body = get_from(port, "127.0.0.2", "/metrics")
    assert status == 200
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in body.decode().splitlines()
                                     if line and not line.startswith("#"))}


def gauge(port, name):
    return metrics(port)[name]


def open_in_order(port, n):
    """n connections from 127.0.0.1, each seen by the daemon before the next is opened (the threads accept in
    parallel, so without the wait the daemon may see them in another order)."""
    base = gauge(port, "embd_connections") - 1  # the scrape's own connection is open while it is counted
    conns = []
    for i in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.connect()
        conns.append(c)
        assert wait_for(lambda: gauge(port, "embd_connections") - 1 >= base + i + 1, 5)
    return conns


def ask(c):
    c.request("GET", "/healthz")
    r = c.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def test_connections_past_the_per_ip_limit_are_answered_503_counted_and_logged(start, data):
    n_over = 3
    d = start(data["f32_path"], "--limits.connections_per_ip", str(LIMIT), "--limits.connections", "64")
    conns = open_in_order(d.port, LIMIT + n_over)
    answers = [ask(c) for c in conns]
    assert [a[0] for a in answers] == [200] * LIMIT + [503] * n_over
    for status, headers, body in answers[LIMIT:]:
        assert body == (b'{"error":{"status":503,"code":"too_many_connections","message":"this address holds '
                        b'limits.connections_per_ip (4) connections already; retry later, or on one of those"}}\n')
        assert headers["retry-after"] == "1"
        assert headers["connection"] == "close"
        assert headers["content-type"] == "application/json"
    m = metrics(d.port)
    assert m['embd_rejected_total{reason="connections_per_ip"}'] == n_over
    assert m['embd_rejected_total{reason="connections"}'] == 0
    # The log says who and what the limit is, once for the three (a line a second at most).
    lines = re.findall(r".*refused a connection from 127\.0\.0\.1.*", d.output())
    assert len(lines) == 1, lines
    assert ("refused a connection from 127.0.0.1: it holds limits.connections_per_ip (4) connections already "
            "(its request is answered 503 too_many_connections)") in lines[0]
    # The connections within the share keep being served, and once they close the address is served again.
    assert [ask(c)[0] for c in conns[:LIMIT]] == [200] * LIMIT
    for c in conns:
        c.close()
    assert wait_for(lambda: d.get("/healthz")[0] == 200, 5)
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


def test_a_flood_past_the_per_ip_limit_leaves_the_others_their_connections(start, data):
    """One host holds its share and floods 300 more connections that send nothing: the flood takes at most the
    surplus (16 for limits.connections 16), the rest is shut at once, each is counted, the log gets a line a
    second, and other addresses can still open the limits.connections - share connections left and be served on
    each (without the bound, the flood filled libmicrohttpd's connection limit, and the others were closed)."""
    d = start(data["f32_path"], "--limits.connections_per_ip", str(LIMIT), "--limits.connections", "16")
    held = open_in_order(d.port, LIMIT)
    flood = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(300)]
    time.sleep(0.2)
    assert gauge(d.port, "embd_connections") <= LIMIT + 16 + 1  # the share, the surplus and the scrape
    # Each from its own address: an address's fifth would meet the same limit, and find the surplus full.
    others = [http.client.HTTPConnection("127.0.0.1", d.port, timeout=10, source_address=("127.0.0.%d" % (10 + i), 0))
              for i in range(16 - LIMIT)]
    assert [ask(c)[0] for c in others] == [200] * (16 - LIMIT)
    assert [ask(c)[0] for c in held] == [200] * LIMIT
    for s in flood:
        s.close()
    for c in held + others:
        c.close()
    # Until the daemon has seen them all close, the scrape itself may be the 17th connection: 503 overloaded.
    assert wait_for(lambda: get_from(d.port, "127.0.0.2", "/metrics")[0] == 200 and
                    gauge(d.port, "embd_connections") == 1, 5)
    m = d.settled()
    assert m['embd_rejected_total{reason="connections_per_ip"}'] == 300
    assert len(re.findall(r"refused a connection from 127\.0\.0\.1", d.output())) <= 4
    assert d.get("/healthz")[0] == 200


def raw_get(sock, path="/healthz"):
    """Send a GET on a raw socket and read until the daemon closes it: the bytes it sent."""
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:  # EOF: the daemon closed the connection after its answer
            return got
        got += chunk


def test_a_refused_connection_is_closed_right_after_its_503(start, data):
    d = start(data["f32_path"], "--limits.connections_per_ip", str(LIMIT), "--limits.connections", "64")
    held = open_in_order(d.port, LIMIT)
    extra = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    assert wait_for(lambda: gauge(d.port, "embd_connections") - 1 >= LIMIT + 1, 5)
    got = raw_get(extra)  # returns only at EOF (a timeout raises)
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 ")
    assert body == (b'{"error":{"status":503,"code":"too_many_connections","message":"this address holds '
                    b'limits.connections_per_ip (4) connections already; retry later, or on one of those"}}\n')
    extra.close()
    for c in held:
        c.close()


def test_a_connection_refused_at_connect_is_served_once_the_others_have_closed(start, data):
    """With connections_per_ip 2: open 3, close the first 2, then the 3rd's request is answered 200 (it was
    503 too_many_connections: the refusal was decided when it connected), and nothing is counted or logged."""
    d = start(data["f32_path"], "--limits.connections_per_ip", "2", "--limits.connections", "64")
    conns = open_in_order(d.port, 3)
    base = gauge(d.port, "embd_connections")
    for c in conns[:2]:
        c.close()
    assert wait_for(lambda: gauge(d.port, "embd_connections") <= base - 2, 5)
    status, _, body = ask(conns[2])
    assert (status, body) == (200, b'{"status":"ok","generation":1}\n')
    # It now holds a slot within the share: a second connection of the address is served too.
    assert get_from(d.port, "127.0.0.1", "/healthz")[0] == 200
    conns[2].close()
    m = d.settled()
    assert m['embd_rejected_total{reason="connections_per_ip"}'] == 0
    assert "refused a connection" not in d.output()


def test_a_connection_its_address_no_longer_holds_back_is_refused_for_the_table_not_the_address(start, data):
    """Refused at connect for its address (per_ip 1), it asks after the address's other connection closed, while
    the table (limits.connections 1) is taken by another address: the refusal is the table's (503 overloaded,
    counted under connections), not a false too_many_connections."""
    d = start(data["f32_path"], "--limits.connections", "1", "--limits.connections_per_ip", "1")

    def conn(source):
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10, source_address=(source, 0))
        c.connect()
        return c

    a = conn("127.0.0.1")
    time.sleep(0.1)  # seen before b (no scrape: it would take the table's one slot)
    b = conn("127.0.0.1")  # past 127.0.0.1's share: a surplus slot
    time.sleep(0.1)
    a.close()
    # Another address takes the slot a left: a 200 shows it holds it (in the surplus it would be answered 503, if
    # the daemon saw it before a's close; then it is tried again). b, idle in the surplus, is kept a second.
    for _ in range(20):
        time.sleep(0.05)
        c = conn("127.0.0.3")
        if ask(c)[0] == 200:
            break
        c.close()
    else:
        raise AssertionError("127.0.0.3 never held the slot")
    status, headers, body = ask(b)
    assert status == 503 and json.loads(body)["error"]["code"] == "overloaded", body
    for x in (b, c):
        x.close()
    # The one slot is free once the daemon has seen b and c close: until then a scrape is itself answered 503.
    scrape = []
    assert wait_for(lambda: scrape.append(get_from(d.port, "127.0.0.2", "/metrics")) or scrape[-1][0] == 200, 5)
    m = {k: float(v) for k, v in (line.rsplit(" ", 1) for line in scrape[-1][1].decode().splitlines()
                                  if line and not line.startswith("#"))}
    assert m['embd_rejected_total{reason="connections_per_ip"}'] == 0
    assert m['embd_rejected_total{reason="connections"}'] >= 1  # b, any 127.0.0.3 too early, any early scrape
