#!/usr/bin/python3
"""make bench: embd side by side with nginx (Range requests), a Flask/NumPy server under gunicorn, and gensim.

Makes its data, starts every server on a free loopback port (embd on port 0, its real port read from its start-up
line; each peer on a port found free just before it starts), runs each workload against each peer with the same wrk
settings in interleaved rounds, stops what it started, and writes RESULTS.md, raw JSON and plots into the output
directory: OUT (default build/bench), or loadtest/results, the committed results, with SAVE=1.
QUICK=1 runs a short version (a few minutes). Only 127.0.0.1 is ever a target; every loop is bounded.
`bench.py --only rows` runs the throughput and latency rows alone (WORKLOADS=gather_256,gather_4096 picks some,
PEERS=embd leaves the other servers out);
`bench.py --only convert` runs the convert row alone (embd convert vs gensim on the 400k x 100 GloVe text) and
updates its section of RESULTS.md (the output directory's; a copy of the committed one if it has none); `bench.py --only similar` likewise runs the nearest-neighbours row (embd
/v1/similar vs gensim most_similar on the 400k x 100 GloVe-sized matrix).
"""
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")
COMMITTED = os.path.join(HERE, "results")
# Where this run writes: the committed results only when asked (SAVE=1), else OUT or build/bench.
RESULTS = COMMITTED if os.environ.get("SAVE", "") not in ("", "0") else os.path.abspath(
    os.environ.get("OUT") or os.path.join(ROOT, "build", "bench"))
QUICK = os.environ.get("QUICK", "") not in ("", "0")
ROWS, DIM = 200_000, 768
ROW_BYTES = DIM * 4
DUR = 2 if QUICK else 5
ROUNDS = 3 if QUICK else 5
CONNS, THREADS = 32, 2
PEERS = ("embd", "nginx", "flask")
NPY = os.path.join(DATA, "matrix.npy")
RAW = os.path.join(DATA, "matrix.raw")
GLOVE = os.path.join(DATA, "glove-400k-100d-words.txt")
# The daemon under test (EMBD_BIN=... measures another build, e.g. the previous commit's, in the same way).
EMBD_BIN = os.environ.get("EMBD_BIN", os.path.join(ROOT, "embd"))

# name, wrk environment, peers (the first is embd)
WORKLOADS = [
    ("row_bin", {"MODE": "row", "FMT": "bin", "N": "1"}, ["embd", "nginx", "flask"]),
    ("row_json", {"MODE": "row", "FMT": "json", "N": "1"}, ["embd", "flask"]),
    ("slice_256", {"MODE": "slice", "N": "256"}, ["embd", "nginx", "flask"]),
    ("gather_1", {"MODE": "gather", "N": "1"}, ["embd", "flask"]),
    ("gather_16", {"MODE": "gather", "N": "16"}, ["embd", "flask"]),
    ("gather_256", {"MODE": "gather", "N": "256"}, ["embd", "flask"]),
    ("gather_4096", {"MODE": "gather", "N": "4096"}, ["embd", "flask"]),
    # Half precision on the wire (embd converts; issue 17): beside gather_4096 and slice_4096, their f32 twins.
    ("gather_4096_f16", {"MODE": "gather", "N": "4096", "DTYPE": "f16"}, ["embd"]),
    ("gather_4096_bf16", {"MODE": "gather", "N": "4096", "DTYPE": "bf16"}, ["embd"]),
    ("slice_4096", {"MODE": "slice", "N": "4096"}, ["embd"]),
    ("slice_4096_f16", {"MODE": "slice", "N": "4096", "DTYPE": "f16"}, ["embd"]),
]
# The half-precision table: (label, workload, its f32 twin, the least req/s ratio to the twin that meets the goal,
# the goal in words). A gather as f16 or bf16 sends half the bytes, so it must beat f32; a slice as f16 is converted
# where f32 goes out zero-copy, so it may cost up to 1.2 x f32's time.
HALF = [
    ("gather 4,096 as f32", "gather_4096", "gather_4096", None, ""),
    ("gather 4,096 as f16", "gather_4096_f16", "gather_4096", 1.0, "faster than f32 (> 1.00)"),
    ("gather 4,096 as bf16", "gather_4096_bf16", "gather_4096", 1.0, "faster than f32 (> 1.00)"),
    ("slice 4,096 as f32", "slice_4096", "slice_4096", None, ""),
    ("slice 4,096 as f16", "slice_4096_f16", "slice_4096", 1 / 1.2, "time within 1.2 x f32's (>= 0.833)"),
]


T0 = time.time()


def log(*a):
    print("bench: [%5.1f s]" % (time.time() - T0), *a, file=sys.stderr, flush=True)


def ensure_data():
    ensure_matrix()
    if not QUICK:
        ensure_glove()


def ensure_matrix():
    os.makedirs(DATA, exist_ok=True)
    if not (os.path.exists(NPY) and os.path.exists(RAW)):
        log("making the %d x %d float32 matrix (seeded), .npy and raw" % (ROWS, DIM))
        subprocess.run([sys.executable, os.path.join(HERE, "make_matrix.py"), NPY, str(ROWS), str(DIM), RAW],
                       check=True)


def glove_words(rng, n):
    """n distinct real-looking words: syllables, some capitalised, some with accents or in other scripts, a few
    punctuation and number tokens, as a GloVe vocabulary has."""
    syll = ("the an in re de ing er on at en es or ti te al st ar le se ra ve co ma li ne ro lo ca di mi "
            "pro con ter pa ta ri mo na la ba ge sh ch th qu wh ly ment tion ous ic ist").split()
    exotic = ["é", "ü", "ñ", "ø", "ç", "ß", "ł", "ő", "日本", "語", "москва", "ελ", "ا", "한"]
    out, seen = [], set()
    while len(out) < n:
        r = rng.random()
        if r < 0.02:
            w = str(int(rng.integers(0, 10 ** int(rng.integers(1, 7)))))
        elif r < 0.03:
            w = "".join(rng.choice(list(".,;:!?-'\"()&$%#@")) for _ in range(int(rng.integers(1, 4))))
        else:
            w = "".join(rng.choice(syll) for _ in range(int(rng.integers(1, 5))))
            if r < 0.08:
                k = int(rng.integers(0, len(w) + 1))
                w = w[:k] + exotic[int(rng.integers(0, len(exotic)))] + w[k:]
            elif r < 0.15:
                w = w.capitalize()
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def ensure_glove():
    """The 400,000 x 100 GloVe text of the convert row (and gensim's start-up figure): made once, seeded, cached in
    loadtest/data. Floats as GloVe writes them: about 6 significant digits, 'e' notation for the small ones."""
    if os.path.exists(GLOVE):
        return
    log("making a GloVe-like 400000 x 100 text file (once; cached in loadtest/data)")
    import numpy as np
    os.makedirs(DATA, exist_ok=True)
    rng = np.random.default_rng(400)
    words = glove_words(rng, 400_000)
    fmt = " ".join(["%.6g"] * 100)
    with open(GLOVE + ".tmp", "w", encoding="utf-8") as f:
        for a in range(0, 400_000, 20_000):
            block = (rng.standard_normal((20_000, 100)) * 0.4).astype(np.float32).tolist()
            f.writelines("%s %s\n" % (words[a + i], fmt % tuple(row)) for i, row in enumerate(block))
    os.rename(GLOVE + ".tmp", GLOVE)


