"""python3 -m embd_client URL info|ids 1,2,3|slice A B|tokens king queen: a quick look at an embd from a shell."""
import argparse
import json
import sys

import numpy as np

from .client import Client
from .errors import EmbdError

EPILOG = """examples:
  python3 -m embd_client http://127.0.0.1:8080 info
  python3 -m embd_client http://127.0.0.1:8080 ids 3,17,42
  python3 -m embd_client http://127.0.0.1:8080 slice 100 356 --format npy slice.npy
  python3 -m embd_client http://127.0.0.1:8080 tokens king queen --oov skip --dtype f16

rows print as JSON ({"shape", "dtype", "rows"}, plus "ids" or "tokens"); --format npy FILE writes a .npy file
(bf16 has no .npy dtype: its uint16 bit patterns are written, and said so on stderr). Errors print the server's
status, code and message and exit 1. Every error is one line on stderr, "embd_client: ...": exit 2 for a usage
error (a bad URL, ids or slice bounds that are not integers in int64), 1 for one at run time (the server's error,
no connection, a file that cannot be written)."""

I64 = (-(1 << 63), (1 << 63) - 1)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage and error lines
        print("embd_client: %s (see --help)" % message, file=sys.stderr)
        sys.exit(2)


def _int(text, what):
    try:
        v = int(text)
    except ValueError:
        raise UsageError("%s: %r is not an integer" % (what, text)) from None
    if not I64[0] <= v <= I64[1]:
        raise UsageError("%s: %d does not fit in int64" % (what, v))
    return v


class UsageError(Exception):
    pass


def main(argv=None):
    p = _Parser(prog="python3 -m embd_client", description=__doc__.split(":", 1)[1].strip(),
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="the daemon, e.g. http://127.0.0.1:8080")
    p.add_argument("what", choices=["info", "ids", "slice", "tokens"])
    p.add_argument("args", nargs="*", help="ids: 1,2,3 (or 1 2 3); slice: START STOP; tokens: words")
    p.add_argument("--dtype", choices=["f32", "f16", "bf16"], help="convert on the server (default: the table's)")
    p.add_argument("--oov", choices=["error", "zero", "skip"], default="error", help="tokens the vocabulary lacks")
    p.add_argument("--format", nargs="+", metavar=("json|npy", "FILE"), default=["json"],
                   help="json to stdout (default), or npy FILE")
    p.add_argument("--timeout", type=float, default=60.0, help="read timeout, seconds")
    a = p.parse_args(argv)
    fmt = a.format[0]
    if fmt not in ("json", "npy") or (fmt == "npy") != (len(a.format) == 2) or len(a.format) > 2:
        p.error("--format is json, or npy FILE")
    try:
        try:
            c = Client(a.url, read_timeout=a.timeout)
        except ValueError as e:  # the scheme, the port
            raise UsageError("bad URL %r: %s" % (a.url, e)) from None
        with c:
            return run(c, a, fmt, p)
    except UsageError as e:
        print("embd_client: %s (see --help)" % e, file=sys.stderr)
        return 2
    except EmbdError as e:
        print("embd_client: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("embd_client: %s" % e, file=sys.stderr)
        return 1


def run(c, a, fmt, p):
    if a.what == "info":
        if a.args:
            p.error("info takes no arguments")
        print(json.dumps(c.info(), indent=1))
        return 0
    extra = {}
    if a.what == "ids":
        ids = [_int(x, "ids are integers (1,2,3 or 1 2 3)") for arg in a.args for x in arg.split(",") if x != ""]
        rows = c.rows(ids, a.dtype, raw=True)
        extra["ids"] = ids
    elif a.what == "slice":
        if len(a.args) != 2:
            p.error("slice takes START STOP")
        rows = c.slice(_int(a.args[0], "slice START"), _int(a.args[1], "slice STOP"), a.dtype, raw=True)
    else:
        if not a.args:
            p.error("tokens takes one or more words")
        rows = c.tokens(a.args, a.oov, a.dtype, raw=True)
        if a.oov == "skip":
            rows, kept = rows
            extra["tokens"] = kept
        else:
            extra["tokens"] = a.args
    dtype = a.dtype or c.dtype
    if fmt == "npy":
        if dtype == "bf16":
            print("embd_client: bf16 has no .npy dtype: %s holds its uint16 bit patterns" % a.format[1],
                  file=sys.stderr)
        try:
            np.save(a.format[1], rows)
        except OSError as e:
            raise OSError("cannot write %s: %s" % (a.format[1], e.strerror or e)) from None
        return 0
    if dtype == "bf16":  # the float32 each bf16 stands for: its bits in the upper half
        values = (rows.astype(np.uint32) << 16).view(np.float32)
    else:
        values = rows.astype(np.float32)
    out = {"shape": list(rows.shape), "dtype": dtype}
    out.update(extra)
    out["rows"] = [[_num(x) for x in r] for r in values.tolist()]
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


def _num(x):
    """A float32's shortest repr (as embd writes it); NaN and infinities as null, as embd's JSON does."""
    if x != x or x in (float("inf"), float("-inf")):
        return None
    return float(repr(np.float32(x)))


if __name__ == "__main__":
    sys.exit(main())
