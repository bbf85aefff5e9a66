#!/usr/bin/env python3
"""The contest record's `pergroup` artifact compressor, reproduced on quantgolf's codes: how
many bytes the best entrant's pipeline would need for exactly the codes in a .qgz, next to
the .qgz itself, and how long each takes to decode.

The pipeline, as the 2026-04-27 record's README describes it (COMPRESSOR=pergroup):
  1. the int6 block matrices bucketed by role across layers, in the record's group order
     (tok_emb, c_k, c_q, c_v, attn.proj, mlp.fc, mlp.proj), layers ascending;
  2. rows of the "hot" groups (tok_emb, c_q, mlp.fc) reordered by a greedy L1 nearest-
     neighbour walk from row 0, the permutation stored as uint16 and brotli-11 compressed;
  3. every matrix transposed (column-major) and the group's matrices concatenated, one
     `lrzip -z -L 9` (ZPAQ) stream per group;
  4. the remainder (per-row scales, tensors outside the groups, the shape manifest) as one
     brotli-11 stream (window 2^24); streams packed behind a 4-byte magic, a count and one
     4-byte length each.
The codes are the signed integers the record's int8 tensors hold (code + qmin). The
remainder here is the fp16 scales plus every other section's bytes as the .qgz stores them
uncompressed, plus a JSON manifest of names and shapes: the record pickles its remainder
with torch.save, which would cost more, so this side is, if anything, generous to it.

lrzip is Debian's package (a benchmark tool only: nothing in quantgolf needs it). Its LZ4
pre-test can store a stream uncompressed; the record runs it as written, so that is the
primary column, and `-T` (pre-test off) is reported beside it.

Usage: python3 bench/pergroup_reference.py A.qgz [--quantgolf build/quantgolf] [--out JSON]
       [--no-T]
Prints one JSON object (also written to --out): per group bytes and seconds, totals,
the .qgz's own bytes and the ratio, lrzip -d's CPU seconds against quantgolf's.
"""
import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import qgz_load  # noqa: E402

GROUPS = ["tok_emb.weight", "attn.c_k.weight", "attn.c_q.weight", "attn.c_v.weight", "attn.proj.weight",
          "mlp.fc.weight", "mlp.proj.weight"]