def wait_port(port, proc, timeout=30):
    """Until the server on port answers: embd listens before its table has loaded and answers 503 meanwhile, so
    a connection alone is not enough (a peer answers /healthz 404, or 200: either means it serves)."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("server on port %d exited with %d" % (port, proc.returncode))
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1) as r:
                r.read()
            return
        except urllib.error.HTTPError as e:
            if e.code != 503:
                return
            time.sleep(0.01)
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("nothing listens on port %d" % port)


def free_port():
    """A loopback port that nothing listens on now (the kernel's pick), for a peer started right after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embd_port(proc, log_path, timeout=60):
    """The port an `embd serve --port 0` listens on: from its first line, logged at the bind (`... listening on
    http://127.0.0.1:PORT/, loading FILE`); start_embd then waits for /healthz to answer other than 503."""
    end = time.time() + timeout
    while time.time() < end:
        with open(log_path, errors="replace") as f:
            m = re.search(r"on http://127\.0\.0\.1:(\d+)/", f.read())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise RuntimeError("embd exited with %d: %s" % (proc.returncode, open(log_path).read()[-2000:]))
        time.sleep(0.002)
    raise RuntimeError("embd printed no start-up line in %d s" % timeout)


def start_embd(args, log_path, env=None):
    """`embd serve --port 0 ARGS` in a session of its own, its log in log_path: (process, port), once it listens."""
    log_file = open(log_path, "w")
    p = subprocess.Popen([EMBD_BIN, "serve", "--port", "0"] + args, env=env,
                         stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True)
    log_file.close()
    try:
        port = embd_port(p, log_path)
        wait_port(port, p)
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise
    return p, port


class Servers:
    def __init__(self):
        self.procs = {}
        self.ports = {}
        self.run = tempfile.mkdtemp(prefix="embd-bench-")

    def start(self, name):
        if name == "embd":
            p, self.ports[name] = start_embd([NPY, "--access-log=false"], os.path.join(self.run, "embd.log"))
            self.procs[name] = p
            return p
        port = self.ports[name] = free_port()
        if name == "nginx":
            conf = open(os.path.join(HERE, "peers", "nginx.conf.in")).read()
            conf = conf.replace("@RUN@", self.run).replace("@PORT@", str(port)).replace("@DATA@", DATA)
            path = os.path.join(self.run, "nginx.conf")
            open(path, "w").write(conf)
            cmd = ["nginx", "-c", path, "-p", self.run, "-g", "daemon off;"]
            env = None
        else:
            cmd = ["gunicorn", "-k", "gthread", "-w", "2", "--threads", "4", "-b", "127.0.0.1:%d" % port,
                   "--chdir", os.path.join(HERE, "peers"), "--log-level", "warning", "flask_app:app"]
            env = dict(os.environ, MATRIX=NPY)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.run, name + ".log"), "w"),
                             start_new_session=True)
        self.procs[name] = p
        wait_port(port, p)
        return p

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)
        shutil.rmtree(self.run, ignore_errors=True)


def cpu_busy_fraction(window=0.1):
    """The fraction of the machine's CPU time spent busy over the next window seconds (/proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(window)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_idle(limit_s=15.0, busy=0.10):
    """Wait until the previous run's server has finished its backlog: a peer still answering requests that wrk
    gave up on (Flask's 4096-row gathers take a second each) would otherwise steal the next run's CPU and show
    up as that run's tail latency."""
    end = time.time() + limit_s
    while time.time() < end and cpu_busy_fraction() > busy:
        pass


def run_wrk(port, env, duration, conns, threads=THREADS):
    """One wrk run of bench.lua (set by env) against the port: its RESULT line as figures."""
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--timeout", "10s",
           "-s", os.path.join(HERE, "bench.lua"), "http://127.0.0.1:%d" % port]
    out = subprocess.run(cmd, env=dict(os.environ, **env), capture_output=True, text=True,
                         timeout=duration + 60).stdout
    m = re.search(r"RESULT duration_us=(\d+) requests=(\d+) bytes=(\d+) errors_status=(\d+) errors_other=(\d+) "
                  r"p50_us=(\d+) p99_us=(\d+) max_us=(\d+)", out)
    if not m:
        raise RuntimeError("wrk printed no result:\n" + out)
    d_us, reqs, nbytes, est, eoth, p50, p99, mx = map(int, m.groups())
    secs = d_us / 1e6
    return {"rps": reqs / secs, "MBps": nbytes / secs / 1e6, "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "max_ms": mx / 1000, "errors": est + eoth, "requests": reqs}


def wrk(port, peer, env, duration=DUR, conns=CONNS):
    wait_idle()
    return run_wrk(port, dict(PEER=peer, ROWS=str(ROWS), DIM=str(DIM), SEED="7", **env), duration, conns)


def first_response_s(start_cmd, path, port=None, env=None):
    """Seconds from exec to the first successful answer of path: on port (a free port the command was given), or,
    without one, on the port an `embd serve --port 0` command names in its start-up line."""
    log_path = os.path.join(tempfile.gettempdir(), "embd-bench-first-%d.log" % os.getpid())
    log_file = open(log_path, "w")
    t0 = time.perf_counter()
    p = subprocess.Popen(start_cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True)
    log_file.close()
    try:
        if port is None:
            port = embd_port(p, log_path)
        url = "http://127.0.0.1:%d%s" % (port, path)
        end = time.time() + 60
        while time.time() < end:
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    r.read()
                    return time.perf_counter() - t0
            except OSError:
                time.sleep(0.001)
        raise RuntimeError("no answer from " + url)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait()
        os.unlink(log_path)


def startup():
    out = {}
    embd = [os.path.join(ROOT, "embd"), "serve", NPY, "--port", "0", "--access-log=false"]
    out["embd"] = statistics.median(first_response_s(embd, "/v1/rows/0") for _ in range(5))
    flask = []
    for _ in range(3):
        port = free_port()
        gun = ["gunicorn", "-k", "gthread", "-w", "2", "-b", "127.0.0.1:%d" % port, "--chdir",
               os.path.join(HERE, "peers"), "flask_app:app"]
        flask.append(first_response_s(gun, "/rows/0", port, env=dict(os.environ, MATRIX=NPY)))
    out["flask"] = statistics.median(flask)
    code = ("import time, numpy as np; from gensim.models import KeyedVectors; t=time.perf_counter(); "
            "E=np.load(%r, mmap_mode='r'); kv=KeyedVectors(%d); kv.add_vectors([str(i) for i in range(%d)], E); "
            "kv[ '0' ]; print(time.perf_counter()-t)" % (NPY, DIM, ROWS))
    out["gensim_npy"] = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                             timeout=600).stdout.strip())
    if os.path.exists(GLOVE) and not QUICK:
        code = ("import time; from gensim.models import KeyedVectors; t=time.perf_counter(); "
                "kv=KeyedVectors.load_word2vec_format(%r, binary=False, no_header=True); kv[kv.index_to_key[0]]; "
                "print(time.perf_counter()-t)" % GLOVE)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise RuntimeError("gensim start-up on the GloVe text failed: " + p.stderr[-2000:])
        out["gensim_glove_text"] = float(p.stdout.strip())
    return out


def convert_bench(rounds=3, gensim_rounds=2):
    """embd convert of the GloVe text vs gensim's load_word2vec_format(no_header=True), interleaved, same run:
    wall seconds of each (embd: exec to exit, files synced and renamed; gensim: the call, in its own process)."""
    ensure_glove()
    with open(GLOVE, "rb") as fh:  # both start from a warm page cache
        while fh.read(1 << 24):
            pass
    out_dir = tempfile.mkdtemp(dir=DATA)
    embd, gensim = [], []
    code = ("import time; from gensim.models import KeyedVectors; t=time.perf_counter(); "
            "kv=KeyedVectors.load_word2vec_format(%r, binary=False, no_header=True); "
            "print(time.perf_counter()-t, kv.vectors.shape)" % GLOVE)
    with open(GLOVE, "rb") as fh:
        first_word = fh.readline().split(b" ")[0].decode()
    serve = {}
    try:
        for i in range(rounds):
            wait_idle(5.0)
            t = time.perf_counter()
            subprocess.run([os.path.join(ROOT, "embd"), "convert", GLOVE, "-o", os.path.join(out_dir, "g.npy"),
                            "--quiet"], check=True, timeout=600)
            embd.append(time.perf_counter() - t)
            log("convert round %d: embd convert %.2f s" % (i, embd[-1]))
            if i < gensim_rounds:
                wait_idle(5.0)
                res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                                     check=True).stdout.split()
                gensim.append(float(res[0]))
                log("convert round %d: gensim load_word2vec_format %.2f s" % (i, gensim[-1]))
        size = os.path.getsize(GLOVE)
        serve = serve_converted(os.path.join(out_dir, "g.npy"), os.path.join(out_dir, "g.vocab"), first_word)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return {"embd_s": embd, "gensim_s": gensim, "ratio": median(embd) / median(gensim), "bytes": size,
            "serve": serve}


