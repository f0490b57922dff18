"""embd convert against independent writers and readers: gensim's save/load_word2vec_format, GloVe text written here,
np.load; bad lines with their numbers and no output left; quiet without a terminal, a progress bar with one."""
import os
import pty
import re
import subprocess
import sys

import numpy as np
import pytest
from gensim.models import KeyedVectors

from conftest import EMBD

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def run(*args, **kw):
    p = subprocess.run([EMBD, "convert", *args], capture_output=True, timeout=120, **kw)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def words(rng, n):
    """n distinct real-looking words, some of them not ASCII."""
    syll = "the an in re de ing er on at en es or ti al st ar le ra ve co ma li ne pro con ter qu ly ment tion".split()
    exotic = ["é", "ü", "ñ", "ø", "ß", "日本", "語", "москва", "ελ", "한", "😀"]
    out, seen = [], set()
    while len(out) < n:
        w = "".join(rng.choice(syll) for _ in range(int(rng.integers(1, 4))))
        if rng.random() < 0.15:
            w += exotic[int(rng.integers(0, len(exotic)))]
        if rng.random() < 0.1:
            w = w.capitalize()
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


@pytest.fixture(scope="module")
def kv():
    rng = np.random.default_rng(1010)
    keys = words(rng, 3000)
    vecs = (rng.standard_normal((len(keys), 64)) * 10.0 ** rng.integers(-6, 6, (len(keys), 64))).astype(np.float32)
    k = KeyedVectors(vector_size=64)
    k.add_vectors(keys, vecs)
    return k


def glove_text(kv):
    """GloVe as people write it: no header, floats in several spellings (%.6g, %.5f, repr, e-notation)."""
    fmts = ["%.6g", "%.5f", "%r", "%.8e", "%.9g"]
    lines = []
    for i, key in enumerate(kv.index_to_key):
        f = fmts[i % len(fmts)]
        lines.append(key + " " + " ".join(f % float(v) for v in kv.vectors[i]) + "\n")
    return "".join(lines).encode()


def check_pair(tmp_path, src, ref, extra=()):
    """Convert src; the .npy must be ref's vectors bit for bit and the vocabulary its index_to_key."""
    out = tmp_path / "out.npy"
    rc, so, se = run(str(src), "-o", str(out), *extra)
    assert rc == 0, se
    assert se == ""  # not a terminal: no bar
    assert re.fullmatch(r"embd convert: .* %d rows x %d dim in [0-9.]+ s .*wrote %s and %s\n" % (
        len(ref.index_to_key), ref.vector_size, re.escape(str(out)), re.escape(str(tmp_path / "out.vocab"))), so), so
    a = np.load(out)
    assert a.dtype == np.dtype("<f4") and a.flags["C_CONTIGUOUS"]
    assert a.shape == ref.vectors.shape
    assert a.tobytes() == ref.vectors.tobytes()
    with open(tmp_path / "out.vocab", "rb") as f:
        assert f.read().decode("utf-8").split("\n") == list(ref.index_to_key) + [""]
    with open(out, "rb") as f:
        head = f.read(10)
    assert head[:8] == b"\x93NUMPY\x01\x00" and (10 + int.from_bytes(head[8:10], "little")) % 64 == 0


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_word2vec_bit_exact(tmp_path, kv, binary):
    src = tmp_path / ("in.bin" if binary else "in.vec")
    kv.save_word2vec_format(str(src), binary=binary)
    ref = KeyedVectors.load_word2vec_format(str(src), binary=binary)
    check_pair(tmp_path, src, ref)


def test_glove_bit_exact(tmp_path, kv):
    src = tmp_path / "in.txt"
    src.write_bytes(glove_text(kv))
    ref = KeyedVectors.load_word2vec_format(str(src), binary=False, no_header=True)
    check_pair(tmp_path, src, ref)
    check_pair(tmp_path, src, ref, ("--format", "glove", "--threads", "1"))  # forced, one thread: the same bytes


def test_vocab_path_and_format_forced(tmp_path, kv):
    src = tmp_path / "in.vec"
    kv.save_word2vec_format(str(src), binary=False)
    rc, so, se = run(str(src), "-o", str(tmp_path / "m"), "--vocab", str(tmp_path / "w.txt"), "--quiet")
    assert (rc, so, se) == (0, "", "")
    assert sorted(os.listdir(tmp_path)) == ["in.vec", "m", "w.txt"]
    # Read as GloVe, the header line `3000 64` has one number after its "word": the next line is the bad one.
    rc, so, se = run(str(src), "-o", str(tmp_path / "g.npy"), "--format", "glove")
    assert rc == 1 and so == ""
    assert se.startswith("embd convert: %s: line 2: " % src) and se.count("\n") == 1, se


BAD = [
    ("wrong column count", b"a 1 2\nb 1 2\nc 1\nd 1 2\n", 3, "1 numbers after the word, expected 2"),
    ("unparsable number", b"a 1 2\nb 1 2\nc 1 2\nd 1 2x\n", 4, "field 3 is not a number: '2x'"),
    ("invalid UTF-8", b"a 1 2\nb\xc3\x28 1 2\nc 1 2\n", 2, "invalid UTF-8 in the word (byte 2)"),
    ("duplicate word", b"a 1 2\nb 1 2\nc 1 2\nb 3 4\n", 4, "duplicate word 'b' (first on line 2)"),
    ("header disagrees", b"5 2\na 1 2\nb 1 2\n", 1, "the header says 5 rows but 2 lines follow it"),
]


