"""embd's Python client: keep-alive HTTP, ids out as .npy, rows read straight into the array that is returned."""
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import EmbdConnectionError, EmbdError, EmbdTimeout

# What /v1/info's "limits" says when the daemon is older than it (config/embd.json's defaults).
DEFAULT_LIMITS = {"max_ids": 65536, "request_bytes": 64 << 20, "max_body_bytes": 16 << 20}

# The wire dtypes and how NumPy holds them (bf16 as its bit patterns: NumPy has no bfloat16).
WIRE_DTYPES = {"f32": np.dtype("<f4"), "f16": np.dtype("<f2"), "bf16": np.dtype("<u2")}
_DTYPE_ALIASES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "half": "f16", "float": "f32"}

# Every live client, so that a fork can give the child fresh locks and no sockets (see _after_fork_in_child).
_clients = weakref.WeakSet()


def _after_fork_in_child():
    for c in list(_clients):
        c._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_MSG_MORE = getattr(socket, "MSG_MORE", 0)


class _DeadlineSocket(socket.socket):
    """A socket whose every read and write must end by a deadline (time.monotonic()): each call waits at most
    what is left of it, so that read_timeout bounds a whole answer, not each read (a server trickling a byte a
    second under read_timeout would otherwise hold a caller for as long as it likes)."""

    deadline = None
    _armed = None  # the timeout last set

    def _arm(self):
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        # settimeout costs a system call: only when what is left is noticeably less than the timeout set (the
        # deadline may pass by at most 1/64 of it)
        if self._armed is None or left < self._armed * (63 / 64):
            self._armed = left
            super().settimeout(left)

    def recv(self, *a):
        self._arm()
        return super().recv(*a)

    def recv_into(self, *a):
        self._arm()
        return super().recv_into(*a)

    def recvmsg_into(self, *a):
        self._arm()
        return super().recvmsg_into(*a)

    def send(self, *a):
        self._arm()
        return super().send(*a)

    def sendall(self, *a):
        self._arm()
        return super().sendall(*a)


class _Conn(http.client.HTTPConnection):
    """One keep-alive connection, with its own connect and read timeouts, remembering the process that made it.
    read_timeout is a deadline for each request's answer (start_request), counted from when the request is sent
    on a connection made (connecting has its own connect_timeout)."""

    def __init__(self, host, port, connect_timeout, read_timeout):
        super().__init__(host, port, timeout=connect_timeout)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pid = os.getpid()

    unix_path = None  # a Unix-domain socket to connect to instead of host:port (Client("unix:/path"))

    def connect(self):
        self.timeout = self.connect_timeout
        if self.unix_path is None:
            super().connect()  # also sets TCP_NODELAY
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(self.connect_timeout)
                s.connect(self.unix_path)
            except BaseException:
                s.close()
                raise
            self.sock = s
        s = _DeadlineSocket(fileno=self.sock.detach())  # the same descriptor (TCP_NODELAY and all), our reads
        s.settimeout(self.read_timeout)
        s.deadline = time.monotonic() + self.read_timeout if self.read_timeout is not None else None
        self.sock = s

    def start_request(self):
        """Count read_timeout from now, for the request about to be sent and its answer."""
        if self.sock is not None and self.read_timeout is not None:
            self.sock.deadline = time.monotonic() + self.read_timeout
            self.sock._armed = None
            self.sock.settimeout(self.read_timeout)

    # http.client sends a request's head and its body in two sends, and with TCP_NODELAY the head leaves alone and
    # wakes the server once for itself: held with MSG_MORE, it leaves with the body's first bytes.
    body_follows = False

    def send(self, data):
        if self.body_follows and _MSG_MORE:
            self.body_follows = False
            if self.sock is None:
                self.connect()
            self.sock.sendall(data, _MSG_MORE)
            return
        super().send(data)


class _Mismatch(Exception):
    """An answer whose shape or dtype is not the one the client sized for (the table was reloaded meanwhile)."""


