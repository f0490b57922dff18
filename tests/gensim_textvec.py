#!/usr/bin/python3
"""lib/textvec.c against NumPy and gensim, bit for bit: prints one summary line per check, exits 1 on a mismatch.

Usage: python3 tests/gensim_textvec.py [N] (N random decimal strings; default 1,000,000, plus the adversarial set).
Needs python3-numpy and python3-gensim (Debian). Builds lib/textvec.c as a shared object and calls it with ctypes.
"""
import ctypes
import glob
import os
import random
import struct
import subprocess
import sys
import tempfile
from decimal import Decimal, getcontext

import warnings

import numpy as np

warnings.simplefilter("ignore", RuntimeWarning)  # np.float32("1e39") warns on its way to inf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
getcontext().prec = 400


class TextVec(ctypes.Structure):
    _fields_ = [("rows", ctypes.c_uint64), ("dim", ctypes.c_uint64), ("data", ctypes.POINTER(ctypes.c_uint32)),
                ("words", ctypes.POINTER(ctypes.c_char)), ("word_off", ctypes.POINTER(ctypes.c_uint64)),
                ("words_bytes", ctypes.c_uint64), ("skipped", ctypes.c_uint64), ("first_skip", ctypes.c_char * 256),
                ("vocab", ctypes.c_void_p)]


class Opts(ctypes.Structure):
    _fields_ = [("skip_bad", ctypes.c_int), ("threads", ctypes.c_int), ("bytes_done", ctypes.c_void_p)]


def build(tmp):
    so = os.path.join(tmp, "libtextvec.so")
    # textvec and what it links: every lib/textvec*.c (the module, split by format), the UTF-8 check, errors.
    # (and the vocabulary its duplicate check builds, with what that links).
    sources = sorted(glob.glob(os.path.join(ROOT, "lib", "textvec*.c"))) + [
        os.path.join(ROOT, "lib", f) for f in ("vocab.c", "clock.c", "file.c", "utf8.c", "error.c")]
    subprocess.check_call(["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-shared", "-fPIC", "-Wl,--no-undefined",
                           "-I" + ROOT + "/lib", *sources, "-o", so, "-lpthread"])
    lib = ctypes.CDLL(so)
    lib.embd_textvec_parse.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.POINTER(Opts),
                                       ctypes.POINTER(TextVec), ctypes.c_char_p]
    return lib


def parse(lib, data, kind, skip=0, threads=0):
    tv = TextVec()
    err = ctypes.create_string_buffer(512)
    rc = lib.embd_textvec_parse(data, len(data), kind, ctypes.byref(Opts(skip, threads)), ctypes.byref(tv), err)
    if rc != 0:
        return rc, err.value.decode(), None, None, 0
    bits = np.ctypeslib.as_array(tv.data, shape=(tv.rows * tv.dim,)).copy().reshape(tv.rows, tv.dim)
    off = [int(x) for x in np.ctypeslib.as_array(tv.word_off, shape=(tv.rows + 1,))]
    arena = ctypes.string_at(tv.words, tv.words_bytes)
    words = [arena[off[i]:off[i + 1] - 1].decode() for i in range(tv.rows)]
    skipped = tv.skipped
    lib.embd_textvec_free(ctypes.byref(tv))
    return 0, "", bits, words, skipped


def f32bits(s):
    try:
        return struct.unpack("<I", np.float32(s).tobytes())[0]
    except ValueError:
        return None


