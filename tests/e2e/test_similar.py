"""Vector operations end to end: /v1/similar (GET, POST ids/tokens/vectors/.npy, analogy), /v1/similarity and
/v1/pool against NumPy computing the same thing on the same file (f32, f16, bf16), and against gensim's
most_similar, similarity and n_similarity on a small real-looking matrix; the edge cases with exact bodies (ties,
NaN and zero rows, k past the rows, k=0, wrong vector lengths, tokens without a vocabulary); accounting, norms
memory, and threads asking at once."""
import io
import json
import threading
import urllib.parse

import numpy as np
import pytest
from gensim.models import KeyedVectors

from conftest import npy
from test_safetensors import bf16, safetensors
from test_tokens import words

JSON = {"Content-Type": "application/json"}
NPY = {"Content-Type": "application/x-npy"}


def post(d, path, obj, headers=JSON):
    """(status, headers, parsed JSON or raw bytes) of one POST; obj is JSON-encoded unless it is bytes."""
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    s, h, b = d.request("POST", path, body, headers)
    return s, h, (json.loads(b) if h.get("content-type", "").startswith("application/json") else b)


def get(d, path):
    s, h, b = d.get(path)
    return s, h, json.loads(b)


def err(status, code, got):
    """Whether got (status, headers, body) is the JSON error status/code."""
    s, _, b = got
    return s == status and b["error"]["status"] == status and b["error"]["code"] == code


# NumPy's answer -------------------------------------------------------------------------------------------------


def norms32(m):
    """Row norms as embd keeps them: the sum of squares in double, rounded to float32."""
    return np.sqrt(np.einsum("ij,ij->i", m.astype(np.float64), m.astype(np.float64))).astype(np.float32)


