"""The README's examples as a test: every shell block that runs curl, and the Python snippet, runs as shown.

Each such block in README.md is preceded by `<!-- readme-test: id=NAME -->`. The block's commands run one by one
in bash, in a temporary directory holding the files the README names (made here with NumPy), against a real embd
started as the README says (a `./embd serve ...&` line in the block, or the demo matrix as `make run` serves it),
with `localhost:8080` rewritten to that daemon's port. Each command must exit 0, the HTTP statuses its curl saw
must be the ones EXPECT lists, and the output the README shows for it must be what it printed:

- a comment after a command (on its line, or the lines under it) that starts with `{` or `(` is its output:
  equal as JSON when it parses (times in ms left out), else with each `...` standing for anything;
- one that starts with a number: the output's first word is that number;
- comment lines under a command whose first is shaped `Name: value` (headers, `embd info`): exactly the lines it
  printed.

A curl block without a marker, a marker without an EXPECT entry or the other way round, or a block whose commands
no longer match their count in EXPECT fails, so the README cannot drift from what the daemon does.
"""
import json
import os
import re
import shlex
import struct
import subprocess
import time

import numpy as np
import pytest

from conftest import EMBD, Daemon

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
README = os.path.join(ROOT, "README.md")
MARK = re.compile(r"<!--\s*readme-test:\s*id=([\w-]+)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


class Skip:
    """A command the test does not run, and why."""

    def __init__(self, why):
        self.why = why


def run(*statuses, check=None):
    """A command that is run: the HTTP statuses its curl calls answered, in order; check(stdout, dir) if given."""
    return {"statuses": list(statuses), "check": check}


def file_npy(name, shape, dtype="<f4"):
    def check(out, d):
        a = np.load(os.path.join(d, name))
        assert a.shape == shape and a.dtype == np.dtype(dtype), (a.shape, a.dtype)

    return check


def json_shape(shape, key="shape"):
    def check(out, d):
        assert json.loads(out)[key] == shape, out

    return check


def contains(text):
    def check(out, d):
        assert text in out, out

    return check


def status_is(status, code):
    def check(out, d):
        j = json.loads(out)
        assert j["error"]["status"] == status and j["error"]["code"] == code, out

    return check


# Every marked block: the daemon it needs when the block does not start one ("demo": `make run`'s; None: none),
# and one entry per command, in order.
EXPECT = {
    "first-row": ("demo", [run(200, check=json_shape([1, 64]))]),
    "glove-as-it-comes": (None, [
        run(),
        None,  # ./embd serve glove.txt &
        run(200, check=json_shape([2, 3])),
    ]),
    "info": ("demo", [run(200, check=lambda out, d: json.loads(out)["rows"] == 10000)]),
    "rows-one": ("demo", [
        run(200, check=json_shape([1, 64])),
        run(200),
    ]),
    "rows-slice": ("demo", [
        run(200, check=file_npy("slice.npy", (256, 64))),
        run(),
    ]),
    "rows-ids": ("demo", [
        run(200, check=json_shape([3, 64])),
        run(200),
    ]),
    "rows-post": ("demo", [
        run(200, check=json_shape([3, 64])),
        run(200, check=file_npy("batch.npy", (3, 64))),
        run(200),
    ]),
    "python-client": ("demo", [run()]),
    "embd-client": ("demo", [run()]),
    "embd-client-errors": ("demo", [run()]),
    "torch-loader": ("demo", [run()]),
    "tokens": (None, [
        None,  # ./embd serve glove.6B.100d.txt &
        run(200, check=json_shape([2, 100])),
        run(200, check=json_shape([2, 100])),
        run(200, check=json_shape([3, 100])),
        run(200, check=file_npy("rows.npy", (3, 100))),
        run(200, check=file_npy("rows.npy", (3, 100))),
    ]),
    "tokens-oov": ("glove", [
        run(404, check=status_is(404, "token_not_found")),
        run(200),
    ]),
    "similar": (None, [
        None,  # ./embd serve glove.6B.100d.txt &
        run(200, check=lambda out, d: len(json.loads(out)["results"]) == 3),
        run(200, check=lambda out, d: len(json.loads(out)["results"]) == 5),
        run(200, check=lambda out, d: [len(r) for r in json.loads(out)["results"]] == [10, 10]),
        Skip("the vector is written `[0.1, ...100 numbers...]`: a placeholder, not a body"),
        run(200, check=lambda out, d: len(json.loads(out)["results"]) == 64),
        run(200, check=lambda out, d: [r["token"] for r in json.loads(out)["results"]][0] == "queen"),
        run(200, check=lambda out, d: len(json.loads(out)["scores"]) == 2),
        run(200, check=lambda out, d: isinstance(json.loads(out)["score"], float)),
        run(200, check=file_npy("pooled.npy", (1, 100))),
        run(200, check=json_shape([1, 100])),
        run(200, check=lambda out, d: [len(r) for r in json.loads(out)["results"]] == [2, 0]),
    ]),
    "health": ("demo", [
        run(200),
        run(200, check=contains("embd_requests_total")),
    ]),
    "reload": (None, [
        run(),  # head -c 24 /dev/urandom | base64 > token
        None,  # ./embd serve vectors.npy --admin.token_file token &  (on its own line: %1 is embd in a real shell)
        run(200),
        run(200, check=lambda out, d: json.loads(out)["generation"] == 3),
        run(200, check=lambda out, d: json.loads(out)["generation"] == 4),
        run(200, check=lambda out, d: json.loads(out)["message"].endswith("vocabulary: 400000 tokens")),
        run(200, check=lambda out, d: json.loads(out)["message"].endswith("vocabulary: none")),
        run(),
    ]),
    "errors": ("demo", [run(400, check=status_is(400, "id_out_of_range"))]),
    "unix-socket": (None, [
        None,  # ./embd serve vectors.npy --unix embd.sock &
        run(200),
        run(200, check=file_npy("slice.npy", (256, 300))),
        run(200),
    ]),
    "safetensors": (None, [
        run(check=contains("model.embed_tokens.weight BF16 (32000, 4096)")),
        None,  # ./embd serve model.safetensors --tensor model.embed_tokens.weight &
        run(200, check=file_npy("rows.npy", (2, 4096))),
        run(200),
    ]),
}

# The words GloVe 6B starts with (its rows 0, 3 and 5 are "the", "of" and "and"), then those the examples ask for.
GLOVE_WORDS = ["the", ",", ".", "of", "to", "and", "in", "a", '"', "'s", "king", "queen", "man", "woman", "paris",
               "new", "york", "köln", "東京", "1,000"]


def sparse_npy(path, shape):
    """A float32 .npy of that shape whose data is a hole: the header is real, the rows read as zeros."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.truncate(f.tell() + shape[0] * shape[1] * 4)


def make_files(d):
    """The files the README's examples name, made small or sparse, under d."""
    rng = np.random.default_rng(16)
    words = GLOVE_WORDS + ["w%d" % i for i in range(2000 - len(GLOVE_WORDS))]
    vecs = rng.standard_normal((len(words), 100)).astype(np.float32)
    vecs[GLOVE_WORDS.index("queen")] = vecs[GLOVE_WORDS.index("king")] - vecs[GLOVE_WORDS.index("man")] + vecs[
        GLOVE_WORDS.index("woman")]
    with open(os.path.join(d, "glove.6B.100d.txt"), "w", encoding="utf-8") as f:
        for w, v in zip(words, vecs):
            f.write(w + " " + " ".join("%.5g" % x for x in v) + "\n")
    sparse_npy(os.path.join(d, "vectors.npy"), (400000, 300))
    os.mkdir(os.path.join(d, "data"))
    sparse_npy(os.path.join(d, "data", "vectors-v2.npy"), (400000, 300))
    with open(os.path.join(d, "data", "vectors-v2.vocab"), "w") as f:
        f.write("".join("v%d\n" % i for i in range(400000)))
    rng.standard_normal((10, 768)).astype(np.float32).tofile(os.path.join(d, "data", "syn768.f32"))
    # A language model's embedding table and one more tensor, in BF16; the data is a hole.
    n = 32000 * 4096 * 2
    hdr = {"model.embed_tokens.weight": {"dtype": "BF16", "shape": [32000, 4096], "data_offsets": [0, n]},
           "model.norm.weight": {"dtype": "BF16", "shape": [4096], "data_offsets": [n, n + 8192]}}
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + n + 8192)
    os.symlink(EMBD, os.path.join(d, "embd"))
    os.mkdir(os.path.join(d, "bin"))
    os.symlink("/usr/bin/python3", os.path.join(d, "bin", "python3"))


