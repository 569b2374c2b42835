#!/usr/bin/python3
"""Writes the seed corpus of every fuzz target (tests/fuzz/corpus/TARGET/)
and the resource-limit regressions (tests/fuzz/regressions/TARGET/) from the
test fixtures and from small inputs made here. Python's standard library
only, plus Debian's python3-torchvision for JPEG bytes and jpegtran
(libjpeg-turbo-progs) for progressive ones. Run from anywhere:

    /usr/bin/python3 tests/fuzz/make-corpus.py   (Debian's python, with torchvision)

Inputs found by fuzzing are added to regressions/ by hand (never rewritten
here). Each seed is kept small (a few KB): libFuzzer mutates small inputs
fastest, and the corpus ships in the tarball."""
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(TOP, "tests", "fixtures")
CORPUS = os.path.join(HERE, "corpus")
REGRESSIONS = os.path.join(HERE, "regressions")


def put(target, name, data, root=CORPUS):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy(target, src, name=None, limit=64 << 10):
    with open(src, "rb") as f:
        data = f.read()
    if len(data) <= limit:
        put(target, name or os.path.basename(src), data)


# ---- images --------------------------------------------------------------------

def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(w, h, color_type=2, depth=8, extra=b""):
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    bpp = max(1, channels * depth // 8)
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 13 + c) & 0xFF for x in range(w) for c in range(bpp))
                    for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)) +
            extra + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))


def jpeg(w, h, gray=False, quality=90):
    import torch
    from torchvision.io import encode_jpeg
    c = 1 if gray else 3
    t = torch.tensor([[[(x * 5 + y * 3 + k * 60) % 256 for x in range(w)] for y in range(h)] for k in range(c)],
                     dtype=torch.uint8)
    return bytes(encode_jpeg(t, quality=quality).numpy())


def sof_size(data, w, h):
    """The same JPEG with its frame header claiming w x h (any SOFn)."""
    b = bytearray(data)
    i = 2
    while i + 9 < len(b):
        if b[i] == 0xFF and b[i + 1] in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", b, i + 5, h, w)
            return bytes(b)
        i += 1
    raise ValueError("no SOF")


def progressive(data):
    """Rewrites a baseline JPEG as progressive with jpegtran (Debian's
    libjpeg-turbo-progs) when present."""
    if not shutil.which("jpegtran"):
        return None
    import subprocess
    r = subprocess.run(["jpegtran", "-progressive"], input=data, capture_output=True)
    return r.stdout if r.returncode == 0 and r.stdout else None


def many_scans(data, n=600):
    """A progressive JPEG whose last scan is repeated n times (libjpeg warns
    about the bogus progression and goes on): more scans than
    CKD_JPEG_MAX_SCANS in about 20 KB."""
    prog = progressive(data)
    if not prog:
        return None
    last = prog.rindex(b"\xff\xda")
    end = prog.rindex(b"\xff\xd9")
    return prog[:last] + prog[last:end] * n + prog[end:]


def images():
    for f in sorted(os.listdir(os.path.join(FIX, "preprocess"))):
        if f.endswith(".png"):
            copy("png", os.path.join(FIX, "preprocess", f))
    put("png", "gray-alpha.png", png(5, 4, color_type=4))
    put("png", "rgba.png", png(3, 3, color_type=6))
    put("png", "gray16.png", png(4, 2, color_type=0, depth=16))
    put("png", "text-chunk.png", png(2, 2, extra=png_chunk(b"tEXt", b"Comment\0hello")))
    put("jpeg", "rgb-17x11.jpg", jpeg(17, 11))
    put("jpeg", "gray-8x8.jpg", jpeg(8, 8, gray=True))
    put("jpeg", "rgb-33x20-q50.jpg", jpeg(33, 20, quality=50))
    prog = progressive(jpeg(24, 16))
    if prog:
        put("jpeg", "progressive-24x16.jpg", prog)
    # image_resize: 16 header bytes (sizes, RNG state), then pixels.
    put("image_resize", "shrink", struct.pack("<HHHH", 40, 30, 7, 5) + bytes(8) + bytes(range(97)))
    put("image_resize", "grow", struct.pack("<HHHH", 3, 2, 50, 61) + b"\x01" * 8 + bytes(range(18)))
    put("image_resize", "same", struct.pack("<HHHH", 9, 9, 9, 9) + b"\xff" * 8 + b"\x80")
    # Regressions: decompression bombs (peak RSS is checked by the replay).
    base = open(os.path.join(FIX, "preprocess", "img3_17x23.png"), "rb").read()
    ihdr_end = 8 + 8 + 13 + 4
    bomb = base[:ihdr_end] + struct.pack(">I", 0x7FFFFF00) + b"tEXtComment\0hello, w"
    put("png", "text-chunk-claims-2GB.png", bomb, REGRESSIONS)
    put("jpeg", "baseline-16384x16384.jpg", sof_size(jpeg(64, 48), 16384, 16384), REGRESSIONS)
    if prog:
        # Within the pixel limit, over the memory budget: a progressive JPEG
        # keeps every coefficient of the image.
        put("jpeg", "progressive-16384x16384.jpg", sof_size(prog, 16384, 16384), REGRESSIONS)
        put("jpeg", "progressive-9000x9000.jpg", sof_size(prog, 9000, 9000), REGRESSIONS)
    scans = many_scans(jpeg(16, 16, gray=True))
    if scans:
        put("jpeg", "600-scans.jpg", scans, REGRESSIONS)