def ref_scores(m, q, metric):
    """float32 scores of one query against every row of m (float32), as gensim computes them: cosine is
    (q/|q|).row / norm[row], a row of norm 0 scoring 0."""
    q = q.astype(np.float32)
    if metric == "dot":
        return m @ q
    qn = np.float32(np.linalg.norm(q.astype(np.float64)))
    qq = q / qn if qn > 0 else np.zeros_like(q)
    n = norms32(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (m @ qq) / n
    s[n == 0] = 0
    return s


def ref_topk(m, q, k, metric, exclude=()):
    """(ids, scores) best first, ties lower id first, NaN and excluded rows left out."""
    s = ref_scores(m, q, metric)
    ids = np.arange(len(s))
    keep = ~np.isnan(s)
    keep[list(exclude)] = False
    ids, s = ids[keep], s[keep]
    order = np.lexsort((ids, -s))[:k]
    return ids[order], s[order]


def check_hits(hits, m, q, k, metric, exclude=(), vocab=None):
    want_ids, want_s = ref_topk(m, q, k, metric, exclude)
    assert [h["id"] for h in hits] == want_ids.tolist()
    # Cosine within 1e-5; dot, whose scores are not bounded, within 1e-5 of the score's size (float32's rounding).
    np.testing.assert_allclose([h["score"] for h in hits], want_s, rtol=1e-5 if metric == "dot" else 0, atol=1e-5)
    if vocab is not None:
        assert [h["token"] for h in hits] == [vocab[i] for i in want_ids]
    else:
        assert all("token" not in h for h in hits)


@pytest.fixture(scope="module")
def mats(tmp_path_factory):
    """The same kind of matrix in f32 (.npy), f16 (.npy) and bf16 (safetensors): path and float32 view."""
    d = tmp_path_factory.mktemp("similar")
    rng = np.random.default_rng(1111)
    f32 = rng.standard_normal((1500, 40)).astype(np.float32)
    f32[7] = 0  # a zero row among the rest
    np.save(d / "f32.npy", f32)
    f16 = rng.standard_normal((900, 24)).astype(np.float16)
    np.save(d / "f16.npy", f16)
    w = rng.standard_normal((700, 36)).astype(np.float32)
    bits = bf16(w)
    safetensors(d / "bf16.safetensors", {"emb": ("BF16", (700, 36), bits.tobytes())})
    return {"f32": (str(d / "f32.npy"), f32),
            "f16": (str(d / "f16.npy"), f16.astype(np.float32)),
            "bf16": (str(d / "bf16.safetensors"), (bits.astype(np.uint32) << 16).view(np.float32))}


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_similar_matches_numpy(start, mats, dtype):
    path, m = mats[dtype]
    d = start(path)
    assert d.json("/v1/info")["dtype"] == dtype
    rows, dim = m.shape
    rng = np.random.default_rng(len(dtype))
    # GET, one row at a time: the row itself left out, or kept.
    for i in [0, 7, rows - 1, *rng.integers(0, rows, 12).tolist()]:
        for metric in ("cosine", "dot"):
            s, h, b = get(d, "/v1/similar?id=%d&metric=%s" % (i, metric))
            assert s == 200 and b["k"] == 10 and b["metric"] == metric
            check_hits(b["results"], m, m[i], 10, metric, exclude=[i])
        s, h, b = get(d, "/v1/similar?id=%d&k=25&include_self=1" % i)
        check_hits(b["results"], m, m[i], 25, "cosine")
    # POST a batch of ids (sgemm): one list per query, in order, each leaving out its own row.
    ids = rng.integers(0, rows, 40).tolist()
    for metric in ("cosine", "dot"):
        s, h, b = post(d, "/v1/similar?k=15&metric=" + metric, {"ids": ids})
        assert s == 200 and b["k"] == 15 and len(b["results"]) == len(ids)
        for i, hits in zip(ids, b["results"]):
            check_hits(hits, m, m[i], 15, metric, exclude=[i])
    # Query vectors, as JSON and as float32 and float16 .npy: nothing left out.
    qs = rng.standard_normal((20, dim)).astype(np.float32)
    s, h, b = post(d, "/v1/similar?k=12", {"vectors": qs.tolist()})
    assert s == 200 and len(b["results"]) == 20
    for q, hits in zip(qs, b["results"]):
        check_hits(hits, m, q, 12, "cosine")
    for qd in (np.float32, np.float16):
        s, h, b = post(d, "/v1/similar?k=12&metric=dot", npy(qs.astype(qd)), NPY)
        assert s == 200 and len(b["results"]) == 20, b
        for q, hits in zip(qs.astype(qd).astype(np.float32), b["results"]):
            check_hits(hits, m, q, 12, "dot")
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


# gensim ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def glove(tmp_path_factory):
    """A 2000 x 50 matrix with a vocabulary, in clusters as real vectors are (so neighbours mean something), served
    as .npy + vocabulary, and gensim's KeyedVectors of the same floats."""
    d = tmp_path_factory.mktemp("glove")
    rng = np.random.default_rng(2000)
    keys = words(rng, 2000)
    centres = rng.standard_normal((40, 50))
    m = (centres[rng.integers(0, 40, 2000)] + 0.6 * rng.standard_normal((2000, 50))).astype(np.float32)
    np.save(d / "g.npy", m)
    (d / "g.vocab").write_bytes(("\n".join(keys) + "\n").encode())
    kv = KeyedVectors(vector_size=50)
    kv.add_vectors(keys, m)
    kv.fill_norms()
    return str(d / "g.npy"), str(d / "g.vocab"), keys, m, kv


def same_as_gensim(hits, want, keys):
    assert [h["token"] for h in hits] == [w for w, _ in want]
    assert [keys[h["id"]] for h in hits] == [w for w, _ in want]
    np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in want], rtol=0, atol=1e-5)


def test_most_similar_as_gensim(start, glove):
    npy_path, vocab, keys, m, kv = glove
    d = start(npy_path, "--vocab", vocab)
    rng = np.random.default_rng(5)
    picks = [keys[i] for i in rng.choice(len(keys), 120, replace=False)]
    for w in picks[:60]:  # GET by token, one at a time
        s, _, b = d.request("GET", "/v1/similar?token=" + urllib.parse.quote(w))
        assert s == 200, b
        same_as_gensim(json.loads(b)["results"], kv.most_similar(w, topn=10), keys)
    s, _, b = post(d, "/v1/similar", {"tokens": picks})  # one batch
    assert s == 200 and len(b["results"]) == len(picks)
    for w, hits in zip(picks, b["results"]):
        same_as_gensim(hits, kv.most_similar(w, topn=10), keys)
    # The analogy form: king - man + woman; tokens and ids mixed.
    for _ in range(40):
        p = [keys[i] for i in rng.choice(len(keys), int(rng.integers(1, 4)), replace=False)]
        n = [keys[i] for i in rng.choice(len(keys), int(rng.integers(0, 3)), replace=False) if keys[i] not in p]
        body = {"positive": p, "negative": n}
        if len(p) > 1:
            body["positive"] = [p[0], keys.index(p[1])] + p[2:]
        s, _, b = post(d, "/v1/similar?k=10", body)
        assert s == 200 and b["k"] == 10, b
        same_as_gensim(b["results"], kv.most_similar(positive=p, negative=n, topn=10), keys)