def blocks(text):
    """[(id or None, language, first line number, body)] for every fenced block of the README."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while not lines[j].startswith("```"):
            j += 1
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mark = MARK.search(prev)
        out.append((mark.group(1) if mark else None, m.group(1), i + 1, "\n".join(lines[i + 1:j])))
        i = j + 1
    return out


def is_tested(lang, body):
    """Every block that asks the daemon something, whatever its fence says (```console, ```shell or none): a block
    the test would not run must not be able to hide a curl."""
    return re.search(r"\bcurl\b|\b(localhost|127\.0\.0\.1):8080/", body) is not None or lang == "python"


def split_comment(line):
    """(code, comment) of one shell line: the comment starts at a # outside quotes after a blank."""
    quote = None
    for k, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (k == 0 or line[k - 1] in " \t"):
            comment = line[k + 1:].rstrip()
            return line[:k].rstrip(), comment[1:] if comment.startswith(" ") else comment
    return line.rstrip(), None


def commands(body):
    """[(command, [output lines the README shows for it])]: lines ending in \\ or | go on to the next line."""
    out, cur = [], ""
    for line in body.split("\n"):
        code, comment = split_comment(line)
        if not code.strip():  # a comment line: what the command above it printed, or prose
            if comment is not None and out and not cur:
                out[-1][1].append(comment)
            continue
        cur += ("\n" if cur else "") + code
        if code.endswith("\\") or code.endswith("|"):
            continue
        out.append((cur, [comment] if comment is not None else []))  # the comment on the command's last line
        cur = ""
    assert not cur, "a command continues past the end of its block: " + cur
    return out