SIMSORT = {"tok_emb.weight", "attn.c_q.weight", "mlp.fc.weight"}


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def l1_walk(m):
    """Greedy nearest neighbour in L1 from row 0 (ties: the lowest row index)."""
    n = m.shape[0]
    x = m.astype(np.int32)
    used = np.zeros(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    order[0], used[0] = 0, True
    cur = x[0]
    for i in range(1, n):
        d = np.abs(x - cur).sum(axis=1)
        d[used] = np.iinfo(np.int64).max
        j = int(np.argmin(d))
        order[i], used[j], cur = j, True, x[j]
    return order


def role_of(name):
    p = name.split(".")
    if p[0] == "blocks" and len(p) > 2 and p[1].isdigit():
        return ".".join(p[2:]), int(p[1])
    return name, 0


def signed_codes(t):
    """The rowwise/GPTQ-rowwise integer codes as signed values, rows x cols, or None."""
    sec = {s["name"]: s for s in t["sec"]}
    o = qgz_load.opts(t["options"])
    m = t["method"]
    if "codes" not in sec or len(t["shape"]) != 2:
        return None
    if not (m == "rowwise" or (m == "gptq" and o.get("grid", "rowwise") == "rowwise")):
        return None
    bits = int(o["bits"])
    if bits > 8:
        return None
    h = 1 << (bits - 1)
    qmin = -h if o.get("range", "sym") == "full" else -(h - 1)
    rows, cols = t["shape"]
    return (sec["codes"]["data"].astype(np.int64) + qmin).astype(np.int8).reshape(rows, cols), "codes"


def lrzip(data, tmp, label, extra):
    inp = os.path.join(tmp, label + ".bin")
    out = inp + ".lrz"
    with open(inp, "wb") as f:
        f.write(data)
    if os.path.exists(out):
        os.remove(out)
    c0, w0 = children_cpu(), time.time()
    subprocess.run(["lrzip", "-q", *extra, "-z", "-L", "9", "-o", out, inp], check=True, capture_output=True)
    enc = (children_cpu() - c0, time.time() - w0)
    n = os.path.getsize(out)
    back = os.path.join(tmp, label + ".back")
    c0 = children_cpu()
    subprocess.run(["lrzip", "-q", "-d", "-f", "-o", back, out], check=True, capture_output=True)
    dec = children_cpu() - c0
    with open(back, "rb") as f:
        if f.read() != data:
            raise SystemExit("lrzip round trip differs for group %s" % label)
    for p in (inp, out, back):
        os.remove(p)
    return n, enc, dec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("qgz")
    ap.add_argument("--quantgolf", default=os.path.join(HERE, "..", "build", "quantgolf"))
    ap.add_argument("--out", default="pergroup_reference.json")
    ap.add_argument("--no-T", action="store_true", help="skip the -T (pre-test off) column")
    a = ap.parse_args()
    import brotli

    ts = qgz_load.read_qgz(a.qgz)
    groups = {g: [] for g in GROUPS}
    rest = bytearray()
    manifest = []
    for t in ts:
        role, layer = role_of(t["name"])
        sc = signed_codes(t)
        manifest.append([t["name"], t["method"], t["options"], t["shape"]])
        if sc is not None and role in groups:
            groups[role].append((layer, t["name"], sc[0]))
            skip = {sc[1]}
        else:
            skip = set()
        for s in t["sec"]:
            if s["name"] in skip:
                continue
            if "data" not in s:
                raise SystemExit("%s: section %s of %s is not readable here" % (a.qgz, s["name"], t["name"]))
            d = s["data"]
            rest += (d.astype("<u2") if s["kind"] == 0 and s["bits"] <= 16 else d).tobytes()
    perms = bytearray()
    blobs = {}
    sort_s = 0.0
    for g in GROUPS:
        blob = bytearray()
        for layer, name, m in sorted(groups[g], key=lambda x: x[0]):
            if g in SIMSORT:
                t0 = time.process_time()
                order = l1_walk(m)
                sort_s += time.process_time() - t0
                perms += order.astype("<u2").tobytes()
                m = m[order]
            blob += np.ascontiguousarray(m.T).tobytes()
        blobs[g] = bytes(blob)
    rest += json.dumps(manifest).encode()
    rest_z = brotli.compress(bytes(rest), quality=11, lgwin=24)
    perms_z = brotli.compress(bytes(perms), quality=11) if perms else b""
    n_streams = len(GROUPS) + 2
    pack = 8 + 4 * n_streams
    cols = [("as_recorded", [])] + ([] if a.no_T else [("T", ["-T"])])
    res = {"qgz": a.qgz, "qgz_bytes": os.path.getsize(a.qgz), "groups": {}, "remainder_bytes": len(rest_z),
           "remainder_raw_bytes": len(rest), "perm_bytes": len(perms_z), "pack_bytes": pack,
           "sort_cpu_seconds": sort_s}
    with tempfile.TemporaryDirectory() as tmp:
        for col, extra in cols:
            tot, enc, dec = 0, 0.0, 0.0
            for g in GROUPS:
                if not blobs[g]:
                    continue
                print("pergroup: %s lrzip %s (%d bytes)" % (col, g, len(blobs[g])), file=sys.stderr, flush=True)
                n, e, d = lrzip(blobs[g], tmp, g.replace(".", "_"), extra)
                res["groups"].setdefault(g, {"raw_bytes": len(blobs[g]), "tensors": len(groups[g])})[col + "_bytes"] = n
                tot, enc, dec = tot + n, enc + e[0], dec + d
            total = tot + len(rest_z) + len(perms_z) + pack
            res[col] = {"group_bytes": tot, "total_bytes": total, "encode_cpu_seconds": enc,
                        "decode_cpu_seconds": dec, "qgz_vs_pergroup": res["qgz_bytes"] / total - 1}
        # quantgolf's side: reading and dequantizing the whole artifact in C (convert to .pt
        # includes writing the float state dict, so it bounds the decode from above)
        pt = os.path.join(tmp, "x.pt")
        best = None
        for _ in range(3):
            c0 = children_cpu()
            subprocess.run([a.quantgolf, "convert", a.qgz, pt], check=True, capture_output=True)
            c = children_cpu() - c0
            best = c if best is None else min(best, c)
        res["quantgolf_convert_cpu_seconds"] = best
    print(json.dumps(res, indent=1))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
