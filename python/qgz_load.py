"""Reads a quantgolf .qgz artifact into {name: numpy array} (float32 unless the tensor was
stored raw). numpy only; brotli/zstandard modules only for files compressed with them
(format 1 with brotli-11/zstd-22, and format 2's brotli meta). torch optional: load(...,
torch=True) returns torch tensors.

Dequantizes every method quantgolf writes: rowwise, lloydmax, turbo (FWHT + Lloyd-Max), e8
(E8P / E8 ball codebooks, residual stages), gptq over any of those grids, contest-int8,
fp16, bf16, fp32, raw. The Lloyd-Max levels and E8 codebooks are rebuilt here exactly as
quant/lloydmax.c and quant/e8.c build them (the artifact stores only their parameters).

Format: see io/qgz.h (header, payload), io/qgz_rans.h (code block), io/rans.h (tables and
streams), io/qgz_wide.h, io/qgz_rows.h and io/qgz_cols.h (format 3's streams).
Usage: python3 qgz_load.py A.qgz [--dump OUT.npz | --raw OUT.bin]"""
import lzma
import math
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


def unbrotli(data, n):
    """brotli expected to decode to n bytes, fed 64 bytes at a time: a stream that decodes
    past n stops after one step (the caller sees more than n bytes), not decoded whole."""
    import brotli
    d, data, out, k = brotli.Decompressor(), bytes(data), [], 0
    for i in range(0, max(len(data), 1), 64):
        out.append(d.process(data[i:i + 64]))
        k += len(out[-1])
        if k > n:
            break
    if k <= n and not d.is_finished():
        raise ValueError("truncated brotli stream")
    return b"".join(out)


def decompress(comp, data, raw):
    if comp == 0:
        return bytes(data)
    if comp == 1:
        import zstandard
        return zstandard.ZstdDecompressor().decompress(bytes(data), max_output_size=raw)
    if comp == 2:
        return unbrotli(data, raw)
    if comp == 3:
        return lzma.LZMADecompressor().decompress(bytes(data), max_length=raw + 1)
    if comp == 4:
        return zlib.decompressobj().decompress(bytes(data), raw + 1)
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


def rans_decode(tabs, ctxfn, data, n, out=None):
    """tabs: list of tables; ctxfn(i, prev) -> table index; out: the symbols' array."""
    out = np.zeros(n, dtype=np.uint32) if out is None else out
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


def uniform(alpha):
    f = 4096 // alpha
    return (alpha, 12, [f] * alpha, [f * i for i in range(alpha + 1)])


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


