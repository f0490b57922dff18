"""make bench's harness: free ports (embd on port 0, its port read from its start-up line), and results written where
the user asks, the committed loadtest/results only with SAVE=1."""
import importlib
import os
import signal
import socket
import sys
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "loadtest"))


def bench(monkeypatch, **env):
    for k in ("SAVE", "OUT", "QUICK"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import bench as b
    return importlib.reload(b)


def test_results_go_to_build_bench_or_out_and_the_committed_ones_only_with_save(monkeypatch, tmp_path):
    assert bench(monkeypatch).RESULTS == os.path.join(ROOT, "build", "bench")
    assert bench(monkeypatch, OUT=str(tmp_path)).RESULTS == str(tmp_path)
    assert bench(monkeypatch, OUT=str(tmp_path), SAVE="1").RESULTS == os.path.join(ROOT, "loadtest", "results")
    assert bench(monkeypatch, SAVE="0").RESULTS == os.path.join(ROOT, "build", "bench")


def test_embd_starts_on_port_0_and_its_port_is_read_from_its_start_up_line(monkeypatch, tmp_path, data):
    b = bench(monkeypatch)
    p, port = b.start_embd([data["f32_path"], "--access-log=false"], str(tmp_path / "embd.log"))
    try:
        assert port != 0
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/info" % port, timeout=10) as r:
            assert r.status == 200
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        assert p.wait(timeout=30) == 0


def test_a_peer_gets_a_port_nothing_listens_on(monkeypatch):
    port = bench(monkeypatch).free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free: binding it works
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_rows_only_run_writes_its_own_ratios_not_the_committed_pages(monkeypatch, tmp_path):
    """`make bench ONLY=rows` splices its rows and its own ratios into the page it writes (it copied the committed
    ratio table before, figures of another run)."""
    b = bench(monkeypatch, OUT=str(tmp_path))
    (tmp_path / "RESULTS.md").write_text("# r\n\n## Throughput and latency\n\nold rows\n\n"
                                         "## Ratios (embd / peer, run by run)\n\n| row_bin | nginx | 9.99 | 9.99 |\n\n"
                                         "## Targets\n\nkept\n")
    runs = [{"round": r, "workload": "row_bin", "peer": p, "rps": v}
            for r, (e, n) in enumerate([(100.0, 50.0), (90.0, 60.0), (80.0, 40.0)])
            for p, v in (("embd", e), ("nginx", n))]
    ws = [w for w in b.WORKLOADS if w[0] == "row_bin"]
    b.splice_section("Ratios (embd / peer, run by run)", b.ratios_section(runs, ws))
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| row_bin | nginx | 2.00 | 2.00 1.50 2.00 |" in text and "9.99" not in text
    assert "## Targets\n\nkept" in text and "old rows" in text


def test_half_precision_rows_side_by_side_with_their_ratio_to_f32(monkeypatch):
    """The half-precision table: each workload's req/s over its f32 twin's, round by round, and the goals (a gather
    as f16 or bf16 faster than f32; a slice as f16 within 1.2 x f32's time). PEERS=embd leaves Flask out."""
    b = bench(monkeypatch, WORKLOADS="gather_4096,gather_4096_f16,gather_4096_bf16,slice_4096,slice_4096_f16",
              PEERS="embd")
    ws = b.chosen_workloads()
    assert [(w, peers) for w, _, peers in ws] == [("gather_4096", ["embd"]), ("gather_4096_f16", ["embd"]),
                                                  ("gather_4096_bf16", ["embd"]), ("slice_4096", ["embd"]),
                                                  ("slice_4096_f16", ["embd"])]
    rps = {"gather_4096": (100, 100, 100, 100, 100), "gather_4096_f16": (150, 120, 90, 130, 110),
           "gather_4096_bf16": (100, 100, 100, 100, 100), "slice_4096": (100, 100, 100, 100, 100),
           "slice_4096_f16": (83, 84, 90, 70, 80)}
    runs = [{"round": r, "workload": w, "peer": "embd", "rps": v[r], "MBps": 1.0, "p50_ms": 2.0}
            for w, v in rps.items() for r in range(b.ROUNDS)]
    text = b.half_section(runs, ws)
    assert "| gather 4,096 as f16 | 120 | 1.0 | 2.00 | 1.20 | 1.50 1.20 0.90 1.30 1.10 | faster than f32 (> 1.00) " \
           "| yes |" in text
    assert "| gather 4,096 as bf16 | 100 | 1.0 | 2.00 | 1.00 |" in text  # equal is not faster: **no**
    # 83 req/s against 100 is 1.205 x the time: just past the bound
    assert "| slice 4,096 as f16 | 83 | 1.0 | 2.00 | 0.83 | 0.83 0.84 0.90 0.70 0.80 | time within 1.2 x f32's " \
           "(>= 0.833) | **no** |" in text
    assert text.count("**no**") == 2
    runs = [dict(r, rps=r["rps"] + 1) if r["workload"] == "slice_4096_f16" else r for r in runs]
    assert "| slice 4,096 as f16 | 84 | 1.0 | 2.00 | 0.84 | 0.84 0.85 0.91 0.71 0.81 | time within 1.2 x f32's " \
           "(>= 0.833) | yes |" in b.half_section(runs, ws)
    assert b.half_section(runs, [w for w in ws if w[0] == "gather_4096"]) == ""
