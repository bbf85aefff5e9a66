"""Reads a quantgolf .qgz artifact into {name: numpy array} (float32 unless the tensor was
stored raw). numpy only; brotli/zstandard modules only for files compressed with them
(format 1 with brotli-11/zstd-22, and format 2's brotli meta). torch optional: load(...,
torch=True) returns torch tensors.

Dequantizes: rowwise, gptq over the rowwise grid, contest-int8, fp16, bf16, fp32, raw.
Other methods (lloydmax, turbo, e8) raise NotImplementedError naming the tensor.

Format: see io/qgz.h (header, payload), io/qgz_rans.h (format 2 code block) and
io/rans.h (tables and streams). Usage: python3 qgz_load.py A.qgz [--dump OUT.npz | --raw OUT.bin]"""
import lzma
import struct
import sys
import zlib

import numpy as np

F16, BF16, F32, RAW = 1, 2, 3, 4
NCTX, RANS_L = 8, 1 << 23


class R:
    def __init__(s, b, pos=0):
        s.b, s.p = b, pos

    def u8(s):
        if s.p >= len(s.b):
            raise ValueError("truncated at offset %d" % s.p)
        s.p += 1
        return s.b[s.p - 1]

    def var(s):
        v = sh = 0
        while True:
            c = s.u8()
            v |= (c & 0x7F) << sh
            sh += 7
            if c < 0x80:
                return v
            if sh > 63:
                raise ValueError("varint too long")

    def take(s, n):
        if n > len(s.b) - s.p:
            raise ValueError("section runs past the data at offset %d" % s.p)
        s.p += n
        return s.b[s.p - n:s.p]


def decompress(comp, data, raw):
    if comp == 0:
        return bytes(data)
    if comp == 1:
        import zstandard
        return zstandard.ZstdDecompressor().decompress(bytes(data), max_output_size=raw)
    if comp == 2:
        import brotli
        return brotli.decompress(bytes(data))
    if comp == 3:
        return lzma.decompress(bytes(data))
    if comp == 4:
        return zlib.decompress(bytes(data))
    if comp == 5:
        r = R(data)
        return bytes(rans_stream(r, raw, 256).astype(np.uint8))
    raise ValueError("unknown compressor %d" % comp)


# ---- rANS (io/rans.h) ---------------------------------------------------------------


def rans_table(r):
    nsym = r.var()
    if nsym == 0:
        return (0, 12, [], [])
    pb = r.u8()
    if not 12 <= pb <= 16:
        raise ValueError("rANS table: precision %d" % pb)
    freq, acc, na = [], 0, 0
    for _ in range(nsym - 1):
        k = None
        need = 5
        while need:
            while na < need:
                acc |= r.u8() << na
                na += 8
            v = acc & ((1 << need) - 1)
            acc >>= need
            na -= need
            if k is None:
                k = v
                f = 1 << (k - 1) if k else 0
                need = k - 1 if k > 1 else 0
            else:
                f |= v
                need = 0
        freq.append(f)
    rest = (1 << pb) - sum(freq)
    if rest <= 0:
        raise ValueError("rANS table: frequencies exceed the total")
    freq.append(rest)
    cum = [0]
    for f in freq:
        cum.append(cum[-1] + f)
    return (nsym, pb, freq, cum)


def slots(t):
    nsym, pb, freq, cum = t
    sl = np.zeros(1 << pb, dtype=np.int64)
    for s in range(nsym):
        sl[cum[s]:cum[s + 1]] = s
    return sl


def rans_decode(tabs, ctxfn, data, n):
    """tabs: list of tables; ctxfn(i, prev) -> table index."""
    out = np.zeros(n, dtype=np.uint32)
    if n == 0:
        return out
    if len(tabs) == 1 and sum(1 for f in tabs[0][2] if f) == 1:
        if len(data):
            raise ValueError("payload for a one-symbol table")
        out[:] = next(s for s, f in enumerate(tabs[0][2]) if f)
        return out
    sl = [slots(t) if t[0] else None for t in tabs]
    x = list(struct.unpack_from("<4I", data, 0))
    q, prev = 16, None
    for i in range(n):
        c = ctxfn(i, prev)
        nsym, pb, freq, cum = tabs[c]
        if sl[c] is None:
            raise ValueError("context without a table")
        k, m = i & 3, (1 << pb) - 1
        s = int(sl[c][x[k] & m])
        out[i] = prev = s
        x[k] = freq[s] * (x[k] >> pb) + (x[k] & m) - cum[s]
        while x[k] < RANS_L:
            if q >= len(data):
                raise ValueError("stream decodes past its end")
            x[k] = ((x[k] << 8) | data[q]) & 0xFFFFFFFF
            q += 1
    if q != len(data) or any(v != RANS_L for v in x):
        raise ValueError("corrupt rANS stream")
    return out


