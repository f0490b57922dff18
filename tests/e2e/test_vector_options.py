"""Options of the vector operations: ?oov=error|skip on POST /v1/similar, "pre_normalize" on /v1/pool (gensim's
get_mean_vector default), and one score for one pair whichever endpoint computes it."""
import json
import urllib.parse

import numpy as np

from test_similar import EDGE, JSON, edge, err, glove, post  # noqa: F401 (fixtures)


def test_post_similar_oov_skip_answers_an_empty_list_for_an_unknown_token(start, edge):  # noqa: F811
    d = start(edge[0], "--vocab", edge[1])
    body = json.dumps({"tokens": ["g", "zz", "a", "yy"]}).encode()
    # The default (and oov=error): the whole batch fails, naming the unknown tokens.
    for q in ("?k=2", "?k=2&oov=error"):
        s, _, b = d.request("POST", "/v1/similar" + q, body, JSON)
        assert (s, b) == (404, b'{"error":{"status":404,"code":"token_not_found","message":"2 tokens are not in the '
                               b'vocabulary: \'zz\', \'yy\'"}}\n')
    # oov=skip: an empty list in the unknown tokens' places, the others answered as before.
    s, h, b = d.request("POST", "/v1/similar?k=2&oov=skip", body, JSON)
    assert (s, b) == (200, b'{"k":2,"metric":"cosine","results":[[{"id":0,"token":"a","score":1},'
                           b'{"id":1,"token":"b","score":1}],[],[{"id":1,"token":"b","score":1},'
                           b'{"id":6,"token":"g","score":1}],[]]}\n')
    # Every token unknown: every list empty, nothing searched.
    s, _, b = d.request("POST", "/v1/similar?oov=skip", b'{"tokens": ["zz"], "k": 3}', JSON)
    assert (s, b) == (200, b'{"k":3,"metric":"cosine","results":[[]]}\n')
    # oov is error or skip, and goes with a list of tokens only, as on /v1/rows.
    s, _, b = d.request("POST", "/v1/similar?oov=zero", body, JSON)
    assert (s, b) == (400, b'{"error":{"status":400,"code":"bad_parameter","message":"oov \'zero\' is not error '
                           b'or skip"}}\n')
    s, _, b = d.request("POST", "/v1/similar?oov=skip", b'{"ids": [1]}', JSON)
    assert (s, b) == (400, b'{"error":{"status":400,"code":"bad_parameter","message":"oov goes with {\\"tokens\\": '
                           b'[...]}; this body names no tokens list"}}\n')
    assert err(400, "bad_parameter", post(d, "/v1/similar?oov=skip", {"positive": ["a", "zz"]}))
    assert err(400, "bad_parameter", d.get("/v1/similar?token=a&oov=skip")[:2] + (json.loads(
        d.get("/v1/similar?token=a&oov=skip")[2]),))
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


def test_pool_pre_normalize_is_gensims_get_mean_vector_default(start, glove):  # noqa: F811
    npy_path, vocab, keys, m, kv = glove
    d = start(npy_path, "--vocab", vocab)
    rng = np.random.default_rng(16)
    worst = 0.0
    for n in (1, 2, 5, 40):
        ws = [w for w in rng.choice(keys, n)]
        for weights in (None, rng.uniform(0.1, 3, n).tolist()):
            extra = {} if weights is None else {"weights": weights}
            unit = kv.get_mean_vector(ws, weights=weights, pre_normalize=True)  # gensim's default
            raw = kv.get_mean_vector(ws, weights=weights, pre_normalize=False)
            assert not np.allclose(unit, raw, rtol=1e-3, atol=1e-3)  # the two differ: the option matters
            for how in ({"pre_normalize": True}, {"pre_normalize": 1}, "?pre_normalize=1", "?pre_normalize=true"):
                path = "/v1/pool" + (how if isinstance(how, str) else "")
                body = {"tokens": ws, **extra, **(how if isinstance(how, dict) else {})}
                s, _, b = post(d, path, body)
                assert s == 200, b
                got = np.array(b["rows"][0], np.float32)
                # gensim sums in float32, embd in double: a few float32 roundings of unit-sized numbers apart.
                # Within 1e-7 absolute, as the README says (3e-8 at worst measured).
                np.testing.assert_allclose(got, unit, rtol=0, atol=1e-7)
                worst = max(worst, float(np.abs(got - unit).max()))
            # The default (and pre_normalize false) stays the rows as they are: get_mean_vector(pre_normalize=False).
            for body in ({"tokens": ws, **extra}, {"tokens": ws, "pre_normalize": False, **extra}):
                got = np.array(post(d, "/v1/pool", body)[2]["rows"][0], np.float32)
                np.testing.assert_allclose(got, raw, rtol=1e-6, atol=1e-6 * n)
    assert worst < 1e-7
    # Given twice, it must agree; it is a boolean (or 0, 1).
    s, _, b = d.request("POST", "/v1/pool?pre_normalize=0", b'{"ids": [1], "pre_normalize": true}', JSON)
    assert (s, b) == (400, b'{"error":{"status":400,"code":"bad_parameter","message":"pre_normalize is 0 in the '
                           b'query and 1 in the body: give it once"}}\n')
    s, _, b = d.request("POST", "/v1/pool", b'{"ids": [1], "pre_normalize": 2}', JSON)
    assert (s, b) == (400, b'{"error":{"status":400,"code":"bad_parameter","message":"\\"pre_normalize\\" is 2; it '
                           b'is true or false (or 1 or 0)"}}\n')
    assert err(400, "bad_parameter", post(d, "/v1/pool?pre_normalize=yes", {"ids": [1]}))
    assert d.settled()["embd_inflight_accounted_bytes"] == 0


