"""What a reload loads: a new path starts from auto-detection and the request (nothing of the old file's spec
carries over), a raw file needs its shape with the path, the next SIGHUP reloads what the last reload loaded
with its own spec, and the answer's X-Embd-Generation names the generation its body names."""
import json
import os
import signal

import numpy as np
import pytest

from conftest import wait_for

TOKEN = "t0k3n-for-the-reload-spec-tests-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN}


@pytest.fixture
def files(tmp_path):
    """A GloVe text file (4 words x 3), a 500 x 32 .npy, and two raw f32 files: 200 x 16 and 300 x 8."""
    glove = tmp_path / "words.txt"
    glove.write_text("the 0.5 1 -2\nof 1.5 0 3\nand -1 2 0.25\nto 4 5 6\n")
    npy = (np.arange(500 * 32, dtype=np.float32).reshape(500, 32) / 7).astype(np.float32)
    np.save(tmp_path / "small.npy", npy)
    # Values that no sniffer takes for text: the bytes of small positive floats are mostly 0x3f/0x40 and NULs.
    raw16 = (np.arange(200 * 16, dtype=np.float32).reshape(200, 16) / 1000 + 1).astype(np.float32)
    raw8 = (np.arange(300 * 8, dtype=np.float32).reshape(300, 8) / 1000 + 2).astype(np.float32)
    raw16.tofile(tmp_path / "wide.f32")
    raw8.tofile(tmp_path / "narrow.f32")
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    return {"dir": tmp_path, "glove": str(glove), "npy": npy, "npy_path": str(tmp_path / "small.npy"),
            "raw16": raw16, "raw16_path": str(tmp_path / "wide.f32"), "raw8": raw8,
            "raw8_path": str(tmp_path / "narrow.f32"), "token": str(tok)}


def reload(d, query):
    s, h, body = d.request("POST", "/v1/admin/reload" + query, b"", AUTH)
    return s, h, json.loads(body)


@pytest.mark.parametrize("fmt", ["auto", "glove"])
def test_a_glove_daemon_reloads_an_npy_by_path(start, files, fmt):
    """The GloVe file's format (given or detected) is not the new file's: the .npy is detected afresh."""
    d = start(files["glove"], "--format", fmt, "--admin.token_file", files["token"])
    assert d.json("/v1/info")["format"] == "glove"
    s, h, body = reload(d, "?path=" + files["npy_path"])
    assert (s, body["error"]["code"]) == (400, "bad_parameter"), body  # the GloVe words would go: vocab= says
    assert ("the table served now has the words of its own file %s: say which vocabulary the new table has, "
            "vocab=FILE" % files["glove"]) in body["error"]["message"]
    s, h, body = reload(d, "?path=%s&vocab=none" % files["npy_path"])
    assert s == 200, body
    info = d.json("/v1/info")
    assert (info["format"], info["rows"], info["dim"], info["vocab"]) == ("npy", 500, 32, False)
    assert d.get("/v1/rows/7?format=bin")[2] == files["npy"][7].tobytes()
    # The next SIGHUP reloads the .npy as an .npy (not as matrix.format says).
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.json("/healthz")["generation"] == 3)
    info = d.json("/v1/info")
    assert (info["source"], info["format"], info["rows"]) == (files["npy_path"], "npy", 500)


def test_a_raw_file_by_path_needs_its_shape(start, files):
    """A raw daemon's --dim is the old file's: a new raw file without dim= is refused (400, nothing loads);
    with dim= and dtype= it loads with that shape."""
    d = start(files["raw16_path"], "--dim", "16", "--dtype", "f32", "--admin.token_file", files["token"])
    s, h, body = reload(d, "?path=" + files["raw8_path"])
    assert s == 400, body
    assert body == {"error": {
        "status": 400, "code": "unknown_format",
        "message": files["raw8_path"] + ": unknown format: no npy or safetensors header, not GloVe or word2vec "
        "text, no known extension; a raw matrix needs its shape with the path (dim=N&dtype=f32|f16|bf16, and "
        "offset= or rows= when needed), or name the format with format="}}
    assert d.json("/healthz")["generation"] == 1
    assert d.json("/v1/info")["dim"] == 16
    s, h, body = reload(d, "?path=%s&dim=8&dtype=f32" % files["raw8_path"])
    assert s == 200 and body["generation"] == 2, body
    info = d.json("/v1/info")
    assert (info["source"], info["format"], info["rows"], info["dim"], info["dtype"]) == (
        files["raw8_path"], "raw", 300, 8, "f32")
    assert d.get("/v1/rows/299?format=bin")[2] == files["raw8"][299].tobytes()
    m = d.settled()
    assert m['embd_reloads_total{result="ok"}'] == 1 and m['embd_reloads_total{result="failed"}'] == 1


