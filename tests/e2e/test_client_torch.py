"""embd_client.torch against a real daemon: DataLoader batches equal to the in-process nn.Embedding lookup, bit for
bit, with 0, 1 and 2 workers, persistent workers, prefetch_factor, pin_memory, the default collate_fn and ours; the
sequence collate; the stream dataset; kept batches; nothing of the shared-memory arenas left behind."""
import gc
import os
import signal
import sys
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch cannot be imported here (Debian: apt-get install python3-torch, "
                                            "which `sh scripts/deps.sh test` does)")
from torch.utils.data import DataLoader  # noqa: E402

from conftest import wait_for  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
import embd_client.torch as et  # noqa: E402
from embd_client import Client, EmbdError  # noqa: E402

ROWS, DIM = 5000, 64


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A 5000 x 64 float32 matrix whose column 0 is the row's id (so a row says which it is), values of every
    magnitude elsewhere (f16/bf16 rounding, subnormals, infinities on conversion)."""
    d = tmp_path_factory.mktemp("torch")
    rng = np.random.default_rng(17)
    m = (rng.standard_normal((ROWS, DIM)) * np.exp(rng.uniform(-20, 20, (ROWS, DIM)))).astype(np.float32)
    m[:, 0] = np.arange(ROWS)
    np.save(d / "t.npy", m)
    return str(d / "t.npy"), m


@pytest.fixture
def served(start, table):
    path, m = table
    d = start(path, "--access-log=false")
    return "http://127.0.0.1:%d/" % d.port, m


def lookup(m, ids, dtype):
    """The in-process reference: nn.Embedding.from_pretrained(M)(ids), converted as the server converts (NumPy's
    astype for f16, torch's .to(bfloat16) for bf16)."""
    emb = torch.nn.Embedding.from_pretrained(torch.from_numpy(m))
    with torch.no_grad():
        x = emb(torch.as_tensor(np.asarray(ids, np.int64)))
    if dtype == "f16":
        with np.errstate(over="ignore"):  # past f16's range: infinity, as the server gives
            return torch.from_numpy(x.numpy().astype(np.float16))
    if dtype == "bf16":
        return x.to(torch.bfloat16)
    return x


def same(a, b):
    """Bit for bit (NaN patterns included)."""
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
    ia = a.contiguous().view(torch.int16 if a.element_size() == 2 else torch.int32)
    ib = b.contiguous().view(torch.int16 if b.element_size() == 2 else torch.int32)
    return torch.equal(ia, ib)


def batches(n, size, seed):
    """n lists of size indices (random, with repeats, in no order) into the dataset."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, ROWS, size).tolist() for _ in range(n)]


def arena_maps(pid="self"):
    """A process's mappings of embd arenas (memfd "embd-arena")."""
    with open("/proc/%s/maps" % pid) as f:
        return [line for line in f if "embd-arena" in line]


def shm_ours():
    return [n for n in os.listdir("/dev/shm") if "embd" in n]


def test_two_workers_every_batch_exact(served):
    """The issue's test: a DataLoader with 2 workers over a few hundred batches, each equal bit for bit to the
    in-process nn.Embedding lookup of the same indices."""
    url, m = served
    ids = np.random.default_rng(1).integers(0, ROWS, 20000)
    bs = batches(300, 128, 2)
    dl = DataLoader(et.RowsDataset(url, ids), batch_sampler=bs, num_workers=2, collate_fn=et.collate)
    n = 0
    for b, x in zip(bs, dl):
        assert same(x, lookup(m, ids[b], None)), n
        n += 1
    assert n == 300
    del dl, x
    gc.collect()
    assert wait_for(lambda: arena_maps() == []) and shm_ours() == []  # ended workers' arenas: unmapped


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("dtype", [None, "f16", "bf16"])
@pytest.mark.parametrize("ours", [True, False], ids=["collate", "default_collate"])
def test_workers_dtypes_collates(served, workers, dtype, ours):
    """num_workers 0/1/2, every wire dtype, our collate (the batch as read) and the default one (stacked again):
    the same tensors, of the asked dtype."""
    url, m = served
    ids = np.arange(ROWS)[::-1].copy()
    bs = batches(12, 100, 3) + [[7], [4999, 0, 4999]]
    kw = {"collate_fn": et.collate} if ours else {}
    dl = DataLoader(et.RowsDataset(url, ids, dtype=dtype), batch_sampler=bs, num_workers=workers, **kw)
    got = list(dl)
    assert len(got) == len(bs)
    want_dtype = {None: torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    for b, x in zip(bs, got):
        assert x.dtype == want_dtype
        assert same(x, lookup(m, ids[b], dtype))


def test_persistent_prefetch_pin_epochs(served):
    """persistent_workers across 3 epochs (shuffled differently each), prefetch_factor=4, pin_memory=True (no CUDA
    here: it must simply not break), a last short batch, and a break in the middle of an epoch."""
    url, m = served
    ids = np.random.default_rng(4).integers(0, ROWS, 1000)
    ds = et.RowsDataset(url, ids)
    g = torch.Generator()
    g.manual_seed(5)
    dl = DataLoader(ds, batch_size=96, shuffle=True, generator=g, num_workers=2, persistent_workers=True,
                    prefetch_factor=4, pin_memory=True, collate_fn=et.collate)
    seen = []
    for epoch in range(3):
        rows = torch.cat(list(dl))
        assert rows.shape == (1000, DIM)
        # Every item once per epoch: column 0 holds each row's id; sorting compares the multisets.
        assert torch.equal(rows[:, 0].sort().values, torch.from_numpy(np.sort(ids).astype(np.float32)))
        order = rows[:, 0].long()
        assert same(rows, lookup(m, order.numpy(), None))
        seen.append(order)
    assert not torch.equal(seen[0], seen[1])
    for k, x in enumerate(dl):  # a break mid-epoch, then a whole epoch: the persistent workers go on
        if k == 3:
            break
    assert torch.cat(list(dl)).shape == (1000, DIM)
    del dl, x
    gc.collect()
    assert wait_for(lambda: arena_maps() == [])


def test_kept_batches_are_independent(served):
    """A training loop that keeps every batch gets correct tensors that no later batch overwrites: the workers make
    new slots rather than reuse one still viewed, free them when the tensors go, and give back the arenas they
    made meanwhile (beyond 2 idle ones) when the next epoch starts taking slots again."""
    url, m = served
    ids = np.arange(ROWS)
    bs = batches(40, 256, 6)
    dl = DataLoader(et.RowsDataset(url, ids, dtype="f16"), batch_sampler=bs, num_workers=2, prefetch_factor=2,
                    persistent_workers=True, collate_fn=et.collate)
    kept = list(dl)
    views = [x[1:3, 2:5] for x in kept]  # a view alone keeps its slot too
    for b, x in zip(bs, kept):
        assert same(x, lookup(m, ids[b], "f16"))
    del kept, x
    gc.collect()
    assert len(arena_maps()) >= 2  # more batches held than one arena's slots: more arenas
    for b, v in zip(bs, views):
        assert same(v, lookup(m, ids[b], "f16")[1:3, 2:5])
    workers = [w.pid for w in dl._iterator._workers]
    assert min(len(arena_maps(p)) for p in workers) >= 4  # 40 batches of 4 slots per arena, in 2 workers
    del v, views
    gc.collect()
    # nothing views them now: the arenas stay mapped, idle, for the running workers' next batches
    assert 0 < len(arena_maps()) <= sum(len(arena_maps(p)) for p in workers)
    for b, x in zip(bs, dl):  # an epoch that keeps nothing
        assert same(x, lookup(m, ids[b], "f16"))
    assert max(len(arena_maps(p)) for p in workers) <= 3
    # the arenas the workers gave back are unmapped here too: no more than they hold (and the batch x views)
    assert wait_for(lambda: len(arena_maps()) <= sum(len(arena_maps(p)) for p in workers))
    del dl, x
    gc.collect()
    assert wait_for(lambda: arena_maps() == []) and shm_ours() == []  # ended workers' arenas: unmapped


def drain(it):
    """The error iterating to the end raised (returned as text: a traceback kept would keep its frames' batches)."""
    try:
        for _ in it:
            pass
    except RuntimeError as e:
        return str(e)
    return "no error"


def test_killed_worker_leaves_nothing(served):
    """A worker killed mid-epoch: the DataLoader says so, and no arena stays mapped or in /dev/shm."""
    url, m = served
    ids = np.arange(ROWS)
    dl = DataLoader(et.RowsDataset(url, ids), batch_size=64, num_workers=2, collate_fn=et.collate)
    it = iter(dl)
    first = next(it)
    assert same(first, lookup(m, ids[:64], None))
    pid = it._workers[0].pid
    os.kill(pid, signal.SIGKILL)
    # torch says it from its SIGCHLD handler or from its queue's timeout, whichever sees it first
    msg = drain(it)
    assert ("DataLoader worker (pid %d) is killed by signal: Killed" % pid in msg or
            "DataLoader worker (pid(s) %d) exited unexpectedly" % pid in msg), msg
    del it, dl, first
    gc.collect()
    assert wait_for(lambda: arena_maps() == []) and shm_ours() == []  # ended workers' arenas: unmapped


def test_single_items(served):
    """__getitem__: one row; with the default collate and no __getitems__ path (a Subset-like wrapper), the rows
    stack into the same batch."""
    url, m = served
    ids = np.array([9, 3, 4999, 3])
    ds = et.RowsDataset(url, ids, dtype="bf16")
    assert len(ds) == 4 and ds.dim == DIM
    assert same(ds[2], lookup(m, [4999], "bf16")[0])
    assert same(ds[-1], lookup(m, [3], "bf16")[0])
    sub = torch.utils.data.Subset(ds, [0, 1, 2, 3])  # Subset has no __getitems__ in torch 1.13: item by item
    x = next(iter(DataLoader(sub, batch_size=4, num_workers=1)))
    assert same(x, lookup(m, ids, "bf16"))


@pytest.mark.parametrize("workers", [0, 2])
def test_sequence_collate(served, workers):
    """Samples carrying ids (and a label): one request per batch; padded rows with lengths and mask, or flat rows
    with offsets; the labels collated as default_collate does."""
    url, m = served
    rng = np.random.default_rng(8)
    samples = [(rng.integers(0, ROWS, int(rng.integers(1, 30))).tolist(), k) for k in range(50)]
    for flat in (False, True):
        dl = DataLoader(samples, batch_size=8, num_workers=workers, collate_fn=et.SequenceCollate(url, flat=flat))
        k = 0
        for s in dl:
            chunk = samples[k:k + 8]
            assert s.lengths.tolist() == [len(c[0]) for c in chunk]
            assert torch.equal(s.rest[0], torch.arange(k, k + len(chunk)))
            if flat:
                assert s.mask is None
                assert s.offsets.tolist() == np.concatenate([[0], np.cumsum(s.lengths)[:-1]]).tolist()
                assert same(s.rows, lookup(m, np.concatenate([c[0] for c in chunk]), None))
            else:
                width = max(len(c[0]) for c in chunk)
                assert s.rows.shape == (len(chunk), width, DIM) and s.offsets is None
                for b, c in enumerate(chunk):
                    n = len(c[0])
                    assert s.mask[b].tolist() == [True] * n + [False] * (width - n)
                    assert same(s.rows[b, :n], lookup(m, c[0], None))
                    assert not s.rows[b, n:].any()
            k += len(chunk)
        assert k == 50
    # Samples that are ids alone: rest is None.
    s = et.SequenceCollate(url, dtype="f16")([[1, 2, 3], [4]])
    assert s.rest is None and s.rows.dtype == torch.float16 and same(s.rows[1, :1], lookup(m, [4], "f16"))


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker")
@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_stream_each_batch_once(served, workers):
    """RowsStream: the id batches dealt across the workers, each batch exactly once, over two epochs (a callable
    gives the stream again)."""
    url, m = served
    stream = batches(23, 50, 9)
    ds = et.RowsStream(url, lambda: iter(stream))
    for epoch in range(2):
        got = list(DataLoader(ds, batch_size=None, num_workers=workers, collate_fn=et.collate))
        assert len(got) == len(stream)
        keys = sorted(tuple(x[:, 0].long().tolist()) for x in got)
        assert keys == sorted(tuple(b) for b in stream)
        for x in got:
            assert same(x, lookup(m, x[:, 0].long().numpy(), None))


def test_errors(served):
    url, m = served
    with pytest.raises(ValueError, match="dtype"):
        et.RowsDataset(url, [1], dtype="f64")
    with pytest.raises(TypeError, match="URL or an embd_client.Client"):
        et.RowsDataset(42, [1])
    ds = et.RowsDataset(url, [ROWS])
    with pytest.raises(EmbdError) as e:
        ds.__getitems__([0])
    assert (e.value.status, e.value.code) == (400, "id_out_of_range")


def test_ids_checked(served):
    """A dataset's ids are 1-D integers, as Client.rows takes them: a 2-D array is refused, not flattened (item i
    would be a row of the flattened array), and so are float ids and ids past int64; a stream's or a sequence
    collate's 2-D batch too."""
    url, m = served
    for ids in (np.zeros((2, 3), np.int64), torch.zeros((0, 2), dtype=torch.int64), [[1, 2]]):
        with pytest.raises(ValueError, match="ids must be 1-D"):
            et.RowsDataset(url, ids)
    with pytest.raises(TypeError, match="ids must be integers, not float"):
        et.RowsDataset(url, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="does not fit in int64"):
        et.RowsDataset(url, np.array([2 ** 63], np.uint64))
    with pytest.raises(ValueError, match="ids must be 1-D"):
        next(iter(et.RowsStream(url, [np.zeros((2, 2), np.int64)])))
    with pytest.raises(ValueError, match="ids must be 1-D"):
        et.SequenceCollate(url)([np.zeros((2, 2), np.int64)])
    ds = et.RowsDataset(url, np.array([4, 3], np.uint32))
    assert same(ds.__getitems__([1, 0]), lookup(m, [3, 4], None))


def test_client_used_before_the_fork(served):
    """A Client (not a URL) that the main process has used, its connection open, given to 2 workers: each makes its
    own connections (no socket shared across the fork), and the batches are exact."""
    url, m = served
    c = Client(url)
    assert same(torch.from_numpy(c.rows([5, 6])), lookup(m, [5, 6], None))
    ids = np.arange(ROWS)
    bs = batches(20, 64, 10)
    ds = et.RowsDataset(c, ids, dtype="f16")
    for b, x in zip(bs, DataLoader(ds, batch_sampler=bs, num_workers=2, collate_fn=et.collate)):
        assert same(x, lookup(m, ids[b], "f16"))
    assert same(torch.from_numpy(c.rows([7])), lookup(m, [7], None))  # the parent's client still works
    c.close()


def test_spawned_workers(served):
    """Workers started with spawn (a fresh interpreter each, the dataset pickled to them): the same exact batches,
    and nothing left mapped."""
    url, m = served
    ids = np.arange(ROWS)
    bs = batches(6, 100, 11)
    dl = DataLoader(et.RowsDataset(url, ids, dtype="bf16"), batch_sampler=bs, num_workers=2, collate_fn=et.collate,
                    multiprocessing_context="spawn")
    for b, x in zip(bs, dl):
        assert same(x, lookup(m, ids[b], "bf16"))
    del dl, x
    gc.collect()
    assert wait_for(lambda: arena_maps() == [])


TOKEN = "t0k3n-for-the-torch-reload-tests-0123"


@pytest.fixture
def reloadable(start, table, tmp_path):
    """The table (A), B (A's rows with column 0 + 0.5: every row differs) and C (another dim: 32), served by a
    daemon with the admin endpoints on; reload(path) switches."""
    path, m = table
    b = m.copy()
    b[:, 0] += 0.5
    c = np.ascontiguousarray(m[:, 32:] * 2)
    np.save(tmp_path / "b.npy", b)
    np.save(tmp_path / "c.npy", c)
    (tmp_path / "token").write_text(TOKEN + "\n")
    d = start(path, "--access-log=false", "--admin.token_file", str(tmp_path / "token"))

    def reload(which):
        p = {"a": path, "b": str(tmp_path / "b.npy"), "c": str(tmp_path / "c.npy")}[which]
        s, _, body = d.request("POST", "/v1/admin/reload?path=" + p, b"", {"Authorization": "Bearer " + TOKEN})
        assert s == 200, body
    return "http://127.0.0.1:%d/" % d.port, {"a": m, "b": b, "c": c}, reload


def test_parts_of_a_batch_from_one_generation(reloadable):
    """parts=2: a reload lands after the first part is read and before the second is: the batch is fetched again
    (whole), never half from each table."""
    url, t, reload = reloadable
    c = Client(url)
    orig = c._post_rows
    first_done = threading.Event()
    reloaded = []

    def post(part_ids, *a):
        if threading.current_thread() is threading.main_thread():
            r = orig(part_ids, *a)
            if not reloaded:
                reload("b")
                reloaded.append(1)
                first_done.set()
            return r
        first_done.wait(10)  # the other part: after the first and the reload
        return orig(part_ids, *a)

    c._post_rows = post
    ds = et.RowsDataset(c, np.arange(ROWS), parts=2)
    got = ds.__getitems__(list(range(600)))
    assert reloaded
    assert same(got, lookup(t["b"], np.arange(600), None))
    c.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_dataset_follows_a_reload_to_another_dim(reloadable, workers):
    """A reload to a table of another dim: the dataset's next batches have the new dim and the new rows (no stale
    shape, no 'out must be ...' ValueError), as do a sequence collate's; and back."""
    url, t, reload = reloadable
    ids = np.arange(ROWS)
    ds = et.RowsDataset(url, ids)
    seq = et.SequenceCollate(url)
    bs = batches(4, 64, 11)
    for which in ("a", "c", "c", "a"):
        reload(which)
        for b, x in zip(bs, DataLoader(ds, batch_sampler=bs, num_workers=workers, collate_fn=et.collate)):
            assert same(x, lookup(t[which], ids[b], None))
        assert same(seq([[3, 4], [5]]).rows[0], lookup(t[which], [3, 4], None))


def test_a_second_loaders_workers_do_not_keep_the_firsts_arenas(served):
    """The main process keeps its running workers' arenas mapped, idle, between batches; a second DataLoader forked
    meanwhile must not inherit those mappings, or its (persistent) workers would keep the first loader's memory
    alive after the first loader ends."""
    url, m = served
    ids = np.arange(ROWS)
    first = DataLoader(et.RowsDataset(url, ids), batch_size=64, num_workers=2, persistent_workers=True,
                       collate_fn=et.collate)
    for k, x in enumerate(first):  # a whole epoch: no batch left in the iterator's reorder buffer
        assert same(x, lookup(m, ids[64 * k:64 * (k + 1)], None))
    it = first._iterator
    del x
    gc.collect()
    inodes = {line.split()[4] for line in arena_maps()}
    assert inodes  # the first loader's arenas, mapped idle in this process
    second = DataLoader(et.RowsDataset(url, ids), batch_size=32, num_workers=2, persistent_workers=True,
                        collate_fn=et.collate)
    it2 = iter(second)
    x = next(it2)
    assert same(x, lookup(m, ids[:32], None))
    for w in it2._workers:
        assert not inodes & {line.split()[4] for line in arena_maps(w.pid)}, w.pid
    del it, first, x
    gc.collect()
    assert wait_for(lambda: not inodes & {line.split()[4] for line in arena_maps()})
    del it2, second
    gc.collect()