def test_pool_pre_normalize_leaves_a_zero_row_zero(start, edge):  # noqa: F811
    """On the edge fixture (c the row of norm 0, g = (2, 0, 0), e = (0.5, 0.5, 0)): the zero row adds 0, never NaN,
    and still counts in the mean, as np.average counts it."""
    d = start(edge[0], "--vocab", edge[1])
    s, _, b = d.request("POST", "/v1/pool", b'{"tokens":["c","g"],"pre_normalize":true}', JSON)
    assert (s, b) == (200, b'{"shape":[1,3],"dtype":"f32","rows":[[0.5,0,0]]}\n')
    # Weighted: (0*1 + (1,0,0)*2 + (e/|e|)*1) / 4.
    s, _, b = post(d, "/v1/pool", {"tokens": ["c", "g", "e"], "weights": [1, 2, 1], "pre_normalize": True})
    assert s == 200, b
    e = EDGE[4].astype(np.float64) / np.float64(np.linalg.norm(EDGE[4]).astype(np.float32))
    want = (2 * np.array([1.0, 0, 0]) + e) / 4
    np.testing.assert_allclose(np.array(b["rows"][0], np.float32), want.astype(np.float32), rtol=0, atol=1e-7)
    # The zero row alone: 0.
    assert post(d, "/v1/pool", {"tokens": ["c"], "pre_normalize": True})[2]["rows"] == [[0, 0, 0]]


def test_similarity_and_a_lone_similar_query_give_the_same_score_and_a_batch_stays_within_the_bound(start, glove):  # noqa: F811,E501
    """cos(a, b) from /v1/similarity and from a lone /v1/similar query of a are one float, bit for bit (dot too);
    a batch POST's sgemm scores differ from them by at most gamma_(d+4) = (d+4)u / (1 - (d+4)u), u = 2^-24 (the
    README derives it)."""
    npy_path, vocab, keys, m, kv = glove
    d = start(npy_path, "--vocab", vocab)
    rng = np.random.default_rng(55)
    picks = [keys[i] for i in rng.choice(len(keys), 40, replace=False)]
    u = 2.0 ** -24
    bound = (m.shape[1] + 4) * u / (1 - (m.shape[1] + 4) * u)
    worst, differ = 0.0, 0
    for metric in ("cosine", "dot"):
        s, _, batch = post(d, "/v1/similar?k=10&metric=" + metric, {"tokens": picks})
        assert s == 200
        for w, batch_hits in zip(picks, batch["results"]):
            s, _, b = d.request("GET", "/v1/similar?k=10&metric=%s&token=%s" % (metric, urllib.parse.quote(w)))
            lone = json.loads(b)["results"]
            pairs = [[w, h["token"]] for h in lone]
            s, _, b = post(d, "/v1/similarity?metric=" + metric, {"pairs": pairs})
            assert s == 200 and b["scores"] == [h["score"] for h in lone], (w, b["scores"], lone)
            if metric == "cosine":
                got = {h["id"]: h["score"] for h in batch_hits}
                for h in lone:
                    if h["id"] in got:
                        delta = abs(got[h["id"]] - h["score"])
                        differ += delta != 0
                        worst = max(worst, delta)
                        assert delta <= bound, (w, h, got[h["id"]], bound)
    assert differ > 0  # the batch does round differently: the bound is tested, not vacuous
    assert worst <= bound


def test_vector_bodies_read_the_content_type_as_rows_does(start, edge):  # noqa: F811
    """One parser of Content-Type (lib/ids.c's): a tab before the parameters is accepted on the vector endpoints as
    on /v1/rows, and a body without one that is neither JSON nor .npy gets the same wording."""
    d = start(edge[0], "--vocab", edge[1])
    ct = {"Content-Type": "application/json\t; charset=utf-8"}
    s, _, b = d.request("POST", "/v1/rows?format=json", b'{"ids": [6]}', ct)
    assert s == 200, b
    s, _, b = d.request("POST", "/v1/similar?k=1", b'{"ids": [0]}', ct)
    assert (s, b) == (200, b'{"k":1,"metric":"cosine","results":[[{"id":1,"token":"b","score":1}]]}\n')
    s, _, b = d.request("POST", "/v1/pool", b'{"ids": [6]}', ct)
    assert (s, b) == (200, b'{"shape":[1,3],"dtype":"f32","rows":[[2,0,0]]}\n')
    # No Content-Type, and bytes that are neither JSON nor .npy.
    s, _, b = d.request("POST", "/v1/similar", b"\x01\x00\x00\x00")
    assert (s, b) == (415, b'{"error":{"status":415,"code":"unsupported_media_type","message":"the body has no '
                           b'Content-Type and is neither JSON nor .npy; send Content-Type: application/json or '
                           b'application/x-npy (query vectors)"}}\n')
    s, _, b = d.request("POST", "/v1/pool", b"\x01\x00\x00\x00")
    assert (s, b) == (415, b'{"error":{"status":415,"code":"unsupported_media_type","message":"the body has no '
                           b'Content-Type and is not JSON; send Content-Type: application/json"}}\n')
    s, _, b = d.request("POST", "/v1/pool", b'{"ids": [6]}', {"Content-Type": "text/plain"})
    assert (s, b) == (415, b'{"error":{"status":415,"code":"unsupported_media_type","message":"Content-Type '
                           b'\'text/plain\' is not supported; send application/json"}}\n')
