"""safetensors files built byte by byte from the published format, served as they are: the only 2-D tensor or one
named with --tensor, F32/F16/BF16, data that starts at an odd offset, and hostile headers refused at start-up."""
import io
import json
import struct
import subprocess

import numpy as np

from conftest import EMBD, after_listening


def safetensors(path, tensors, pad=0, metadata=None):
    """Write tensors {name: (dtype name, shape, raw bytes)} as a .safetensors file; pad spaces make the header's
    length (and so where the data starts) whatever the test needs."""
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode() + b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def bf16(a):
    """float32 -> bfloat16 bits, rounded to nearest even (as torch does)."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def test_the_only_2d_tensor_served_from_an_unaligned_offset(start, tmp_path):
    rng = np.random.default_rng(7)
    emb = rng.standard_normal((50, 16)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    p = tmp_path / "model.safetensors"
    for pad in range(4):  # the data section starts at 8 + N: every alignment mod 4
        safetensors(p, {"lm_head.bias": ("F32", (16,), bias.tobytes()),
                        "model.embed_tokens.weight": ("F32", (50, 16), emb.tobytes())},
                    pad=pad, metadata={"format": "pt"})
        d = start(str(p))
        info = d.json("/v1/info")
        assert (info["format"], info["rows"], info["dim"], info["dtype"]) == ("safetensors", 50, 16, "f32")
        s, h, b = d.get("/v1/rows?start=3&stop=9&format=bin")
        assert s == 200 and h["x-embd-path"] == "zero-copy" and b == emb[3:9].tobytes()
        rows = np.asarray(d.json("/v1/rows?ids=49,0,7")["rows"], dtype=np.float32)
        assert rows.tobytes() == emb[[49, 0, 7]].tobytes()  # JSON read from unaligned floats, exact
        s, h, b = d.get("/v1/rows/5?format=bin&dtype=f16")
        assert b == emb[5].astype(np.float16).tobytes()
        d.stop()


def test_a_named_tensor_and_the_list_when_none_is_named(start, tmp_path):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((10, 8)).astype(np.float16)
    w = rng.standard_normal((20, 4)).astype(np.float32)
    p = tmp_path / "two.safetensors"
    safetensors(p, {"a": ("F16", (10, 8), a.tobytes()), "w": ("BF16", (20, 4), bf16(w).tobytes())})
    r = subprocess.run([EMBD, "serve", str(p), "--port", "0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "'a' (10, 8) F16" in r.stderr and "'w' (20, 4) BF16" in r.stderr and "--tensor" in r.stderr, r.stderr
    d = start(str(p), "--tensor", "w")
    assert d.json("/v1/info")["dtype"] == "bf16"
    s, h, b = d.get("/v1/rows?start=0&stop=20&format=bin")
    assert b == bf16(w).tobytes() and h["x-embd-dtype"] == "bf16"
    got = np.asarray(d.json("/v1/rows/19")["rows"], dtype=np.float32)
    want = (bf16(w[19]).astype(np.uint32) << 16).view(np.float32)
    assert got.tobytes() == want.tobytes()
    d.stop()
    d = start(str(p), "--tensor", "a")
    got = np.load(io.BytesIO(d.get("/v1/rows?start=2&stop=4&format=npy")[2]))
    assert got.dtype == np.float16 and got.tobytes() == a[2:4].tobytes()
    out = subprocess.run([EMBD, "info", str(p), "--tensor", "a"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "format: safetensors" in out.stdout and "tensors: 2" in out.stdout
    assert "  a F16 (10, 8)" in out.stdout and "  w BF16 (20, 4)" in out.stdout, out.stdout


def test_hostile_headers_are_one_line_errors(tmp_path):
    good = np.ones((4, 4), np.float32).tobytes()
    cases = {
        "past_the_end": struct.pack("<Q", 2**62) + b"{}",
        "offsets_past_the_end": None,
        "deep": None,
    }
    p = tmp_path / "bad.safetensors"
    header = json.dumps({"t": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 128]}}).encode()
    cases["offsets_past_the_end"] = struct.pack("<Q", len(header)) + header + good
    deep = b"{" + b'"a":{' * 100 + b"}" * 101
    cases["deep"] = struct.pack("<Q", len(deep)) + deep
    for name, raw in cases.items():
        p.write_bytes(raw)
        r = subprocess.run([EMBD, "serve", str(p), "--port", "0"], capture_output=True, text=True, timeout=30)
        err = after_listening(r.stderr)
        assert r.returncode == 1 and err.count("\n") == 1 and str(p) in err, (name, r.stderr)