def adversarial(rng):
    out = []
    # float32 midpoints, exactly and a hair either side: where double rounding and strtof part ways.
    for _ in range(150000):
        u = rng.getrandbits(32) & 0x7f7fffff
        if rng.random() < 0.3:
            u = rng.choice([0, 1, 2, 0x007fffff, 0x00800000, 0x7f7ffffe, 0x3f800000]) + rng.randrange(0, 3)
        u = min(u, 0x7f7ffffe)
        a = Decimal(float(struct.unpack("<f", struct.pack("<I", u))[0]))
        b = Decimal(float(struct.unpack("<f", struct.pack("<I", u + 1))[0]))
        m = (a + b) / 2
        eps = (b - a) * Decimal(2) ** -rng.randrange(25, 90)
        for v in (m, m + eps, m - eps):
            s = format(v, "f") if rng.random() < 0.5 else format(v, "e")
            out.append(("-" if rng.random() < 0.3 else "") + s)
        out.append(format(m, ".%de" % rng.randrange(6, 25)))
    # Around the float32 limits: overflow to inf, the smallest subnormals, underflow to 0.
    for e in range(-60, 60):
        for base in ("3.4028234663852886e38", "3.4028235677973366e38", "3.40282357e38", "1.401298464324817e-45",
                     "7.006492321624085e-46", "7.006492321624086e-46", "1.1754943508222875e-38", "1e-50", "1e39"):
            out.append(base)
            out.append("%se%d" % (base.split("e")[0], int(base.split("e")[1]) + e // 30))
    # Spellings: accepted and refused by Python's float().
    words = ["inf", "INF", "Infinity", "iNfInItY", "nan", "NaN", "NAN", "-nan", "+nan", "-inf", "+Infinity", "infinit",
             "infinityy", "nana", "na", "in", "1e", "1e+", ".e1", ".", "+", "-", "", "+-1", "--1", "0x10", "0b1",
             "1.5.2", "1e5.5", "1d5", "1_000", "1__000", "_1", "1_", "1_.5", "1._5", "1.5_", "1e1_0", "1e_10",
             "1_e10", "0_0.0_0e0_0", "\t1.5", "1.5\t", "\v1", "1\f", "\r-2", "\x1c1", "1\x1f", "1 ", "١", "\u00a01",
             "1e99999999999999999999", "1e-99999999999999999999", "0e99999999999", "-0", "-0.0e-5", "00000.00001",
             "0." + "0" * 400 + "1", "1" + "0" * 400, "9" * 800, "." + "9" * 800, "1" * 19, "1" * 20,
             "9007199254740993", "9007199254740992e-22", "123456789012345678e22", "1e22", "1e23", "1e-22", "1e-23",
             "4.9e-324", "2.4703282292062328e-324", "1.7976931348623157e308", "1.8e308", "nan(1)", "infe1", "inf.",
             "1e+0", "1E-0", "+.5", "-.5e-3", "5.", "-5.e+2", "０", "1,5", "1e1e1", "0.5j"]
    out += words
    return out


def random_strings(rng, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.25:
            out.append(repr(rng.gauss(0, 1) * 10 ** rng.randrange(-8, 8)))
        elif r < 0.45:
            out.append("%.*g" % (rng.randrange(1, 12), rng.gauss(0, 1) * 10 ** rng.randrange(-40, 40)))
        elif r < 0.6:
            out.append("%.5f" % rng.gauss(0, 0.5))  # GloVe-like
        elif r < 0.8:
            nd = rng.randrange(1, 45)
            digits = "".join(rng.choice("0123456789") for _ in range(nd))
            k = rng.randrange(0, nd + 1)
            s = (rng.choice(["", "-", "+"]) + digits[:k] + "." + digits[k:] + rng.choice(["", "e%d" % rng.randrange(-60, 60)]))
            out.append(s)
        else:
            u = rng.getrandbits(32)
            f = struct.unpack("<f", struct.pack("<I", u))[0]
            out.append(rng.choice([repr(f), "%.9g" % f, "%.8e" % f, "%.17g" % f]))
    return out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    rng = random.Random(20240610)
    tokens = [t for t in adversarial(rng) + random_strings(rng, n) if " " not in t and "\n" not in t]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        lib = build(tmp)
        # 1. Every string alone on a line: our bits (or our refusal) against np.float32(string).
        text = "".join("t%d %s\n" % (i, t) for i, t in enumerate(tokens)).encode()
        rc, msg, bits, words, skipped = parse(lib, text, 1, skip=1)
        assert rc == 0, msg
        ours = {int(w[1:]): int(b) for w, b in zip(words, bits[:, 0])}
        same = refused_both = 0
        diffs, unicode_only = [], []
        for i, t in enumerate(tokens):
            want = f32bits(t)
            got = ours.get(i)
            if want == got:
                same += want is not None
                refused_both += want is None
            elif got is None and any(ord(c) > 127 for c in t):
                unicode_only.append(t)  # documented: non-ASCII digits and spaces are refused here
            else:
                diffs.append((t, want, got))
        print("np.float32 vs textvec: %d strings, %d identical floats, %d refused by both, %d non-ASCII refused "
              "only by textvec (documented), %d differences" % (len(tokens), same, refused_both, len(unicode_only),
                                                                 len(diffs)))
        for t, want, got in diffs[:20]:
            print("  DIFF %r numpy=%s textvec=%s" % (t, want and hex(want), got and hex(got)))
        ok &= not diffs and skipped == refused_both + len(unicode_only)

        # 2. The accepted strings as a GloVe matrix of 100 columns, read by gensim and by textvec (2 threads).
        from gensim.models import KeyedVectors
        good = [t for i, t in enumerate(tokens) if i in ours]
        good += ["0"] * (-len(good) % 100)
        path = os.path.join(tmp, "g.txt")
        with open(path, "w") as f:
            for r in range(len(good) // 100):
                f.write("w%d %s\n" % (r, " ".join(good[r * 100:(r + 1) * 100])))
        kv = KeyedVectors.load_word2vec_format(path, binary=False, no_header=True)
        rc, msg, bits, words, _ = parse(lib, open(path, "rb").read(), 1, threads=2)
        g = kv.vectors.view(np.uint32)
        eq = rc == 0 and words == list(kv.index_to_key) and np.array_equal(bits, g)
        print("gensim load_word2vec_format(no_header=True) vs textvec: %s matrix, %d floats, %s" % (
            g.shape, g.size, "bit-identical" if eq else "DIFFERENT (%s)" % msg))
        ok &= eq

        # 3. gensim's own writers: save_word2vec_format text and binary, read back by both.
        rs = np.random.default_rng(7)
        kv2 = KeyedVectors(vector_size=50)
        keys = ["w%d" % i for i in range(2000)] + ["ünï", "日本語", "naïve", "a\tb"]
        vec = rs.standard_normal((len(keys), 50)).astype(np.float32) * np.float32(10.0) ** rs.integers(-30, 30, (len(keys), 50))
        kv2.add_vectors(keys, vec)
        for binary, kind in ((False, 2), (True, 3)):
            p = os.path.join(tmp, "w2v.%s" % ("bin" if binary else "txt"))
            kv2.save_word2vec_format(p, binary=binary)
            back = KeyedVectors.load_word2vec_format(p, binary=binary)
            raw = open(p, "rb").read()
            sniffed = lib.embd_textvec_sniff(raw, len(raw))
            rc, msg, bits, words, _ = parse(lib, raw, kind)
            eq = (rc == 0 and sniffed == kind and words == list(back.index_to_key)
                  and np.array_equal(bits, back.vectors.view(np.uint32)))
            print("gensim save_word2vec_format(binary=%s) %s: sniffed %d, %s" % (
                binary, back.vectors.shape, sniffed, "bit-identical words and floats" if eq else "DIFFERENT (%s)" % msg))
            ok &= eq
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