def rans_stream(r, n, max_sym):
    t = rans_table(r)
    if t[0] > max_sym:
        raise ValueError("symbol outside the alphabet")
    pay = r.take(r.var())
    return rans_decode([t], lambda i, p: 0, pay, n)


def ctx_of(prev, mid):
    d = abs(prev - mid)
    return (0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6, 7, 7)[d] if d < 16 else 7


# ---- container ----------------------------------------------------------------------


def unpack_codes(b, n, bits):
    a = np.frombuffer(bytes(b), dtype=np.uint8)
    bitsarr = np.unpackbits(a, bitorder="little")[: n * bits].reshape(n, bits) if n else np.zeros((0, bits), np.uint8)
    return (bitsarr.astype(np.uint64) << np.arange(bits, dtype=np.uint64)).sum(axis=1).astype(np.uint32)


def read_payload(p, count, layout, v2):
    r, ts = R(p), []
    for _ in range(count):
        t = {"name": r.take(r.var()).decode(), "method": r.take(r.var()).decode(), "options": r.take(r.var()).decode()}
        t["dtype"] = r.u8()
        nd = r.u8()
        t["shape"] = [r.var() for _ in range(nd)]
        secs = []
        for _ in range(r.u8()):
            name = r.take(r.u8()).decode()
            kind, bits, n = r.u8(), r.u8(), r.var()
            s = {"name": name, "kind": kind, "bits": bits, "count": n, "ext": False}
            if kind == 0:
                if v2 and bits <= 12:
                    s["ext"] = True
                elif layout == 0:
                    s["data"] = unpack_codes(r.take((n * bits + 7) // 8), n, bits)
                else:
                    nb = (bits + 7) // 8
                    raw = np.frombuffer(bytes(r.take(n * nb)), dtype=np.uint8).reshape(n, nb).astype(np.uint32)
                    s["data"] = (raw << (8 * np.arange(nb, dtype=np.uint32))).sum(axis=1).astype(np.uint32)
            elif kind in (F16, BF16):
                b = np.frombuffer(bytes(r.take(2 * n)), dtype=np.uint8)
                if v2:
                    d = (b[:n].astype(np.uint16) | (b[n:].astype(np.uint16) << 8))
                    s["data"] = np.cumsum(d, dtype=np.uint16)
                else:
                    s["data"] = b.view("<u2").copy()
            elif kind == F32:
                s["data"] = np.frombuffer(bytes(r.take(4 * n)), dtype="<f4").copy()
            else:
                s["data"] = np.frombuffer(bytes(r.take(n)), dtype=np.uint8).copy()
            secs.append(s)
        t["sec"] = secs
        ts.append(t)
    if r.p != len(p):
        raise ValueError("trailing bytes after the last tensor")
    return ts


def read_code_block(b, ts):
    r = R(b)
    shared = [rans_table(r) for _ in range(r.var())]
    for t in ts:
        for s in t["sec"]:
            if not s["ext"]:
                continue
            n, bits, mode = s["count"], s["bits"], r.u8()
            where = "tensor '%s', section '%s'" % (t["name"], s["name"])
            if mode in (2, 5):
                import brotli
                z = brotli.decompress(bytes(r.take(r.var())))
                s["data"] = unpack_codes(z, n, bits) if mode == 2 else np.frombuffer(z, np.uint8).astype(np.uint32)
                continue
            if mode in (3, 4):
                mid, cls = 1 << (bits - 1), None
                if mode == 4:
                    cols = r.var()
                    cb = np.frombuffer(bytes(r.take((cols + 3) // 4)), np.uint8)
                    cls = [(int(cb[j // 4]) >> (2 * (j % 4))) & 3 for j in range(cols)]
                tabs = [rans_table(r) for _ in range(NCTX)]
                pay = r.take(r.var())
                fn = (lambda i, p: cls[i % len(cls)]) if cls else (lambda i, p: ctx_of(mid if p is None else p, mid))
                s["data"] = rans_decode(tabs, fn, pay, n)
                continue
            if mode == 0:
                tab = rans_table(r)
            elif mode == 1:
                tab = shared[r.var()]
            else:
                raise ValueError("%s: unknown stream mode %d" % (where, mode))
            if tab[0] > (1 << bits):
                raise ValueError("%s: symbol outside the alphabet" % where)
            s["data"] = rans_decode([tab], lambda i, p: 0, r.take(r.var()), n)
    if r.p != len(b):
        raise ValueError("trailing bytes after the last stream")


def read_qgz(path):
    b = open(path, "rb").read()
    if len(b) < 32 or b[:4] != b"QGZA":
        raise ValueError("%s: not a .qgz artifact" % path)
    ver, comp, layout = struct.unpack_from("<H", b, 4)[0], b[6], b[7]
    count, crc, raw, zn = struct.unpack_from("<IIQQ", b, 8)
    if zn != len(b) - 32 or ver not in (1, 2):
        raise ValueError("%s: bad header" % path)
    if ver == 2:
        r = R(b, 32)
        mz = r.var()
        meta = decompress(2, r.take(mz), raw)
        rest = b[r.p:]
    else:
        meta, rest = decompress(comp, b[32:], raw), None
    if zlib.crc32(meta) != crc:
        raise ValueError("%s: payload CRC mismatch" % path)
    ts = read_payload(meta, count, layout, ver == 2)
    if ver == 2:
        read_code_block(rest, ts)
    return ts


# ---- dequantization -----------------------------------------------------------------


def f16(u):
    return np.asarray(u, dtype=np.uint16).view(np.float16).astype(np.float32)


def bf16(u):
    return (np.asarray(u, dtype=np.uint32) << 16).view(np.float32)


def opts(s):
    return dict(kv.split("=", 1) for kv in s.split() if "=" in kv)


def dequant(t):
    sec = {s["name"]: s for s in t["sec"]}
    shape = t["shape"] or [1]
    n = int(np.prod(shape))
    rows = shape[0] if len(shape) > 1 else 1
    cols = n // rows if rows else 0
    m, o = t["method"], opts(t["options"])
    if m in ("fp16", "bf16", "fp32") or (m == "contest-int8" and "codes" not in sec):
        d = sec["data"]
        v = f16(d["data"]) if d["kind"] == F16 else bf16(d["data"]) if d["kind"] == BF16 else d["data"]
        return v.astype(np.float32).reshape(shape)
    if m == "raw":
        return sec["data"]["data"]
    if m == "rowwise" or (m == "gptq" and o.get("grid", "rowwise") == "rowwise"):
        bits, full, g = int(o["bits"]), o.get("range", "sym") == "full", int(o.get("group", "0")) or cols
        h = 1 << (bits - 1)
        qmin = -h if full else -(h - 1)
        c = sec["codes"]["data"].astype(np.int64).reshape(rows, cols) + qmin
        sc = f16(sec["scales"]["data"]).reshape(rows, cols // g)
        return (c.astype(np.float32) * np.repeat(sc, g, axis=1)).reshape(shape)
    if m == "contest-int8":
        c = sec["codes"]["data"].astype(np.float32) - 127
        if "scales" in sec:
            return (c.reshape(rows, cols) * f16(sec["scales"]["data"])[:, None]).reshape(shape)
        return (c * sec["scale"]["data"][0]).reshape(shape)
    raise NotImplementedError("tensor '%s': method %s is not supported by qgz_load.py" % (t["name"], m))


def load(path, torch=False):
    out = {t["name"]: dequant(t) for t in read_qgz(path)}
    if torch:
        import torch as th
        out = {k: th.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
    return out


if __name__ == "__main__":
    sd = load(sys.argv[1])
    if len(sys.argv) > 3 and sys.argv[2] == "--dump":
        np.savez(sys.argv[3], **{k.replace("/", "_"): v for k, v in sd.items()})
    if len(sys.argv) > 3 and sys.argv[2] == "--raw":  # per tensor: u32 name bytes, name, u64 count, f32 values
        with open(sys.argv[3], "wb") as f:
            for k, v in sd.items():
                a = np.ascontiguousarray(v, dtype="<f4")
                f.write(struct.pack("<I", len(k.encode())) + k.encode() + struct.pack("<Q", a.size) + a.tobytes())
    for k, v in sd.items():
        print("%s %s %s %.9g" % (k, v.dtype, "x".join(map(str, v.shape)), float(np.float64(v.astype(np.float64).sum()))))
