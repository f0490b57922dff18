"""PyTorch loading from embd: datasets whose batches are one request each, read straight into shared memory.

    from torch.utils.data import DataLoader, BatchSampler, RandomSampler
    from embd_client.torch import RowsDataset, collate

    ds = RowsDataset("http://127.0.0.1:8080/", ids)          # item i is the row of ids[i]
    for rows in DataLoader(ds, batch_size=4096, shuffle=True, num_workers=2, collate_fn=collate):
        ...                                                    # rows: a (4096, dim) torch.Tensor

- `RowsDataset(source, ids, dtype=None)`: map-style; `__getitems__` (which the DataLoader calls with a whole batch of
  indices) fetches the batch in one request; `__getitem__(i)` one row. With `collate_fn=collate` the batch reaches the
  training loop as it was read; with the default collate_fn it is correct too, but stacked again row by row (a copy).
- `RowsStream(source, batches, dtype=None)`: an IterableDataset over a stream of id batches (each item one batch of
  ids -> its rows); the stream is dealt across the DataLoader's workers (batch k to worker k mod num_workers), each
  batch exactly once. Use it with `batch_size=None`.
- `SequenceCollate(source, dtype=None, ...)`: the collate_fn for samples that carry ids (a sentence's token ids, a
  session's item ids), optionally with other fields: all the batch's ids in one request; rows padded to
  (B, L, dim) with lengths and a mask, or flat (N, dim) with offsets (`flat=True`, nn.EmbeddingBag's layout).

source is a URL (each process makes its own connections, lazily: nothing made before a fork is shared with the
DataLoader's workers) or an `embd_client.Client`.

How a batch reaches the main process. A DataLoader worker normally hands its batch to the main process by copying it
into a freshly allocated shared-memory tensor: for a 12.6 MB batch that costs more than fetching it (each new page of
shared memory is a page fault, ~20 us per 4 KiB). Here a worker reads the answer's bytes straight into a slot of a
shared-memory arena (a memfd: nothing in /dev/shm, freed by the kernel when the last process holding it ends, even
if killed) and sends the main process only (worker pid, arena fd, slot, shape, dtype); the main process maps each
arena (through /proc/PID/fd, while any tensor views it) and gets a plain torch.Tensor viewing the slot. When that
tensor (and every view of it) is gone, the slot is marked free in the arena's flags page and the worker fills it
again. A worker never reuses a slot whose tensor is still alive: a training loop that keeps every batch gets
independent tensors (the worker makes new arenas as needed). With num_workers=0 there is no arena: each batch is a
fresh tensor.
"""
import mmap
import os
import secrets
import sys
import threading
import time
import weakref
from collections import namedtuple

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

__all__ = ["RowsDataset", "RowsStream", "SequenceCollate", "Sequences", "batched", "collate", "loader"]

TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
# NumPy has no bfloat16: bf16 rows are read as their 16-bit patterns (int16: torch has no uint16) and viewed as
# torch.bfloat16.
NP_DTYPES = {"f32": np.dtype("<f4"), "f16": np.dtype("<f2"), "bf16": np.dtype("<i2")}
PAGE = mmap.PAGESIZE


# The source of rows: an embd_client.Client (made lazily from a URL in the process that uses it). ---------------