@pytest.mark.parametrize("name,text,line,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_line_fails_with_its_number_and_leaves_nothing(tmp_path, name, text, line, msg):
    src = tmp_path / "in.txt"
    src.write_bytes(text)
    rc, so, se = run(str(src), "-o", str(tmp_path / "out.npy"))
    assert rc == 1 and so == ""
    assert se == "embd convert: %s: line %d: %s\n" % (src, line, msg)
    assert os.listdir(tmp_path) == ["in.txt"]  # no OUT, no vocabulary, no temporary file


def test_skip_bad_counts(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"a 1 2\nb 1\nc 1 x\nd\xff 1 2\na 5 6\ne 7 8\n")
    rc, so, se = run(str(src), "-o", str(tmp_path / "out.npy"), "--skip-bad")
    assert rc == 0, se
    assert se == "embd convert: %s: skipped 4 bad lines; the first: line 2: 1 numbers after the word, expected 2\n" % src
    assert so.startswith("embd convert: %s (glove): 2 rows x 2 dim" % src)
    assert np.load(tmp_path / "out.npy").tolist() == [[1, 2], [7, 8]]
    assert (tmp_path / "out.vocab").read_bytes() == b"a\ne\n"
    # The header cannot be skipped: it is about the whole file.
    src.write_bytes(b"5 2\na 1 2\nb 1 2\n")
    rc, _, se = run(str(src), "-o", str(tmp_path / "h.npy"), "--skip-bad")
    assert rc == 1 and "line 1: the header says 5 rows" in se


def test_usage_errors(tmp_path):
    assert run("--help")[0] == 0 and "OUT with .npy replaced by .vocab" in run("--help")[1]
    assert run(str(tmp_path / "x"))[0] == 2  # no -o
    assert run("a", "-o", "b", "--format", "npy")[0] == 2
    assert run("a", "-o", "b", "--threads", "0")[0] == 2
    rc, so, se = run(str(tmp_path / "missing.txt"), "-o", str(tmp_path / "o.npy"))
    assert rc == 1 and se == "embd convert: %s: No such file or directory\n" % (tmp_path / "missing.txt")
    src = tmp_path / "in.txt"
    src.write_bytes(b"a 1 2\n")
    rc, so, se = run(str(src), "-o", str(tmp_path / "nodir" / "o.npy"))
    assert rc == 1 and "cannot create a temporary file beside it" in se
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_quiet_without_a_terminal(tmp_path, kv):
    src = tmp_path / "in.txt"
    src.write_bytes(glove_text(kv))
    rc, so, se = run(str(src), "-o", str(tmp_path / "o.npy"))
    assert rc == 0 and se == "" and so.count("\n") == 1
    rc, so, se = run(str(src), "-o", str(tmp_path / "o.npy"), "--quiet")
    assert (rc, so, se) == (0, "", "")
    rc, so, se = run(str(src), "-o", str(tmp_path / "o.npy"), "--progress")  # forced: drawn into the pipe
    assert rc == 0 and "[" + "#" * 30 + "] 100%" in se


def run_on_tty(args):
    """Run embd with stderr on a pseudo-terminal; (exit status, stdout, what the terminal received)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([EMBD, *args], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    got = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        got += chunk
    out = p.stdout.read()
    rc = p.wait(timeout=60)
    os.close(master)
    return rc, out.decode(), got.decode(errors="replace")


def test_progress_bar_on_a_terminal(tmp_path, kv):
    src = tmp_path / "in.txt"
    src.write_bytes(glove_text(kv))
    rc, so, tty = run_on_tty(["convert", str(src), "-o", str(tmp_path / "o.npy")])
    assert rc == 0, tty
    assert "\r\x1b[K%s [" % src in tty
    assert "[" + "#" * 30 + "] 100%" in tty and tty.endswith("\r\n")  # the last frame is full, then a newline
    assert so.startswith("embd convert: ")
    rc, so, tty = run_on_tty(["convert", str(src), "-o", str(tmp_path / "o.npy"), "--quiet"])
    assert (rc, so, tty) == (0, "", "")


@pytest.mark.skipif(os.environ.get("EMBD_SANITIZE", "") != "", reason="builds its own lib/textvec.c; once is enough")
def test_gensim_textvec_script():
    """tests/gensim_textvec.py: textvec against np.float32 and gensim on 800,000 strings, 0 differences."""
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests", "gensim_textvec.py"), "200000"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert " 0 differences" in p.stdout and p.stdout.rstrip().endswith("PASS"), p.stdout


def test_sigusr1_the_logrotate_signal_does_not_kill_a_convert(tmp_path, kv):
    """The README's logrotate rule sends SIGUSR1 to `pidof embd`, which finds `embd convert` too: a convert ignores
    it and finishes (its default action would kill it, leaving its temporary file). The convert is held at its
    rename by the output directory's lock, as a load holds it, so the signal surely comes while it runs."""
    import fcntl
    import glob
    import signal
    import time
    src = tmp_path / "g.txt"
    src.write_bytes(glove_text(kv))
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        p = subprocess.Popen([EMBD, "convert", str(src), "-o", str(out / "w.npy")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        for _ in range(1000):
            if glob.glob(str(out / "*.tmp")) or p.poll() is not None:
                break
            time.sleep(0.01)
        assert glob.glob(str(out / "*.tmp")), p.communicate()
        p.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        assert p.poll() is None  # still running (held by the lock), not killed
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert sorted(os.listdir(out)) == ["w.npy", "w.vocab"]