HEADER_LINE = re.compile(r"^[A-Za-z][\w-]*: ")


def wildcard(doc):
    return re.compile(".*?".join(re.escape(part) for part in doc.split("...")), re.S)


def without_times(v):
    """v with every *_ms number and every 'N.NNN ms' in a string left out: they change from run to run."""
    if isinstance(v, dict):
        return {k: (None if k.endswith("_ms") else without_times(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [without_times(x) for x in v]
    if isinstance(v, str):
        return re.sub(r"\d+(\.\d+)? ms\b", "N ms", v)
    return v


def check_shown(cmd, docs, out):
    """The output the README shows for cmd is the output it printed."""
    if not docs:
        return
    if HEADER_LINE.match(docs[0]):  # lines of `Name: value`: the lines printed, all of them (names in any case)
        got = [line.rstrip().lower() for line in out.splitlines() if line.strip()]
        assert got == [d.rstrip().lower() for d in docs], "%s\nREADME shows:\n%s\nprinted:\n%s" % (
            cmd, "\n".join(docs), out)
        return
    # The first comment is the output; lines indented under it continue it.
    doc = docs[0].strip()
    for d in docs[1:]:
        if d.startswith(" "):
            doc += d.strip()
    if doc[:1] in "{(":
        try:
            want = json.loads(doc)
        except ValueError:
            assert wildcard(doc).fullmatch(out.strip()), "%s\nREADME shows: %s\nprinted: %s" % (cmd, doc, out)
            return
        assert without_times(json.loads(out)) == without_times(want), "%s\nREADME shows: %s\nprinted: %s" % (
            cmd, doc, out)
    elif re.match(r"\d", doc):
        assert out.split()[:1] == doc.split()[:1], "%s\nREADME shows: %s\nprinted: %s" % (cmd, doc, out)


# curl reports each answer's status on stderr after the body; the README's commands are otherwise run as written.
PRELUDE = """set -o pipefail
curl() { command curl --write-out '%{stderr}\\nreadme-test-status %{http_code}\\n' "$@"; }
"""
SERVE = re.compile(r"^(?:(.*?)\s*&&\s*)?\./embd serve\b(.*?)\s*&\s*$", re.S)


class Runner:
    """Runs one block's commands in d, starting the daemons they name."""

    def __init__(self, d, logs):
        self.d, self.logs, self.daemon = d, logs, None

    def start(self, args):
        self.stop()
        cwd = os.getcwd()
        os.chdir(self.d)  # the daemon reads the README's relative paths where the commands made them
        try:
            self.daemon = Daemon(args, self.logs)
        finally:
            os.chdir(cwd)

    def stop(self):
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    def shell(self, cmd):
        env = dict(os.environ, PATH=os.path.join(self.d, "bin") + ":" + os.environ["PATH"])
        p = subprocess.run(["bash", "-c", PRELUDE + cmd], cwd=self.d, env=env, capture_output=True, timeout=120)
        err = p.stderr.decode(errors="replace")
        statuses = [int(s) for s in re.findall(r"^readme-test-status (\d+)$", err, re.M)]
        assert p.returncode == 0, "%s\nexit %d\n%s" % (cmd, p.returncode, err)
        return p.stdout.decode(errors="replace"), statuses

    def rewrite(self, cmd):
        if self.daemon is not None:
            cmd = re.sub(r"\b(localhost|127\.0\.0\.1):8080\b", "127.0.0.1:%d" % self.daemon.port, cmd)
            cmd = cmd.replace("%1", str(self.daemon.proc.pid))
        return cmd.replace("/data/", self.d + "/data/")

    def block(self, lang, body, daemon, expect):
        if daemon == "demo":
            self.start(["--config", os.path.join(ROOT, "config", "embd.json")])  # what `make run` serves
        elif daemon == "glove":
            self.start(["glove.6B.100d.txt"])
        if lang == "python":
            script = self.rewrite(body)
            # embd_client from the tree, as the README's "Python client" says to use it
            env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "clients", "python"))
            p = subprocess.run(["/usr/bin/python3", "-c", script], cwd=self.d, capture_output=True, timeout=60,
                               env=env)
            assert p.returncode == 0, p.stderr.decode(errors="replace")
            docs = [split_comment(line)[1] for line in body.split("\n") if line.startswith("print(")]
            check_shown(body, [x for x in docs if x], p.stdout.decode())
            return
        cmds = commands(body)
        assert len(cmds) == len(expect), "the block has %d commands, EXPECT lists %d: %s" % (
            len(cmds), len(expect), [c for c, _ in cmds])
        for (cmd, docs), want in zip(cmds, expect):
            m = SERVE.match(cmd)
            if m:
                assert want is None, "%s starts a daemon: its EXPECT entry is None" % cmd
                if m.group(1):
                    self.shell(m.group(1))
                self.start(shlex.split(m.group(2)))
                if docs:
                    self.check_log(cmd, docs[0])
                continue
            assert want is not None, "%s: EXPECT has None (a daemon start) for it" % cmd
            if isinstance(want, Skip):
                continue
            if "kill -HUP" in cmd:  # the reload a signal asks for, seen through the next command's answer
                before = self.daemon.json("/healthz")["generation"]
                self.shell(self.rewrite(cmd))
                self.wait_generation(before + 1)
                continue
            out, statuses = self.shell(self.rewrite(cmd))
            assert statuses == want["statuses"], "%s\nanswered %s, expected %s\n%s" % (
                cmd, statuses, want["statuses"], out)
            check_shown(cmd, docs, out)
            if want["check"] is not None:
                assert want["check"](out, self.d) is not False, "%s\nprinted: %s" % (cmd, out)

    def check_log(self, cmd, doc):
        """The start-up line the README quotes is the one the daemon logged, but for its times and port."""
        def plain(text):
            text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "TIME", text)
            text = re.sub(r"\d+\.\d+ ms\b", "N ms", text)
            return re.sub(r"embd \d+\.\d+\.\d+:", "embd VERSION:", text)

        log = plain(self.daemon.output())
        want = plain(doc.replace(":8080/", ":%d/" % self.daemon.port))
        assert wildcard(want).search(log), "%s\nREADME shows: %s\nlogged: %s" % (cmd, doc, log)

    def wait_generation(self, want):
        end = time.time() + 10
        while self.daemon.json("/healthz")["generation"] < want and time.time() < end:
            time.sleep(0.02)
        assert self.daemon.json("/healthz")["generation"] == want


