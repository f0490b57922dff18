"""A reload by path of a table served with a vocabulary file: the new table's vocabulary is the request's choice
(vocab=FILE or vocab=none), never dropped without a word, and a SIGHUP afterwards keeps what was chosen."""
import json
import signal

import numpy as np

from conftest import wait_for

TOKEN = "t0k3n-for-the-reload-vocab-tests-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN}


def reload(d, query):
    s, _, body = d.request("POST", "/v1/admin/reload" + query, b"", AUTH)
    return s, body


def row_of(d, token):
    """(status, body) of one row asked by token, as raw bytes."""
    s, _, body = d.get("/v1/rows?tokens=%s&format=bin" % token)
    return s, body


def sighup(d, gen):
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.json("/healthz")["generation"] == gen)


def test_a_reload_by_path_says_which_vocabulary_and_sighup_keeps_it(start, tmp_path):
    a = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)
    b = -a
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    (tmp_path / "a.vocab").write_text("the\nof\nand\nto\n")
    (tmp_path / "b.vocab").write_text("uno\ndos\ntres\ncuatro\n")
    (tmp_path / "words.txt").write_text("the 0.5 1 -2\nof 1.5 0 3\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    pa, pb, va, vb = (str(tmp_path / n) for n in ("a.npy", "b.npy", "a.vocab", "b.vocab"))
    d = start(pa, "--vocab", va, "--admin.token_file", str(tmp_path / "token"))
    assert row_of(d, "and") == (200, a[2].tobytes())
    # A path without vocab=: refused (400, nothing loads), naming the two choices; the table and its words serve on.
    s, body = reload(d, "?path=" + pb)
    assert (s, json.loads(body)) == (400, {"error": {"status": 400, "code": "bad_parameter", "message": (
        "%s carries no words, and the table served now is named by the vocabulary file %s: say which vocabulary "
        "the new table has, vocab=FILE (a token-per-line file) or vocab=none (no vocabulary; token queries then "
        "answer 400 no_vocabulary)" % (pb, va))}})
    assert d.json("/healthz")["generation"] == 1
    assert row_of(d, "and") == (200, a[2].tobytes())
    # vocab=FILE: the new table with its words; a SIGHUP reloads both.
    s, body = reload(d, "?path=%s&vocab=%s" % (pb, vb))
    assert s == 200 and json.loads(body)["generation"] == 2, body
    assert row_of(d, "tres") == (200, b[2].tobytes())
    assert row_of(d, "and")[0] == 404
    sighup(d, 3)
    assert row_of(d, "tres") == (200, b[2].tobytes())
    assert d.json("/v1/info")["vocab"] is True
    # vocab=none: the new table without words, said so; a SIGHUP keeps it without.
    s, body = reload(d, "?path=%s&vocab=none" % pa)
    assert s == 200 and json.loads(body)["generation"] == 4, body
    s, body = row_of(d, "and")
    assert s == 400 and json.loads(body)["error"]["code"] == "no_vocabulary"
    assert d.get("/v1/rows/2?format=bin")[2] == a[2].tobytes()
    sighup(d, 5)
    assert d.json("/v1/info")["vocab"] is False
    assert row_of(d, "and")[0] == 400
    # With no vocabulary file in use, a path needs no vocab=; a file that carries its words brings them.
    s, body = reload(d, "?path=" + pb)
    assert s == 200, body
    s, body = reload(d, "?path=%s&vocab=%s" % (pa, va))
    assert s == 200, body
    s, body = reload(d, "?path=" + str(tmp_path / "words.txt"))
    assert s == 200, body
    assert row_of(d, "of") == (200, np.array([1.5, 0, 3], np.float32).tobytes())
    m = d.settled()
    assert m['embd_reloads_total{result="failed"}'] == 1 and m['embd_reloads_total{result="ok"}'] == 7


def test_an_empty_vocab_is_refused_and_the_words_serve_on(start, tmp_path):
    """vocab= empty (a script's vocab=$VOCAB with the variable unset) is 400, not vocab=none: the words stay."""
    (tmp_path / "token").write_text(TOKEN)
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    (tmp_path / "a.vocab").write_text("the\nof\nand\nto\n")
    pa, va = str(tmp_path / "a.npy"), str(tmp_path / "a.vocab")
    d = start(pa, "--vocab", va, "--admin.token_file", str(tmp_path / "token"))
    for query in ("?vocab=", "?path=%s&vocab=" % pa):
        assert reload(d, query) == (400, b'{"error":{"status":400,"code":"bad_parameter","message":"vocab is empty: '
                                         b'name a vocabulary file with vocab=FILE, or say vocab=none for a table '
                                         b'without words"}}\n')
    assert d.json("/healthz")["generation"] == 1
    assert row_of(d, "of") == (200, np.array([3, 4, 5], np.float32).tobytes())


def test_a_reload_by_path_of_a_glove_daemon_says_which_vocabulary(start, tmp_path):
    """The served words come from the file itself (GloVe text, no vocabulary file): a path to a file without
    words, without vocab=, is 400 naming the choice; the GloVe words serve on; vocab=none then drops them."""
    (tmp_path / "token").write_text(TOKEN)
    g = tmp_path / "g.txt"
    g.write_text("the 1 2 3\nof 4 5 6\n")
    np.save(tmp_path / "m2.npy", np.ones((2, 3), np.float32))
    m2 = str(tmp_path / "m2.npy")
    d = start(str(g), "--admin.token_file", str(tmp_path / "token"))
    s, body = reload(d, "?path=" + m2)
    assert (s, json.loads(body)) == (400, {"error": {"status": 400, "code": "bad_parameter", "message": (
        "%s carries no words, and the table served now has the words of its own file %s: say which vocabulary "
        "the new table has, vocab=FILE (a token-per-line file) or vocab=none (no vocabulary; token queries then "
        "answer 400 no_vocabulary)" % (m2, g))}})
    assert d.json("/healthz")["generation"] == 1
    assert row_of(d, "of") == (200, np.array([4, 5, 6], np.float32).tobytes())
    s, body = reload(d, "?path=%s&vocab=none" % m2)
    assert s == 200, body
    assert row_of(d, "of")[0] == 400
