"""The PyTorch loader row of `make bench` (`bench.py --only loader`): rows/s delivered to a training loop by
DataLoader(num_workers=2) through embd (f32 and f16 on the wire) against nn.Embedding.from_pretrained lookups in the
training process itself, on the same batches; the client's CPU per batch and where it goes; RSS per worker; the plain
client on one thread; and the machine's limits for the same bytes (loopback stream, memcpy, gather).

Each measurement runs in a fresh interpreter (a child process: its RSS is its own), in interleaved rounds."""
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLIENTS = os.path.join(ROOT, "clients", "python")

# (name, matrix path key, rows, dim, batch size, batches per epoch)
TABLES = [("768", "npy", 200_000, 768, 4096, 40), ("100", "sim", 400_000, 100, 1024, 200)]
# (config, mode, wire dtype)
CONFIGS = [("inproc", "inproc", None), ("inproc_out", "inproc_out", None), ("inproc_w2", "inproc_workers", None),
           ("embd_f32", "embd", None), ("embd_f16", "embd", "f16"),
           ("embd_f32_unix", "embd_unix", None), ("embd_f16_unix", "embd_unix", "f16")]
EPOCHS = 3  # the first warms (workers start, arenas fill); rows/s is the median of the others

CHILD = r"""
import json, os, sys, time
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["clients"])
import numpy as np, torch
from torch.utils.data import DataLoader, Dataset

def rss(pid="self"):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

def pss(pid="self"):
    with open("/proc/%s/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024

def cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")

def step(x):
    # What the training loop does with a batch, the same in every configuration: read every value once (a sum in
    # float32), so that rows/s compares loops that use their rows, not an in-process gather against rows never read.
    return float(x.sum(dtype=torch.float32))

rng = np.random.default_rng(cfg["seed"])
batches = [rng.integers(0, cfg["rows"], cfg["batch"]) for _ in range(cfg["n"])]
mode = cfg["mode"]
if mode in ("inproc", "inproc_out", "inproc_workers"):
    emb = torch.nn.Embedding.from_pretrained(torch.from_numpy(np.load(cfg["npy"])))
    emb.requires_grad_(False)
if mode == "inproc":
    tb = [torch.from_numpy(b) for b in batches]
    def epoch():
        n = 0
        for ids in tb:
            x = emb(ids)
            step(x)
            n += x.shape[0]
        return n
    workers = []
elif mode == "inproc_out":  # the same lookup into one reused tensor: no fresh memory per batch (its best case)
    tb = [torch.from_numpy(b) for b in batches]
    buf = torch.empty(cfg["batch"], emb.weight.shape[1])
    def epoch():
        n = 0
        for ids in tb:
            x = torch.index_select(emb.weight, 0, ids, out=buf)
            step(x)
            n += x.shape[0]
        return n
    workers = []
else:
    if mode == "inproc_workers":
        class DS(Dataset):  # the rows looked up in each worker (fork: the matrix shared copy-on-write)
            def __len__(self):
                return cfg["rows"]
            def __getitems__(self, idx):
                return emb(torch.as_tensor(idx))
        ds, collate = DS(), (lambda b: b)
    else:
        import embd_client.torch as et
        ds, collate = et.RowsDataset(cfg["url"], np.arange(cfg["rows"]), dtype=cfg["dtype"], parts=cfg["parts"]), \
            et.collate
    dl = DataLoader(ds, batch_sampler=[b.tolist() for b in batches], num_workers=2, persistent_workers=True,
                    collate_fn=collate)
    def epoch():
        n = 0
        for x in dl:
            step(x)
            n += x.shape[0]
        return n
    workers = None
rates, cpu0 = [], None
for e in range(cfg["epochs"]):
    if e == 1:
        cpu0 = os.times()
        if workers is None:
            workers = [w.pid for w in dl._iterator._workers]
        wcpu0 = [cpu(p) for p in workers]
    t = time.perf_counter()
    n = epoch()
    rates.append(n / (time.perf_counter() - t))
cpu1 = os.times()
out = {"rates": rates[1:], "main_cpu_per_batch_ms": ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) * 1e3
       / ((cfg["epochs"] - 1) * cfg["n"]),
       "main_rss": rss(), "worker_rss": [rss(p) for p in workers], "main_pss": pss(),
       "worker_pss": [pss(p) for p in workers],
       "worker_cpu_per_batch_ms": sum(cpu(p) - c for p, c in zip(workers, wcpu0)) * 1e3
       / ((cfg["epochs"] - 1) * cfg["n"]) if workers else 0.0}
print(json.dumps(out), flush=True)
"""