def test_similarity_and_n_similarity_as_gensim(start, glove):
    npy_path, vocab, keys, m, kv = glove
    d = start(npy_path, "--vocab", vocab)
    rng = np.random.default_rng(6)
    pairs = [[keys[a], keys[b]] for a, b in rng.integers(0, len(keys), (50, 2))]
    pairs.append([keys[3], keys[3]])
    s, h, b = post(d, "/v1/similarity", {"pairs": pairs})
    assert s == 200 and b["metric"] == "cosine" and int(h["x-embd-accounted-bytes"]) > 0
    np.testing.assert_allclose(b["scores"], [kv.similarity(x, y) for x, y in pairs], rtol=0, atol=1e-6)
    ids = [[keys.index(x), keys.index(y)] for x, y in pairs]
    s, h, b = post(d, "/v1/similarity?metric=dot", {"pairs": ids})
    np.testing.assert_allclose(b["scores"], [np.dot(m[x].astype(np.float64), m[y]) for x, y in ids], rtol=1e-6)
    for _ in range(20):
        a = [keys[i] for i in rng.integers(0, len(keys), int(rng.integers(1, 6)))]
        c = [keys[i] for i in rng.integers(0, len(keys), int(rng.integers(1, 6)))]
        s, h, b = post(d, "/v1/similarity", {"a": a, "b": c})
        assert s == 200 and set(b) == {"metric", "score"}, b
        assert abs(b["score"] - kv.n_similarity(a, c)) <= 1e-6
        s, h, b = post(d, "/v1/similarity?metric=dot", {"a": a, "b": c})
        ia, ic = [keys.index(x) for x in a], [keys.index(x) for x in c]
        want = np.dot(m[ia].astype(np.float64).mean(0).astype(np.float32).astype(np.float64),
                      m[ic].astype(np.float64).mean(0).astype(np.float32))
        assert s == 200 and b["metric"] == "dot" and abs(b["score"] - want) <= 1e-6 * max(1, abs(want)), (b, want)
    assert err(400, "empty_batch", post(d, "/v1/similarity", {"a": [], "b": c}))


@pytest.mark.parametrize("op", ["mean", "sum"])
def test_pool_as_numpy(start, glove, op):
    npy_path, vocab, keys, m, kv = glove
    d = start(npy_path, "--vocab", vocab)
    rng = np.random.default_rng(7)
    for n in (1, 2, 7, 300):
        ids = rng.integers(0, len(keys), n).tolist()
        for weights in (None, rng.uniform(0.1, 3, n).tolist()):
            rows = m[ids].astype(np.float64)
            w = np.ones(n) if weights is None else np.asarray(weights)
            want = (np.average(rows, axis=0, weights=w) if op == "mean" else (rows * w[:, None]).sum(0))
            want = want.astype(np.float32)
            body = {"tokens": [keys[i] for i in ids], "op": op}
            if weights is not None:
                body["weights"] = weights
            s, h, b = post(d, "/v1/pool", body)
            assert s == 200 and b["shape"] == [1, 50] and b["dtype"] == "f32", b
            assert int(h["x-embd-accounted-bytes"]) > 0
            np.testing.assert_allclose(b["rows"][0], want, rtol=1e-6, atol=1e-7)
            s, h, raw = post(d, "/v1/pool?format=bin", body)
            assert s == 200 and len(raw) == 200
            np.testing.assert_allclose(np.frombuffer(raw, np.float32), want, rtol=1e-6, atol=1e-7)
            s, h, raw = post(d, "/v1/pool?format=npy&dtype=f16", body)
            got = np.load(io.BytesIO(raw))
            assert got.dtype == np.float16 and got.shape == (1, 50)
            np.testing.assert_allclose(got[0].astype(np.float32), want.astype(np.float16).astype(np.float32),
                                       rtol=1e-3, atol=1e-3)
            s, h, b = post(d, "/v1/pool?normalize=l2", body)
            unit = want.astype(np.float64) / np.linalg.norm(want.astype(np.float64))
            np.testing.assert_allclose(b["rows"][0], unit, rtol=1e-5, atol=1e-6)
            s, h, raw = post(d, "/v1/pool?format=npy&normalize=l2", {"ids": ids, "op": op, **(
                {"weights": weights} if weights is not None else {})})
            np.testing.assert_allclose(np.load(io.BytesIO(raw))[0], unit, rtol=1e-5, atol=1e-6)
    assert err(400, "bad_parameter", post(d, "/v1/pool", {"ids": [1, 2], "weights": [1, -1]}))
    assert err(400, "bad_body", post(d, "/v1/pool", {"ids": [1, 2], "weights": [1]}))
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


