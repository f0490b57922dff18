"""The command line: --help lists every key, config/embd.json holds every key at its default, embd info, flags over the file."""
import json
import os
import subprocess

from conftest import EMBD, after_listening

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def run(*args):
    p = subprocess.run([EMBD, *args], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def keys(doc, prefix=""):
    for k, v in doc.items():
        if isinstance(v, dict):
            yield from keys(v, prefix + k + ".")
        else:
            yield prefix + k


def test_config_file_lists_every_key_at_its_default():
    rc, defaults, _ = run("serve", "--print-config")
    assert rc == 0
    with open(os.path.join(ROOT, "config", "embd.json")) as f:
        shipped = json.load(f)
    assert shipped == json.loads(defaults)
    rc, out, _ = run("serve", "--help")
    assert rc == 0
    for k in keys(shipped):
        assert "--" + k in out, k


def test_flags_override_the_file(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"limits": {"max_ids": 5, "request_bytes": "1MiB"}, "listen": {"port": 9}}')
    doc = json.loads(run("serve", "--config", str(cfg), "--port", "7", "--limits.max_ids=6", "--print-config")[1])
    assert doc["listen"]["port"] == 7 and doc["limits"]["max_ids"] == 6 and doc["limits"]["request_bytes"] == "1MiB"


def test_info_and_version(data):
    rc, out, _ = run("info", data["f32_path"])
    assert rc == 0 and "rows: 1000\n" in out and "dim: 48\n" in out and "dtype: f32\n" in out
    rc, out, _ = run("info", data["raw_path"], "--dim", "16")
    assert rc == 0 and "rows: 200\n" in out and "format: raw\n" in out
    rc, out, _ = run("--version")
    assert rc == 0 and out.startswith("embd ")
    rc, out, err = run("frobnicate")
    assert rc == 2 and "unknown command 'frobnicate'" in err


def test_serve_a_fifo_fails_at_once(tmp_path):
    """A FIFO is refused before a byte is read: embd serve exits 1 at once with the reason, instead of
    waiting for a writer."""
    fifo = tmp_path / "vectors.npy"
    os.mkfifo(fifo)
    rc, out, err = run("serve", str(fifo), "--port", "0")  # run() times out after 30 s
    assert rc == 1 and after_listening(err) == "embd: %s: not a regular file (a FIFO)\n" % fifo, err
