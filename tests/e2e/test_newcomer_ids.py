"""JSON bodies end their line (issue 16)."""
import json


def error_body(status, code, message):
    """The exact bytes of an error answer."""
    return (json.dumps({"error": {"status": status, "code": code, "message": message}}, separators=(",", ":"))
            + "\n").encode()


def test_json_bodies_end_with_a_newline(f32d):
    """Every JSON body, answers and errors alike, is one line ending in "\\n" (curl's output, `jq -c` habits)."""
    s, h, b = f32d.get("/healthz")
    assert (s, b) == (200, b'{"status":"ok","generation":1}\n')
    s, h, b = f32d.get("/v1/rows/1/2")
    assert (s, b) == (404, error_body(404, "not_found", "no such path: /v1/rows/1/2"))
    answers = [("GET", "/v1/info", None), ("GET", "/v1/rows/5", None), ("GET", "/v1/rows?ids=1,2", None),
               ("GET", "/v1/rows?start=3&stop=5", None), ("POST", "/v1/rows", b'{"ids":[1,2]}'),
               ("GET", "/v1/similar?id=1&k=2", None), ("POST", "/v1/similar?k=2", b'{"ids":[1,2]}'),
               ("POST", "/v1/similarity", b'{"pairs":[[1,2],[3,4]]}'),
               ("POST", "/v1/similarity", b'{"a":[1],"b":[2]}'), ("POST", "/v1/pool", b'{"ids":[1,2]}')]
    errors = [("GET", "/v1/rows/abc", None, 400), ("GET", "/nope", None, 404), ("DELETE", "/v1/info", None, 405),
              ("POST", "/v1/rows", b'{"ids":[1', 400), ("POST", "/v1/similar?k=2", b'{"ids":[5000]}', 400),
              ("POST", "/v1/admin/reload", b"", 404)]
    for method, path, body in answers:
        s, h, b = f32d.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        assert s == 200 and h["content-type"] == "application/json", (path, s, b)
        assert b.endswith(b"}\n") and b.count(b"\n") == 1, (path, b[-40:])
        json.loads(b)
    for method, path, body, status in errors:
        s, h, b = f32d.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        assert s == status and h["content-type"] == "application/json", (path, s, b)
        assert b.endswith(b"}}\n") and b.count(b"\n") == 1, (path, b)
        assert json.loads(b)["error"]["status"] == status
    # The metrics page was text ending in a newline already; the raw rows are untouched.
    s, h, b = f32d.get("/metrics")
    assert s == 200 and b.endswith(b"\n")
    s, h, b = f32d.get("/v1/rows/5?format=bin")
    assert s == 200 and len(b) == 48 * 4