# Edge cases, exact bodies -----------------------------------------------------------------------------------------

EDGE = np.array([
    [1, 0, 0],       # 0
    [1, 0, 0],       # 1: the same as 0 (a tie)
    [0, 0, 0],       # 2: norm 0
    [np.nan, 1, 0],  # 3: NaN: never returned
    [0.5, 0.5, 0],   # 4
    [-1, 0, 0],      # 5
    [2, 0, 0],       # 6: cosine ties with 0 and 1
], np.float32)
TOK = list("abcdefg")


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    d = tmp_path_factory.mktemp("edge")
    np.save(d / "e.npy", EDGE)
    (d / "e.vocab").write_text("\n".join(TOK) + "\n")
    return str(d / "e.npy"), str(d / "e.vocab")


def hits(*pairs, vocab=True):
    return [dict(id=i, token=TOK[i], score=s) if vocab else dict(id=i, score=s) for i, s in pairs]


def test_edge_cases_exact(start, edge):
    d = start(edge[0], "--vocab", edge[1], "--limits.max_ids", "50")
    s, h, b = d.get("/v1/similar?id=0")
    assert s == 200 and b == (b'{"k":10,"metric":"cosine","results":[{"id":1,"token":"b","score":1},'
                              b'{"id":6,"token":"g","score":1},{"id":4,"token":"e","score":0.70710677},'
                              b'{"id":2,"token":"c","score":0},{"id":5,"token":"f","score":-1}]}\n')
    assert h["content-type"] == "application/json" and int(h["x-embd-accounted-bytes"]) > 0
    one = lambda q: get(d, "/v1/similar?" + q)[2]  # noqa: E731
    # Ties lower id first; include_self keeps the row itself, in its place among the ties.
    assert one("id=0&include_self=1&k=4") == {"k": 4, "metric": "cosine",
                                              "results": hits((0, 1), (1, 1), (6, 1), (4, 0.70710677))}
    assert one("token=g&k=2")["results"] == hits((0, 1), (1, 1))
    # dot: 6 scores 2 against 0 and 1.
    assert one("id=6&metric=dot") == {"k": 10, "metric": "dot",
                                      "results": hits((0, 2), (1, 2), (4, 1), (2, 0), (5, -2))}
    # The zero row as the query: every score 0, never NaN; the NaN row never.
    assert one("token=c") == {"k": 10, "metric": "cosine", "results": hits((0, 0), (1, 0), (4, 0), (5, 0), (6, 0))}
    # The NaN row as the query: refused (it would score every row NaN, and the zero row 0), not answered.
    assert get(d, "/v1/similar?id=3&include_self=1")[::2] == (400, {"error": {
        "status": 400, "code": "bad_vector",
        "message": "query 0 (row 3) holds NaN at element 0: a query must be finite"}})
    # k past the rows: every row; k=0: none; k past limits.max_ids: 413.
    assert one("id=5&k=49&include_self=1")["results"] == hits((5, 1), (2, 0), (4, -0.70710677), (0, -1), (1, -1),
                                                              (6, -1))
    assert one("id=5&k=0") == {"k": 0, "metric": "cosine", "results": []}
    assert err(413, "too_many_ids", get(d, "/v1/similar?id=5&k=51"))
    assert err(400, "bad_parameter", get(d, "/v1/similar?id=5&k=-1"))
    assert err(400, "bad_parameter", get(d, "/v1/similar?id=5&metric=l2"))
    assert err(400, "bad_parameter", get(d, "/v1/similar?id=5&include_self=2"))
    assert err(400, "bad_parameter", get(d, "/v1/similar?id=5&token=a"))
    assert err(400, "id_out_of_range", get(d, "/v1/similar?id=7"))
    assert err(404, "token_not_found", get(d, "/v1/similar?token=zz"))
    assert err(404, "token_not_found", post(d, "/v1/similar", {"tokens": ["a", "zz"]}))
    # A batch: one list per query, in order; include_self applies to each.
    s, h, b = post(d, "/v1/similar?k=3", {"ids": [6, 2, 0]})
    assert s == 200 and b == {"k": 3, "metric": "cosine", "results": [
        hits((0, 1), (1, 1), (4, 0.70710677)), hits((0, 0), (1, 0), (4, 0)), hits((1, 1), (6, 1), (4, 0.70710677))]}
    s, h, b = post(d, "/v1/similar?k=2&include_self=1", {"tokens": ["g", "c", "a"]})
    assert b["results"] == [hits((0, 1), (1, 1)), hits((0, 0), (1, 0)), hits((0, 1), (1, 1))]
    s, h, b = post(d, "/v1/similar?k=0", {"ids": [1, 2]})
    assert b == {"k": 0, "metric": "cosine", "results": [[], []]}
    # Query vectors leave nothing out; JSON, .npy f32 and f16 alike; a wrong length is 400 bad_vector.
    want = {"k": 3, "metric": "cosine", "results": [hits((0, 1), (1, 1), (6, 1)), hits((4, 0.70710677), (0, 0),
                                                                                          (1, 0))]}
    qs = np.array([[3, 0, 0], [0, 1, 0]], np.float32)
    assert post(d, "/v1/similar?k=3", {"vectors": qs.tolist()})[2] == want
    assert post(d, "/v1/similar?k=3", npy(qs), NPY)[2] == want
    assert post(d, "/v1/similar?k=3", npy(qs.astype(np.float16)), NPY)[2] == want
    assert post(d, "/v1/similar?k=3", npy(qs[0]), NPY)[2] == dict(want, results=want["results"][:1])
    assert err(400, "bad_vector", post(d, "/v1/similar", {"vectors": [[1, 0, 0], [1, 0]]}))
    assert err(400, "bad_vector", post(d, "/v1/similar", npy(np.ones((2, 4), np.float32)), NPY))
    assert err(400, "bad_vector", post(d, "/v1/similar", {"vectors": [[1, 0, 1e39]]}))
    # NaN or an infinity in a query vector, as json.dumps and NumPy write them: 400 bad_vector naming the vector.
    for body, headers, where in (({"vectors": [[1, 0, 0], [0, float("nan"), 0]]}, JSON, "vectors[1][1]"),
                                 ({"vectors": [[float("-inf"), 0, 0]]}, JSON, "vectors[0][0]"),
                                 (npy(np.array([[1, 0, 0], [0, 0, np.inf]], np.float32)), NPY, "vectors[1][2]")):
        s, _, b = post(d, "/v1/similar", body, headers)
        assert err(400, "bad_vector", (s, _, b)), b
        want = ("query %s is NaN or an infinity" if headers is NPY else "%s is NaN, an infinity or past a double's "
                "range") % where
        assert b["error"]["message"] == want + "; query vectors must be finite"
    assert err(415, "unsupported_media_type", post(d, "/v1/similar", npy(qs), {"Content-Type": "text/plain"}))
    # Analogy: every named row left out, one flat list.
    s, h, b = post(d, "/v1/similar?k=10", {"positive": ["a", 4], "negative": ["f"]})
    assert s == 200 and [x["id"] for x in b["results"]] == [1, 6, 2] and b["results"][2]["score"] == 0
    # similarity: a NaN row gives null, a zero row 0.
    assert post(d, "/v1/similarity", {"pairs": [["a", "e"], [0, 3], [2, 0], ["a", "b"]]})[2] == {
        "metric": "cosine", "scores": [0.70710677, None, 0, 1]}
    assert post(d, "/v1/similarity?metric=dot", {"pairs": [[6, 0], [5, 6]]})[2] == {"metric": "dot",
                                                                                  "scores": [2, -2]}
    assert post(d, "/v1/pool", {"ids": [0, 4], "weights": [1, 3]})[2] == {"shape": [1, 3], "dtype": "f32",
                                                                          "rows": [[0.625, 0.375, 0]]}
    assert post(d, "/v1/pool", {"tokens": ["a", "g"], "op": "sum"})[2]["rows"] == [[3, 0, 0]]
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