@pytest.mark.parametrize("query, message", [
    ("?path={raw8}&format=raw", "a raw matrix needs dim=N and dtype=f32|f16|bf16 together (rows= and offset= go "
     "with them)"),
    ("?path={raw8}&dim=8", "a raw matrix needs dim=N and dtype=f32|f16|bf16 together (rows= and offset= go with "
     "them)"),
    ("?path={raw8}&dtype=f16", "a raw matrix needs dim=N and dtype=f32|f16|bf16 together (rows= and offset= go "
     "with them)"),
    ("?path={raw8}&offset=4", "a raw matrix needs dim=N and dtype=f32|f16|bf16 together (rows= and offset= go "
     "with them)"),
    ("?path={raw8}&dim=0&dtype=f32", "dim '0' is not a positive integer"),
    ("?path={raw8}&dim=8&dtype=f64", "dtype 'f64' is not f32, f16 or bf16"),
    ("?path={raw8}&format=demo", "format 'demo' is not one of auto, npy, safetensors, raw, glove, word2vec, "
     "word2vec_bin, demo (demo names no file)"),
    ("?dim=8&dtype=f32", "dim describes the file named by path=: give path too (without it, the reload opens the "
     "file served now, as it was loaded)"),
])
def test_bad_file_parameters_are_400_before_any_load(start, files, query, message):
    d = start(files["raw16_path"], "--dim", "16", "--admin.token_file", files["token"])
    s, h, body = reload(d, query.format(raw8=files["raw8_path"]))
    assert (s, body) == (400, {"error": {"status": 400, "code": "bad_parameter", "message": message}})
    m = d.settled()
    assert m['embd_reloads_total{result="ok"}'] == 0 and m['embd_reloads_total{result="failed"}'] == 0


def test_sighup_after_a_path_reload_reloads_that_file_with_its_spec(start, files):
    """The spec a reload loaded (path, format, dim, dtype, offset) is what the next SIGHUP loads: not the
    configuration's file, nor its --dim."""
    live = files["dir"] / "live.raw"
    os.link(files["raw8_path"], live)
    d = start(files["raw16_path"], "--dim", "16", "--admin.token_file", files["token"])
    s, h, body = reload(d, "?path=%s&format=raw&dim=8&dtype=f32&offset=32" % live)
    assert s == 200, body
    info = d.json("/v1/info")
    assert (info["rows"], info["dim"]) == (299, 8)  # one row skipped by the offset
    assert d.get("/v1/rows/0?format=bin")[2] == files["raw8"][1].tobytes()
    # Replace the file by rename with other contents of the same layout, then SIGHUP.
    other = (files["raw8"] * -1).astype(np.float32)
    tmp = files["dir"] / "live.raw.tmp"
    other.tofile(tmp)
    os.rename(tmp, live)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.json("/healthz")["generation"] == 3)
    info = d.json("/v1/info")
    assert (info["source"], info["format"], info["rows"], info["dim"]) == (str(live), "raw", 299, 8)
    assert d.get("/v1/rows/0?format=bin")[2] == other[1].tobytes()
    # A reload without a path reopens the same file with the same spec too.
    s, h, body = reload(d, "")
    assert s == 200 and body["generation"] == 4, body
    assert d.json("/v1/info")["dim"] == 8


def test_a_reload_answer_names_the_generation_it_loaded(start, files):
    """X-Embd-Generation says the generation the body is about: the new one after a reload, the serving one
    after a failed reload."""
    d = start(files["npy_path"], "--admin.token_file", files["token"])
    for want in (2, 3):
        s, h, body = reload(d, "")
        assert s == 200 and body["generation"] == want, body
        assert h["x-embd-generation"] == str(want)
    s, h, body = reload(d, "?path=/nonexistent.npy")
    assert s == 500 and body["error"]["code"] == "reload_failed"
    assert h["x-embd-generation"] == "3"