# The plain client, one thread: batches of n random ids, each timed in three parts: the request written, the
# answer's head arrived (the server's gather), the body read into the array (the wire and the copy).
CLIENT_CHILD = r"""
import json, os, sys, time
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["clients"])
import numpy as np
from embd_client import Client
f = Client(cfg["url"])
rng = np.random.default_rng(cfg["seed"])
out = {}
for n in cfg["sizes"]:
    buf = np.empty((n, cfg["dim"]), np.float32)
    reps = max(3, min(60, 2_000_000 // n))
    f.rows(rng.integers(0, cfg["rows"], n), raw=True, out=buf)  # warm
    ts = []
    c0 = os.times()
    t0 = time.perf_counter()
    for _ in range(reps):
        f.rows(rng.integers(0, cfg["rows"], n), raw=True, out=buf)
    wall = time.perf_counter() - t0
    c1 = os.times()
    out[str(n)] = {"rows_per_s": n * reps / wall, "cpu_per_batch_ms": ((c1.user + c1.system) - (c0.user + c0.system))
                   * 1e3 / reps, "ms_per_batch": wall * 1e3 / reps, "reps": reps}
# Where a 4,096-row batch's time goes, on one connection (no parts): request written, head arrived, body read.
import http.client
c = http.client.HTTPConnection("127.0.0.1", int(cfg["url"].rsplit(":", 1)[1].strip("/")))
buf = np.empty((4096, cfg["dim"]), np.float32)
mv = memoryview(buf).cast("B")
parts = {"request_ms": [], "head_ms": [], "body_ms": []}
for _ in range(30):
    body = rng.integers(0, cfg["rows"], 4096).astype("<i8").tobytes()
    t0 = time.perf_counter()
    c.request("POST", "/v1/rows?format=bin&id_dtype=int64", body, {"Content-Type": "application/octet-stream"})
    t1 = time.perf_counter()
    r = c.getresponse()
    t2 = time.perf_counter()
    got = 0
    while got < len(mv):
        got += r.readinto(mv[got:])
    t3 = time.perf_counter()
    parts["request_ms"].append((t1 - t0) * 1e3)
    parts["head_ms"].append((t2 - t1) * 1e3)
    parts["body_ms"].append((t3 - t2) * 1e3)
out["split_4096"] = {k: sorted(v)[len(v) // 2] for k, v in parts.items()}
print(json.dumps(out), flush=True)
"""

