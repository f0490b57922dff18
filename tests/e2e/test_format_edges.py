"""Edges of the file formats a cold review found: text headers that disagree with their lines, convert writing
over its input or a special file, embd info on a model file with many tensors, --tensor on a file without
tensors, a NUL in a GET token, a text file cut short while a reload reads it."""
import io
import json
import os
import signal
import struct
import subprocess
import time

import numpy as np

from conftest import EMBD, after_listening, wait_for
from test_safetensors import safetensors


def embd(*args):
    p = subprocess.run([EMBD, *args], capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_a_header_whose_dim_disagrees_is_text_with_a_line_error(tmp_path):
    p = tmp_path / "wrongdim.vec"
    p.write_text("2 1\na 1 2\nb 3 4\n")
    rc, out, err = embd("serve", str(p), "--port", "0")
    assert rc == 1 and after_listening(err) == "embd: %s: line 2: 2 numbers after the word, expected 1\n" % p
    rc, out, err = embd("info", str(p))
    assert rc == 0 and "format: word2vec\n" in out  # not word2vec_bin made of the digits
    rc, out, err = embd("convert", str(p), "-o", str(tmp_path / "w.npy"))
    assert rc == 1 and "line 2: 2 numbers after the word, expected 1" in err
    assert sorted(os.listdir(tmp_path)) == ["wrongdim.vec"]


def test_a_word2vec_text_file_with_lines_past_64_kib_is_served_as_text(tmp_path, start):
    """dim 10,000: the first record is 70 KB; with a 3-byte word the 64 KiB sniff window once cut it inside
    "-1e-05", auto-detection read the file as binary and serve refused it ("data after the header's 2 records")
    while convert and gensim read it."""
    from gensim.models import KeyedVectors

    dim = 10000
    p = tmp_path / "long.vec"
    p.write_text("2 %d\n" % dim + "".join(w + " -1e-05" * dim + "\n" for w in ("abc", "bcd")))
    kv = KeyedVectors.load_word2vec_format(str(p), binary=False)
    rc, out, err = embd("info", str(p))
    assert rc == 0 and "format: word2vec\n" in out, err
    d = start(str(p))
    status, _, body = d.get("/v1/rows/1?format=npy")
    assert status == 200
    assert np.load(io.BytesIO(body)).tobytes() == kv["bcd"].reshape(1, dim).tobytes()


def test_convert_never_writes_over_its_input_or_a_special_file(tmp_path):
    src = tmp_path / "g.txt"
    text = "a 1 2\nb 3 4\n"
    src.write_text(text)
    for args in (["-o", str(src)], ["-o", "./g.txt"], ["-o", str(tmp_path / "b.npy"), "--vocab", str(src)]):
        p = subprocess.run([EMBD, "convert", str(src), *args], capture_output=True, cwd=tmp_path, timeout=60)
        assert p.returncode == 1, p
        assert b"the output would overwrite the input; name another file" in p.stderr
        assert src.read_text() == text
    fifo = tmp_path / "v.fifo"
    os.mkfifo(fifo)
    rc, out, err = embd("convert", str(src), "-o", str(tmp_path / "c.npy"), "--vocab", str(fifo))
    assert rc == 1 and "%s: not a regular file; convert writes regular files only" % fifo in err
    assert os.path.exists(fifo) and not os.path.isfile(fifo)
    assert sorted(os.listdir(tmp_path)) == ["g.txt", "v.fifo"]


def test_info_lists_the_tensors_of_a_model_with_many(tmp_path):
    p = tmp_path / "model.safetensors"
    tensors = {"model.layers.%d.w" % i: ("F32", (2, 2), np.zeros(4, np.float32).tobytes()) for i in range(300)}
    tensors["model.embed_tokens.weight"] = ("F32", (3, 2), np.arange(6, dtype=np.float32).tobytes())
    safetensors(p, tensors)
    rc, out, err = embd("info", str(p))
    assert rc == 0, err
    assert "tensors: 301\n" in out and "  model.embed_tokens.weight F32 (3, 2)\n" in out
    assert "  model.layers.299.w F32 (2, 2)\n" in out
    assert out.endswith("tensor: none picked (several 2-D tensors): name one with --tensor NAME\n")
    rc, out, err = embd("info", str(p), "--tensor", "model.embed_tokens.weight")
    assert rc == 0 and "rows: 3\ndim: 2\n" in out


def test_a_tensor_named_for_a_file_without_tensors_is_an_error(start, data, tmp_path):
    rc, out, err = embd("serve", data["f32_path"], "--tensor", "x", "--port", "0")
    assert rc == 2
    assert after_listening(err) == ("embd: %s: a npy file holds no named tensors: --tensor (matrix.tensor) does not apply (a tensor, "
                   "x, is named; only safetensors files hold named tensors)\n" % data["f32_path"])


def test_a_nul_in_a_get_token_is_a_bad_token_and_percent_2500_is_the_text(start, tmp_path):
    p = tmp_path / "g.txt"
    p.write_text("%00 1 2\nx 3 4\n")
    d = start(str(p))
    s, h, b = d.get("/v1/rows?tokens=%00")
    assert s == 400 and json.loads(b)["error"] == {"status": 400, "code": "bad_token",
                                                    "message": "tokens[0] holds a NUL byte (%00) (tokens are "
                                                               "separated by commas)"}
    s, h, b = d.get("/v1/rows?tokens=x,a%00b")
    assert s == 400 and json.loads(b)["error"]["message"].startswith("tokens[1] holds a NUL byte")
    s, h, b = d.get("/v1/rows?tokens=%2500&format=bin")
    assert s == 200 and b == np.array([1, 2], np.float32).tobytes()
    s, h, b = d.get("/v1/rows?ids=1%00")
    assert s == 400 and json.loads(b)["error"]["code"] == "bad_id"


def test_a_text_file_cut_short_during_a_reload_is_a_failed_reload(start, tmp_path):
    """Text is read with read(2), not through the mapping: a file written over in place while a reload parses
    it fails that reload (or loads what was there), and the daemon never dies of SIGBUS (it did, reading the
    text through its mapping)."""
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((120000, 50)).astype(np.float32)
    text = "".join("w%d %s\n" % (i, " ".join("%.6g" % x for x in r)) for i, r in enumerate(rows)).encode()
    p = tmp_path / "cur.txt"
    p.write_bytes(text)
    d = start(str(p))
    reloads = 0
    for delay in (0.02, 0.05, 0.1, 0.2):
        p.write_bytes(text)
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(delay)
        with open(p, "r+b") as f:  # cut short while the reload reads or parses it
            f.truncate(len(text) // 3)
        reloads += 1

        def done():
            m = d.metrics()
            return m['embd_reloads_total{result="failed"}'] + m['embd_reloads_total{result="ok"}'] >= reloads
        assert wait_for(done, 30)
        assert d.proc.poll() is None
    s, h, b = d.get("/healthz")
    assert s == 200