def serve_converted(npy, vocab, word, rounds=5):
    """Exec to the first by-token answer of `embd serve` on the converted pair (an mmap and a vocabulary), and
    of `embd serve` on the GloVe text itself (a parse), with the parse time the daemon reports in /v1/info."""
    path = "/v1/rows?tokens=%s" % urllib.parse.quote(word)
    base = [os.path.join(ROOT, "embd"), "serve", "--port", "0", "--access-log=false"]
    pair = []
    for _ in range(rounds):
        wait_idle(5.0)
        pair.append(first_response_s(base + [npy, "--vocab", vocab], path))
    log("serve the converted pair: first token answer %s s" % " ".join("%.3f" % x for x in pair))
    text, parse_ms = [], []
    for _ in range(3):
        wait_idle(5.0)
        text.append(first_response_s(base + [GLOVE], path))
        log_path = os.path.join(tempfile.gettempdir(), "embd-bench-glove-%d.log" % os.getpid())
        p, port = start_embd([GLOVE, "--access-log=false"], log_path)
        try:
            parse_ms.append(json.loads(Client(port).call("GET", "/v1/info", ready_s=120))["load_ms"])
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
            os.unlink(log_path)
    log("serve the GloVe text: first token answer %s s, parse %s ms" % (
        " ".join("%.3f" % x for x in text), " ".join("%.0f" % x for x in parse_ms)))
    return {"pair_s": pair, "text_s": text, "text_parse_ms": parse_ms}


def convert_section(c):
    cmd = "python3 loadtest/bench.py --only convert"
    L = ["## embd convert vs gensim\n",
         "`embd convert` of a seeded 400,000 x 100 GloVe text (%.0f MB; random real-looking words, ~6 significant "
         "digits) to the .npy + vocabulary pair (written, synced, renamed into place), against gensim %s's "
         "`KeyedVectors.load_word2vec_format(path, no_header=True)` reading the same file; page cache warm, "
         "interleaved in the same run. Alone: `%s`.\n" % (c["bytes"] / 1e6, gensim_version(), cmd),
         "| what | seconds (median) | runs |", "| --- | ---: | --- |",
         "| embd convert | %.2f | %s |" % (median(c["embd_s"]), " ".join("%.2f" % x for x in c["embd_s"])),
         "| gensim load_word2vec_format | %.2f | %s |" % (median(c["gensim_s"]), " ".join(
             "%.2f" % x for x in c["gensim_s"])),
         "| ratio embd / gensim (target <= 0.15) | %.3f | %s |" % (c["ratio"], "met" if c["ratio"] <= 0.15 else
                                                                    "**not met**"),
         ""]
    sv = c.get("serve")
    if sv:
        L += ["Then `embd serve g.npy --vocab g.vocab` (the converted pair: an mmap and a vocabulary) and `embd serve` "
              "of the GloVe text itself (parsed at start), exec to the first answer of `/v1/rows?tokens=<first "
              "word>`:\n",
              "| what | seconds (median) | runs |", "| --- | ---: | --- |",
              "| converted pair, first token answer (target <= 0.1 s) | %.3f | %s |" % (
                  median(sv["pair_s"]), " ".join("%.3f" % x for x in sv["pair_s"])),
              "| GloVe text served directly, first token answer | %.2f | %s |" % (
                  median(sv["text_s"]), " ".join("%.2f" % x for x in sv["text_s"])),
              "| of which the parse, as /v1/info's load_ms reports it | %.2f | %s |" % (
                  median(sv["text_parse_ms"]) / 1e3, " ".join("%.2f" % (x / 1e3) for x in sv["text_parse_ms"])),
              ""]
    return "\n".join(L)


def gensim_version():
    try:
        return subprocess.run([sys.executable, "-c", "import gensim; print(gensim.__version__)"], capture_output=True,
                              text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def splice_convert(section):
    """Put the convert section into RESULTS.md in place of the one there (or before the physical limits)."""
    text, path = results_text()
    text = text.replace("\n`embd convert` (text formats to .npy) does not exist yet, so there is no embd figure for "
                        "the GloVe text.\n", "\n")
    m = re.search(r"## embd convert vs gensim\n.*?(?=\n## |\Z)", text, re.S)
    if m:
        text = text[:m.start()] + section.rstrip("\n") + "\n" + text[m.end():]
    elif "## Physical limits" in text:
        text = text.replace("## Physical limits", section + "\n## Physical limits", 1)
    else:
        text += "\n" + section
    open(path, "w").write(text)


def limits():
    exe = os.path.join(tempfile.gettempdir(), "embd-limits")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "limits.c"), "-lpthread"], check=True)
    out = subprocess.run([exe, NPY, "128", str(ROW_BYTES)], capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (line.split() for line in out.splitlines())}


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    return {k: float(v) for k, v in re.findall(r"^(\w+) ([0-9.e+]+)$", text, re.M)}