def test_tokens_without_a_vocabulary(start, edge):
    d = start(edge[0])
    assert get(d, "/v1/similar?id=0&k=2")[2] == {"k": 2, "metric": "cosine",
                                                  "results": hits((1, 1), (6, 1), vocab=False)}
    assert err(400, "no_vocabulary", get(d, "/v1/similar?token=a"))
    assert err(400, "no_vocabulary", post(d, "/v1/similar", {"tokens": ["a"]}))
    assert err(400, "no_vocabulary", post(d, "/v1/similar", {"positive": ["a"], "negative": [1]}))
    assert err(400, "no_vocabulary", post(d, "/v1/similarity", {"pairs": [["a", 1]]}))
    assert err(400, "no_vocabulary", post(d, "/v1/pool", {"tokens": ["a"]}))
    s, h, b = post(d, "/v1/similar?k=1", {"positive": [0], "negative": [5]})
    assert b["results"] == hits((1, 1), vocab=False)


# Accounting, norms, threads ---------------------------------------------------------------------------------------


def test_norms_bytes_and_accounting(start, mats):
    path, m = mats["f32"]
    d = start(path)
    assert d.json("/v1/info")["norms_bytes"] == 0 and d.metrics()["embd_norms_bytes"] == 0
    s, h, b = get(d, "/v1/similar?id=3&metric=dot")
    assert s == 200 and int(h["x-embd-accounted-bytes"]) > 0
    assert d.json("/v1/info")["norms_bytes"] == 0  # dot needs no norms
    s, h, b = get(d, "/v1/similar?id=3")
    assert s == 200 and int(h["x-embd-accounted-bytes"]) > 0
    assert d.json("/v1/info")["norms_bytes"] == m.shape[0] * 4
    assert d.metrics()["embd_norms_bytes"] == m.shape[0] * 4
    s, h, b = post(d, "/v1/similar?k=100", {"ids": list(range(1000))})
    assert s == 200 and int(h["x-embd-accounted-bytes"]) > 1000 * 100 * 12
    assert d.settled()["embd_inflight_accounted_bytes"] == 0
    d.stop()
    # A small per-request limit: a big batch is 413, small ones still served, nothing left in flight.
    d = start(path, "--limits.request_bytes", "256KiB")
    assert err(413, "request_too_large", post(d, "/v1/similar?k=100", {"ids": list(range(1000))}))
    assert err(413, "request_too_large", post(d, "/v1/similar?k=10", npy(m[:1000]), NPY))
    s, h, b = post(d, "/v1/similar?k=5", {"ids": [1, 2]})
    assert s == 200 and len(b["results"]) == 2
    check_hits(b["results"][1], m, m[2], 5, "cosine", exclude=[2])
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