# ---- IDX -----------------------------------------------------------------------

def idx(dims, data, gz=False):
    body = struct.pack(">I", 0x800 + len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + data
    # The harness's first byte: expected ndim - 1 in the low bits, gzip in the high bit.
    return bytes([(len(dims) - 1) | (0x80 if gz else 0)]) + body


def idx_files():
    put("idx", "images-2x3x4", idx([2, 3, 4], bytes(range(24))))
    put("idx", "labels-5", idx([5], bytes([0, 1, 9, 3, 2])))
    put("idx", "images-gz", idx([1, 2, 2], bytes([1, 2, 3, 4]), gz=True))
    put("idx", "labels-short", idx([4], bytes([0, 1])))
    # 19 bytes claiming 3.6 GB: must fail without allocating it.
    put("idx", "header-claims-3.6GB", idx([60000, 240, 250], b"abc"), REGRESSIONS)


# ---- text ----------------------------------------------------------------------

def tokenizer():
    cases = json.load(open(os.path.join(FIX, "tokenizer", "tokenizer_cases.json")))["cases"]
    seen = 0
    for i, c in enumerate(cases):
        t = c["text"]
        if len(t.encode()) <= 512 and (seen < 24 or any(ord(ch) > 127 for ch in t)):
            put("tokenizer", "case-%03d" % i, t)
            seen += 1
    put("tokenizer", "invalid-utf8", b"a photo \xc3\x28 of \xed\xa0\x80 a cat")
    put("tokenizer", "combining", "e\u0301\u0316\u0345 Å ﬁ ＡＢＣ 한국어 ß")
    # 40,000 combining-mark pairs: NFC ordering used to be quadratic (8 s).
    put("tokenizer", "combining-marks-160KB", "a" + "\u0345\u0316" * 40000, REGRESSIONS)
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, "</w>": 5, "a</w>": 6, "c</w>": 7}
    merges = "#version: 0.2\na b\nab c\na </w>\n"
    put("tokenizer_vocab", "hf-tiny", b"\x00" + json.dumps(vocab).encode() + b"\n#merges\n" + merges.encode())
    with gzip.open(os.path.join(TOP, "models", "clip", "bpe_simple_vocab_16e6.txt.gz"), "rt") as f:
        head = "".join(next(f) for _ in range(40))
    put("tokenizer_vocab", "openai-head", b"\x01" + head.encode())
    put("brace", "range", "shards-{000..012}.tar")
    put("brace", "list", "data/{train,val}/part-{0..3}.tar")
    put("brace", "nested", "{a,{b,c}{1..2}}x")
    put("brace", "step", "s{10..0..-3}")


# ---- JSON documents --------------------------------------------------------------