def wire_dtype(dtype):
    """'f32', 'f16' or 'bf16' for what a caller may write (None stays None): also NumPy/torch dtypes and names."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = _DTYPE_ALIASES.get(dtype, dtype)
    elif str(dtype).startswith("torch."):
        name = _DTYPE_ALIASES.get(str(dtype)[6:], str(dtype)[6:])
    else:
        try:
            name = {np.dtype("f4"): "f32", np.dtype("f2"): "f16"}.get(np.dtype(dtype))
        except TypeError:
            name = None
    if name not in WIRE_DTYPES:
        raise ValueError("dtype %r is not one of f32, f16, bf16" % (dtype,))
    return name


_I64_MAX = int(np.iinfo(np.int64).max)


def as_ids(ids):
    """ids (a list, a NumPy integer array or a torch tensor) as a 1-D int32 or int64 NumPy array, not copied
    when it already is one.

    Ids are integers: a float array (any float dtype) or a float in a list is refused with a TypeError, whatever
    its values (convert whole-number floats yourself, ids.astype(np.int64)), as are bools, strings (tokens() looks
    words up) and anything else that is not an integer. An id past int64 (a uint64 or Python int of 2^63 or more)
    is a ValueError naming it, never wrapped. ids must be 1-D (an empty list is fine; a scalar or any 2-D array,
    empty or not, is a ValueError)."""
    if type(ids).__module__.startswith("torch"):
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids)
    if a.ndim != 1:
        raise ValueError("ids must be 1-D, not of shape %s" % (a.shape,))
    if a.size == 0:
        return np.zeros(0, np.int64)
    kind = a.dtype.kind
    if kind in "OfSU" and isinstance(ids, (list, tuple)):
        # A list NumPy could not make an integer array of: Python ints past int64 (object, or float64 beside
        # negative ones), or something else in it. Say which.
        for x in ids:
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
                break
            if not -_I64_MAX - 1 <= int(x) <= _I64_MAX:
                raise ValueError("id %d does not fit in int64" % int(x))
    if kind in "SU":
        raise TypeError("ids must be integers, not strings (tokens() looks words up)")
    if kind == "f":
        raise TypeError("ids must be integers, not %s (whole-number floats: convert them, ids.astype(np.int64))"
                        % a.dtype)
    if kind not in "iu":
        raise TypeError("ids must be integers, not %s" % a.dtype)
    if a.dtype not in (np.dtype("<i4"), np.dtype("<i8")):
        if kind == "u" and a.dtype.itemsize == 8 and int(a.max()) > _I64_MAX:
            raise ValueError("id %d does not fit in int64" % int(a.max()))
        a = a.astype(np.int64)
    return np.ascontiguousarray(a)


def _int_header(resp, name, default=None):
    """An answer's header as an int (default when absent): a header that is not a number is a bad answer."""
    v = resp.getheader(name)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        resp.close()
        raise EmbdError(resp.status, "bad_answer", "%s %r is not a number" % (name, v)) from None


def npy_bytes(a):
    """The bytes np.save writes for a 1-D or 2-D C-contiguous array, in one buffer (header and data)."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (
        a.dtype.str, "(%d,)" % a.shape[0] if a.ndim == 1 else str(tuple(a.shape)))
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    return b"".join((b"\x93NUMPY\x01\x00", len(header).to_bytes(2, "little"), header.encode("latin1"),
                     memoryview(a).cast("B")))


_DELAY_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def retry_after_seconds(value):
    """The seconds a Retry-After header asks for, when it is a non-negative number of seconds ("1", "0.5"); None
    for anything else: an HTTP-date, a negative or non-finite number, garbage, no header (then the backoff)."""
    if value is None or not _DELAY_SECONDS.fullmatch(value.strip()):
        return None
    return float(value)


def _error_from(status, headers, body):
    """The EmbdError an error answer stands for: embd's JSON error body, or what a non-JSON answer said."""
    try:
        e = json.loads(body)["error"]
        return EmbdError(int(e.get("status", status)), str(e["code"]), str(e.get("message", "")))
    except (ValueError, KeyError, TypeError):
        text = body[:200].decode("utf-8", "replace").strip()
        return EmbdError(status, "http_%d" % status, text or http.client.responses.get(status, ""))


def _readinto_exact(resp, view):
    """Fill view from the answer's body; a body that ends early is a failed connection (retried)."""
    got = 0
    n = len(view)
    while got < n:
        k = resp.readinto(view[got:])
        if not k:
            raise http.client.IncompleteRead(bytes(0), n - got)
        got += k


# Past this many runs (a batch with repeats: every repeat ends a run), the body is read with recvmsg_into, up to
# IOV_MAX runs a system call, rather than one readinto (one recv) a run: 65,536 random ids of 200,000 make ~9,000
# runs, and a recv each cost the client ~60 ms more CPU a batch than one run.
SCATTER_RUNS = 8
IOV_MAX = 1024


def _scatter_read(resp, views):
    """Fill views, in order, from the body of resp (its Content-Length is their total): first the bytes the
    response's buffered reader holds already, through readinto calls none of which asks for more than it holds
    (so that none reads the socket), then straight from the socket into many views a call (recvmsg_into, as
    readv). The response is then read to its end, through http.client, so that the connection can be reused."""
    sock = resp.embd_sock
    held = len(resp.fp.peek())  # what the reader holds (one recv if it held nothing)
    i, off = 0, 0
    while held and i < len(views):
        v = views[i][off:off + held]
        k = resp.readinto(v)
        if not k:
            raise http.client.IncompleteRead(b"", sum(len(x) for x in views[i:]) - off)
        held -= k
        off += k
        if off == len(views[i]):
            i, off = i + 1, 0
    left = sum(len(x) for x in views[i:]) - off
    while i < len(views):
        batch = [views[i][off:]] + views[i + 1:i + IOV_MAX]
        k = sock.recvmsg_into(batch)[0]
        if not k:
            raise http.client.IncompleteRead(b"", left)
        left -= k
        # advance past k bytes
        while k:
            room = len(views[i]) - off
            if k >= room:
                k -= room
                i, off = i + 1, 0
            else:
                off += k
                k = 0
    resp.length = 0
    resp.read()  # the body is read: http.client closes the response and the connection is idle again