def soak(servers, seconds):
    """Mixed load from many connections; RSS and in-flight accounted bytes sampled every 0.5 s."""
    port = servers.ports["embd"]
    procs = []
    for env, c in (({"MODE": "row", "FMT": "json", "N": "1"}, 24), ({"MODE": "gather", "N": "256"}, 24),
                   ({"MODE": "slice", "N": "256"}, 16), ({"MODE": "gather", "N": "4096"}, 4)):
        e = dict(os.environ, PEER="embd", ROWS=str(ROWS), DIM=str(DIM), SEED="11", **env)
        procs.append(subprocess.Popen(["wrk", "-t1", "-c%d" % c, "-d%ds" % seconds, "-s",
                                       os.path.join(HERE, "bench.lua"), "http://127.0.0.1:%d" % port],
                                      env=e, stdout=subprocess.PIPE, text=True))
    samples = []
    t0 = time.time()
    while any(p.poll() is None for p in procs) and time.time() - t0 < seconds + 30:
        m = metrics(port)
        samples.append((time.time() - t0, m["process_resident_memory_bytes"], m["embd_inflight_accounted_bytes"]))
        time.sleep(0.5)
    requests = 0
    for p in procs:
        out = p.communicate()[0]
        requests += int(re.search(r"requests=(\d+)", out).group(1))
    time.sleep(0.5)
    m = metrics(port)
    samples.append((time.time() - t0, m["process_resident_memory_bytes"], m["embd_inflight_accounted_bytes"]))
    return samples, requests, m


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def rows_bench(servers, workloads):
    """Every workload against each of its peers, ROUNDS interleaved rounds: the wrk figures of each run."""
    for name in PEERS:
        if any(name in peers for _, _, peers in workloads):
            servers.start(name)
    runs = []
    for rnd in range(ROUNDS):
        for wname, env, peers in workloads:
            for peer in peers:
                r = wrk(servers.ports[peer], peer, env)
                r.update(round=rnd, workload=wname, peer=peer)
                runs.append(r)
                log("round %d %-12s %-6s %9.0f req/s %8.1f MB/s p50 %.2f ms p99 %.2f ms max %.2f ms errors %d" % (
                    rnd, wname, peer, r["rps"], r["MBps"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["errors"]))
    return runs


def chosen_workloads():
    """WORKLOADS=gather_256,gather_4096 (environment): those rows only; all of them without it."""
    names = [w for w in os.environ.get("WORKLOADS", "").split(",") if w]
    unknown = set(names) - {w[0] for w in WORKLOADS}
    if unknown:
        sys.exit("bench: no workload %s (there are %s)" % (", ".join(sorted(unknown)),
                                                           ", ".join(w[0] for w in WORKLOADS)))
    # PEERS=embd (environment): those peers only, e.g. gather_4096 without Flask for the half-precision table.
    peers = [p for p in os.environ.get("PEERS", "").split(",") if p]
    out = []
    for name, env, ps in WORKLOADS:
        ps = [p for p in ps if not peers or p in peers]
        if (not names or name in names) and ps:
            out.append((name, env, ps))
    return out


def only_rows():
    """`bench.py --only rows`: the throughput and latency rows alone (WORKLOADS picks some)."""
    os.makedirs(RESULTS, exist_ok=True)
    ensure_matrix()
    for f in (NPY, RAW):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    workloads = chosen_workloads()
    servers = Servers()
    try:
        runs = rows_bench(servers, workloads)
    finally:
        servers.stop_all()
    json.dump({"runs": runs, "quick": QUICK}, open(os.path.join(RESULTS, "rows.json"), "w"), indent=1)
    section = rows_section(runs, workloads, "`make bench ONLY=rows%s%s%s` on %s UTC" % (
        " QUICK=1" if QUICK else "", " WORKLOADS=" + os.environ["WORKLOADS"] if os.environ.get("WORKLOADS") else "",
        " PEERS=" + os.environ["PEERS"] if os.environ.get("PEERS") else "", time.strftime("%Y-%m-%d %H:%M")))
    splice_section("Throughput and latency", section)
    ratios = ratios_section(runs, workloads)  # the runs' own, not the committed page's
    splice_section("Ratios (embd / peer, run by run)", ratios)
    print(section)
    print(ratios)
    half = half_section(runs, workloads)
    if half:
        splice_section("Half precision on the wire", half)
        print(half)
    log("updated", os.path.join(RESULTS, "RESULTS.md"))


def main():
    os.makedirs(RESULTS, exist_ok=True)
    t_start = time.time()
    ensure_data()
    log("page cache: reading the matrix once so every server starts warm")
    for f in (NPY, RAW):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    servers = Servers()
    try:
        runs = rows_bench(servers, WORKLOADS)
        servers.stop("nginx")
        servers.stop("flask")
        lim = limits()
        log("limits", lim)
        soak_s = 15 if QUICK else 60
        samples, soak_requests, soak_end = soak(servers, soak_s)
        servers.stop("embd")
        log("start-up")
        start = startup()
        conv = None if QUICK else convert_bench()
        sim = None if QUICK else similar_bench()
        iso = isolation_bench()
        loader = loader_bench()
    finally:
        servers.stop_all()
    report(runs, lim, start, samples, soak_requests, soak_end, time.time() - t_start, conv, sim, iso, loader)


def rows_section(runs, workloads, made_by=None):
    """The throughput and latency table (medians over rounds), and the gather rows' tails against their targets."""
    L = ["## Throughput and latency\n"]
    if made_by:
        L.append("Made by %s: wrk -t%d -c%d, %d s per run, %d interleaved rounds, medians over rounds.\n" % (
            made_by, THREADS, CONNS, DUR, ROUNDS))
    L.append("| workload | peer | req/s | MB/s | p50 ms | p99 ms | max ms | errors |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    med = lambda w, p, k: median([r[k] for r in runs if r["workload"] == w and r["peer"] == p])  # noqa: E731
    for wname, _, peers in workloads:
        for p in peers:
            L.append("| %s | %s | %.0f | %.1f | %.2f | %.2f | %.2f | %d |" % (
                wname, p, med(wname, p, "rps"), med(wname, p, "MBps"), med(wname, p, "p50_ms"),
                med(wname, p, "p99_ms"), med(wname, p, "max_ms"),
                sum(r["errors"] for r in runs if r["workload"] == wname and r["peer"] == p)))
    # The big gathers: answers of at least limits.large_response_bytes (4 MiB), the ones that take turns.
    tails = [(w, peers) for w, env, peers in workloads
             if env["MODE"] == "gather" and int(env["N"]) * ROW_BYTES >= 4 << 20 and "flask" in peers]
    if tails:
        L.append("\nTails of the big gathers (answers of 4 MiB or more, issue 16): embd's p99 at most 3 x its own "
                 "p50, and below Flask's p99 (medians over rounds).\n")
        L.append("| workload | embd p99 / p50 | embd p99 ms | Flask p99 ms | met |")
        L.append("| --- | ---: | ---: | ---: | :---: |")
        for w, _ in tails:
            p50, p99, fl = med(w, "embd", "p50_ms"), med(w, "embd", "p99_ms"), med(w, "flask", "p99_ms")
            L.append("| %s | %.2f | %.2f | %.2f | %s |" % (w, p99 / p50, p99, fl,
                                                          "yes" if p99 <= 3 * p50 and p99 < fl else "**no**"))
    L.append("")
    return "\n".join(L)


def ratio_stats(runs, w, a, b, key="rps", wb=None):
    """Median over rounds of (a on workload w) / (b on workload wb or w), computed round by round."""
    out = []
    for rnd in range(ROUNDS):
        x = [r[key] for r in runs if r["round"] == rnd and r["workload"] == w and r["peer"] == a]
        y = [r[key] for r in runs if r["round"] == rnd and r["workload"] == (wb or w) and r["peer"] == b]
        if x and y and y[0] > 0:
            out.append(x[0] / y[0])
    return median(out), out


def ratios_section(runs, workloads):
    """The embd / peer ratios of the runs, round by round and their median, as a RESULTS.md section."""
    L = ["## Ratios (embd / peer, run by run)\n", "| workload | vs | median ratio | per round |",
         "| --- | --- | ---: | --- |"]
    for wname, _, peers in workloads:
        for p in peers[1:]:
            med, per = ratio_stats(runs, wname, "embd", p)
            L.append("| %s | %s | %.2f | %s |" % (wname, p, med, " ".join("%.2f" % x for x in per)))
    return "\n".join(L) + "\n"


def half_section(runs, workloads):
    """Gathers and slices of 4,096 rows as f32, f16 and bf16, side by side: embd's req/s and each one's ratio to its
    f32 twin, round by round (the same round's runs, minutes apart at most), and the goals. "" when the runs hold
    none of them."""
    have = {w for w, _, peers in workloads if "embd" in peers}
    rows = [h for h in HALF if h[1] in have and h[2] in have]
    if not any(goal for _, _, _, goal, _ in rows):
        return ""
    med = lambda w, k: median([r[k] for r in runs if r["workload"] == w and r["peer"] == "embd"])  # noqa: E731
    L = ["## Half precision on the wire\n",
         "embd alone, the 200,000 x 768 float32 table, `?dtype=` converting on the server (F16C/AVX2 where the CPU "
         "has them); same wrk settings and rounds as above. Ratio: req/s over the f32 twin's, round by round, then "
         "the median (above 1: faster than f32).\n",
         "| workload | req/s | MB/s | ms per request (p50) | ratio to f32 | per round | goal | met |",
         "| --- | ---: | ---: | ---: | ---: | --- | --- | :---: |"]
    for label, w, twin, goal, words in rows:
        ratio, per = ratio_stats(runs, w, "embd", "embd", wb=twin)
        # "faster" is strictly above 1; "within 1.2 x the time" includes the bound
        ok = goal is not None and (ratio > goal if goal == 1.0 else ratio >= goal)
        met = "" if goal is None else ("yes" if ok else "**no**")
        L.append("| %s | %.0f | %.1f | %.2f | %.2f | %s | %s | %s |" % (
            label, med(w, "rps"), med(w, "MBps"), med(w, "p50_ms"), ratio, " ".join("%.2f" % x for x in per),
            words, met))
    return "\n".join(L) + "\n"


def report(runs, lim, start, samples, soak_requests, soak_end, elapsed, conv=None, sim=None, iso=None, loader=None):
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    raw = {"runs": runs, "limits": lim, "startup": start, "soak": samples, "quick": QUICK, "convert": conv,
           "similar": sim, "isolation": iso, "loader": loader}
    json.dump(raw, open(os.path.join(RESULTS, "raw.json"), "w"), indent=1)
    L = []
    L.append("# embd benchmark results\n")
    L.append("Made by `make bench%s` on %s UTC in %.0f s. Machine: %d cores (%s), %s; wrk (-t%d -c%d, keep-alive, "
             "%d s per run) shares the same cores with the server under test. %d interleaved rounds; every figure "
             "is the median over rounds, every ratio is computed round by round and then its median taken. Before "
             "each run the harness waits (at most 15 s) until the machine is idle, so that a peer still working off "
             "the previous run's backlog does not land in the next run's tail.\n" % (
                 " QUICK=1" if QUICK else "", time.strftime("%Y-%m-%d %H:%M"), elapsed, os.cpu_count(), cpu,
                 platform.platform(), THREADS, CONNS, DUR, ROUNDS))
    L.append("Data: a seeded %d x %d float32 matrix (`loadtest/make_matrix.py`), `.npy` for embd and Flask, the raw "
             "file for nginx. Peers: nginx %s serving the raw file with HTTP Range requests (sendfile); "
             "Flask + NumPy under gunicorn (gthread, 2 workers x 4 threads): `np.load(mmap_mode='r')`, `np.take`, "
             "`tobytes`, `json` (`loadtest/peers/`).\n" % (ROWS, DIM, subprocess.run(
                 ["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]))
    L.append(rows_section(runs, WORKLOADS))
    L.append("\n" + ratios_section(runs, WORKLOADS))
    half = half_section(runs, WORKLOADS)
    if half:
        L.append("\n" + half)
    L.append("\n## Targets\n")
    L.append("| target | measured | met |")
    L.append("| --- | ---: | :---: |")
    targets = [
        ("single row, binary: embd >= 1.0 x nginx Range", ratio_stats(runs, "row_bin", "embd", "nginx")[0], 1.0),
        ("slice of 256 rows: embd >= 1.0 x nginx Range", ratio_stats(runs, "slice_256", "embd", "nginx")[0], 1.0),
        ("gather 256: embd bytes/s >= 0.9 x nginx bytes/s on the slice",
         ratio_stats(runs, "gather_256", "embd", "nginx", key="MBps", wb="slice_256")[0], 0.9),
        ("gather 256: embd >= 1.5 x Flask/NumPy", ratio_stats(runs, "gather_256", "embd", "flask")[0], 1.5),
        ("single row, JSON: embd >= 5 x Flask/NumPy", ratio_stats(runs, "row_json", "embd", "flask")[0], 5.0),
    ]
    for name, v, goal in targets:
        L.append("| %s | %.2f | %s |" % (name, v, "yes" if v >= goal else "**no**"))
    L.append("| start-up to first response, 614 MB .npy: <= 0.1 s | %.3f s | %s |" % (
        start["embd"], "yes" if start["embd"] <= 0.1 else "**no**"))
    if conv is not None:
        L.append("| embd convert of the 400k x 100 GloVe text: <= 0.15 x gensim load_word2vec_format | %.3f | %s |" % (
            conv["ratio"], "yes" if conv["ratio"] <= 0.15 else "**no**"))
    if sim is not None:
        L.append("| top-10 similar, one query per keep-alive request: <= 0.7 x gensim most_similar | %.3f | %s |" % (
            sim["ratio_get"], "yes" if sim["ratio_get"] <= 0.7 else "**no**"))
        L.append("| top-10 similar, 64 queries per POST, per query: <= 0.15 x gensim most_similar | %.3f | %s |" % (
            sim["ratio_batch"], "yes" if sim["ratio_batch"] <= 0.15 else "**no**"))
    L.append("\n## Start-up to first response\n")
    L.append("| server | seconds (median) |")
    L.append("| --- | ---: |")
    names = {"embd": "embd serve matrix.npy (mmap), exec to first row", "flask": "gunicorn + Flask + np.load(mmap), exec to first row",
             "gensim_npy": "gensim KeyedVectors built from the .npy (in-process, no HTTP)",
             "gensim_glove_text": "gensim load_word2vec_format of the 400k x 100 GloVe text"}
    for k, v in start.items():
        L.append("| %s | %.3f |" % (names.get(k, k), v))
    L.append("")
    if conv is not None:
        L.append(convert_section(conv))
    if sim is not None:
        L.append(similar_section(sim))
    if iso is not None:
        L.append(isolation_section(iso))
    if loader is not None:
        L.append(loader_section(loader))
    L.append("## Physical limits, same run\n")
    L.append("| what | GB/s |")
    L.append("| --- | ---: |")
    L.append("| memcpy of a 786 KB (256-row) buffer, cache-warm | %.2f |" % lim["memcpy_GBps"])
    L.append("| gather of 256 random 3 KiB rows from the page-cached mapping | %.2f |" % lim["gather256_GBps"])
    L.append("| one loopback TCP stream, 1 MiB writes | %.2f |" % lim["loopback_tcp_GBps"])
    rss = [s[1] for s in samples]
    warm = [s for s in samples if s[0] >= samples[-1][0] * 0.25]
    L.append("\n## Memory soak\n")
    L.append("%d mixed requests (JSON rows, 256- and 4096-row gathers, slices) from 68 connections over %d s; "
             "RSS and `embd_inflight_accounted_bytes` sampled every 0.5 s ([plot](soak.png)).\n" % (
                 soak_requests, int(samples[-1][0])))
    L.append("| | value |")
    L.append("| --- | ---: |")
    L.append("| RSS after the first quarter (min .. max) | %.1f .. %.1f MB |" % (
        min(s[1] for s in warm) / 1e6, max(s[1] for s in warm) / 1e6))
    L.append("| RSS drift, last sample - first sample after warm-up | %+.1f MB |" % ((warm[-1][1] - warm[0][1]) / 1e6))
    L.append("| peak in-flight accounted bytes (sampled) | %.1f MB |" % (max(s[2] for s in samples) / 1e6))
    L.append("| in-flight accounted bytes after the load | %d |" % int(soak_end["embd_inflight_accounted_bytes"]))
    L.append("| embd_accounted_bytes_peak | %.1f MB |" % (soak_end["embd_accounted_bytes_peak"] / 1e6))
    L.append("\n![throughput against batch size](throughput.png)\n")
    L.append("Raw figures of every run: `raw.json` beside this file. Re-run: `make bench` (or `make bench QUICK=1`); "
             "`make bench SAVE=1` writes the committed loadtest/results/.")
    open(os.path.join(RESULTS, "RESULTS.md"), "w").write("\n".join(L) + "\n")
    plots(runs, samples)
    log("wrote", os.path.join(RESULTS, "RESULTS.md"))


def plots(runs, samples):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "tp.dat"), "w") as f:
        for n in (1, 16, 256, 4096):
            e = median([r["MBps"] for r in runs if r["workload"] == "gather_%d" % n and r["peer"] == "embd"])
            fl = median([r["MBps"] for r in runs if r["workload"] == "gather_%d" % n and r["peer"] == "flask"])
            f.write("%d %f %f\n" % (n, e, fl))
    ng = median([r["MBps"] for r in runs if r["workload"] == "slice_256" and r["peer"] == "nginx"])
    with open(os.path.join(d, "soak.dat"), "w") as f:
        for t, rss, inflight in samples:
            f.write("%f %f %f\n" % (t, rss / 1e6, inflight / 1e6))
    script = """
set terminal pngcairo size 900,500
set output '%(out)s/throughput.png'
set title 'Random gather: throughput against batch size (768-dim float32 rows, wrk c=32)'
set logscale x 2
set xlabel 'rows per request'
set ylabel 'MB/s'
set key top left
plot '%(d)s/tp.dat' using 1:2 with linespoints title 'embd', '%(d)s/tp.dat' using 1:3 with linespoints title 'Flask + NumPy', %(ng)f title 'nginx Range, contiguous 256-row slice' with lines dt 2
set output '%(out)s/soak.png'
unset logscale x
set title 'Memory soak: RSS and in-flight accounted bytes'
set xlabel 'seconds'
set ylabel 'MB'
plot '%(d)s/soak.dat' using 1:2 with lines title 'RSS', '%(d)s/soak.dat' using 1:3 with lines title 'in-flight accounted'
""" % {"out": RESULTS, "d": d, "ng": ng}
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    shutil.rmtree(d, ignore_errors=True)


def only_convert():
    """`bench.py --only convert`: the convert row alone; prints it and updates its section of RESULTS.md."""
    os.makedirs(RESULTS, exist_ok=True)
    c = convert_bench()
    section = convert_section(c)
    splice_convert(section)
    print(section)
    log("updated", os.path.join(RESULTS, "RESULTS.md"))


# The similar row: embd's /v1/similar against gensim's most_similar on the 400k x 100 GloVe-sized matrix -----------

SIM_NPY = os.path.join(DATA, "glove-400k-100d.npy")
SIM_VOCAB = os.path.join(DATA, "glove-400k-100d.vocab")
SIM_WORDS, SIM_BATCH = 200, 64

# gensim in its own process (its own OpenBLAS, its own memory): loads the pair, fills the norms, then answers
# "round" lines with the seconds of most_similar(word, topn=10) over the query words, and "top" with its answers.
SIM_CHILD = r"""
import json, sys, time
import numpy as np
from gensim.models import KeyedVectors
npy, vocab, words = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
M = np.load(npy)
keys = open(vocab, encoding="utf-8").read().split("\n")[:M.shape[0]]
kv = KeyedVectors(vector_size=M.shape[1])  # no count=: add_vectors appends after the count's zero rows
kv.add_vectors(keys, M)
assert kv.vectors.shape == M.shape
del M
kv.fill_norms()
kv.most_similar(words[0], topn=10)
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
print(json.dumps({"ready": True, "norms_bytes": kv.norms.nbytes, "vectors_bytes": kv.vectors.nbytes,
                  "rss_before_normed": rss(), "normed_bytes": kv.get_normed_vectors().nbytes}), flush=True)
for line in sys.stdin:
    if line.strip() == "round":
        t = time.perf_counter()
        for w in words:
            kv.most_similar(w, topn=10)
        print(json.dumps({"s": time.perf_counter() - t}), flush=True)
    elif line.strip() == "top":
        print(json.dumps([[k for k, _ in kv.most_similar(w, topn=10)] for w in words]), flush=True)
"""


def ensure_similar_data():
    """The 400k x 100 GloVe-sized matrix as .npy + vocabulary (the pair `embd convert` writes), made directly with the
    GloVe text's seed, words and values (without its 6-digit rounding); cached in loadtest/data."""
    if os.path.exists(SIM_NPY) and os.path.exists(SIM_VOCAB):
        return
    import numpy as np
    log("making the 400000 x 100 .npy + vocabulary for the similar row (once; cached in loadtest/data)")
    os.makedirs(DATA, exist_ok=True)
    rng = np.random.default_rng(400)
    words = glove_words(rng, 400_000)
    m = np.concatenate([(rng.standard_normal((20_000, 100)) * 0.4).astype(np.float32)
                        for _ in range(0, 400_000, 20_000)])
    np.save(SIM_NPY + ".tmp.npy", m)
    with open(SIM_VOCAB + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(words) + "\n")
    os.rename(SIM_NPY + ".tmp.npy", SIM_NPY)
    os.rename(SIM_VOCAB + ".tmp", SIM_VOCAB)


class Client:
    """One persistent keep-alive connection."""

    def __init__(self, port):
        import http.client
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None, ready_s=0.0):
        """The body of a 200 answer; with ready_s, 503s (a daemon still loading its table) are asked again for up
        to that many seconds."""
        end = time.time() + ready_s
        while True:
            self.c.request(method, path, body, {"Content-Type": "application/json"} if body else {})
            r = self.c.getresponse()
            b = r.read()
            if r.status != 503 or time.time() >= end:
                break
            time.sleep(0.01)
        if r.status != 200:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, b[:300]))
        return b


def sim_get_round(port, words):
    """Seconds per query: one GET /v1/similar?token= per word over one keep-alive connection."""
    c = Client(port)
    paths = ["/v1/similar?k=10&token=" + urllib.parse.quote(w) for w in words]
    c.call("GET", paths[0])
    t = time.perf_counter()
    for p in paths:
        c.call("GET", p)
    s = time.perf_counter() - t
    c.c.close()
    return s / len(words)


def sim_batch_round(port, words):
    """Seconds per query: the words in POST /v1/similar batches of SIM_BATCH."""
    c = Client(port)
    bodies = [json.dumps({"tokens": words[i:i + SIM_BATCH]}).encode()
              for i in range(0, len(words) - SIM_BATCH + 1, SIM_BATCH)]
    c.call("POST", "/v1/similar?k=10", bodies[0])
    t = time.perf_counter()
    for b in bodies:
        c.call("POST", "/v1/similar?k=10", b)
    s = time.perf_counter() - t
    c.c.close()
    return s / (len(bodies) * SIM_BATCH)


def sim_concurrent(port, words, clients, seconds=4.0):
    """Queries per second of `clients` keep-alive clients each asking GET /v1/similar in a loop for `seconds`."""
    import threading
    counts = [0] * clients

    def run(i):
        c = Client(port)
        end = time.time() + seconds
        j = i * 37
        while time.time() < end:
            c.call("GET", "/v1/similar?k=10&token=" + urllib.parse.quote(words[j % len(words)]))
            counts[i] += 1
            j += 1
        c.c.close()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    return sum(counts) / (time.perf_counter() - t)


def similar_bench(rounds=5):
    """(a) one query per request vs gensim's most_similar per query, (b) 64 per POST, (c) the memory each side holds,
    (d) throughput of 1 and 2 concurrent clients by OpenBLAS threads per request. Rounds interleaved, same run."""
    import numpy as np
    ensure_similar_data()
    keys = open(SIM_VOCAB, encoding="utf-8").read().split("\n")[:400_000]
    rng = np.random.default_rng(11)
    words = [keys[i] for i in rng.choice(len(keys), SIM_WORDS, replace=False)]
    out = {"get_s": [], "batch_s": [], "gensim_s": [], "gensim1_s": [], "threads": {}}
    log_path = os.path.join(tempfile.gettempdir(), "embd-bench-similar-%d.log" % os.getpid())
    gensims = {}
    p = None
    try:
        for name, env in (("gensim", dict(os.environ)),
                          ("gensim1", dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"))):
            g = subprocess.Popen([sys.executable, "-c", SIM_CHILD, SIM_NPY, SIM_VOCAB, json.dumps(words)], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            gensims[name] = g
            out[name + "_mem"] = json.loads(g.stdout.readline())
        log("similar: gensim ready", out["gensim_mem"])
        args = [SIM_NPY, "--vocab", SIM_VOCAB, "--access-log=false"]
        p, port = start_embd(args, log_path)
        info = lambda: json.loads(Client(port).call("GET", "/v1/info"))  # noqa: E731
        out["embd_norms_before"] = info()["norms_bytes"]
        Client(port).call("GET", "/v1/similar?k=10&token=" + urllib.parse.quote(words[0]))
        out["embd_norms_after"] = info()["norms_bytes"]
        out["embd_rss"] = metrics(port)["process_resident_memory_bytes"]
        # The same top-10 as gensim for every query word (a benchmark of wrong answers would be worthless).
        gensims["gensim"].stdin.write("top\n")
        gensims["gensim"].stdin.flush()
        want = json.loads(gensims["gensim"].stdout.readline())
        got = [[h["token"] for h in json.loads(Client(port).call("GET", "/v1/similar?k=10&token=" +
                                                                 urllib.parse.quote(w)))["results"]] for w in words]
        out["same_top10"] = sum(a == b for a, b in zip(got, want))
        for i in range(rounds):
            wait_idle(5.0)
            out["get_s"].append(sim_get_round(port, words))
            wait_idle(5.0)
            out["batch_s"].append(sim_batch_round(port, words))
            for name, g in gensims.items():
                wait_idle(5.0)
                g.stdin.write("round\n")
                g.stdin.flush()
                out[name + "_s"].append(json.loads(g.stdout.readline())["s"] / SIM_WORDS)
            log("similar round %d: embd GET %.3f ms, POST x64 %.3f ms per query; gensim %.3f ms (1 BLAS thread: "
                "%.3f ms)" % (i, out["get_s"][-1] * 1e3, out["batch_s"][-1] * 1e3, out["gensim_s"][-1] * 1e3,
                              out["gensim1_s"][-1] * 1e3))
        for g in gensims.values():
            g.stdin.close()
            g.wait(timeout=60)
        gensims = {}
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
        # The thread rule: the daemon sets OpenBLAS to 1 thread per request (server/main.c: openblas_set_num_threads(1)
        # at start). For the comparison, a shim preloaded over that call lets OPENBLAS_NUM_THREADS=2 stand.
        shim = os.path.join(tempfile.gettempdir(), "embd-blas-noset.so")
        with open(shim + ".c", "w") as f:
            f.write("void openblas_set_num_threads(int n) { (void)n; }\n")
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", shim, shim + ".c"], check=True)
        for blas in (1, 2):
            env = None if blas == 1 else dict(os.environ, LD_PRELOAD=shim, OPENBLAS_NUM_THREADS=str(blas))
            wait_idle(5.0)
            p, port = start_embd(args, log_path, env=env)
            Client(port).call("GET", "/v1/similar?k=10&token=" + urllib.parse.quote(words[0]))
            for clients in (1, 2):
                qps = []
                for _ in range(3):
                    wait_idle(5.0)
                    qps.append(sim_concurrent(port, words, clients))
                out["threads"]["%d,%d" % (blas, clients)] = qps
                log("similar: %d BLAS threads per request, %d concurrent clients: %s queries/s" % (
                    blas, clients, " ".join("%.0f" % x for x in qps)))
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)
    finally:
        for g in gensims.values():
            g.kill()
            g.wait()
        if p is not None and p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)
        if os.path.exists(log_path):
            os.unlink(log_path)
    out["ratio_get"] = median([a / b for a, b in zip(out["get_s"], out["gensim_s"])])
    out["ratio_batch"] = median([a / b for a, b in zip(out["batch_s"], out["gensim_s"])])
    out["ratio_get1"] = median([a / b for a, b in zip(out["get_s"], out["gensim1_s"])])
    out["ratio_batch1"] = median([a / b for a, b in zip(out["batch_s"], out["gensim1_s"])])
    return out


def similar_section(s):
    cmd = "python3 loadtest/bench.py --only similar"
    ms = lambda xs: " ".join("%.3f" % (x * 1e3) for x in xs)  # noqa: E731
    gm = s["gensim_mem"]
    L = ["## Nearest neighbours: embd /v1/similar vs gensim most_similar\n",
         "The 400,000 x 100 GloVe-sized matrix (`loadtest/data/glove-400k-100d.npy` + `.vocab`, seeded like the GloVe "
         "text) served by `embd serve`; gensim %s's KeyedVectors of the same floats in its own process, norms filled "
         "beforehand (`kv.fill_norms()`), `most_similar(word, topn=10)` in-process, no HTTP. %d different query "
         "words; embd over one keep-alive http.client connection (`GET /v1/similar?token=W&k=10`), then the same "
         "words %d to a `POST /v1/similar` (`{\"tokens\": [...]}`). %d interleaved rounds, the same run; every ratio "
         "is taken round by round, then its median. embd's top-10 equals gensim's for %d of %d words. Alone: `%s`.\n"
         % (gensim_version(), SIM_WORDS, SIM_BATCH, len(s["get_s"]), s["same_top10"], SIM_WORDS, cmd),
         "| what | ms per query (median) | rounds |", "| --- | ---: | --- |",
         "| embd, one query per request (keep-alive HTTP) | %.3f | %s |" % (median(s["get_s"]) * 1e3, ms(s["get_s"])),
         "| embd, %d queries per POST | %.3f | %s |" % (SIM_BATCH, median(s["batch_s"]) * 1e3, ms(s["batch_s"])),
         "| gensim most_similar (OpenBLAS default threads) | %.3f | %s |" % (median(s["gensim_s"]) * 1e3,
                                                                             ms(s["gensim_s"])),
         "| gensim most_similar (OPENBLAS_NUM_THREADS=1) | %.3f | %s |" % (median(s["gensim1_s"]) * 1e3,
                                                                           ms(s["gensim1_s"])),
         "",
         "| ratio | measured | target | met |", "| --- | ---: | ---: | :---: |",
         "| embd one per request / gensim | %.3f | <= 0.7 | %s |" % (s["ratio_get"], "yes" if s["ratio_get"] <= 0.7
                                                                       else "**no**"),
         "| embd %d per POST / gensim, per query | %.3f | <= 0.15 | %s |" % (
             SIM_BATCH, s["ratio_batch"], "yes" if s["ratio_batch"] <= 0.15 else "**no**"),
         "| (the same against gensim on one OpenBLAS thread, as embd's requests run: one per request) | %.3f | | |"
         % s["ratio_get1"],
         "| (%d per POST, per query, against gensim on one OpenBLAS thread) | %.3f | | |" % (SIM_BATCH,
                                                                                         s["ratio_batch1"]),
         "",
         "Memory held for cosine on top of the matrix (%.0f MB of float32):\n" % (gm["vectors_bytes"] / 1e6),
         "| what | bytes |", "| --- | ---: |",
         "| embd: row norms (`norms_bytes` in /v1/info; %d before the first cosine query) | %d |" % (
             s["embd_norms_before"], s["embd_norms_after"]),
         "| gensim: `kv.norms` after `fill_norms()` (what most_similar uses) | %d |" % gm["norms_bytes"],
         "| gensim: the normalised copy `kv.get_normed_vectors()` (made on each call; gensim 3's `init_sims` kept it) "
         "| %d |" % gm["normed_bytes"],
         "| RSS: embd serving (matrix mapped and touched, norms) / gensim process (matrix, norms, no normed copy) | "
         "%.0f MB / %.0f MB |" % (s["embd_rss"] / 1e6, gm["rss_before_normed"] / 1e6),
         "",
         "Threads: embd calls `openblas_set_num_threads(1)` at start (server/main.c), so each search's sgemv/sgemm "
         "runs on the compute pool's threads (one per core), never on a request thread; a search is cut into one "
         "row range per pool thread, searched side by side and merged. Throughput of N keep-alive clients each "
         "asking `GET /v1/similar?token=W&k=10` in a loop for 4 s on %d cores (3 runs each); the 2-thread rows "
         "preload a shim over `openblas_set_num_threads` and set `OPENBLAS_NUM_THREADS=2`:\n" % os.cpu_count(),
         "| OpenBLAS threads per request | clients | queries/s (median) | runs |", "| ---: | ---: | ---: | --- |"]
    for key, q in sorted(s["threads"].items()):
        blas, c = key.split(",")
        L.append("| %s%s | %s | %.0f | %s |" % (blas, " (default)" if blas == "1" else "", c, median(q),
                                               " ".join("%.0f" % x for x in q)))
    L.append("")
    return "\n".join(L)


def results_text():
    """The output directory's RESULTS.md and its path; a copy of the committed one when the directory has none yet,
    so that a row run alone updates its own section of a whole page."""
    path = os.path.join(RESULTS, "RESULTS.md")
    for src in (path, os.path.join(COMMITTED, "RESULTS.md")):
        if os.path.exists(src):
            return open(src).read(), path
    return "# embd benchmark results\n\n", path


def splice_section(title, section):
    """Put a section into RESULTS.md in place of the one with the same title (or before the physical limits)."""
    text, path = results_text()
    m = re.search(r"## %s\n.*?(?=\n## |\Z)" % re.escape(title), text, re.S)
    if m:
        text = text[:m.start()] + section.rstrip("\n") + "\n" + text[m.end():]
    elif "## Physical limits" in text:
        text = text.replace("## Physical limits", section + "\n## Physical limits", 1)
    else:
        text += "\n" + section
    open(path, "w").write(text)


def only_row(measure, section_of, raw_name, title):
    """`bench.py --only NAME`: one row alone; prints its section, keeps its figures in RAW_NAME.json and puts the
    section into RESULTS.md in place of the one titled TITLE."""
    os.makedirs(RESULTS, exist_ok=True)
    s = measure()
    json.dump(s, open(os.path.join(RESULTS, raw_name + ".json"), "w"), indent=1)
    section = section_of(s)
    splice_section(title, section)
    print(section)
    log("updated", os.path.join(RESULTS, "RESULTS.md"))


# Isolation: single rows and /healthz beside heavy vector operations (issue 15). ------------------------------------
ISO_ROUNDS = 3 if QUICK else 5
ISO_SECONDS = 5
ISO_BATCH = 1024


def iso_wrk(port, seconds):
    """wrk on single rows (binary) of the 400k x 100 matrix: 2 threads, 16 connections."""
    env = dict(PEER="embd", MODE="row", FMT="bin", N="1", ROWS="400000", DIM="100", SEED="9")
    return run_wrk(port, env, seconds, 16, threads=2)


# One similar client in a process of its own (a thread of the harness would share its interpreter lock with the
# /healthz prober and show up in the probes' latency): POST /v1/similar?k=10 with ISO_BATCH ids in a loop for the
# given seconds; prints how many it sent.
ISO_CHILD = r"""
import http.client, json, sys, time
port, first, batch, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
t0 = time.time()
end, n, j = t0 + seconds, 0, 0
while time.time() < end:
    a = (first * 7919 + j * 104729) % (400000 - batch)
    c.request("POST", "/v1/similar?k=10", json.dumps({"ids": list(range(a, a + batch))}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit("similar: %d" % r.status)
    n += 1
    j += 1
print(n, time.time() - t0)
"""


def iso_round(port, beside):
    """One wrk run on single rows, with 100 /healthz probes (one every 40 ms on a keep-alive connection), alone or
    beside 2 client processes each sending POST /v1/similar?k=10 with ISO_BATCH ids in a loop."""
    import threading
    secs = ISO_SECONDS + 1.5
    kids = [subprocess.Popen([sys.executable, "-c", ISO_CHILD, str(port), str(i), str(ISO_BATCH), str(secs)],
                             stdout=subprocess.PIPE, text=True) for i in range(2)] if beside else []
    probes = []

    def prober():
        c = Client(port)
        time.sleep(0.5)
        for _ in range(100):
            t = time.perf_counter()
            c.call("GET", "/healthz")
            probes.append(time.perf_counter() - t)
            time.sleep(0.04)
        c.c.close()

    if beside:
        time.sleep(0.5)  # both searches under way
    pt = threading.Thread(target=prober)
    pt.start()
    r = iso_wrk(port, ISO_SECONDS)
    pt.join()
    bps = 0.0
    for k in kids:
        out, _ = k.communicate(timeout=120)
        if k.returncode != 0:
            raise RuntimeError("a similar client failed: %s" % out)
        n, took = out.split()
        bps += int(n) / float(took)  # each client's own rate over its own time: no rounding to whole batches
    probes.sort()
    r["healthz_p50_ms"] = probes[len(probes) // 2] * 1e3
    r["healthz_p99_ms"] = probes[min(len(probes) - 1, int(len(probes) * 0.99))] * 1e3
    r["batches_per_s"] = bps
    return r


def isolation_bench():
    """Single rows alone vs beside 2 clients sending 1,024-id similar batches, interleaved rounds, same run; and the
    similar batch throughput alone (2 clients, no row load)."""
    ensure_similar_data()
    log_path = os.path.join(tempfile.gettempdir(), "embd-bench-isolation-%d.log" % os.getpid())
    p, port = start_embd([SIM_NPY, "--vocab", SIM_VOCAB, "--access-log=false"], log_path)
    out = {"alone": [], "beside": [], "similar_alone_bps": []}
    try:
        with open(SIM_NPY, "rb") as fh:  # warm: page cache, and the norms (first cosine query)
            while fh.read(1 << 24):
                pass
        Client(port).call("GET", "/v1/similar?id=0&k=10")
        for rnd in range(ISO_ROUNDS):
            for beside in (False, True):
                wait_idle(5.0)
                r = iso_round(port, beside)
                out["beside" if beside else "alone"].append(r)
                log("isolation round %d %-6s rows %8.0f req/s p99 %6.2f ms; healthz p99 %6.2f ms; similar %.2f "
                    "batches/s" % (rnd, "beside" if beside else "alone", r["rps"], r["p99_ms"],
                                   r["healthz_p99_ms"], r["batches_per_s"]))
            # The similar batches alone: what the pool gives when nothing else runs.
            wait_idle(5.0)
            kids = [subprocess.Popen([sys.executable, "-c", ISO_CHILD, str(port), str(i), str(ISO_BATCH),
                                      str(ISO_SECONDS)], stdout=subprocess.PIPE, text=True) for i in range(2)]
            rates = [k.communicate(timeout=120)[0].split() for k in kids]
            out["similar_alone_bps"].append(sum(int(n) / float(t) for n, t in rates))
            log("isolation round %d similar alone %.2f batches/s" % (rnd, out["similar_alone_bps"][-1]))
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
        os.unlink(log_path)
    out["ratio"] = median([b["rps"] / a["rps"] for a, b in zip(out["alone"], out["beside"])])
    out["p99_beside"] = median([b["p99_ms"] for b in out["beside"]])
    out["healthz_p99_beside"] = median([b["healthz_p99_ms"] for b in out["beside"]])
    return out


def isolation_section(s):
    cmd = "python3 loadtest/bench.py --only isolation"
    med = lambda key, side: median([r[key] for r in s[side]])  # noqa: E731
    runs = lambda key, side, f="%.0f": " ".join(f % r[key] for r in s[side])  # noqa: E731
    ok = lambda c: "yes" if c else "**no**"  # noqa: E731
    L = ["## Isolation: lookups beside heavy vector operations\n",
         "The 400,000 x 100 matrix of the similar row served by `embd serve` with its defaults (2 request threads, "
         "a compute pool of 2 threads at nice +10). wrk (`-t2 -c16`, %d s) on single rows (`GET /v1/rows/ID?format=bin`, "
         "random ids) and 100 `/healthz` probes (one every 40 ms, keep-alive), alone and beside 2 clients each "
         "sending `POST /v1/similar?k=10` with %d ids in a loop (each client a process of its own); %d interleaved rounds, the same run; wrk shares the 2 "
         "cores with the daemon and the clients. Alone: `%s`.\n" % (ISO_SECONDS, ISO_BATCH, len(s["alone"]), cmd),
         "| what | alone (median) | beside 2 similar clients (median) | runs alone | runs beside |",
         "| --- | ---: | ---: | --- | --- |",
         "| single rows, req/s | %.0f | %.0f | %s | %s |" % (med("rps", "alone"), med("rps", "beside"),
                                                            runs("rps", "alone"), runs("rps", "beside")),
         "| single rows, p99 ms | %.2f | %.2f | %s | %s |" % (med("p99_ms", "alone"), med("p99_ms", "beside"),
                                                               runs("p99_ms", "alone", "%.2f"),
                                                               runs("p99_ms", "beside", "%.2f")),
         "| /healthz, p99 ms over 100 probes | %.2f | %.2f | %s | %s |" % (
             med("healthz_p99_ms", "alone"), med("healthz_p99_ms", "beside"), runs("healthz_p99_ms", "alone", "%.2f"),
             runs("healthz_p99_ms", "beside", "%.2f")),
         "| similar batches of %d answered per second | | %.2f | | %s |" % (
             ISO_BATCH, med("batches_per_s", "beside"), runs("batches_per_s", "beside", "%.2f")),
         "| similar batches of %d per second, 2 clients, no row load | %.2f | | %s | |" % (
             ISO_BATCH, median(s["similar_alone_bps"]), " ".join("%.2f" % x for x in s["similar_alone_bps"])),
         "",
         "| target | measured | met |", "| --- | ---: | :---: |",
         "| single rows beside / alone >= 0.4x | %.2fx | %s |" % (s["ratio"], ok(s["ratio"] >= 0.4)),
         "| single rows p99 beside <= 20 ms | %.2f ms | %s |" % (s["p99_beside"], ok(s["p99_beside"] <= 20)),
         "| /healthz p99 beside <= 10 ms | %.2f ms | %s |" % (s["healthz_p99_beside"],
                                                             ok(s["healthz_p99_beside"] <= 10)),
         ""]
    return "\n".join(L)


# The PyTorch loader row (issue 17): loadtest/loader_bench.py. ------------------------------------------------------
LOADER_TITLE = "PyTorch loader: DataLoader(num_workers=2) through embd vs nn.Embedding in-process"


def loader_bench():
    import loader_bench as lb
    ensure_matrix()
    ensure_similar_data()
    s = lb.measure({"npy": NPY, "sim": SIM_NPY}, start_embd, wait_idle, log, 3 if QUICK else 5,
                   parts=int(os.environ.get("LOADER_PARTS", "1")))
    lb.plot(s, RESULTS)
    return s


def loader_section(s):
    import loader_bench as lb
    return lb.section(s, "make bench ONLY=loader") + "\n![loader](loader.png)\n"


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    if sys.argv[1:] == ["--only", "loader"]:
        only_row(loader_bench, loader_section, "loader", LOADER_TITLE)
    elif sys.argv[1:] == ["--only", "convert"]:
        only_convert()
    elif sys.argv[1:] == ["--only", "similar"]:
        only_row(similar_bench, similar_section, "similar",
                 "Nearest neighbours: embd /v1/similar vs gensim most_similar")
    elif sys.argv[1:] == ["--only", "isolation"]:
        only_row(isolation_bench, isolation_section, "isolation", "Isolation: lookups beside heavy vector operations")
    elif sys.argv[1:] == ["--only", "rows"]:
        only_rows()
    elif sys.argv[1:]:
        sys.exit("usage: bench.py [--only rows|convert|similar|isolation|loader]  (QUICK=1 for the short full run; OUT=dir, "
                 "or SAVE=1 for loadtest/results; WORKLOADS=a,b with rows)")
    else:
        main()
    print("bench: results in %s" % RESULTS)