def test_threads_at_once_answer_as_one_at_a_time(start, mats):
    path, m = mats["bf16"]
    d = start(path)
    reqs = [("GET", "/v1/similar?id=%d&k=20" % i, None) for i in range(0, 700, 37)]
    reqs += [("POST", "/v1/similar?k=8", json.dumps({"ids": list(range(i, i + 30))}).encode()) for i in (0, 300)]
    reqs += [("POST", "/v1/similar?metric=dot", npy(m[i:i + 9] * 0.5)) for i in (10, 500)]
    reqs += [("POST", "/v1/pool", json.dumps({"ids": list(range(i, 600))}).encode()) for i in (0, 7)]
    hdr = lambda body: NPY if body is not None and body[:6] == b"\x93NUMPY" else JSON  # noqa: E731
    alone = [d.request(mth, p, b, hdr(b))[2] for mth, p, b in reqs]
    out, errors = {}, []

    def worker(t):
        try:
            for rnd in range(3):
                for j in range(len(reqs)):
                    mth, p, b = reqs[(j + t) % len(reqs)]
                    s, h, body = d.request(mth, p, b, hdr(b))
                    out[(t, rnd, (j + t) % len(reqs))] = (s, body)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(out) == 8 * 3 * len(reqs)
    for (t, rnd, j), (s, body) in out.items():
        assert s == 200 and body == alone[j], (t, rnd, j)
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