def readme_blocks():
    with open(README, encoding="utf-8") as f:
        return blocks(f.read())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("readme"))
    make_files(d)
    return d


@pytest.fixture
def runner(files, tmp_path):
    r = Runner(files, str(tmp_path))
    yield r
    r.stop()


def test_every_curl_block_is_marked_and_expected():
    """A block with curl and no marker, or a marker EXPECT does not know (or the reverse), fails."""
    seen = []
    for bid, lang, line, body in readme_blocks():
        if is_tested(lang, body):
            assert lang in ("sh", "bash", "python"), "README.md:%d: a block with curl is fenced ```%s: fence it " \
                "```sh, as the test runs it" % (line, lang)
            assert bid is not None, "README.md:%d: a %s block with curl has no <!-- readme-test: id=... --> " \
                "before it" % (line, lang)
            assert bid in EXPECT, "README.md:%d: block %s is not in EXPECT" % (line, bid)
            seen.append(bid)
        else:
            assert bid is None, "README.md:%d: block %s runs no curl" % (line, bid)
    assert len(seen) == len(set(seen)), "an id is used twice: %s" % seen
    assert sorted(seen) == sorted(EXPECT), "in EXPECT, not in the README: %s" % (set(EXPECT) - set(seen))


@pytest.mark.parametrize("bid", sorted(EXPECT))
def test_readme_block(bid, runner):
    found = [(lang, body) for b, lang, _, body in readme_blocks() if b == bid]
    assert found, "block %s is not in the README" % bid
    lang, body = found[0]
    daemon, expect = EXPECT[bid]
    runner.block(lang, body, daemon, expect)