class _Source:
    """A Client's rows read straight into a given array: Client.rows(ids, dtype, raw=True, out=...). With parts > 1
    a batch is cut into that many parts fetched at once from threads (each on its own keep-alive connection, each
    reading into its own rows of the array): the server's gather of one part overlaps the wire of another."""

    def __init__(self, client, parts=1):
        self.client, self.parts = client, max(1, int(parts))
        self._pid, self._pool = None, None

    def __getstate__(self):  # into a spawned worker: the client (which pickles its own way), not the threads
        return {"client": self.client, "parts": self.parts}

    def __setstate__(self, s):
        self.__init__(s["client"], s["parts"])

    def info(self):
        return self.client.info()

    TRIES = 3  # a batch whose parts came from different generations is fetched again, at most this many times

    def _part(self, ids, dtype, out):
        """Read the rows of ids into out; the generation they came from."""
        c = self.client
        if hasattr(c, "_rows"):
            return c._rows(ids, dtype, True, out)[1]
        c.rows(ids, dtype, raw=True, out=out)
        return getattr(c, "generation", None)

    def rows_into(self, ids, dtype, out):
        """Fill out with the rows of ids, all from one generation of the table: parts fetched at once are
        compared, and a batch whose parts straddle a reload is fetched again (TRIES times, then EmbdError
        shape_changed)."""
        n = len(ids)
        k = min(self.parts, n // 256)
        if k <= 1:
            if n:
                self._part(ids, dtype, out)
            return out
        if self._pid != os.getpid():  # no thread of the parent's survives a fork
            from concurrent.futures import ThreadPoolExecutor
            self._pid, self._pool = os.getpid(), ThreadPoolExecutor(self.parts - 1, thread_name_prefix="embd-part")
        cuts = [n * j // k for j in range(k + 1)]
        for _ in range(self.TRIES):
            futs = [self._pool.submit(self._part, ids[cuts[j]:cuts[j + 1]], dtype, out[cuts[j]:cuts[j + 1]])
                    for j in range(1, k)]
            try:
                gens = [self._part(ids[:cuts[1]], dtype, out[:cuts[1]])]
            finally:
                for f in futs:  # none may still be writing into out when this returns or raises
                    f.exception()
            gens += [f.result() for f in futs]
            if len(set(gens)) == 1:
                return out
        from .errors import EmbdError
        raise EmbdError(200, "shape_changed", "the parts of a batch came from different generations of the table "
                        "(%s) %d times in a row: it is being reloaded faster than a batch is read"
                        % (", ".join(map(str, sorted(set(gens)))), self.TRIES))


def _source(client_or_url, parts):
    if isinstance(client_or_url, (str, bytes)):
        from .client import Client
        return _Source(Client(client_or_url.decode() if isinstance(client_or_url, bytes) else client_or_url), parts)
    if hasattr(client_or_url, "rows") and hasattr(client_or_url, "info"):
        return _Source(client_or_url, parts)
    raise TypeError("embd_client.torch: a URL or an embd_client.Client, not %r" % type(client_or_url).__name__)


def _as_ids(ids):
    """ids as Client.rows takes them (1-D integers within int64, else a ValueError or TypeError saying why: a 2-D
    array is refused, not flattened), as an int64 array."""
    from .client import as_ids
    return as_ids(ids).astype("<i8", copy=False)


# Shared-memory arenas: a worker's batches, read in place, mapped once by the main process. ---------------------

# An arena: one page of flags (byte i: 1 while the main process holds slot i's tensor; the last 16 bytes: the arena's
# token, checked when the main process maps it), then its slots.
_TOKEN_AT = PAGE - 16
_RETIRED_AT = _TOKEN_AT - 1  # set by the worker when it gives the arena back: the main process unmaps it


class _Arena:
    """Worker side: a memfd of nslots slots of slot_bytes each."""

    def __init__(self, slot_bytes, nslots):
        self.slot_bytes, self.nslots = slot_bytes, nslots
        self.size = PAGE + slot_bytes * nslots
        self.token = secrets.token_bytes(16)
        self.fd = os.memfd_create("embd-arena", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, self.size)
            self.mm = mmap.mmap(self.fd, self.size)
        except BaseException:
            os.close(self.fd)
            raise
        self.mm[_TOKEN_AT:PAGE] = self.token
        self.flags = np.frombuffer(self.mm, np.uint8, nslots, 0)
        self.local = [False] * nslots  # a tensor of this process views the slot
        # The fd is closed with the arena (or the process): the memory lives on while any process maps it.
        self._close = weakref.finalize(self, os.close, self.fd)

    def free_slot(self):
        for i in range(self.nslots):
            if not self.local[i] and not self.flags[i]:
                return i
        return None

    def release_local(self, i):
        self.local[i] = False

    def idle(self):
        return not any(self.local) and not self.flags.any()


class _Arenas:
    """A worker's arenas: a slot of at least nbytes (and at most twice that) that no tensor views, or a new arena."""

    SLOTS = 4

    def __init__(self):
        self.pid = os.getpid()
        self.arenas = []
        self.lock = threading.Lock()

    IDLE = 2  # arenas kept with no slot in use (more, made while batches were kept, are given back)

    def take(self, nbytes):
        need = max(PAGE, -(-nbytes // PAGE) * PAGE)
        with self.lock:
            idle = [a for a in self.arenas if a.idle()]
            for a in idle[self.IDLE:]:
                a.mm[_RETIRED_AT] = 1  # the receiver unmaps it (it keeps the others mapped, idle, for next time)
                self.arenas.remove(a)  # its memory goes with its last mapping: none here, none in the receiver
            for a in self.arenas:
                if need <= a.slot_bytes <= 2 * need:
                    i = a.free_slot()
                    if i is not None:
                        a.local[i] = True
                        return a, i
            # Slot sizes a little over what is asked (by eighths of a power of two), so that batches of nearby sizes
            # (a last short batch, padded sequences) share arenas.
            step = max(PAGE, 1 << max(0, need.bit_length() - 4))
            a = _Arena(-(-need // step) * step, self.SLOTS)
            self.arenas.append(a)
            a.local[0] = True
            return a, 0


_ARENAS = None


def _arenas():
    global _ARENAS
    if _ARENAS is None or _ARENAS.pid != os.getpid():
        _ARENAS = _Arenas()
    return _ARENAS


class _SlotTensor(torch.Tensor):
    """A worker's batch, viewing a slot of an arena. Pickled (to reach the main process) as the slot's address, not
    its bytes. Operations on it give plain tensors (which pickle the usual way)."""

    __torch_function__ = torch._C._disabled_torch_function_impl

    def __reduce_ex__(self, proto):
        a, i, dtype = self._embd_slot
        a.flags[i] = 1  # held by the receiving process until its tensor is gone
        return (_rebuild, (os.getpid(), a.fd, a.token, a.size, a.nslots, i, PAGE + i * a.slot_bytes,
                           tuple(self.shape), dtype))


def _slot_tensor(shape, dtype, shared=True):
    """(tensor, ndarray) of shape and embd dtype: in a DataLoader worker a slot of an arena, else fresh memory."""
    npdt = NP_DTYPES[dtype]
    n = int(np.prod(shape)) * npdt.itemsize
    if not shared or get_worker_info() is None:
        arr = np.empty(shape, npdt)
        t = torch.from_numpy(arr)
        return (t.view(torch.bfloat16) if dtype == "bf16" else t), arr
    a, i = _arenas().take(n)
    arr = np.frombuffer(a.mm, npdt, int(np.prod(shape)), PAGE + i * a.slot_bytes).reshape(shape)
    weakref.finalize(arr, a.release_local, i)
    t = torch.from_numpy(arr)
    if dtype == "bf16":
        t = t.view(torch.bfloat16)
    t = t.as_subclass(_SlotTensor)
    t._embd_slot = (a, i, dtype)
    return t, arr


class _Mapped:
    """Main-process side: one arena of one worker, mapped from its first batch until the worker gives it back or ends
    and no batch views it."""

    def __init__(self, pid, mm, nslots):
        self.pid, self.mm, self.live = pid, mm, 0
        self.flags = np.frombuffer(mm, np.uint8, nslots, 0)


_MAPPED = {}
_MAPPED_LOCK = threading.RLock()


def _alive(pid):
    """The worker is running (not gone, not a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _gone(m):
    """An arena the main process has no more use for: its worker gave it back or has ended."""
    return m.mm[_RETIRED_AT] != 0 or not _alive(m.pid)


def _sweep():
    """Unmap every arena no batch views whose worker gave it back or has ended. The idle arenas of a running
    worker stay mapped: its next batches land in them, and mapping afresh would fault every page in again (a
    4,096 x 768 float32 batch is 3,072 pages: ~20 ms of the main process's CPU a batch, measured)."""
    with _MAPPED_LOCK:
        for key, m in list(_MAPPED.items()):
            if m.live == 0 and _gone(m):
                _MAPPED.pop(key, None)
        return bool(_MAPPED)


def _after_fork_in_child():
    """A child (another DataLoader's worker, say) has no use for the arenas this process keeps mapped idle for
    its own workers: dropped here, so they do not live on in the child after their loader ends. (An arena one of
    this process's batches still views at the fork stays mapped in the child while the child's copy of that batch
    lives: the child never reads it, but its memory is referenced.)"""
    global _MAPPED_LOCK
    _MAPPED_LOCK = threading.RLock()  # a lock held by another thread at the fork would never be released here
    for key, m in list(_MAPPED.items()):
        if m.live == 0:
            _MAPPED.pop(key, None)
    _SWEEPER[0] = None


os.register_at_fork(after_in_child=_after_fork_in_child)


_SWEEPER = [None]


def _sweeper():
    """A thread that sweeps while any arena is mapped (an ended worker's arenas go within SWEEP_S seconds of its
    end, though no batch of it is released any more), then ends."""
    while True:
        time.sleep(SWEEP_S)
        with _MAPPED_LOCK:
            if not _sweep():
                _SWEEPER[0] = None
                return


SWEEP_S = 0.1


def _release(key, m, slot):
    """The last view of a batch is gone: its slot is free for the worker; the arena stays mapped for the worker's
    next batches unless the worker gave it back or has ended."""
    with _MAPPED_LOCK:
        m.flags[slot] = 0
        m.live -= 1
        if m.live == 0 and _MAPPED.get(key) is m and _gone(m):
            _MAPPED.pop(key, None)


def _rebuild(pid, fd, token, size, nslots, slot, offset, shape, dtype):
    """In the process that receives a worker's batch: a plain tensor viewing the slot."""
    key = (pid, token)
    with _MAPPED_LOCK:
        m = _MAPPED.get(key)
        if m is None:
            _sweep()
            try:
                with open("/proc/%d/fd/%d" % (pid, fd), "r+b") as f:
                    # every page mapped at once (one call, not a fault per page when the batch is first read)
                    mm = mmap.mmap(f.fileno(), size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
            except OSError as e:
                raise RuntimeError("embd_client.torch: cannot map the shared batch of worker %d (%s); did it end "
                                   "before its batch was read?" % (pid, e)) from None
            if mm[_TOKEN_AT:PAGE] != token:
                raise RuntimeError("embd_client.torch: worker %d's fd %d is not the arena it sent" % (pid, fd))
            m = _MAPPED[key] = _Mapped(pid, mm, nslots)
            if _SWEEPER[0] is None or _SWEEPER[0][0] != os.getpid():
                th = threading.Thread(target=_sweeper, name="embd-arena-sweeper", daemon=True)
                _SWEEPER[0] = (os.getpid(), th)
                th.start()
        m.live += 1
    npdt = NP_DTYPES[dtype]
    arr = np.frombuffer(m.mm, npdt, int(np.prod(shape)), offset).reshape(shape)
    weakref.finalize(arr, _release, key, m, slot)
    t = torch.from_numpy(arr)
    return t.view(torch.bfloat16) if dtype == "bf16" else t


# Datasets. -----------------------------------------------------------------------------------------------------

class _Rows:
    """What the datasets share: the source (made lazily, in the process that uses it) and the shape of a row."""

    def __init__(self, client_or_url, dtype, parts):
        if dtype is not None and dtype not in TORCH_DTYPES:
            raise ValueError("dtype must be one of f32, f16, bf16 (or None: the matrix's), not %r" % (dtype,))
        if not isinstance(client_or_url, (str, bytes)):
            _source(client_or_url, parts)  # a TypeError now rather than in a worker
        self._spec, self._dtype, self._parts = client_or_url, dtype, parts
        self._src, self._dim, self._wire = None, None, None

    def __getstate__(self):
        s = dict(self.__dict__)
        s["_src"] = None if isinstance(self._spec, (str, bytes)) else s["_src"]
        return s

    def _source(self):
        if self._src is None:
            self._src = _source(self._spec, self._parts)
        c = self._src.client
        # the client's idea of the table: refreshed when an answer names a new generation
        info = c._cached_info() if self._dim is not None and hasattr(c, "_cached_info") else None
        if self._dim is not None and isinstance(info, dict) and (
                int(info["dim"]) != self._dim or (self._dtype is None and info["dtype"] != self._wire)):
            self._dim = None  # a reload changed the row's shape or dtype
        if self._dim is None:
            info = self._src.info()
            self._dim = int(info["dim"])
            self._wire = self._dtype or info["dtype"]
            if self._wire not in TORCH_DTYPES:
                raise ValueError("embd serves %s rows; ask for dtype='f32', 'f16' or 'bf16'" % self._wire)
        return self._src

    def _fetch(self, ids, shared=True):
        """The rows of ids as a torch.Tensor of shape (len(ids), dim): read straight into a slot of an arena in a
        DataLoader worker (shared), into fresh memory otherwise."""
        ids = _as_ids(ids)
        return self._read(ids, (len(ids),), shared)[0]

    def _read(self, ids, lead, shared=True):
        """(tensor, array) of shape lead + (dim,) holding the rows of ids (as many as lead's product). A reload
        that changes the row's dim or dtype (EmbdError shape_changed) is followed: /v1/info is read again and the
        batch fetched again in the new shape (twice at most), so a dataset outlives a reload to a new table."""
        from .errors import EmbdError
        for attempt in range(3):
            src = self._source()
            t, arr = _slot_tensor(lead + (self._dim,), self._wire, shared)
            try:
                src.rows_into(ids, self._wire, arr.reshape(-1, self._dim))
                return t, arr
            except EmbdError as e:
                if e.code != "shape_changed" or attempt == 2:
                    raise
                self._dim = None

    @property
    def dim(self):
        self._source()
        return self._dim


class RowsDataset(_Rows, Dataset):
    """Item i is the row of ids[i] (a torch.Tensor of shape (dim,)); a batch of indices is one request.

    client_or_url: "http://host:port/" (connections made lazily in each process) or an embd_client.Client.
    ids: 1-D integers, as Client.rows takes them (a 2-D array is refused, not flattened).
    dtype: None (the matrix's own), "f32", "f16" or "bf16" (the server converts; f16/bf16 halve the bytes).
    parts: requests in flight for one batch (each a part of it, on its own connection)."""

    def __init__(self, client_or_url, ids, dtype=None, parts=1):
        _Rows.__init__(self, client_or_url, dtype, parts)
        self.ids = _as_ids(ids)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self._fetch(self.ids[[i]], shared=False)[0]

    def __getitems__(self, indices):
        """The rows of a whole batch of indices, in one request: a (len(indices), dim) tensor.

        The DataLoader passes what this returns to its collate_fn. To collate_fn=embd_client.torch.collate (or a
        function marked with embd_client.torch.batched) it is the (n, dim) tensor as read; to any other collate_fn
        (the default one included: it wants a list of samples) it is the list of its rows, which default_collate
        stacks again (correct, but a copy of the batch and ~0.3 us per row)."""
        t = self._fetch(self.ids[np.asarray(indices, np.int64)])
        fetcher = sys._getframe(1).f_locals.get("self")  # torch's _MapDatasetFetcher.fetch, when it calls us
        collate_fn = getattr(fetcher, "collate_fn", None)
        if collate_fn is not None and not getattr(collate_fn, "embd_batched", False):
            return list(t.unbind(0))
        return t


class RowsStream(_Rows, IterableDataset):
    """An IterableDataset over a stream of id batches: each item is one batch of ids' rows, a (n, dim) tensor.

    batches: an iterable of id batches (lists, arrays, tensors), or a callable returning a fresh one for each epoch
    (an iterator can be gone through once). Batch k of the stream goes to worker k mod num_workers: across the
    workers every batch comes exactly once. Use DataLoader(stream, batch_size=None, ...)."""

    def __init__(self, client_or_url, batches, dtype=None, parts=1):
        _Rows.__init__(self, client_or_url, dtype, parts)
        self.batches = batches

    def __iter__(self):
        w = get_worker_info()
        me, every = (0, 1) if w is None else (w.id, w.num_workers)
        batches = self.batches() if callable(self.batches) else self.batches
        for k, ids in enumerate(batches):
            if k % every == me:
                yield self._fetch(ids)


def batched(fn):
    """Mark a collate_fn as taking RowsDataset's batch whole: it gets the (n, dim) tensor as read, not its rows."""
    fn.embd_batched = True
    return fn


@batched
def collate(batch):
    """The collate_fn for RowsDataset: the batch as fetched (one request, no copy); anything else as default_collate
    would collate it."""
    if isinstance(batch, torch.Tensor):
        return batch
    return default_collate(batch)


def loader(dataset, batch_size, **kw):
    """A DataLoader over a RowsDataset with collate_fn=collate: DataLoader(dataset, batch_size, **kw)."""
    from torch.utils.data import DataLoader
    kw.setdefault("collate_fn", collate)
    return DataLoader(dataset, batch_size, **kw)


Sequences = namedtuple("Sequences", "rows lengths mask offsets rest")
Sequences.__doc__ = """A batch of samples' rows (SequenceCollate).

rows: (B, L, dim) padded with zeros after each sample's rows, L the longest sample; flat=True: (N, dim), the samples'
rows one after another. lengths: (B,) int64. mask: (B, L) bool, True where a row is (None when flat). offsets: (B,)
int64, where each sample starts in the flat rows, as nn.EmbeddingBag takes them (None when padded). rest: the
samples' other fields through default_collate (None when the samples are ids alone)."""


class SequenceCollate(_Rows):
    """collate_fn for samples that carry ids: a sample is a sequence of ids (list, array, tensor) or a tuple whose
    first field is one (the other fields are collated by default_collate into .rest). One request for the whole
    batch; returns a Sequences.

    Padded (default): the ids are sent as a (B, L) matrix, each short sample filled up with its own first id (the
    padding rows travel, then are zeroed in place: no copy of the batch), so the rows land in their padded place as
    read. flat=True sends exactly the batch's ids and gives (N, dim) rows with offsets (no padding on the wire)."""

    def __init__(self, client_or_url, dtype=None, flat=False, parts=1):
        _Rows.__init__(self, client_or_url, dtype, parts)
        self.flat = flat

    def __call__(self, samples):
        if samples and isinstance(samples[0], tuple):
            seqs = [_as_ids(s[0]) for s in samples]
            rest = default_collate([s[1:] for s in samples])
        else:
            seqs, rest = [_as_ids(s) for s in samples], None
        lengths = np.array([len(s) for s in seqs], np.int64)
        if self.flat:
            offsets = np.zeros(len(seqs), np.int64)
            np.cumsum(lengths[:-1], out=offsets[1:])
            flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
            return Sequences(self._fetch(flat), torch.from_numpy(lengths), None, torch.from_numpy(offsets), rest)
        width = int(lengths.max()) if len(seqs) else 0
        mask = np.arange(width)[None, :] < lengths[:, None]
        ids = np.empty((len(seqs), width), np.int64)
        for b, s in enumerate(seqs):
            ids[b, :len(s)] = s
            ids[b, len(s):] = s[0] if len(s) else 0
        t, arr = self._read(ids.reshape(-1), (len(seqs), width))
        arr[~mask] = 0
        return Sequences(t, torch.from_numpy(lengths), torch.from_numpy(mask), None, rest)
