"""Operating embd: flags a file's format does not use are refused, the port is bound before the table loads (503
loading meanwhile), SIGUSR1 reopens the log file, the access line names the client and the query, `make run`
takes PORT, FILE and ARGS, and --help says what a late request gets."""
import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import EMBD, after_listening, wait_for

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
TOKEN = "t0k3n-for-the-ops-tests-0123456789abcdef"
AUTH = {"Authorization": "Bearer " + TOKEN}


def run(*args, timeout=30):
    p = subprocess.run([EMBD, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def files(tmp_path):
    """One small file of every format embd reads (2 x 3 float32), a vocabulary file and an admin token."""
    a = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    np.save(tmp_path / "w.npy", a)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
    header += b" " * (-len(header) % 8)
    (tmp_path / "w.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + a.tobytes())
    (tmp_path / "w.txt").write_text("a 1 2 3\nb 4 5 6\n")
    (tmp_path / "w.vec").write_text("2 3\na 1 2 3\nb 4 5 6\n")
    (tmp_path / "cc.en.vec").write_text("2 3\n, 1 2 3\nthe 4 5 6\n")  # fastText's .vec is word2vec text
    (tmp_path / "w.bin").write_bytes(b"2 3\n" + b"".join(w + b" " + r.tobytes() + b"\n"
                                                         for w, r in zip((b"a", b"b"), a)))
    a.tofile(tmp_path / "w.f32")
    (tmp_path / "words").write_text("a\nb\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    return tmp_path


SHAPE = "carries its own shape and dtype: {flags} ({keys}) {verb} not apply; rows, dim, dtype and offset describe " \
        "a raw matrix (--format raw)"


def refusal(source, what, kind, names, tensor="x", vocab=None):
    flags = ", ".join("--" + n for n in names)
    keys = ", ".join("matrix." + n for n in names)
    verb = "do" if len(names) > 1 else "does"
    if kind == "shape":
        tail = SHAPE.format(flags=flags, keys=keys, verb=verb)
    elif kind == "tensor":
        tail = "holds no named tensors: %s (%s) %s not apply (a tensor, %s, is named; only safetensors files hold " \
               "named tensors)" % (flags, keys, verb, tensor)
    else:
        tail = "names its rows itself: %s (%s) %s not apply; a vocabulary file (%s) is for npy, safetensors and " \
               "raw matrices" % (flags, keys, verb, vocab)
    return "%s: %s %s" % (source, what, tail)


# (file, what the message calls it, flags that do not apply, the kind and names refused, flags that do apply)
CASES = [
    ("w.npy", "a npy file", ["--dim", "99", "--dtype", "bf16", "--rows", "5"], ("shape", ["rows", "dim", "dtype"]),
     ["--vocab", "{words}"]),
    ("w.npy", "a npy file", ["--dtype", "f32"], ("shape", ["dtype"]), []),
    ("w.npy", "a npy file", ["--offset", "128"], ("shape", ["offset"]), []),
    ("w.npy", "a npy file", ["--tensor", "x"], ("tensor", ["tensor"]), []),
    ("w.safetensors", "a safetensors file", ["--dim", "3", "--dtype", "f32"], ("shape", ["dim", "dtype"]),
     ["--tensor", "w", "--vocab", "{words}"]),
    ("w.txt", "a glove file", ["--dim", "3"], ("shape", ["dim"]), []),
    ("w.txt", "a glove file", ["--vocab", "{words}"], ("vocab", ["vocab"]), []),
    ("w.txt", "a glove file", ["--tensor", "x"], ("tensor", ["tensor"]), []),
    ("w.vec", "a word2vec file", ["--rows", "2", "--offset", "4"], ("shape", ["rows", "offset"]), []),
    ("w.vec", "a word2vec file", ["--vocab", "{words}"], ("vocab", ["vocab"]), []),
    ("cc.en.vec", "a word2vec file", ["--dtype", "f16"], ("shape", ["dtype"]), []),
    ("cc.en.vec", "a word2vec file", ["--vocab", "{words}"], ("vocab", ["vocab"]), []),
    ("w.bin", "a word2vec_bin file", ["--dim", "3", "--dtype", "f32"], ("shape", ["dim", "dtype"]), []),
    ("w.bin", "a word2vec_bin file", ["--vocab", "{words}"], ("vocab", ["vocab"]), []),
    ("w.f32", "a raw file", ["--dim", "3", "--tensor", "x"], ("tensor", ["tensor"]),
     ["--dim", "3", "--dtype", "f32", "--rows", "1", "--offset", "12", "--vocab", "{one}"]),
    ("", "the demo matrix", ["--rows", "5"], ("shape", ["rows"]), []),
]


@pytest.mark.parametrize("name,what,bad,refused,good", CASES,
                         ids=["%s:%s" % (c[0] or "demo", "+".join(c[3][1])) for c in CASES])
def test_a_flag_the_format_does_not_use_is_refused(files, name, what, bad, refused, good):
    """Exit 2 (a usage error, as an unknown flag is), one line naming every such flag, its config key and why;
    before a row is read. The flags that do apply to the format are taken."""
    (files / "one").write_text("b\n")
    fmt = lambda args: [a.format(words=files / "words", one=files / "one") for a in args]  # noqa: E731
    path = [str(files / name)] if name else []
    source = str(files / name) if name else "builtin:demo"
    kind, names = refused
    rc, out, err = run("serve", *path, *fmt(bad), "--port", "0")
    assert (rc, out, after_listening(err)) == (2, "", "embd: %s\n" % refusal(source, what, kind, names,
                                                                             vocab=files / "words"))
    if good:
        rc, out, err = run("info", *path, *fmt(good))
        assert rc == 0, err


def test_a_config_key_the_format_does_not_use_is_refused_as_its_flag_is(files):
    cfg = files / "c.json"
    cfg.write_text(json.dumps({"matrix": {"path": str(files / "w.npy"), "dim": 99, "dtype": "bf16"}}))
    rc, out, err = run("serve", "--config", str(cfg), "--port", "0")
    assert (rc, after_listening(err)) == (2, "embd: %s\n" % refusal(str(files / "w.npy"), "a npy file", "shape",
                                                                     ["dim", "dtype"]))
    # The shipped configuration (every key at its default) names none of them: any file serves with it.
    rc, out, err = run("info", str(files / "w.txt"), "--config", os.path.join(ROOT, "config", "embd.json"))
    assert rc == 0 and "format: glove\n" in out, err


def test_a_reload_naming_what_the_new_file_does_not_use_is_400(start, files):
    d = start(str(files / "w.npy"), "--vocab", str(files / "words"), "--admin.token_file", str(files / "token"))

    def reload(query):
        s, h, body = d.request("POST", "/v1/admin/reload" + query, b"", AUTH)
        return s, json.loads(body)

    npy = str(files / "w.npy")
    assert reload("?path=%s&dim=3&dtype=f32" % npy) == (400, {"error": {
        "status": 400, "code": "not_applicable",
        "message": refusal(npy, "a npy file", "shape", ["dim", "dtype"])}})
    glove = str(files / "w.txt")
    assert reload("?path=%s&vocab=%s" % (glove, files / "words")) == (400, {"error": {
        "status": 400, "code": "not_applicable",
        "message": refusal(glove, "a glove file", "vocab", ["vocab"], vocab=files / "words")}})
    assert reload("?tensor=t") == (400, {"error": {
        "status": 400, "code": "not_applicable",
        "message": refusal(npy, "a npy file", "tensor", ["tensor"], tensor="t")}})
    assert d.json("/healthz")["generation"] == 1  # the failed reloads left generation 1 serving
    s, body = reload("?path=%s&dim=3&dtype=f32&rows=2&vocab=none" % (files / "w.f32"))
    assert s == 200 and body["generation"] == 2, body


def test_help_says_a_late_request_is_closed_without_an_answer():
    """What happens (test_overload: a late body or late headers get a bare close, counted as 408) is what --help
    says."""
    rc, out, _ = run("serve", "--help")
    line = next(l for l in out.splitlines() if "--limits.request_timeout_s" in l)
    assert "closed without an answer" in line and "answered 408" not in line, line


def test_sigusr1_reopens_the_log_file_and_the_access_line_names_client_and_query(start, data, tmp_path):
    """As nginx does for logrotate: after the file is moved, SIGUSR1 makes the daemon write to a new file by the
    configured name (SIGUSR1 used to kill it: the default action)."""
    log = tmp_path / "embd.log"
    d = start(data["f32_path"], "--log-file", str(log))
    assert d.get("/v1/rows?ids=3,17&format=bin")[0] == 200
    # The access line is written once the answer has gone out, a moment after the client has it.
    assert wait_for(lambda: "query=ids=3,17&format=bin\n" in log.read_text())
    os.rename(log, tmp_path / "embd.log.1")
    d.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: log.exists() and "log file reopened" in log.read_text())
    assert d.get("/v1/rows/5?format=json&dtype=f16")[0] == 200
    assert d.proc.poll() is None
    d.stop()
    old, new = (tmp_path / "embd.log.1").read_text(), log.read_text()
    assert re.search(r" access GET /v1/rows 200 \d+ .* ok client=127\.0\.0\.1 query=ids=3,17&format=bin\n", old)
    assert "SIGUSR1: reopening the log file\n" in old and "/v1/rows/5" not in old
    assert re.search(r" access GET /v1/rows/5 200 \d+ .* ok client=127\.0\.0\.1 query=format=json&dtype=f16\n", new)
    assert " notice stopped; " in new


def test_an_access_line_without_a_query_says_so(f32d):
    assert f32d.get("/healthz")[0] == 200
    f32d.stop()
    assert re.search(r" access GET /healthz 200 \d+ .* client=127\.0\.0\.1 query=-\n", f32d.output())


@pytest.fixture
def held_pair(files):
    """The .npy and its vocabulary, with their directory locked as `embd convert` locks it while it renames a
    pair into place: a load of the pair waits until the lock is let go (a real load that takes as long as the
    test wants)."""
    fd = os.open(files, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield [str(files / "w.npy"), "--vocab", str(files / "words")], fd
    os.close(fd)


def get(port, path):
    """(status, headers, body), or None while nothing listens."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except OSError:
        return None


def test_the_port_is_bound_before_the_table_loads_and_answers_503_loading_meanwhile(held_pair, tmp_path):
    args, fd = held_pair
    port = free_port()
    log = open(tmp_path / "out.log", "w+")
    p = subprocess.Popen([EMBD, "serve", *args, "--port", str(port)], stdout=log, stderr=log)
    try:
        assert wait_for(lambda: get(port, "/healthz") is not None)  # listening, though the load cannot finish
        s, h, body = get(port, "/healthz")
        assert (s, h["Retry-After"], json.loads(body)) == (503, "1", {"error": {
            "status": 503, "code": "loading", "message": "the matrix is still loading; retry later"}})
        for path in ("/v1/rows/1", "/v1/info", "/metrics", "/nope"):
            s, h, body = get(port, path)
            assert (s, h["Retry-After"], json.loads(body)["error"]["code"]) == (503, "1", "loading"), path
        time.sleep(0.3)
        assert get(port, "/healthz")[0] == 503 and p.poll() is None  # still waiting for the lock
        fcntl.flock(fd, fcntl.LOCK_UN)  # the "convert" is done: the load goes on
        assert wait_for(lambda: get(port, "/healthz")[0] == 200)
        s, h, body = get(port, "/v1/rows?tokens=b&format=bin")
        assert (s, body) == (200, np.array([4, 5, 6], dtype=np.float32).tobytes())
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=30)
    log.seek(0)
    out = log.read()
    assert rc == 0, out
    # The real port twice: once bound (what is loading), once loaded (what is served); the 503s were logged.
    assert re.findall(r"(listening|serving) .*on http://127\.0\.0\.1:(\d+)/", out) == [
        ("listening", str(port)), ("serving", str(port))], out
    assert "listening on http://127.0.0.1:%d/, loading %s\n" % (port, args[0]) in out
    assert "on http://127.0.0.1:%d/\n" % port in out
    assert re.search(r" access GET /healthz 503 \d+ ", out)


def test_a_port_in_use_fails_at_once_without_loading(held_pair):
    """Before the table is loaded (here it could not be: its directory is locked), one line naming the address,
    the port and the reason, and exit 1; libmicrohttpd's "Failed to bind to port 0" no more."""
    args, _ = held_pair
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        t0 = time.time()
        rc, out, err = run("serve", *args, "--port", str(port), timeout=20)
        assert (rc, out, err) == (1, "", "embd: cannot listen on 127.0.0.1 port %d: Address already in use "
                                         "(another process listens there: stop it, or choose --port)\n" % port)
        assert time.time() - t0 < 5
    finally:
        s.close()


def test_make_run_takes_port_file_and_args(files, tmp_path):
    """`make run PORT=... FILE=... ARGS=...` serves FILE on PORT with the shipped configuration and ARGS over it."""
    if os.environ.get("EMBD_SANITIZE"):
        pytest.skip("make run builds and runs the plain ./embd; the plain run of the suite covers it")
    port = free_port()
    log = open(tmp_path / "make.log", "w+")
    p = subprocess.Popen(["make", "--no-print-directory", "-C", ROOT, "run", "PORT=%d" % port,
                          "FILE=%s" % (files / "w.txt"), "ARGS=--log-level notice"],
                         stdout=log, stderr=log, start_new_session=True)
    try:
        assert wait_for(lambda: (get(port, "/healthz") or [0])[0] == 200 or p.poll() is not None, 120)
        s, h, body = get(port, "/v1/info")
        info = json.loads(body)
        assert (s, info["source"], info["format"], info["rows"]) == (200, str(files / "w.txt"), "glove", 2)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
    log.seek(0)
    out = log.read()
    assert "on http://127.0.0.1:%d/" % port in out and " access " not in out, out  # --log-level notice applied