@pytest.mark.parametrize("wrong", [
    ("localhost:8080/v1/rows/7", "localhost:8080/v1/row/7"),  # a path the daemon does not have
    ("stop=356", "stop=10356"),  # a slice past the end
    ("# (256, 64)", "# (255, 64)"),  # an output the command does not print
])
def test_a_wrong_example_fails(wrong, runner):
    """The test is not a formality: an example changed to a wrong URL or a wrong output fails it."""
    for bid, lang, _, body in readme_blocks():
        if wrong[0] in body and bid in ("rows-one", "rows-slice"):
            with pytest.raises(AssertionError):
                runner.block(lang, body.replace(wrong[0], wrong[1], 1), *EXPECT[bid])
            return
    pytest.fail("no block shows %s" % wrong[0])


def test_python_snippet_reads_shape_from_headers(runner):
    """The snippet's shape and dtype come from the answer's headers: the daemon must send them on a binary answer."""
    runner.start([])
    status, headers, body = runner.daemon.request("POST", "/v1/rows?format=bin", b'{"ids": [3, 17, 42]}',
                                                  {"Content-Type": "application/json"})
    assert status == 200
    assert headers["x-embd-shape"] == "3,64" and headers["x-embd-dtype"] == "f32" and len(body) == 3 * 64 * 4


def test_format_auto_is_what_the_config_table_says(tmp_path):
    """`matrix.format` auto, as the README's config table says: magic bytes, then the first line, then the name
    (.npy, .safetensors; raw if dim is given; .txt, .vec, .bin)."""
    def fmt(name, content, *args):
        p = tmp_path / name
        p.write_bytes(content)
        out = subprocess.run([EMBD, "info", str(p), *args], capture_output=True, text=True)
        m = re.search(r"^format: (\w+)$", out.stdout, re.M)
        return m.group(1) if m else out.stderr.strip()

    noise = bytes(range(256)) * 4  # no magic, and not a line of text
    glove = b"a 1 2 3 4\nb 5 6 7 8\n"
    assert fmt("g.dat", glove) == "glove"  # the first line
    # The first line wins over dim: the file is GloVe, and a dim given for it is refused as not applying.
    assert "a glove file carries its own shape and dtype: --dim (matrix.dim) does not apply" in fmt(
        "g.dat", glove, "--dim", "4")
    assert fmt("n.txt", noise, "--dim", "4", "--dtype", "f32") == "raw"  # dim wins over .txt
    assert fmt("n.bin", noise, "--dim", "4", "--dtype", "f32") == "raw"  # and over .bin
    npy = fmt("n.npy", noise, "--dim", "4", "--dtype", "f32")
    assert npy != "raw" and ".npy" in npy, npy  # the .npy name wins over dim (and the file is refused as one)
    assert "line 1" in fmt("n.txt", noise)  # without dim, the name: read as GloVe, which it is not