def load_torch():
    """torch, imported only when asked for: bf16 answers are torch.bfloat16 tensors."""
    try:
        import torch
    except ImportError as e:
        raise ImportError("dtype='bf16' answers a torch.bfloat16 tensor (NumPy has no bfloat16) and torch does not "
                          "import here (%s): install torch, or pass raw=True for the uint16 bit patterns" % e) from e
    return torch


class Client:
    """A client of one embd daemon.

    Keeps connections alive (a small pool, so several threads can use one Client at once), made lazily and remade
    in a forked child (a DataLoader worker never uses a socket its parent made). Errors raise EmbdError carrying
    the server's status, code and message; 503 answers are retried up to ``retries`` times, waiting ``backoff``
    seconds doubling each time, or longer when the answer's Retry-After asks for it, never more than ``max_backoff``
    (Retry-After counts only as a number of seconds: an HTTP-date or garbage leaves the backoff); a failed
    connection is retried once on a fresh one (every request the client sends is a read). ``parallel``: parts of
    a split batch in flight at once, each answering at most ``part_bytes`` (16 MiB: the daemon keeps its buffers warm in a 128 MiB pool by
    default, and four 58 MB parts of a 65,536-row batch overran it, at a third of the speed of 16 MiB parts).
    ``connect_timeout`` bounds making a connection, ``read_timeout`` each request's whole answer (sending the
    request and reading every byte of the answer, from when the request is sent: a deadline, not a bound on each
    read), both raising EmbdTimeout. ``limits``: what to assume of a daemon whose /v1/info does not say its limits (max_ids, request_bytes,
    max_body_bytes; default DEFAULT_LIMITS, the daemon's defaults).
    """

    def __init__(self, url="http://127.0.0.1:8080", *, connect_timeout=5.0, read_timeout=60.0, retries=3,
                 backoff=0.1, max_backoff=5.0, parallel=4, part_bytes=16 << 20, pool_size=None, limits=None):
        self.url = url
        self.unix_path = None
        if url.startswith("unix:"):
            # embd's listen.unix socket on this host: "unix:/run/embd.sock" (or unix:///run/embd.sock)
            path = url[5:]
            if path.startswith("//"):
                path = path[2:]
            if not path.startswith("/"):
                raise ValueError("a Unix socket URL names an absolute path: unix:/run/embd.sock, not %r" % url)
            self.unix_path, self.host, self.port, self._prefix = path, "localhost", 0, ""
        else:
            u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
            if u.scheme != "http":
                raise ValueError("embd_client speaks http:// and unix:/path, not %s:// (put TLS in front with a "
                                 "proxy)" % u.scheme)
            self.host = u.hostname or "127.0.0.1"
            self.port = u.port or 80
            self._prefix = u.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.parallel = max(1, int(parallel))
        self.pool_size = pool_size if pool_size is not None else max(self.parallel, 8)
        self._user_limits = dict(limits or {})
        self.part_bytes = part_bytes
        self._part_sizes = {}
        self.stats = {"requests": 0, "retries_503": 0, "reconnects": 0, "connections": 0}
        self._info = None
        self._generation = None
        self._closed = False
        self._reset_after_fork()
        _clients.add(self)

    # -- connections --------------------------------------------------------------------------------------------

    def _reset_after_fork(self):
        """Fresh locks, no connections, no threads: what a new process must start with. In a child, the parent's
        sockets are closed here (the child's copies of the descriptors only: the parent's stay open)."""
        old = getattr(self, "_idle", [])
        self._lock = threading.Lock()
        self._idle = []
        self._pid = os.getpid()
        self._executor = None
        for c in old:
            try:
                c.close()
            except Exception:
                pass

    def _take(self, fresh=False):
        with self._lock:
            if self._closed:
                raise ValueError("the client is closed")
            if self._pid != os.getpid():  # a fork without the hook (or before it ran)
                self._lock = threading.Lock()
                self._idle, stale, self._pid, self._executor = [], self._idle, os.getpid(), None
                for c in stale:
                    c.close()
            if fresh:
                stale, self._idle = self._idle, []
                for c in stale:
                    c.close()
            elif self._idle:
                return self._idle.pop()
            self.stats["connections"] += 1
        conn = _Conn(self.host, self.port, self.connect_timeout, self.read_timeout)
        conn.unix_path = self.unix_path
        return conn

    def _give(self, conn):
        with self._lock:
            if conn.pid == os.getpid() == self._pid and not self._closed and len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self):
        """Close every idle connection and the part threads; the client cannot be used afterwards."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            ex, self._executor = self._executor, None
        for c in idle:
            c.close()
        if ex is not None:
            ex.shutdown(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _pool(self):
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.parallel, thread_name_prefix="embd-client")
            return self._executor

    # -- one request ----------------------------------------------------------------------------------------------

    def _call(self, method, path, body=None, headers=None, handle=None):
        """Send one request and return handle(response) for a 200 answer (handle reads the whole body; without
        one, the body's bytes). 503 is retried with backoff, a failed connection once on a fresh one; every
        other answer raises EmbdError."""
        waits = 0
        reconnected = False
        fresh = False
        while True:
            conn = self._take(fresh)
            try:
                self.stats["requests"] += 1
                conn.body_follows = body is not None
                conn.start_request()
                conn.request(method, self._prefix + path, body, headers or {})
                resp = conn.getresponse()
                resp.embd_sock = conn.sock  # for scatter reads of a body in many runs (_scatter_read)
                gen = _int_header(resp, "X-Embd-Generation")
                if gen is not None:
                    self._note_generation(gen)
                if resp.status == 200:
                    result = handle(resp) if handle is not None else resp.read()
                    if resp.will_close or not resp.isclosed():
                        conn.close()
                    else:
                        self._give(conn)
                    return result
                data = resp.read()
                err = _error_from(resp.status, resp.headers, data)
                retry_after = resp.getheader("Retry-After")
                if resp.will_close:
                    conn.close()
                else:
                    self._give(conn)
            except TimeoutError:
                phase = ("connect", conn.connect_timeout) if conn.sock is None else ("read", conn.read_timeout)
                conn.close()
                raise EmbdTimeout(None, "timeout", "%s %s to %s: no %s within %s s (read_timeout/connect_timeout "
                                  "set the limits)" % (method, path.split("?")[0], self._where(),
                                                       "connection" if phase[0] == "connect" else "whole answer",
                                                       phase[1])) from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if reconnected:
                    raise EmbdConnectionError(None, "connection_failed", "%s %s to %s: %s: %s" % (
                        method, path.split("?")[0], self._where(), type(e).__name__, e)) from e
                reconnected = fresh = True
                self.stats["reconnects"] += 1
                continue
            except BaseException:
                conn.close()
                raise
            if err.status != 503 or waits >= self.retries:
                raise err
            delay = self.backoff * (2 ** waits)
            asked = retry_after_seconds(retry_after)
            if asked is not None:
                delay = max(delay, asked)
            delay = min(delay, self.max_backoff)
            waits += 1
            self.stats["retries_503"] += 1
            time.sleep(delay)

    def _where(self):
        return "unix:" + self.unix_path if self.unix_path is not None else "%s:%d" % (self.host, self.port)

    def _note_generation(self, gen):
        if gen != self._generation:
            self._generation = gen
            info = self._info
            if info is not None and info.get("generation") != gen:
                self._info = None  # refreshed when next needed

    def _get_json(self, path):
        return json.loads(self._call("GET", path))

    def _post_json(self, path, obj):
        return json.loads(self._call("POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json"}))

    # -- what the table is --------------------------------------------------------------------------------------------

    def info(self):
        """GET /v1/info, as a dict (fresh; also cached for shape, dtype, limits)."""
        info = self._get_json("/v1/info")
        self._info = info
        self._generation = info.get("generation", self._generation)
        return info

    def _cached_info(self):
        info = self._info
        return info if info is not None else self.info()

    @property
    def shape(self):
        """(rows, dim) of the table served (cached; refreshed when an answer names a new generation)."""
        info = self._cached_info()
        return (info["rows"], info["dim"])

    @property
    def dtype(self):
        """The table's dtype: 'f32', 'f16' or 'bf16'."""
        return self._cached_info()["dtype"]

    @property
    def generation(self):
        """The generation of the last answer (or of /v1/info's, before any)."""
        if self._generation is None:
            self._cached_info()
        return self._generation

    @property
    def limits(self):
        """The server's limits a client sizes its requests by: max_ids, request_bytes, max_body_bytes. From
        /v1/info's "limits"; a daemon older than them is assumed to have the Client's limits= (else the defaults)."""
        out = dict(DEFAULT_LIMITS)
        out.update(self._user_limits)
        out.update(self._cached_info().get("limits") or {})
        return out

    def part_size(self, wire, id_bytes=8):
        """How many ids one request may name so that it passes neither limits.max_ids nor limits.request_bytes
        (by the charge formula, batch_charge) nor limits.max_body_bytes, for answers as wire ('f32'...)."""
        info = self._cached_info()
        lim = self.limits
        key = (wire, id_bytes, info["dim"], info["dtype"], lim["max_ids"], lim["request_bytes"],
               lim["max_body_bytes"])
        n = self._part_sizes.get(key)
        if n is None:
            dim = info["dim"]
            row_bytes = dim * WIRE_DTYPES[wire].itemsize
            n = charge_bound_ids(lim["request_bytes"], row_bytes, dim, id_bytes, wire != info["dtype"])
            n = min(n, lim["max_ids"], (lim["max_body_bytes"] - NPY_HEADER_BYTES) // id_bytes)
            if self.part_bytes:
                n = min(n, self.part_bytes // row_bytes)
            n = max(1, n)
            if len(self._part_sizes) > 32:
                self._part_sizes = {}
            self._part_sizes[key] = n
        return n

    # -- rows -------------------------------------------------------------------------------------------------------

    def _prepare_out(self, out, n, dim, wire):
        want = WIRE_DTYPES[wire]
        if out is None:
            return np.empty((n, dim), want)
        if type(out).__module__.startswith("torch"):
            if str(out.dtype) == "torch.bfloat16":
                out = out.view(load_torch().int16)
            out = out.numpy()  # shares the tensor's memory
        if wire == "bf16" and out.dtype == np.int16:
            out = out.view(np.uint16)  # torch's view of bf16 bits (torch has no uint16)
        if out.shape != (n, dim) or out.dtype != want or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be a writable C-contiguous %s array of shape %s, not %s %s" % (
                want, (n, dim), out.dtype, out.shape))
        return out

    def _finish(self, out, wire, raw):
        if wire == "bf16" and not raw:
            torch = load_torch()
            # torch 1.13 has no uint16: the same bits through int16 (a view; nothing is copied)
            return torch.from_numpy(out.view(np.int16)).view(torch.bfloat16)
        return out

    def rows(self, ids, dtype=None, *, raw=False, out=None):
        """The rows of ids, in order, as a (len(ids), dim) array.

        ids: a list, NumPy integer array or torch tensor (1-D; empty is fine). dtype: None (the table's),
        'f32', 'f16' or 'bf16' (the server converts; bf16 answers a torch.bfloat16 tensor, or with raw=True
        the uint16 bit patterns). Repeated ids are fetched once. A batch past the server's max_ids or
        request_bytes is fetched in parts, in parallel. out: a preallocated C-contiguous (len(ids), dim) array of
        the answer's dtype (float32, float16, or uint16 for bf16) to read into; it is returned.
        """
        return self._rows(ids, dtype, raw, out)[0]

    def _rows(self, ids, dtype, raw, out):
        """rows(), and the generation the rows came from (None for no ids)."""
        ids = as_ids(ids)
        info = self._cached_info()
        wire = wire_dtype(dtype) or info["dtype"]
        if wire == "bf16" and not raw:
            load_torch()  # fail before fetching
        user_out = out is not None
        for attempt in range(3):
            dim = info["dim"]
            dest = self._prepare_out(out, len(ids), dim, wire)
            try:
                gen = self._fetch_ids(ids, wire, dest, dim) if len(ids) else None
                return self._finish(dest, wire, raw), gen
            except _Mismatch as e:
                info = self.info()
                if attempt == 2 or (user_out and info["dim"] != dim):
                    raise EmbdError(200, "shape_changed", str(e)) from None

    # Past this share of repeats, the distinct rows are read into a scratch buffer and expanded with one np.take
    # (every row copied once) rather than read into place run by run with each repeat copied from its first
    # occurrence (a fancy gather and scatter: each repeat copied twice, and a run per distinct id). Measured
    # (loadtest/client_rows.py - --repeats ..., 2026-12-07, 4,096 x 768 f32): in place 0.53 ms at 5% repeats
    # against 1.60 through scratch, about even at half (1.52 / 1.17 ms at 50%), scratch ahead beyond (1.61 / 0.87 at 75%).
    SCRATCH_REPEATS = 0.5

    def _fetch_ids(self, ids, wire, out, dim):
        """Fill out with the rows of ids (each distinct id fetched once, in parts of at most part_size ids)."""
        n = len(ids)
        firsts = dup_pos = dup_src = take = None
        if n > 1:
            # Everything O(n) but one unstable argsort (a stable one and a second sort took 2.6x as long: 0.35 ms
            # for 4,096 ids, the batch's own cost for ~1% of repeats).
            order = np.argsort(ids)
            s = ids[order]
            starts = np.empty(n, bool)  # where each distinct id's group begins, in sorted order
            starts[0] = True
            np.not_equal(s[1:], s[:-1], out=starts[1:])
            if not starts.all():
                group_first = np.minimum.reduceat(order, np.flatnonzero(starts))  # each id's first position
                first = np.zeros(n, bool)
                first[group_first] = True
                firsts = np.flatnonzero(first)  # first occurrences, in batch order: the ids sent
                group_of = np.empty(n, np.intp)
                group_of[order] = np.cumsum(starts) - 1  # each position's distinct id
                if n - len(group_first) > self.SCRATCH_REPEATS * n:
                    rank = np.cumsum(first) - 1  # a first occurrence's row in the scratch buffer
                    take = rank[group_first[group_of]]
                else:
                    dup_pos = np.flatnonzero(~first)
                    dup_src = group_first[group_of[dup_pos]]
        send = ids if firsts is None else ids[firsts]
        row_bytes = dim * WIRE_DTYPES[wire].itemsize
        step = self.part_size(wire, send.dtype.itemsize)
        parts = [(a, min(a + step, len(send))) for a in range(0, len(send), step)]
        dest = out if take is None else np.empty((len(send), dim), out.dtype)
        mv = memoryview(dest).cast("B")

        def one(part):
            a, b = part
            runs = [(a, b - a)] if firsts is None or take is not None else _runs(firsts[a:b])
            return self._post_rows(send[a:b], wire, dim, mv, row_bytes, runs)

        gens = self._map(one, parts)
        if len(set(gens)) > 1:  # a reload between parts: the rows must come from one table
            raise _Mismatch("the parts of the batch came from generations %s" % sorted(set(gens)))
        if take is not None:
            np.take(dest, take, axis=0, out=out, mode="clip")  # "raise" would copy through a buffer
        elif dup_pos is not None:
            out[dup_pos] = out[dup_src]
        return gens[0]

    def _map(self, fn, items):
        if len(items) == 1 or self.parallel == 1:
            return [fn(x) for x in items]
        return list(self._pool().map(fn, items))

    def _post_rows(self, part_ids, wire, dim, mv, row_bytes, runs):
        """POST one part's ids as .npy; read its raw answer run by run into mv (runs of (first row, count))."""
        n = len(part_ids)
        body = npy_bytes(part_ids)
        headers = {"Content-Type": "application/x-npy", "Accept": "application/octet-stream"}
        return self._call("POST", "/v1/rows?dtype=" + wire, body, headers,
                          lambda resp: self._read_rows(resp, n, dim, wire, mv, row_bytes, runs))

    def _read_rows(self, resp, n, dim, wire, mv, row_bytes, runs):
        shape = resp.getheader("X-Embd-Shape")
        got_dtype = resp.getheader("X-Embd-Dtype")
        length = resp.getheader("Content-Length")
        if shape != "%d,%d" % (n, dim) or got_dtype != wire or length != str(n * row_bytes):
            resp.close()
            raise _Mismatch("asked %d x %d %s (%d bytes), answered X-Embd-Shape %s, X-Embd-Dtype %s, "
                            "Content-Length %s" % (n, dim, wire, n * row_bytes, shape, got_dtype, length))
        views = [mv[first * row_bytes:(first + count) * row_bytes] for first, count in runs]
        if len(views) <= SCATTER_RUNS:
            for v in views:
                _readinto_exact(resp, v)
        else:
            _scatter_read(resp, views)
        return _int_header(resp, "X-Embd-Generation", 0)

    def slice(self, start=None, stop=None, dtype=None, *, raw=False, out=None):
        """Rows start..stop-1 (a contiguous slice: the server sends it straight from its mapping when no dtype
        conversion is asked). start defaults to 0, stop to the table's rows; fetched in parallel parts when past
        the server's limits. An empty slice (start == stop) is an empty array, as rows([]) is; start > stop or
        a bound past the end raise the server's 400."""
        info = self._cached_info()
        wire = wire_dtype(dtype) or info["dtype"]
        if wire == "bf16" and not raw:
            load_torch()
        start = 0 if start is None else int(start)
        stop = info["rows"] if stop is None else int(stop)
        for attempt in range(3):
            dim = info["dim"]
            n = max(0, stop - start)
            dest = self._prepare_out(out, n, dim, wire)
            row_bytes = dim * WIRE_DTYPES[wire].itemsize
            if n == 0:
                if stop < start or start < 0 or start > info["rows"]:  # the server's 400 says what is wrong
                    self._call("GET", "/v1/rows?start=%d&stop=%d&format=bin&dtype=%s" % (start, stop, wire))
                return self._finish(dest, wire, raw)  # empty, as E[a:a] is (the server answers 400 empty_batch)
            step = self.part_size(wire)
            mv = memoryview(dest).cast("B")

            def one(a, dim=dim, row_bytes=row_bytes, mv=mv):
                b = min(a + step, n)
                path = "/v1/rows?start=%d&stop=%d&format=bin&dtype=%s" % (start + a, start + b, wire)
                return self._call("GET", path, None, {"Accept": "application/octet-stream"},
                                  lambda r: self._read_rows(r, b - a, dim, wire, mv, row_bytes, [(a, b - a)]))
            try:
                gens = self._map(one, list(range(0, n, step)))
                if len(set(gens)) > 1:
                    raise _Mismatch("the parts of the slice came from generations %s" % sorted(set(gens)))
                return self._finish(dest, wire, raw)
            except _Mismatch as e:
                info = self.info()
                if attempt == 2 or (out is not None and info["dim"] != dim):
                    raise EmbdError(200, "shape_changed", str(e)) from None

    def tokens(self, words, oov="error", dtype=None, *, raw=False):
        """The rows of words (a list of str), by the server's vocabulary.

        oov: 'error' (an unknown word raises EmbdError 404 token_not_found), 'zero' (a row of zeros in its
        place) or 'skip' (left out). With oov='skip' the answer is a tuple (rows, kept): kept lists the words
        the rows belong to, in order. dtype and raw as in rows().
        """
        if isinstance(words, str):
            raise TypeError("words is a list of tokens, not one string")
        words = [str(w) for w in words]
        if oov not in ("error", "zero", "skip"):
            raise ValueError("oov %r is not error, zero or skip" % (oov,))
        info = self._cached_info()
        wire = wire_dtype(dtype) or info["dtype"]
        if wire == "bf16" and not raw:
            load_torch()
        dim = info["dim"]
        row_bytes = dim * WIRE_DTYPES[wire].itemsize
        step = self.part_size(wire, 64)  # a JSON token, its parsed record and id: 64 bytes is generous
        parts = _token_parts(words, step, self.limits["max_body_bytes"])

        def one(part):
            return self._post_tokens(part, oov, wire, dim, row_bytes)

        got = self._map(one, parts)
        if len(set(g for _, _, g in got)) > 1:
            raise EmbdError(200, "shape_changed", "the parts of the batch came from different generations")
        rows = got[0][0] if len(got) == 1 else np.concatenate([r for r, _, _ in got])
        rows = self._finish(rows, wire, raw)
        if oov == "skip":
            return rows, [w for _, kept, _ in got for w in kept]
        return rows

    def _post_tokens(self, words, oov, wire, dim, row_bytes):
        path = "/v1/rows?format=bin&dtype=%s&oov=%s" % (wire, oov)
        body = json.dumps({"tokens": words}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/octet-stream"}

        def read(resp):
            shape = resp.getheader("X-Embd-Shape", "")
            try:
                n, d = (int(x) for x in shape.split(","))
            except ValueError:
                n, d = -1, -1
            if d != dim or resp.getheader("X-Embd-Dtype") != wire or _int_header(resp, "Content-Length", -1) \
                    != n * row_bytes or (oov != "skip" and n != len(words)):
                resp.close()
                raise EmbdError(200, "shape_changed", "asked %d tokens as %s rows of %d, answered shape %s %s" % (
                    len(words), wire, dim, shape, resp.getheader("X-Embd-Dtype")))
            a = np.empty((n, dim), WIRE_DTYPES[wire])
            if a.size:
                _readinto_exact(resp, memoryview(a).cast("B"))
            else:
                resp.read()
            return a, _int_header(resp, "X-Embd-Unknown-Tokens", 0), _int_header(resp, "X-Embd-Generation", 0)

        rows, unknown, gen = self._call("POST", path, body, headers, read)
        kept = words
        if oov == "skip" and unknown:
            # A binary answer says how many were left out, not which: the JSON answer names the kept tokens.
            j = self._call("POST", "/v1/rows?format=json&oov=skip", body, {"Content-Type": "application/json"},
                           lambda r: (json.loads(r.read()), _int_header(r, "X-Embd-Generation", 0)))
            if j[1] != gen:
                raise EmbdError(200, "shape_changed", "the table was reloaded while its tokens were read")
            kept = j[0]["tokens"]
        return rows, kept, gen

    # -- vector operations ---------------------------------------------------------------------------------------

    def similar(self, id=None, token=None, *, ids=None, tokens=None, vectors=None, positive=None, negative=None,
                k=10, metric=None, include_self=False, oov=None):
        """Top-k nearest rows, as the parsed JSON answer of /v1/similar.

        One query: id= or token= ({"k", "metric", "results": [{"id", "token"?, "score"}, ...]}). Many: ids=,
        tokens= or vectors= (a 2-D float array, sent as .npy; or a list of lists, sent as JSON): "results" holds
        one list per query. An analogy: positive=[...], negative=[...] (ids or tokens). metric 'cosine' (the
        default) or 'dot'; include_self keeps a query's own row; oov='skip' answers an empty list for a token the
        vocabulary lacks instead of a 404.
        """
        q = {"k": int(k)}
        if metric is not None:
            q["metric"] = metric
        if include_self:
            q["include_self"] = 1
        if oov is not None:
            q["oov"] = oov
        named = [x is not None for x in (id, token, ids, tokens, vectors)].count(True) + \
            (positive is not None or negative is not None)
        if named != 1:
            raise ValueError("give one of id, token, ids, tokens, vectors, or positive/negative")
        if id is not None or token is not None:
            q["id" if id is not None else "token"] = int(id) if id is not None else token
            return self._get_json("/v1/similar?" + urllib.parse.urlencode(q))
        path = "/v1/similar?" + urllib.parse.urlencode(q)
        if vectors is not None and not isinstance(vectors, list):
            if type(vectors).__module__.startswith("torch"):
                vectors = vectors.detach().cpu().numpy()
            v = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, np.shape(vectors)[-1]))
            return json.loads(self._call("POST", path, npy_bytes(v), {"Content-Type": "application/x-npy"}))
        if vectors is not None:
            body = {"vectors": vectors}
        elif ids is not None:
            body = {"ids": [int(i) for i in as_ids(ids)]}
        elif tokens is not None:
            body = {"tokens": list(tokens)}
        else:
            body = {"positive": _json_items(positive or []), "negative": _json_items(negative or [])}
        return self._post_json(path, body)

    def similarity(self, pairs=None, *, a=None, b=None, metric=None):
        """/v1/similarity: pairs=[(x, y), ...] answers {"metric", "scores": [...]}; a=[...], b=[...] (gensim's
        n_similarity: the cosine of the two means) answers {"metric", "score"}. Items are ids or tokens."""
        path = "/v1/similarity" + ("?metric=" + metric if metric else "")
        if (pairs is None) == (a is None or b is None):
            raise ValueError("give pairs, or a and b")
        if pairs is not None:
            return self._post_json(path, {"pairs": [_json_items(p) for p in pairs]})
        return self._post_json(path, {"a": _json_items(a), "b": _json_items(b)})

    def pool(self, ids=None, tokens=None, *, op="mean", weights=None, pre_normalize=False, normalize=None,
             dtype=None, raw=False):
        """/v1/pool: one row pooling the rows of ids or tokens (op 'mean' or 'sum', optional weights, as
        np.average; pre_normalize makes each row unit first, gensim's get_mean_vector default; normalize='l2'
        makes the answer unit), as a 1-D array of dim values (dtype and raw as in rows())."""
        if (ids is None) == (tokens is None):
            raise ValueError("give ids or tokens")
        body = {"op": op}
        if ids is not None:
            body["ids"] = [int(i) for i in as_ids(ids)]
        else:
            body["tokens"] = list(tokens)
        if weights is not None:
            body["weights"] = [float(w) for w in np.asarray(weights, np.float64).ravel()]
        if pre_normalize:
            body["pre_normalize"] = True
        info = self._cached_info()
        wire = wire_dtype(dtype) or info["dtype"]
        if wire == "bf16" and not raw:
            load_torch()
        path = "/v1/pool?format=bin&dtype=" + wire + ("&normalize=" + normalize if normalize else "")

        def read(resp):
            shape = resp.getheader("X-Embd-Shape", "")
            try:
                dim = int(shape.split(",")[-1])
            except ValueError:
                dim = -1
            if dim < 0 or resp.getheader("X-Embd-Dtype") != wire or _int_header(resp, "Content-Length", -1) != \
                    dim * WIRE_DTYPES[wire].itemsize:
                raise EmbdError(200, "shape_changed", "pool answered shape %s %s" % (
                    shape, resp.getheader("X-Embd-Dtype")))
            a = np.empty(dim, WIRE_DTYPES[wire])
            _readinto_exact(resp, memoryview(a).cast("B"))
            return a

        out = self._call("POST", path, json.dumps(body).encode(),
                         {"Content-Type": "application/json", "Accept": "application/octet-stream"}, read)
        return self._finish(out, wire, raw)


