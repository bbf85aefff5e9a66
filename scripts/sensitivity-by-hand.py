#!/usr/bin/env python3
"""A sensitivity table (the sensitivity.json format `quantgolf allocate` reads) measured by hand
with `quantgolf quantize` and `quantgolf kld`, for use until the sensitivity engine
(`quantgolf sensitivity`) is in the build. Standard library only.

For each role group and candidate: quantize the model with that group at the candidate and the
rest at the base spec, then one `kld` pass (the float model as base, every artifact scored on the
same windows) gives each cell's KLD/NLL change against the base artifact, paired per token, with
the 95 % block-bootstrap interval over windows that `kld` computes.

Bytes are marginal compressed bytes: the artifacts are compressed as a whole, so a group's own
compressed size cannot be read off. A group's base_bytes is its packed bytes under the base scaled
by the base artifact's compression ratio, fixed_bytes the rest of the base artifact, and a cell's
bytes = base_bytes + (artifact bytes of the cell - artifact bytes of the base). The allocator's
total is then the base artifact plus the sum of the chosen groups' marginal changes; `allocate
--verify` measures how far the real artifact is from that sum.

usage: sensitivity-by-hand.py QUANTGOLF MODEL VAL_GLOB TOKENIZER OUT.json [MAX_TOKENS]
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

BASE = "blocks.*: rowwise bits=6; tok_emb.weight: rowwise bits=8"
CANDIDATES = ["rowwise bits=4", "rowwise bits=5", "rowwise bits=6", "rowwise bits=8", "fp16"]
ROLES = ["attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp.fc", "mlp.proj", "tok_emb", "lm_head"]


def run(args):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.exit("sensitivity-by-hand: %s failed: %s" % (args[1], p.stderr.strip().splitlines()[-1]))
    return json.loads(p.stdout)


def main():
    qg, model, val, tok, out = sys.argv[1:6]
    max_tokens = sys.argv[6] if len(sys.argv) > 6 else "32768"
    tmp = tempfile.mkdtemp(prefix="qg-sens-")
    plan = run([qg, "quantize", "--model", model, "--spec", BASE, "--out", os.path.join(tmp, "x.qgz"),
                "--dry-run", "--json"])
    names = [t["name"] for t in plan["tensors"] if t["method"] not in ("fp16", "fp32", "raw")]
    groups = []
    for role in ROLES:
        if role == "tok_emb" or role == "lm_head":
            ts = [n for n in names if n == role + ".weight"]
        else:
            ts = [n for n in names if n.startswith("blocks.") and n.endswith("." + role + ".weight")]
        if ts:
            groups.append({"name": role, "tensors": ts})

    def quantize(spec, path):
        q = run([qg, "quantize", "--model", model, "--spec", spec, "--out", path, "--json"])
        return os.path.getsize(path), {t["name"]: t["bytes"] for t in q["tensors"]}

    base_path = os.path.join(tmp, "base.qgz")
    base_art, base_packed = quantize(BASE, base_path)
    ratio = base_art / sum(base_packed.values())
    arts = []
    for g in groups:
        for c in CANDIDATES:
            # base rules naming only this group's tensors would match nothing (the planner refuses those)
            rest = [r for r in BASE.split("; ") if r.split(":")[0] not in g["tensors"]]
            spec = "; ".join(["%s: %s" % (t, c) for t in g["tensors"]] + rest)
            path = os.path.join(tmp, "%s-%d.qgz" % (g["name"], CANDIDATES.index(c)))
            size, _ = quantize(spec, path)
            arts.append((g, c, path, size))
    # kld takes at most 16 models: the base artifact first in every batch, 15 cells after it
    paired = {}
    for i in range(0, len(arts), 15):
        args = [qg, "kld", "--base", model, "--model", base_path]
        for a in arts[i:i + 15]:
            args += ["--model", a[2]]
        k = run(args + ["--val", val, "--tokenizer", tok, "--max-tokens", max_tokens, "--json"])
        m0 = k["models"][0]
        paired.update({p["model"]["path"]: p for p in k["paired"]})
    base_bytes = {g["name"]: int(round(sum(base_packed[t] for t in g["tensors"]) * ratio)) for g in groups}
    cells = []
    for g, c, path, size in arts:
        p = paired[path]
        b = base_bytes[g["name"]] + size - base_art
        d = p["kld"]["estimate"]
        cells.append({"group": g["name"], "candidate": c, "delta_kld": d, "ci95": [p["kld"]["lo"], p["kld"]["hi"]],
                      "delta_nll": p["nll"]["estimate"], "bytes": b, "base_bytes": base_bytes[g["name"]],
                      "bytes_saved": base_bytes[g["name"]] - b,
                      "roi": (base_bytes[g["name"]] - b) / d if d > 0 else None})
    with open(model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    table = {"schema_version": 1, "command": "sensitivity", "model": {"path": model, "sha256": sha},
             "tokens": m0["tokens"], "windows": m0["tokens"] // m0["seq_len"], "metric": "kld", "base_spec": BASE,
             "base_kld": m0["kld"]["mean"], "base_nll": m0["model"]["val_loss"], "base_artifact_bytes": base_art,
             "fixed_bytes": base_art - sum(base_bytes.values()), "groups": groups, "candidates": CANDIDATES,
             "cells": cells, "method": "by hand: scripts/sensitivity-by-hand.py (quantize + kld), marginal bytes"}
    with open(out + ".tmp", "w") as f:
        json.dump(table, f, indent=1)
    os.replace(out + ".tmp", out)
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)


main()