# gensim's most_similar(negative=[w]) (no positive words) answers the rows nearest -w: so does embd, with
# "positive" empty or missing, as long as one row is named.
def test_negative_only_analogy_as_gensim(start, glove):
    npy_path, vocab, keys, m, kv = glove
    d = start(npy_path, "--vocab", vocab)
    for body in ({"positive": [], "negative": [keys[5]]}, {"negative": [keys[5], keys[9]]}):
        s, _, b = post(d, "/v1/similar", body)
        assert s == 200, b
        same_as_gensim(b["results"], kv.most_similar(negative=body["negative"], topn=10), keys)


# What a cold review found: limits met while jansson parses a body, a bad k's message, big batches under the
# default request limit, error answers saying what they held, methods, weights past a double.
def test_a_json_body_past_a_limit_is_413_or_503_not_malformed(start, mats):
    path, m = mats["f32"]
    vectors = json.dumps({"vectors": m[:4000].tolist()}).encode()  # ~1.3 MB of text, 240 KB of float32
    d = start(path, "--limits.request_bytes", "128KiB")
    s, h, b = post(d, "/v1/similar?k=1", vectors)
    assert s == 413 and b["error"]["code"] == "request_too_large", b
    assert "limits.request_bytes is 131072" in b["error"]["message"]
    assert int(h["x-embd-accounted-bytes"]) > 0
    s, h, b = post(d, "/v1/similar?k=1", {"vectors": m[:2].tolist()})
    assert s == 200 and len(b["results"]) == 2  # and it keeps serving
    assert d.settled()["embd_inflight_accounted_bytes"] == 0
    d = start(path, "--limits.inflight_bytes", "2MiB", "--limits.connections", "4")
    s, h, b = post(d, "/v1/similar?k=1", json.dumps({"vectors": m.tolist() * 8}).encode())  # 1.9 MB of float32
    assert s == 503 and b["error"]["code"] == "overloaded" and h["retry-after"] == "1", b
    s, h, b = post(d, "/v1/pool", {"ids": [1] * 60000, "weights": [0.5] * 60000})
    assert s == 503 and b["error"]["code"] == "overloaded", b
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


def test_a_bad_k_says_what_is_wrong(start, mats):
    d = start(mats["f32"][0])
    for k in ("abc", "-1", "", "1.0", "18446744073709551616"):
        s, h, b = d.get("/v1/similar?id=1&k=" + k)
        assert s == 400 and json.loads(b)["error"] == {
            "status": 400, "code": "bad_parameter", "message": "k '%s' is not a non-negative decimal integer" % k}


def test_a_big_batch_fits_the_default_request_limit(start, mats):
    path, m = mats["f32"]
    d = start(path)
    ids = list(range(1500)) * 3  # 4500 queries: the scores block shrinks to fit, 1 MiB of rows each would not
    s, h, b = post(d, "/v1/similar?k=2", {"ids": ids})
    assert s == 200 and len(b["results"]) == 4500
    assert b["results"][0] == b["results"][1500] == b["results"][3000]
    assert int(h["x-embd-accounted-bytes"]) < 64 << 20


def test_methods_and_weights_past_a_double(start, mats):
    d = start(mats["f32"][0])
    s, h, b = d.request("GET", "/v1/similarity")
    assert s == 405 and h["allow"] == "POST"
    s, h, b = d.request("PUT", "/v1/similar")
    assert s == 405 and h["allow"] == "GET, HEAD, POST"
    s, h, b = d.request("HEAD", "/v1/similar?id=3")
    assert s == 200 and b == b"" and int(h["content-length"]) > 0
    s, h, b = post(d, "/v1/pool", {"ids": [1, 2], "weights": [1e308, 1e308]})
    assert s == 400 and b["error"]["message"] == "the weights sum past the largest double"