def _token_parts(words, step, max_body):
    """words cut into parts of at most step words whose JSON bodies ({"tokens": [...]}, as json.dumps writes
    them) are at most max_body bytes each (a word too long for any body goes alone: the server's 413 says so)."""
    parts, cur, size = [], [], len(json.dumps({"tokens": []}))
    empty = size
    for w in words:
        n = len(json.dumps(w)) + (2 if cur else 0)  # ", " between items
        if cur and (len(cur) >= step or size + n > max_body):
            parts.append(cur)
            cur, size, n = [], empty, n - 2
        cur.append(w)
        size += n
    parts.append(cur)
    return parts


def _json_items(items):
    """Ids (ints) and tokens (str) as JSON writes them."""
    return [x if isinstance(x, str) else int(x) for x in items]


def _runs(pos):
    """(first, count) for each stretch of consecutive values in the increasing positions pos."""
    if len(pos) == 0:
        return []
    breaks = np.flatnonzero(np.diff(pos) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(pos)]))
    return [(int(pos[s]), int(e - s)) for s, e in zip(starts, ends)]


# The request's fixed record as embd charges it (2,272 bytes in the build of 2026-12-07; it changes only with the
# daemon's code): taken with room to spare, so that a new build's slightly larger record does not make parts 413.
RECORD_BYTES = 8192
NPY_HEADER_BYTES = 128  # np.save's header of a 1-d array (and npy_bytes')


