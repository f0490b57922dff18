"""Options of the vector operations: ?oov=error|skip on POST /v1/similar, "pre_normalize" on /v1/pool (gensim's
get_mean_vector default), and one score for one pair whichever endpoint computes it."""
import json

import numpy as np

from test_similar import JSON, edge, err, glove, post  # noqa: F401 (fixtures)


def test_post_similar_oov_skip_answers_an_empty_list_for_an_unknown_token(start, edge):  # noqa: F811
    d = start(edge[0], "--vocab", edge[1])
    body = json.dumps({"tokens": ["g", "zz", "a", "yy"]}).encode()
    # The default (and oov=error): the whole batch fails, naming the unknown tokens.
    for q in ("?k=2", "?k=2&oov=error"):
        s, _, b = d.request("POST", "/v1/similar" + q, body, JSON)
        assert (s, b) == (404, b'{"error":{"status":404,"code":"token_not_found","message":"2 tokens are not in the '
                               b'vocabulary: \'zz\', \'yy\'"}}')
    # oov=skip: an empty list in the unknown tokens' places, the others answered as before.
    s, h, b = d.request("POST", "/v1/similar?k=2&oov=skip", body, JSON)
    assert (s, b) == (200, b'{"k":2,"metric":"cosine","results":[[{"id":0,"token":"a","score":1},'
                           b'{"id":1,"token":"b","score":1}],[],[{"id":1,"token":"b","score":1},'
                           b'{"id":6,"token":"g","score":1}],[]]}')
    # Every token unknown: every list empty, nothing searched.
    s, _, b = d.request("POST", "/v1/similar?oov=skip", b'{"tokens": ["zz"], "k": 3}', JSON)
    assert (s, b) == (200, b'{"k":3,"metric":"cosine","results":[[]]}')
    # oov is error or skip, and goes with a list of tokens only, as on /v1/rows.
    s, _, b = d.request("POST", "/v1/similar?oov=zero", body, JSON)
    assert (s, b) == (400, b'{"error":{"status":400,"code":"bad_parameter","message":"oov \'zero\' is not error '
                           b'or skip"}}')
    s, _, b = d.request("POST", "/v1/similar?oov=skip", b'{"ids": [1]}', JSON)
    assert (s, b) == (400, b'{"error":{"status":400,"code":"bad_parameter","message":"oov goes with {\\"tokens\\": '
                           b'[...]}; this body names no tokens list"}}')
    assert err(400, "bad_parameter", post(d, "/v1/similar?oov=skip", {"positive": ["a", "zz"]}))
    assert err(400, "bad_parameter", d.get("/v1/similar?token=a&oov=skip")[:2] + (json.loads(
        d.get("/v1/similar?token=a&oov=skip")[2]),))
    assert d.settled()["embd_inflight_accounted_bytes"] == 0