def recipes():
    for d in ("recipes",):
        for f in sorted(os.listdir(os.path.join(FIX, d))):
            if f.endswith(".json"):
                copy("recipe", os.path.join(FIX, d, f))
    for f in sorted(os.listdir(os.path.join(TOP, "recipes", "quickstart"))):
        if f.endswith(".json"):
            copy("recipe", os.path.join(TOP, "recipes", "quickstart", f), "quickstart-" + f)
    put("recipe", "extends-and-sets",
        '{"extends": "base.json", "train": {"steps": 3}}\n#extends\n'
        '{"student": {"model": "clip", "config": "fmnist-student"}, "data": {"train": {"reader": "fashion-mnist"}},'
        ' "losses": [{"name": "clip"}], "train": {"batch_size": 8}}\n#set\n'
        'train.lr=0.001\nlosses[0].weight=2\nseed=3\n')
    for f in sorted(os.listdir(os.path.join(FIX, "tables"))):
        if f.endswith(".json"):
            copy("table", os.path.join(FIX, "tables", f))
    for f in sorted(os.listdir(os.path.join(FIX, "tables", "bad"))):
        copy("table", os.path.join(FIX, "tables", "bad", f), "bad-" + f)
    for plugin in ("clip", "resnet"):
        d = os.path.join(TOP, "models", plugin, "configs")
        for f in sorted(os.listdir(d)):
            copy("model_config", os.path.join(d, f), plugin + "-" + f)
    copy("model_config", os.path.join(FIX, "hf-clip", "tiny-clip-gelu", "config.json"), "hf-tiny-clip.json")


def datasets():
    put("csv", "header-tsv", b"\x00filepath\ttitle\na.png\ta small photo\na.png\t\"quoted\tcaption\"\n")
    put("csv", "comma-label", b"\x09filepath,title,label\na.png,a shirt,3\nmissing.png,a shoe,1\n")
    put("csv", "columns", b"\x02a.png\tone\t0\na.png\ttwo\t1\n")
    put("csv", "bad-quote", b"\x00filepath\ttitle\na.png\t\"unterminated\n")

    def tar(members, gz=False):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0
                t.addfile(info, io.BytesIO(data))
        return bytes([1 if gz else 0]) + buf.getvalue()

    one = png(2, 2)
    put("webdataset", "two-samples", tar([("000.png", one), ("000.txt", b"a cat"), ("000.cls", b"3"),
                                          ("001.png", one), ("001.txt", b"a dog")]))
    put("webdataset", "gz-one-sample", tar([("dir/x.png", one), ("dir/x.txt", b"caption")], gz=True))
    put("webdataset", "missing-caption", tar([("a.png", one)]))
    k = {"images": [
        {"filename": "a.png", "split": "test", "sentences": [{"raw": "a cat"}, {"raw": "a small cat"}]},
        {"filename": "a.png", "filepath": ".", "split": "val", "sentences": [{"raw": "x"}]},
        {"filename": "b.png", "split": "train", "sentences": []}]}
    put("retrieval", "karpathy-test", b"\x00" + json.dumps(k).encode())
    put("retrieval", "karpathy-all", b"\x04" + json.dumps(k).encode())
    put("retrieval", "not-an-object", b"\x00[1, 2]")


def checkpoints():
    state = {"recipe_hash": "ab" * 32, "step": 10, "epoch": 1, "cursor": [1, 2],
             "rng": ["0123456789abcdef", "fedcba9876543210", "0000000000000001", "00000000000000ff"],
             "adam_steps": [10, 10, 9], "metrics_len": 1234, "total_steps": 1000, "last_loss": 2.5,
             "last_terms": [1.5, 1.0]}
    put("checkpoint", "state", json.dumps(state, sort_keys=True))
    bad = dict(state, step=-1)
    put("checkpoint", "negative-step", json.dumps(bad))
    bad = dict(state, rng=["0000000000000000"] * 4)
    put("checkpoint", "zero-rng", json.dumps(bad))

    # A teacher-embedding cache entry: N = 4 samples, D = 8, key "k".
    def st_file(tensors, meta, pad=0):
        header, off, blobs = {}, 0, []
        for name, dtype, shape, data in tensors:
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
            off += len(data)
            blobs.append(data)
        header["__metadata__"] = meta
        h = json.dumps(header).encode() + b" " * pad
        return struct.pack("<Q", len(h)) + h + b"".join(blobs)

    N, D, C = 4, 8, 6
    img = struct.pack("<%df" % (N * D), *[((i * 7) % 5 - 2) / 4 for i in range(N * D)])
    txt = struct.pack("<%df" % (C * D), *[((i * 3) % 7 - 3) / 6 for i in range(C * D)])
    off = struct.pack("<5q", 0, 2, 3, 5, 6)
    valid = bytes([1, 1, 0, 1])
    scale = struct.pack("<f", 4.6)
    labels = struct.pack("<4i", 0, 3, -1, 9)
    order = [("image_embeds", "F32", [N, D], img), ("text_embeds", "F32", [C, D], txt),
             ("text_offsets", "I64", [N + 1], off), ("valid", "U8", [N], valid), ("logit_scale", "F32", [], scale),
             ("labels", "I32", [N], labels)]
    sha = hashlib.sha256(b"".join(t[3] for t in order)).hexdigest()
    put("cache_entry", "entry", st_file(order, {"key": "k", "sha256": sha}))
    put("cache_entry", "wrong-checksum", st_file(order, {"key": "k", "sha256": "0" * 64}))
    # Found by fuzzing (UBSan): a header whose length leaves the arrays
    # unaligned, read in place as int64 and float.
    hlen = len(json.dumps(dict({t[0]: 0 for t in order}, __metadata__=0)))
    put("cache_entry", "unaligned-arrays", st_file(order, {"key": "k", "sha256": sha}, pad=(1 - hlen) % 8 or 1),
        REGRESSIONS)