def block_bytes(x):
    """What embd charges a buffer of x bytes (lib/acct.c): x rounded up to its pool class (quarter steps between
    powers of two, 4 KiB to 1 GiB), its 32-byte header, then as glibc holds it (pages from 128 KiB up)."""
    if x <= 0:
        return 0
    if 4096 <= x <= 1 << 30:
        q = 1 << (x.bit_length() - 3)
        x = -(-x // q) * q
    x += 32
    if x >= 128 << 10:
        return -(-(x + 16) // 4096) * 4096
    return max(32, -(-(x + 8) // 16) * 16)


def batch_charge(n, row_bytes, dim, id_bytes=8, convert=False, runs=None, record=RECORD_BYTES):
    """The most embd charges a POST /v1/rows of n ids (a .npy body of id_bytes ids) answered raw, rows of row_bytes
    (README, "What a binary batch holds"): record + block(B) + max(G, block(P)), taking the larger of the gather
    and the zero-copy answer, and one run per id unless runs is given."""
    r = n if runs is None else runs
    body = NPY_HEADER_BYTES + n * id_bytes
    grown = 0
    c = 65536
    while c < body:
        grown = c
        c += c // 4
    gather = block_bytes(n * row_bytes) + (block_bytes(4 * dim) if convert else 0)
    if r <= 4:
        iov = 0
    elif r <= 8:
        iov = block_bytes(128)
    else:
        c = 16
        while c < r:
            c *= 2
        iov = block_bytes(16 * c) + block_bytes(8 * c)
    return record + block_bytes(body) + max(block_bytes(16 * r) + max(gather, iov), block_bytes(grown))


def charge_bound_ids(request_bytes, row_bytes, dim, id_bytes=8, convert=False):
    """The most ids one binary rows request may name so that batch_charge stays within request_bytes (0 when not
    even one row fits)."""
    lo, hi = 0, 1
    while batch_charge(hi, row_bytes, dim, id_bytes, convert) <= request_bytes:
        lo, hi = hi, hi * 2
        if hi > 1 << 40:
            return lo
    while hi - lo > 1:  # the charge grows with n: the largest n within the limit
        mid = (lo + hi) // 2
        if batch_charge(mid, row_bytes, dim, id_bytes, convert) <= request_bytes:
            lo = mid
        else:
            hi = mid
    return lo
