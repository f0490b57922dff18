"""?dtype=f16 and bf16, byte for byte: f16 as NumPy's astype(np.float16), bf16 as torch's .to(torch.bfloat16), for
every value that is hard to round (subnormals, halfway cases, overflow to infinity, zeros, infinities, NaNs with
payloads), through a slice (one run, converted straight from the mapping across row boundaries) and a gather (row by
row), with row lengths that leave the vector path a scalar tail; and an f16 table served as f32 and bf16, exactly.
"""
import numpy as np
import pytest

from conftest import npy

torch = pytest.importorskip("torch", reason="torch (python3-torch; scripts/deps.sh test installs it) checks bf16")


def bits(*u):
    return np.array(u, dtype=np.uint32).view(np.float32)


def hard_values():
    """float32 values each conversion must round exactly; no signalling NaN (NumPy keeps one, F16C quiets it)."""
    one = 0x3F800000
    v = [
        0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00400000,  # zeros, float32 subnormals
        0x33000000, 0x33000001, 0x33400000, 0x337FFFFF, 0x33800000,  # about the smallest f16 subnormal
        0x387FC000, 0x387FE000, 0x387FEFFF, 0x387FF000, 0x38800000,  # about the smallest normal f16
        one + 0x1000, one + 0x3000, one + 0x0FFF, one + 0x1001,  # f16 ties and their neighbours
        one + 0x8000, one + 0x18000, one + 0x7FFF, one + 0x8001,  # bf16 ties and their neighbours
        0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0x47800000,  # f16's largest, the tie to infinity, past it
        0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0xFF7FFFFF,  # float32's largest: bf16 infinity or not
        0x7F800000, 0xFF800000,  # infinities
        0x7FC00000, 0xFFC00000, 0x7FC00001, 0x7FE02000, 0xFFFFFFFF, 0x7FFFE000,  # quiet NaNs, payloads
    ]
    rng = np.random.default_rng(11)
    rnd = (rng.standard_normal(300) * np.exp2(rng.integers(-30, 20, 300))).astype(np.float32).view(np.uint32)
    return np.concatenate([np.array(v, dtype=np.uint32), rnd, np.array(v, dtype=np.uint32) ^ 0x80000000]) \
        .view(np.float32)


def as_f16(a):
    return a.astype(np.float16).tobytes()


def as_bf16(a):
    return torch.from_numpy(np.ascontiguousarray(a)).to(torch.bfloat16).view(torch.int16).numpy().tobytes()


@pytest.mark.parametrize("dim", [37, 64])  # 37: every row leaves a tail of 5 past the vector steps
def test_f32_table_as_f16_and_bf16(start, tmp_path, dim):
    v = hard_values()
    rows = len(v)
    a = v[(np.arange(rows)[:, None] + np.arange(dim)[None, :]) % rows]  # each value in every column: bulk and tail
    np.save(tmp_path / "hard.npy", a)
    d = start(str(tmp_path / "hard.npy"))
    ids = np.random.default_rng(3).permutation(np.arange(rows).repeat(2))  # every row, out of order, twice
    for dtype, want in (("f16", as_f16), ("bf16", as_bf16)):
        status, h, body = d.get("/v1/rows?start=1&stop=%d&format=bin&dtype=%s" % (rows, dtype))
        assert status == 200 and h["x-embd-path"] == "gather", body
        assert body == want(a[1:]), dtype
        status, h, body = d.request("POST", "/v1/rows?format=bin&dtype=" + dtype, body=npy(ids),
                                    headers={"Content-Type": "application/x-npy"})
        assert status == 200 and h["x-embd-path"] == "gather", body
        assert body == want(a[ids]), dtype
    # torch gives every NaN 0xFFFF (its AVX2 path; its scalar path, ATEN_CPU_CAPABILITY=default, 0x7FC0)
    nan = np.isnan(a[1:]).ravel()
    assert nan.any()
    assert set(np.frombuffer(body, np.uint16)[np.isnan(a[ids]).ravel()]) == {0xFFFF}


def test_signalling_nan_comes_out_quiet(start, tmp_path):
    """F16C makes a signalling NaN quiet (its payload's top bits kept); NumPy's astype keeps it signalling."""
    a = bits(0x7F800001, 0xFFA00000, 0x7FA02000, 0x3F800000, 0x7F800001, 0x7F800001, 0x7F800001, 0x7F800001,
             0x7F800001).reshape(1, 9)
    np.save(tmp_path / "snan.npy", a)
    d = start(str(tmp_path / "snan.npy"))
    _, _, f16 = d.get("/v1/rows?start=0&stop=1&format=bin&dtype=f16")
    assert np.frombuffer(f16, np.uint16).tolist() == [0x7E00, 0xFF00, 0x7F01, 0x3C00] + [0x7E00] * 5
    assert as_f16(a)[:2] == b"\x01\x7c"  # NumPy's, for the record
    _, _, bf16 = d.get("/v1/rows?start=0&stop=1&format=bin&dtype=bf16")
    assert np.frombuffer(bf16, np.uint16).tolist() == [0xFFFF, 0xFFFF, 0xFFFF, 0x3F80] + [0xFFFF] * 5


def test_f16_table_as_f32_and_bf16(start, tmp_path):
    """Every half bit pattern, signalling NaNs included, widened exactly as NumPy's astype(np.float32)."""
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(2048, 32)
    np.save(tmp_path / "all16.npy", h)
    d = start(str(tmp_path / "all16.npy"))
    ids = np.random.default_rng(9).permutation(2048)
    for query, want in (("start=0&stop=2048", h), ("start=7&stop=1999", h[7:1999])):
        _, hd, body = d.get("/v1/rows?%s&format=bin&dtype=f32" % query)
        assert hd["x-embd-dtype"] == "f32"
        assert body == want.astype(np.float32).tobytes()
        _, _, body = d.get("/v1/rows?%s&format=bin&dtype=bf16" % query)
        assert body == as_bf16(want.astype(np.float32))  # f16 -> f32 is exact: one rounding, to bf16
    status, _, body = d.request("POST", "/v1/rows?format=bin&dtype=f32", body=npy(ids),
                                headers={"Content-Type": "application/x-npy"})
    assert status == 200 and body == h[ids].astype(np.float32).tobytes()