def tensors():
    for f in sorted(os.listdir(os.path.join(FIX, "safetensors"))):
        if f.endswith(".safetensors"):
            copy("safetensors", os.path.join(FIX, "safetensors", f), limit=32 << 10)
    def tiny(tensors, meta=None):
        header, off, blobs = {}, 0, []
        for name, dtype, shape, data in tensors:
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
            off += len(data)
            blobs.append(data)
        if meta:
            header["__metadata__"] = meta
        h = json.dumps(header).encode()
        return struct.pack("<Q", len(h)) + h + b"".join(blobs)
    put("safetensors", "all-dtypes", tiny([("f16", "F16", [2], b"\x00\x3c\x00\xc0"), ("bf16", "BF16", [1], b"\x80\x3f"),
                                          ("i64", "I64", [1], struct.pack("<q", -5)),
                                          ("u8", "U8", [3], b"\x01\x02\x03"), ("f64", "F64", [], struct.pack("<d", 0.5)),
                                          ("bool", "BOOL", [2], b"\x00\x01")], {"format": "pt"}))
    index = {"metadata": {"total_size": 16},
             "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                            "b.weight": "model-00002-of-00002.safetensors"}}
    put("safetensors_index", "two-shards", json.dumps(index))
    put("safetensors_index", "missing-shard",
        json.dumps({"weight_map": {"a.weight": "model-00003-of-00003.safetensors"}}))
    d = os.path.join(FIX, "pytorch-checkpoints")
    for f in ("views.pt", "malicious.pt"):
        copy("pt", os.path.join(d, f))
    for f in sorted(os.listdir(os.path.join(d, "bad"))):
        copy("pt", os.path.join(d, "bad", f), "bad-" + f, limit=8 << 10)


def rdm():
    """A CIFD rate-distortion module's folder (config.json, then
    model.safetensors), with and without a class head."""
    def st(tensors):
        header, off, blobs = {}, 0, []
        for name, shape in tensors:
            n = 1
            for d in shape:
                n *= d
            data = struct.pack("<%df" % n, *[((i * 5) % 11 - 5) / 10 for i in range(n)])
            header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(data)]}
            off += len(data)
            blobs.append(data)
        h = json.dumps(header).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        return struct.pack("<Q", len(h)) + h + b"".join(blobs)

    for classes in (0, 3):
        D, H, B = 4, 3, 2
        cfg = {"rdm": {"in_dim": D, "hidden": H, "bottleneck": B, "n_classes": classes, "out_relu": classes > 0},
               "R": 1000}
        t = [("enc.weight", [H, D]), ("enc.bias", [H]), ("bottleneck.weight", [B, H]), ("bottleneck.bias", [B]),
             ("dec.weight", [D, B]), ("dec.bias", [D]), ("entropy.matrices", [B, 24]), ("entropy.biases", [B, 10]),
             ("entropy.factors", [B, 9])]
        if classes:
            t += [("head.weight", [classes, D]), ("head.bias", [classes])]
        put("rdm", "module-%d-classes" % classes, json.dumps(cfg).encode() + b"\n#weights\n" + st(t))
    huge = {"rdm": {"in_dim": 1 << 20, "hidden": 1 << 20, "bottleneck": 0, "n_classes": 0}}
    put("rdm", "widths-of-a-trillion-values", json.dumps(huge).encode() + b"\n#weights\n" + st([]), REGRESSIONS)


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    images()
    idx_files()
    tokenizer()
    recipes()
    datasets()
    checkpoints()
    tensors()
    rdm()
    total = 0
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        total += size
        print("%-18s %3d seeds %8d bytes" % (t, len(files), size))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