def read_payload(p, count, layout, ver, flags=(), opts=0):
    planes, fi = ver == 2 or opts & 1, 0
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
            if kind == 0 and ver >= 3 and bits <= 16:  # where the codes are: 1 = the code block
                if fi >= len(flags):
                    raise ValueError("more code sections than the code block places")
                s["ext"], fi = bool(flags[fi]), fi + 1
            if kind == 0:
                if s["ext"] or (ver == 2 and bits <= 12):
                    s["ext"] = True
                elif layout == 0:
                    s["data"] = unpack_codes(r.take((n * bits + 7) // 8), n, bits)
                else:
                    nb = (bits + 7) // 8
                    raw = np.frombuffer(bytes(r.take(n * nb)), dtype=np.uint8).reshape(n, nb).astype(np.uint32)
                    s["data"] = (raw << (8 * np.arange(nb, dtype=np.uint32))).sum(axis=1).astype(np.uint32)
            elif kind in (F16, BF16):
                b = np.frombuffer(bytes(r.take(2 * n)), dtype=np.uint8)
                if planes:
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
    if r.p != len(p) or fi != len(flags):
        raise ValueError("trailing bytes after the last tensor, or unplaced code sections")
    return ts


def wide_ref(r, wshared, alpha):
    v = r.var()
    t = rans_table(r) if v == 0 else uniform(alpha) if v == 1 else wshared[v - 2]
    if t[0] > alpha:
        raise ValueError("wide table alphabet too large")
    return t


def read_wide(r, wshared, t, s):
    """io/qgz_wide.h mode 6: a high part then a low byte per code, one payload."""
    n, alpha = s["count"], 1 << (s["bits"] - 8)
    hk, hc = r.u8(), [0] * n
    if hk == 4:
        cols = r.var()
        if cols < 1 or cols * t["shape"][0] != n:
            raise ValueError("column classes do not match the code matrix")
        cb = r.take((cols + 3) // 4)
        hc = [(cb[j % cols // 4] >> (2 * (j % cols % 4))) & 3 for j in range(n)]
    elif hk != 1:
        raise ValueError("bad high-part context count")
    hi = [wide_ref(r, wshared, alpha) for _ in range(hk)]
    lk, lc = r.u8(), [0] * alpha
    if not 1 <= lk <= 8:
        raise ValueError("bad low-byte class count")
    if lk > 1:
        acc = int.from_bytes(bytes(r.take((3 * alpha + 7) // 8)), "little")
        lc = [(acc >> (3 * v)) & 7 for v in range(alpha)]
        if max(lc) >= lk:
            raise ValueError("low-byte class out of range")
    tabs = hi + [wide_ref(r, wshared, 256) for _ in range(lk)]
    d = rans_decode(tabs, lambda i, p: hk + lc[p] if i & 1 else hc[i >> 1], r.take(r.var()), 2 * n)
    return d[0::2] << 8 | d[1::2]


def read_code_block(b, ts, ver):
    r = R(b)
    shared = [rans_table(r) for _ in range(r.var())]
    wshared = [rans_table(r) for _ in range(r.var())] if ver >= 3 else []
    for t in ts:
        for s in t["sec"]:
            if not s["ext"]:
                continue
            n, bits, mode = s["count"], s["bits"], r.u8()
            where = "tensor '%s', section '%s'" % (t["name"], s["name"])
            order = None
            if mode & 0x80 and ver >= 3:  # rows coded in a stored order (io/qgz_rows.h)
                mode &= 0x7F
                order = read_order(r, t["shape"][0])
            read_stream(r, shared, wshared, t, s, mode, ver, where)
            if order is not None:
                rows = t["shape"][0]
                d = np.empty_like(s["data"]).reshape(rows, -1)
                d[order] = s["data"].reshape(rows, -1)
                s["data"] = d.reshape(-1)
    if r.p != len(b):
        raise ValueError("trailing bytes after the last stream")


def read_order(r, rows):
    """A Lehmer code: entry k of rows - k choices in ceil(log2(rows - k)) bits, LSB first."""
    nbits = [(rows - k - 1).bit_length() for k in range(rows)]
    acc = int.from_bytes(bytes(r.take((sum(nbits) + 7) // 8)), "little")
    free, order, at = list(range(rows)), [], 0
    for b in nbits:
        v = (acc >> at) & ((1 << b) - 1)
        at += b
        if v >= len(free):
            raise ValueError("row order entry out of range")
        order.append(free.pop(v))
    return np.array(order, dtype=np.int64)


def read_stream(r, shared, wshared, t, s, mode, ver, where):
    n, bits = s["count"], s["bits"]
    if mode == 6 and ver >= 3:
        s["data"] = read_wide(r, wshared, t, s)
    elif mode in (2, 5):
        want = n if mode == 5 else (n * bits + 7) // 8
        z = unbrotli(r.take(r.var()), want)
        if len(z) != want:
            raise ValueError("%s: brotli stream of %s bytes, not %d" % (where, len(z) if len(z) <= want else "more", want))
        s["data"] = unpack_codes(z, n, bits) if mode == 2 else np.frombuffer(z, np.uint8).astype(np.uint32)
    elif mode in (3, 4) or (mode == 7 and ver >= 3):
        mid, cls = 1 << (bits - 1), None
        if mode == 4:
            cols = r.var()
            cb = np.frombuffer(bytes(r.take((cols + 3) // 4)), np.uint8)
            cls = [(int(cb[j // 4]) >> (2 * (j % 4))) & 3 for j in range(cols)]
        tabs = [rans_table(r) for _ in range(NCTX)]
        pay = r.take(r.var())
        if mode == 7:  # the code one row above (io/rans.h lagged contexts)
            lag = n // t["shape"][0]
            out = np.zeros(n, dtype=np.uint32)
            fn = lambda i, p: ctx_of(int(out[i - lag]) if i >= lag else mid, mid)
            s["data"] = rans_decode(tabs, fn, pay, n, out)
        else:
            fn = (lambda i, p: cls[i % len(cls)]) if cls else (lambda i, p: ctx_of(mid if p is None else p, mid))
            s["data"] = rans_decode(tabs, fn, pay, n)
    elif mode == 8 and ver >= 3:  # brotli over the codes column-major (io/qgz_cols.h)
        rows = t["shape"][0] if len(t["shape"]) > 1 else 1
        if bits > 8 or rows < 2 or n % rows:
            raise ValueError("%s: transposed stream for a section that is not a code matrix of <= 8 bits" % where)
        z = unbrotli(r.take(r.var()), n)
        if len(z) != n:
            raise ValueError("%s: transposed stream of %s bytes, not rows x cols = %d" % (where, len(z) if len(z) < n else "more", n))
        d = np.frombuffer(z, np.uint8).reshape(-1, rows).T.reshape(-1).astype(np.uint32)
        if n and int(d.max()) >> bits:
            raise ValueError("%s: symbol outside the alphabet" % where)
        s["data"] = d
    elif mode in (0, 1):
        tab = rans_table(r) if mode == 0 else shared[r.var()]
        if tab[0] > (1 << bits):
            raise ValueError("%s: symbol outside the alphabet" % where)
        s["data"] = rans_decode([tab], lambda i, p: 0, r.take(r.var()), n)
    else:
        raise ValueError("%s: unknown stream mode %d" % (where, mode))


def read_qgz(path):
    b = open(path, "rb").read()
    if len(b) < 32 or b[:4] != b"QGZA":
        raise ValueError("%s: not a .qgz artifact" % path)
    ver, comp, layout = struct.unpack_from("<H", b, 4)[0], b[6], b[7]
    count, crc, raw, zn = struct.unpack_from("<IIQQ", b, 8)
    if zn != len(b) - 32 or ver not in (1, 2, 3):
        raise ValueError("%s: bad header" % path)
    if ver >= 2:
        r = R(b, 32)
        mz = r.var()
        meta = decompress(2, r.take(mz), raw)
        rest = b[r.p:]
    else:
        meta, rest = decompress(comp, b[32:], raw), None
    if zlib.crc32(meta) != crc:
        raise ValueError("%s: payload CRC mismatch" % path)
    flags, opts = (), 0
    if ver >= 3:  # the code block opens with options (bit 0: f16 as delta byte planes) and
        r = R(rest)  # a placement bit per code section of <= 16 bits
        opts = r.u8()
        if opts & ~1:
            raise ValueError("unknown meta options")
        nf = r.var()
        bm = int.from_bytes(bytes(r.take((nf + 7) // 8)), "little")
        flags, rest = [(bm >> i) & 1 for i in range(nf)], rest[r.p:]
    ts = read_payload(meta, count, layout, ver, flags, opts)
    if ver >= 2:
        read_code_block(rest, ts, ver)
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
    if m == "gptq":
        m = o["grid"]
    if m == "lloydmax":
        g = int(o.get("group", "0")) or cols
        cf = lloydmax(int(o["bits"]))
        c = cf[sec["codes"]["data"]].reshape(rows, cols)
        return (c * np.repeat(f16(sec["scales"]["data"]).reshape(rows, cols // g), g, axis=1)).reshape(shape)
    if m == "turbo":
        return turbo(sec, o, rows, cols).reshape(shape)
    if m == "e8":
        return e8(sec, o, rows, cols).reshape(shape)
    raise NotImplementedError("tensor '%s': method %s is not supported by qgz_load.py" % (t["name"], m))


# ---- Lloyd-Max levels for N(0,1) (quant/lloydmax.c) ---------------------------------


def _cdf(x):
    return 0.5 * math.erfc(-x * 0.70710678118654752440)


def _pdf(x):
    return 0.39894228040143267794 * math.exp(-0.5 * x * x)


def _lm_residual(c, jac=False):
    n, inf = len(c), float("inf")
    f, lo, di, up = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    for i in range(n):
        a = -inf if i == 0 else 0.5 * (c[i - 1] + c[i])
        b = inf if i == n - 1 else 0.5 * (c[i] + c[i + 1])
        p = _cdf(-a) - _cdf(-b) if a >= 0 else _cdf(b) - _cdf(a)
        mu = (_pdf(a) - _pdf(b)) / p
        f[i] = c[i] - mu
        if jac:
            da = 0 if a == -inf else _pdf(a) * (mu - a) / p
            db = 0 if b == inf else _pdf(b) * (b - mu) / p
            lo[i], up[i], di[i] = -0.5 * da, -0.5 * db, 1 - 0.5 * da - 0.5 * db
    return f, max(abs(v) for v in f), lo, di, up


def _sym(c):
    n = len(c)
    for i in range(n // 2):
        m = 0.5 * (c[n - 1 - i] - c[i])
        c[i], c[n - 1 - i] = -m, m


_LM = {}


def lloydmax(bits):
    """The b-bit centroids as float32: Lloyd steps from the N(0,3) quantiles, then damped
    Newton (tridiagonal Jacobian), as qg_lloydmax_gaussian."""
    if bits in _LM:
        return _LM[bits]
    n = 1 << bits
    c = []
    for i in range(n):
        lo, hi, p = -40.0, 40.0, (i + 0.5) / n
        for _ in range(200):
            if hi - lo <= 1e-15:
                break
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _cdf(mid) < p else (lo, mid)
        c.append(math.sqrt(3.0) * 0.5 * (lo + hi))
    for _ in range(200):
        f, d = _lm_residual(c)[:2]
        c = [ci - fi for ci, fi in zip(c, f)]
        _sym(c)
        if d < 1e-6:
            break
    res = _lm_residual(c)[1]
    for _ in range(60):
        if res <= 1e-12:
            break
        f, _r, lo, di, up = _lm_residual(c, True)
        cp, dp, x = [0.0] * n, [0.0] * n, [0.0] * n
        cp[0], dp[0] = up[0] / di[0], f[0] / di[0]
        for i in range(1, n):
            m = di[i] - lo[i] * cp[i - 1]
            cp[i], dp[i] = up[i] / m, (f[i] - lo[i] * dp[i - 1]) / m
        x[n - 1] = dp[n - 1]
        for i in range(n - 2, -1, -1):
            x[i] = dp[i] - cp[i] * x[i + 1]
        h, tres, trial = 1.0, float("inf"), c
        while h > 1e-4:
            trial = [ci - h * xi for ci, xi in zip(c, x)]
            if all(trial[i] > trial[i - 1] for i in range(1, n)):
                tres = _lm_residual(trial)[1]
                if tres < res:
                    break
            h *= 0.5
        if not tres < res:
            f = _lm_residual(c)[0]
            c = [ci - fi for ci, fi in zip(c, f)]
            _sym(c)
            res = _lm_residual(c)[1]
            continue
        c, res = trial, tres
    _sym(c)
    _LM[bits] = np.array(c, dtype=np.float32)
    return _LM[bits]


# ---- turbo: inverse FWHT rotation (quant/fwht.c, quant/turbo.c) ---------------------


def signs(seed, n):
    out, st, w, M = np.empty(n, np.float32), seed, 0, (1 << 64) - 1
    for i in range(n):
        if i % 64 == 0:
            st = (st + 0x9E3779B97F4A7C15) & M
            z = ((st ^ (st >> 30)) * 0xBF58476D1CE4E5B9) & M
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
            w = z ^ (z >> 31)
        out[i] = -1.0 if (w >> (i % 64)) & 1 else 1.0
    return out


def fwht(x):
    """Normalised Walsh-Hadamard over the last axis in float32, the C butterfly order."""
    n, h = x.shape[-1], 1
    while h < n:
        y = x.reshape(x.shape[:-1] + (n // (2 * h), 2, h))
        a, b = y[..., 0, :], y[..., 1, :]
        x = np.stack((a + b, a - b), axis=-2).reshape(x.shape)
        h *= 2
    return x * np.float32(1.0 / math.sqrt(n))


def turbo(sec, o, rows, cols):
    g = int(o["group"])
    ng = cols // g
    v = lloydmax(int(o["bits"]))[sec["codes"]["data"]].reshape(rows, ng, g)
    if o.get("norm", "ls") == "ls":
        a = f16(sec["scales"]["data"]).reshape(rows, ng, 1)
    else:
        cc = np.sqrt((v.astype(np.float64) ** 2).sum(axis=2, keepdims=True))
        n = f16(sec["norms"]["data"]).reshape(rows, ng, 1).astype(np.float64)
        a = np.where(cc > 0, n / np.where(cc > 0, cc, 1), 0).astype(np.float32)
    seed = int.from_bytes(bytes(sec["seed"]["data"]), "little")
    w = fwht(v * a) * signs(seed, cols).reshape(1, ng, g)
    if float(o.get("eq", "0")) > 0:
        w = w / f16(sec["colscale"]["data"]).reshape(1, ng, g)
    return w.reshape(rows, cols)


# ---- e8: E8P and E8-ball codebooks (quant/e8.c) --------------------------------------


def _patterns(lim, odd):
    out, d = [], [0] * 8

    def rec(j, n2):
        if j == 8:
            if odd or (sum(d) // 2) % 2 == 0:
                out.append((n2, tuple(d)))
            return
        v = odd
        while n2 + v * v <= lim and v <= 15:
            d[j] = v
            rec(j + 1, n2 + v * v)
            v += 2

    rec(0, 0)
    return out


def _orbit(d):
    return 128 if d[0] & 1 else 1 << sum(1 for v in d if v)


def _key(p):
    return (p[0], sum(v << (4 * j) for j, v in enumerate(p[1])))


_CB = {}


def codebook(name):
    """Entries (size x 8, float32) of "e8p" or of the E8 ball of radius^2 name (an int)."""
    if name in _CB:
        return _CB[name]
    e8p = name == "e8p"
    if e8p:
        pats = _patterns(40, 1)
        for i in range(8):
            for j in range(i + 1, 8):
                for k in range(j + 1, 8):
                    if len(pats) < 227 + 29:
                        pats.append((48, tuple(1 if m in (i, j, k) else 3 for m in range(8))))
    else:
        pats = _patterns(4 * name, 0) + _patterns(4 * name, 1)
    pats.sort(key=_key)
    ent = []
    for _n2, d in pats:
        m = 256 if e8p else _orbit(d)
        c = np.arange(m, dtype=np.int64)
        sg = c >> 1 if e8p else c
        sh = np.where(c & 1, 1, -1) if e8p else np.zeros(m, np.int64)
        e = np.zeros((m, 8), np.int64)
        if d[0] & 1:
            pc = np.zeros(m, np.int64)
            for b in range(7):
                pc += (sg >> b) & 1
            par = (sum(d) // 2) & 1
            for j in range(8):
                neg = (pc & 1) ^ par if j == 0 else (sg >> (j - 1)) & 1
                e[:, j] = np.where(neg == 1, -2, 2) * d[j] + sh
        else:
            b = 0
            for j in range(8):
                if d[j]:
                    e[:, j] = np.where((sg >> b) & 1, -2, 2) * d[j]
                    b += 1
        ent.append(e)
    _CB[name] = (np.concatenate(ent) * 0.25).astype(np.float32)
    return _CB[name]


def _ball_for_bits(bits):
    cap, r2 = 1 << int(math.floor(8 * bits + 1e-9)), 2
    while r2 + 2 <= 30 and sum(_orbit(d) for _n, d in _patterns(4 * (r2 + 2), 0) + _patterns(4 * (r2 + 2), 1)) <= cap:
        r2 += 2
    return r2


def e8(sec, o, rows, cols):
    bits, g = float(o["bits"]), int(o.get("group", "0")) or cols
    if o.get("cb", "e8p") == "e8p":
        stages = ["e8p"] + ([] if bits == 2 else [2 if bits == 3 else "e8p"])
    else:
        stages = [2 if bits == 1 else 10 if bits == 2 else _ball_for_bits(bits)]
    nv, ng = cols // 8, cols // g
    sc = f16(sec["scales"]["data"]).reshape(len(stages), rows, ng)
    gi = np.arange(nv) * 8 // g
    acc = np.zeros((rows, nv, 8), np.float32)
    for k, cb in enumerate(stages):
        e = codebook(cb)[sec["codes" if k == 0 else "codes2"]["data"]].reshape(rows, nv, 8)
        acc = acc + sc[k][:, gi][:, :, None] * e
    return acc.reshape(rows, cols)


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