def pair_scores(m, q, metric):
    """A lone query's scores as embd answers them (and /v1/similarity scores a pair): in double, rounded once."""
    m64, q64 = m.astype(np.float64), q.astype(np.float64)
    dot = m64 @ q64
    if metric == "dot":
        return dot.astype(np.float32)
    nn = np.sqrt(np.einsum("ij,ij->i", m64, m64)) * np.sqrt(q64 @ q64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = dot / nn
    s[nn == 0] = 0
    return s.astype(np.float32)


def check_lone_hits(hits, m, q, k, metric, exclude=()):
    """A lone query's answer: its scores are the pair scores exactly, in order (ties lower id first), and its rows
    are the best k but for rows within a float32 rounding (1e-6) of the k-th, which the BLAS pass that chose them
    may have ranked either way."""
    s = pair_scores(m, q, metric)
    ids = [h["id"] for h in hits]
    assert len(ids) == min(k, len(m) - len(set(exclude)))
    assert [np.float32(h["score"]) for h in hits] == [s[i] for i in ids]
    assert ids == sorted(ids, key=lambda i: (-s[i], i))
    rest = np.ones(len(m), bool)
    rest[ids] = False
    rest[list(exclude)] = False
    if ids and rest.any():
        tol = 1e-6 * (1 if metric == "cosine" else max(1.0, float(np.abs(s).max())))
        assert s[rest].max() <= s[ids[-1]] + tol


def test_a_lone_query_split_over_two_cores_is_the_same_answer(start, tmp_path):
    """A search over a big matrix is cut in two row ranges searched at once on the compute pool's two threads and
    merged: the best rows (those of one pass), in order, ties across the halves lower id first, the query row left
    out of either."""
    rng = np.random.default_rng(70000)
    m = rng.integers(-3, 4, size=(70000, 6)).astype(np.float32)  # small integers: many exact ties
    m[69999] = m[12] = m[35000] = m[34999] = m[5]  # the same row in both halves and at the seam
    np.save(tmp_path / "big.npy", m)
    d = start(str(tmp_path / "big.npy"), "--compute.threads", "2")
    for qid in (5, 12, 34999, 35000, 69999, 0, 40000):
        for metric in ("cosine", "dot"):
            for k in (1, 10, 50):
                s, h, b = get(d, "/v1/similar?id=%d&k=%d&metric=%s" % (qid, k, metric))
                assert s == 200
                check_lone_hits(b["results"], m, m[qid], k, metric, exclude=[qid])
            s, h, b = get(d, "/v1/similar?id=%d&k=5&metric=%s&include_self=1" % (qid, metric))
            check_lone_hits(b["results"], m, m[qid], 5, metric)
    s, h, b = post(d, "/v1/similar?k=7", {"vectors": [m[35000].tolist()]})
    check_lone_hits(b["results"][0], m, m[35000], 7, "cosine")
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


def test_k_metric_and_include_self_in_the_body(start, mats):
    """Users write k, metric and include_self in the JSON body as often as in the query: both work; the same key
    in both places with different values is 400."""
    path, m = mats["f32"]
    d = start(path)
    want = get(d, "/v1/similar?id=3&k=4&metric=dot&include_self=1")[2]["results"]
    s, h, b = post(d, "/v1/similar", {"ids": [3], "k": 4, "metric": "dot", "include_self": True})
    assert s == 200 and b == {"k": 4, "metric": "dot", "results": [want]}
    s, h, b = post(d, "/v1/similar?k=4&metric=dot", {"ids": [3], "k": 4, "metric": "dot", "include_self": 1})
    assert s == 200 and b["results"] == [want]
    check_hits(b["results"][0], m, m[3], 4, "dot")
    s, h, b = post(d, "/v1/similar?k=5", {"ids": [3], "k": 4})
    assert (s, b) == (400, {"error": {"status": 400, "code": "bad_parameter",
                                      "message": "k is 5 in the query and 4 in the body: give it once"}})
    s, h, b = post(d, "/v1/similar?metric=cosine", {"ids": [3], "metric": "dot"})
    assert (s, b) == (400, {"error": {"status": 400, "code": "bad_parameter",
                                      "message": "metric is cosine in the query and dot in the body: give it once"}})
    s, h, b = post(d, "/v1/similar?include_self=0", {"ids": [3], "include_self": True})
    assert (s, b) == (400, {"error": {"status": 400, "code": "bad_parameter",
                                      "message": "include_self is 0 in the query and 1 in the body: give it once"}})
    s, h, b = post(d, "/v1/similar", {"ids": [3], "k": 65537})
    assert s == 413 and b["error"]["code"] == "too_many_ids"
    s, h, b = post(d, "/v1/similar", {"vectors": [m[3].tolist()], "k": 2, "metric": "dot"})
    assert s == 200 and b["k"] == 2 and b["metric"] == "dot"
    check_hits(b["results"][0], m, m[3], 2, "dot")
    assert d.settled()["embd_inflight_accounted_bytes"] == 0