# The machine's limits for the same bytes: one loopback TCP stream (a sender process, the receiver recv_into a
# reused buffer), memcpy between two reused buffers, NumPy's gather of random rows into a reused buffer.
LIMITS_CHILD = r"""
import json, os, socket, sys, time
import numpy as np
cfg = json.loads(sys.argv[1])
nbytes = cfg["bytes"]
out = {}
src = np.ones(nbytes, np.uint8)
dst = np.empty(nbytes, np.uint8)
ts = []
for _ in range(20):
    t = time.perf_counter(); np.copyto(dst, src); ts.append(time.perf_counter() - t)
out["memcpy_GBps"] = nbytes / sorted(ts)[10] / 1e9
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
reps = 40
pid = os.fork()
if pid == 0:
    s = socket.create_connection(ls.getsockname())
    data = bytes(nbytes)
    for _ in range(reps):
        s.sendall(data)
    s.close()
    os._exit(0)
conn, _ = ls.accept()
mv = memoryview(dst)
t = None
for i in range(reps):
    got = 0
    while got < nbytes:
        got += conn.recv_into(mv[got:])
    if i == 0:
        t = time.perf_counter()
out["loopback_GBps"] = nbytes * (reps - 1) / (time.perf_counter() - t) / 1e9
os.waitpid(pid, 0)
M = np.load(cfg["npy"])  # in memory, as the in-process lookup has it (a fresh mapping would time its page faults)
rows = M.shape[0]
buf = np.empty((cfg["batch"], M.shape[1]), np.float32)
rng = np.random.default_rng(1)
np.take(M, rng.integers(0, rows, cfg["batch"]), axis=0, out=buf)
ts = []
for _ in range(20):
    ids = rng.integers(0, rows, cfg["batch"])
    t = time.perf_counter(); np.take(M, ids, axis=0, out=buf); ts.append(time.perf_counter() - t)
out["gather_GBps"] = buf.nbytes / sorted(ts)[10] / 1e9
print(json.dumps(out))
"""


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def child(script, cfg, timeout=600):
    p = subprocess.run([sys.executable, "-c", script, json.dumps(cfg)], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("loader bench child failed (%s): %s" % (cfg.get("mode"), p.stderr[-3000:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def server_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def embd_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(paths, start_embd, wait_idle, log, rounds, parts=1):
    """paths: {"npy": the 200k x 768 .npy, "sim": the 400k x 100 .npy}; start_embd(args, log) -> (proc, port)."""
    import signal
    import tempfile
    out = {"tables": {}, "parts": parts, "rounds": rounds}
    for tname, key, rows, dim, batch, nb in TABLES:
        npy = paths[key]
        with open(npy, "rb") as fh:  # page cache warm for both sides
            while fh.read(1 << 24):
                pass
        log_path = os.path.join(tempfile.gettempdir(), "embd-bench-loader-%d.log" % os.getpid())
        sock_dir = tempfile.mkdtemp(prefix="embd-bench-", dir="/tmp")
        sock = os.path.join(sock_dir, "embd.sock")
        p, port = start_embd([npy, "--access-log=false", "--unix", sock], log_path)
        url = "http://127.0.0.1:%d/" % port
        t = out["tables"][tname] = {"rows": rows, "dim": dim, "batch": batch, "batches": nb, "runs": {}}
        try:
            for rnd in range(rounds):
                for cname, mode, dtype in CONFIGS:
                    wait_idle(5.0)
                    cfg = {"clients": CLIENTS, "mode": mode, "url": "unix:" + sock if mode == "embd_unix" else url, "npy": npy, "rows": rows, "batch": batch,
                           "n": nb, "dtype": dtype, "parts": parts, "seed": 100 + rnd, "epochs": EPOCHS}
                    s0 = server_cpu(p.pid)
                    r = child(CHILD, cfg)
                    r["server_cpu_per_batch_ms"] = (server_cpu(p.pid) - s0) * 1e3 / (EPOCHS * nb)
                    t["runs"].setdefault(cname, []).append(r)
                    log("loader %s round %d %-9s %9.0f rows/s (epochs %s) worker CPU %.2f ms/batch, server %.2f, "
                        "main %.2f; RSS main %.0f MB workers %s MB" % (
                            tname, rnd, cname, median(r["rates"]), " ".join("%.0f" % x for x in r["rates"]),
                            r["worker_cpu_per_batch_ms"], r["server_cpu_per_batch_ms"], r["main_cpu_per_batch_ms"],
                            r["main_rss"] / 1e6, "/".join("%.0f" % (x / 1e6) for x in r["worker_rss"])))
            t["embd_rss"] = [embd_rss(p.pid)]
            if tname == "768":
                wait_idle(5.0)
                cfg = {"clients": CLIENTS, "url": url, "rows": rows, "dim": dim, "seed": 7,
                       "sizes": [256, 4096, 65536]}
                s0 = server_cpu(p.pid)
                out["client"] = child(CLIENT_CHILD, cfg)
                log("plain client, one thread:", json.dumps(out["client"]))
                wait_idle(5.0)
                out["limits"] = child(LIMITS_CHILD, {"bytes": batch * dim * 4, "npy": npy, "batch": batch})
                log("limits:", out["limits"])
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)
            if os.path.exists(log_path):
                os.unlink(log_path)
            shutil.rmtree(sock_dir, ignore_errors=True)
        for cname, _, _ in CONFIGS:
            t[cname] = median([median(r["rates"]) for r in t["runs"][cname]])
        t["ratio_out_inproc"] = median([median(a["rates"]) / median(b["rates"])
                                        for a, b in zip(t["runs"]["inproc"], t["runs"]["inproc_out"])])
        for cname in ("inproc_out", "inproc_w2", "embd_f32", "embd_f16", "embd_f32_unix", "embd_f16_unix"):
            t["ratio_" + cname] = median([median(a["rates"]) / median(b["rates"])
                                          for a, b in zip(t["runs"][cname], t["runs"]["inproc"])])
            t["ratio_out_" + cname] = median([median(a["rates"]) / median(b["rates"])
                                              for a, b in zip(t["runs"][cname], t["runs"]["inproc_out"])])
    return out


def section(s, cmd):
    ok = lambda c: "yes" if c else "**no**"  # noqa: E731
    L = ["## PyTorch loader: DataLoader(num_workers=2) through embd vs nn.Embedding in-process\n",
         "Rows/s delivered to the training loop (`for x in loader: ...`, the loop sums each batch, "
         "`x.sum(dtype=torch.float32)`, in every configuration: each row is read once where it is used), %d batches "
         "per epoch, %d epochs per run (the first warms up and is left out), each run in a fresh process, %d "
         "interleaved rounds; the same random batches (one seed per round) for every configuration. "
         "**in-process**: `nn.Embedding.from_pretrained` on the whole matrix loaded in the training process, "
         "`emb(ids)` per batch, a fresh tensor each (as a training loop writes it: the page faults of fresh memory are in "
         "it, and glibc's heap sometimes reuses freed memory and sometimes returns it to the kernel, so its runs are "
         "bimodal); **in-process, reused**: the same rows by `torch.index_select(weight, 0, ids, out=buf)` into one "
         "tensor, no fresh memory (its best case, the stable denominator). **in-process, 2 workers**: the same lookup inside a `DataLoader(num_workers=2)` "
         "(what a loader did before: each batch copied into a fresh shared-memory tensor to reach the main process). "
         "**embd**: `embd_client.torch.RowsDataset` + `collate_fn=embd_client.torch.collate`, "
         "`DataLoader(num_workers=2, persistent_workers=True)`, %d request(s) in flight per worker; each worker reads "
         "the answer straight into a reused slot of a shared-memory arena, the main process gets a view of it. "
         "The f16 rows arrive as torch.float16 (halved on the wire); every ratio is against the float32 in-process "
         "lookup, taken round by round, then its median. The machine has %d cores shared by the loader, the workers "
         "and embd. Alone: `%s`.\n" % (TABLES[0][5], EPOCHS, s["rounds"], s["parts"], os.cpu_count(), cmd)]
    names = {"inproc": "in-process nn.Embedding", "inproc_out": "in-process, into one reused tensor",
             "inproc_w2": "in-process lookup in 2 DataLoader workers",
             "embd_f32": "embd, f32 on the wire (TCP)", "embd_f16": "embd, f16 on the wire (TCP)",
             "embd_f32_unix": "embd, f32, Unix socket (listen.unix)", "embd_f16_unix": "embd, f16, Unix socket"}
    for tname, t in s["tables"].items():
        L += ["### %d x %d float32, batches of %d random ids (%d batches per epoch)\n" % (
            t["rows"], t["dim"], t["batch"], t["batches"]),
            "| loader | rows/s (median) | / in-process | / in-process reused | runs | worker CPU ms/batch | "
            "embd CPU ms/batch | main CPU ms/batch | RSS (PSS) main MB | RSS (PSS) per worker MB |",
            "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        for cname, _, _ in CONFIGS:
            runs = t["runs"][cname]
            ratio = "1" if cname == "inproc" else "%.2fx" % t["ratio_" + cname]
            ratio += " | " + ("1" if cname == "inproc_out" else "%.2fx" % t["ratio_out_" + cname])
            wr = [x for r in runs for x in r["worker_rss"]]
            wp = [x for r in runs for x in r["worker_pss"]]
            L.append("| %s | %.0f | %s | %s | %s | %s | %.2f | %.0f (%.0f) | %s |" % (
                names[cname], t[cname], ratio, " ".join("%.0f" % median(r["rates"]) for r in runs),
                "%.2f" % median([r["worker_cpu_per_batch_ms"] for r in runs]) if wr else "",
                "%.2f" % median([r["server_cpu_per_batch_ms"] for r in runs]) if cname.startswith("embd") else "",
                median([r["main_cpu_per_batch_ms"] for r in runs]), median([r["main_rss"] for r in runs]) / 1e6,
                median([r["main_pss"] for r in runs]) / 1e6,
                "%.0f (%.0f)" % (median(wr) / 1e6, median(wp) / 1e6) if wr else ""))
        L += ["", "RSS counts every page a process maps, shared or not; PSS divides a shared page among the processes "
              "mapping it (the workers' and the main process's torch, the in-process matrix shared copy-on-write with "
              "the forked workers). embd's own RSS (its mapping of the whole matrix, once for every loader): %.0f MB."
              % (median(t.get("embd_rss", [0])) / 1e6), "",
              "| goal | against emb(ids) | met | against the reused tensor | met |",
              "| --- | ---: | :---: | ---: | :---: |",
              "| embd f32 >= 0.5x in-process | %.2fx | %s | %.2fx | %s |" % (
                  t["ratio_embd_f32"], ok(t["ratio_embd_f32"] >= 0.5), t["ratio_out_embd_f32"],
                  ok(t["ratio_out_embd_f32"] >= 0.5)),
              "| embd f16 >= 0.8x in-process | %.2fx | %s | %.2fx | %s |" % (
                  t["ratio_embd_f16"], ok(t["ratio_embd_f16"] >= 0.8), t["ratio_out_embd_f16"],
                  ok(t["ratio_out_embd_f16"] >= 0.8)),
              "| embd f32 over the Unix socket >= 0.5x in-process | %.2fx | %s | %.2fx | %s |" % (
                  t["ratio_embd_f32_unix"], ok(t["ratio_embd_f32_unix"] >= 0.5), t["ratio_out_embd_f32_unix"],
                  ok(t["ratio_out_embd_f32_unix"] >= 0.5)),
              "| embd f16 over the Unix socket >= 0.8x in-process | %.2fx | %s | %.2fx | %s |" % (
                  t["ratio_embd_f16_unix"], ok(t["ratio_embd_f16_unix"] >= 0.8), t["ratio_out_embd_f16_unix"],
                  ok(t["ratio_out_embd_f16_unix"] >= 0.8)),
              ""]
    c = s.get("client")
    if c:
        L += ["### The plain client, one thread (200,000 x 768 float32, f32 on the wire)\n",
              "`embd_client.Client.rows(ids, raw=True, out=buf)` from one thread, rows read straight into a reused "
              "array; random ids (a few repeat: each distinct id is fetched once); a batch past 16 MiB of answer "
              "(65,536 rows) goes in parts, 4 in flight at once (the Client's `part_bytes`, `parallel`).\n",
              "| batch | rows/s | ms per batch | client CPU ms per batch |", "| ---: | ---: | ---: | ---: |"]
        for n in ("256", "4096", "65536"):
            L.append("| %s | %.0f | %.2f | %.2f |" % (n, c[n]["rows_per_s"], c[n]["ms_per_batch"],
                                                    c[n]["cpu_per_batch_ms"]))
        sp = c["split_4096"]
        L += ["", "Where a 4,096-row batch's time goes on one connection (medians of 30): the request written %.2f ms, "
              "its answer's head arrived (the server's gather, sent as it is built) %.2f ms, the body read into the "
              "array (the wire and the copy) %.2f ms.\n" % (sp["request_ms"], sp["head_ms"], sp["body_ms"])]
    lim = s.get("limits")
    if lim:
        L += ["Limits for the same bytes (a 4,096 x 768 float32 batch, 12.6 MB): one loopback TCP stream %.2f GB/s "
              "(%.2f ms a batch), memcpy %.2f GB/s (%.2f ms), NumPy np.take of random rows (the matrix in memory) "
              "%.2f GB/s (%.2f ms).\n" % (
                  lim["loopback_GBps"], 12.58e6 / lim["loopback_GBps"] / 1e6, lim["memcpy_GBps"],
                  12.58e6 / lim["memcpy_GBps"] / 1e6, lim["gather_GBps"], 12.58e6 / lim["gather_GBps"] / 1e6)]
    return "\n".join(L) + "\n"


def plot(s, out_dir):
    import shutil
    import tempfile
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "l.dat"), "w") as f:
        f.write("# config 768 100\n")
        for cname, _, _ in CONFIGS:
            f.write("%s %f %f\n" % (cname, s["tables"]["768"][cname] / 1e6, s["tables"]["100"][cname] / 1e6))
    script = """
set terminal pngcairo size 900,500 noenhanced
set output '%(out)s/loader.png'
set title 'Rows/s delivered to the training loop (2 cores shared by loader, workers and embd)'
set style data histograms
set style histogram cluster gap 1
set style fill solid border -1
set ylabel 'million rows/s (log scale)'
set logscale y
set key top right
plot '%(d)s/l.dat' using 2:xtic(1) title '200k x 768, batches of 4096', '' using 3 title '400k x 100, batches of 1024'
""" % {"out": out_dir, "d": d}
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    shutil.rmtree(d, ignore_errors=True)
