#!/usr/bin/env python3
"""CPU peer benchmark: `quantgolf eval` against the contest's own GPT from train_gpt.py under
PyTorch (fp32, CPU), on the same checkpoint, the same validation tokens and the same thread
count. Checks that both give the same val_loss (relative difference <= --tol), and times
them alternately (quantgolf, torch, quantgolf, torch, ...): tokens/s of each run, medians
and the ratio of the medians, plus the min/max ratio over the paired runs.

The contest's train_gpt.py is not part of quantgolf: pass its path (--train-gpt). Only its
model classes and its int8 dequantizer are used; its training code never runs.

Models: the 7L384d contest checkpoint (.int8.ptz, dequantized by train_gpt.py's own
dequantize_state_dict_int8, which quantgolf reproduces) and a 9x512 baseline-shaped model
with random weights, written as a .pt so quantgolf reads exactly the weights torch uses.

quantgolf's figure is the `seconds` its --json output reports: the evaluation loop without
model loading, but including its first batch's allocations; torch's is the same loop
(eval_val's batching and loss weighting) after one untimed warm-up batch. The comparison
therefore favours torch slightly. FLOP/s use the forward's matrix-product FLOPs (causal
attention counted at half); the sgemm rate is bench_sgemm's (OpenBLAS, the model's shapes,
the same threads), measured in this run between the timed pairs.

Prints a table, writes JSON (--out). Figures only: nothing passes or fails on time, except
that a val_loss mismatch exits 1.
"""
import argparse
import importlib.util
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import zlib

import numpy as np
import torch


def load_contest_module(path):
    # train_gpt.py imports sentencepiece at the top for its BPB tables, which this bench
    # does not use: a stand-in keeps the peer runnable where the package is absent.
    if importlib.util.find_spec("sentencepiece") is None:
        sys.modules["sentencepiece"] = types.ModuleType("sentencepiece")
    spec = importlib.util.spec_from_file_location("contest_train_gpt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def config_of(state):
    """GPT constructor arguments from the tensors' shapes (checkpoints carry no config)."""
    V, d = state["tok_emb.weight"].shape
    L = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    H = state["blocks.0.attn.q_gain"].shape[0]
    hd = d // H
    KVH = state["blocks.0.attn.c_k.weight"].shape[0] // hd
    hidden = state["blocks.0.mlp.fc.weight"].shape[0]
    return dict(vocab_size=V, num_layers=L, model_dim=d, num_heads=H, num_kv_heads=KVH,
                mlp_mult=hidden // d, tie_embeddings="lm_head.weight" not in state,
                tied_embed_init_std=0.005, logit_softcap=30.0, rope_base=10000.0, qk_gain_init=1.5)


def random_state(mod, seed=0):
    """The 9x512 baseline shape with non-trivial random weights (the contest initialises the
    output projections at zero, which would make every block an identity)."""
    torch.manual_seed(seed)
    m = mod.GPT(vocab_size=1024, num_layers=9, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=2,
                tie_embeddings=True, tied_embed_init_std=0.005, logit_softcap=30.0, rope_base=10000.0,
                qk_gain_init=1.5)
    s = {k: v.detach().clone().float() for k, v in m.state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)
    for k, v in s.items():
        if v.ndim == 2 and k != "tok_emb.weight" and k != "skip_weights" and "resid_mix" not in k:
            s[k] = (torch.rand(v.shape, generator=g) * 2 - 1) * v.shape[1] ** -0.5
    s["tok_emb.weight"] = torch.randn(s["tok_emb.weight"].shape, generator=g) * 0.05
    return s


def load_tokens(pattern_file, n):
    header = np.fromfile(pattern_file, dtype="<i4", count=256)
    if header.size != 256 or int(header[0]) != 20240520:
        raise SystemExit(f"peer: {pattern_file}: not a contest token shard")
    count = int(header[2])
    if count < n:
        raise SystemExit(f"peer: {pattern_file}: {count} tokens, need {n}")
    return torch.from_numpy(np.fromfile(pattern_file, dtype="<u2", count=n, offset=1024).astype(np.int64))


def torch_eval(model, tokens, T, B):
    """eval_val's loop: non-overlapping windows, B per batch, loss weighted by tokens."""
    n_seq = (tokens.numel() - 1) // T
    loss_sum, count = 0.0, 0
    with torch.inference_mode():
        for s0 in range(0, n_seq, B):
            s1 = min(s0 + B, n_seq)
            local = tokens[s0 * T: s1 * T + 1]
            x, y = local[:-1].reshape(-1, T), local[1:].reshape(-1, T)
            loss_sum += float(model(x, y).double()) * y.numel()
            count += y.numel()
    return loss_sum / count


def flops_per_token(cfg, T):
    d, H, KVH, L, V = cfg["model_dim"], cfg["num_heads"], cfg["num_kv_heads"], cfg["num_layers"], cfg["vocab_size"]
    kvd, hidden = KVH * d // H, cfg["mlp_mult"] * d
    return L * (2 * (2 * d * d + 2 * d * kvd + 2 * d * hidden) + 2.0 * T * d) + 2 * d * V


def torch_sgemm_gflops(cfg, rows, threads):
    """torch's own fp32 GEMM rate on the model's shapes (y = x w^T), FLOP-weighted."""
    d, V, hidden = cfg["model_dim"], cfg["vocab_size"], cfg["mlp_mult"] * cfg["model_dim"]
    kvd = cfg["num_kv_heads"] * d // cfg["num_heads"]
    L = cfg["num_layers"]
    shapes = [(d, d, 2 * L), (d, kvd, 2 * L), (d, hidden, L), (hidden, d, L), (d, V, 1)]
    fl = tm = 0.0
    for K, N, w in shapes:
        x, W = torch.rand(rows, K), torch.rand(N, K)
        best = 1e9
        for _ in range(4):
            t0 = time.perf_counter()
            torch.nn.functional.linear(x, W)
            best = min(best, time.perf_counter() - t0)
        f = 2.0 * rows * K * N * w
        fl += f
        tm += f / (2.0 * rows * K * N / best)
    return fl / tm / 1e9


def run_quantgolf(qg, model, val, tok, n_tokens, T, B, threads):
    cmd = [qg, "eval", "--model", model, "--val", val, "--tokenizer", tok, "--seq-len", str(T),
           "--max-tokens", str(n_tokens), "--batch", str(B), "--threads", str(threads), "--device", "cpu", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"peer: quantgolf eval failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    j = json.loads(p.stdout)
    return j["val_loss"], j["tokens"] / j["seconds"]


def run_sgemm(bench, cfg, rows, threads):
    kvd = cfg["num_kv_heads"] * cfg["model_dim"] // cfg["num_heads"]
    cmd = [bench, str(rows), str(cfg["model_dim"]), str(kvd), str(cfg["mlp_mult"] * cfg["model_dim"]),
           str(cfg["vocab_size"]), str(cfg["num_layers"])]
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, QG_THREADS=str(threads)))
    if p.returncode != 0:
        raise SystemExit(f"peer: bench_sgemm failed: {p.stderr.strip()[-400:]}")
    return json.loads(p.stdout)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-gpt", required=True, help="the contest's train_gpt.py (not shipped)")
    ap.add_argument("--quantgolf", default=os.path.join(root, "build", "quantgolf"))
    ap.add_argument("--bench-sgemm", default=os.path.join(root, "build", "bench_sgemm"))
    ap.add_argument("--checkpoint", default=os.path.join(root, "..", "shared", "contest",
                                                         "baseline7L384d_SamTruss_c839523.int8.ptz"))
    ap.add_argument("--val", default=os.path.join(root, "data", "kjv_contest", "fineweb_val_000000.bin"))
    ap.add_argument("--tokenizer", default=os.path.join(root, "data", "fineweb_1024_bpe.model"))
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32768, help="scored tokens (a multiple of --seq)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=3, help="alternating (quantgolf, torch) pairs per model")
    ap.add_argument("--tol", type=float, default=1e-5, help="largest relative val_loss difference")
    ap.add_argument("--models", default="7L384d,9x512")
    ap.add_argument("--out", default="peer_torch_cpu.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    mod = load_contest_module(a.train_gpt)
    T, B, n_tok = a.seq, a.batch, a.tokens + 1
    tokens = load_tokens(a.val, n_tok)
    res = {"benchmark": "peer_torch_cpu", "torch": torch.__version__, "threads": a.threads, "seq_len": T,
           "batch": B, "tokens": a.tokens, "pairs": a.pairs, "order": "alternating quantgolf, torch",
           "statistic": "median over runs; ratio = median(quantgolf) / median(torch), min/max over pairs",
           "results": []}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            if name == "7L384d":
                if not os.path.exists(a.checkpoint):
                    print(f"SKIP: {a.checkpoint} not found", file=sys.stderr)
                    continue
                with open(a.checkpoint, "rb") as f:
                    obj = torch.load(io.BytesIO(zlib.decompress(f.read())), map_location="cpu")
                state = {k: v.float() for k, v in mod.dequantize_state_dict_int8(obj).items()}
                qg_model = a.checkpoint
            elif name == "9x512":
                state = random_state(mod)
                qg_model = os.path.join(tmp, "random_9x512.pt")
                torch.save(state, qg_model)
            else:
                raise SystemExit(f"peer: unknown model {name!r} (7L384d, 9x512)")
            cfg = config_of(state)
            model = mod.GPT(**cfg).float().eval()
            model.load_state_dict(state, strict=True)
            torch_eval(model, tokens[: B * T + 1], T, B)  # warm-up: allocator, thread pool
            qg_tps, pt_tps, qg_loss, pt_loss, sgemm = [], [], None, None, None
            for rep in range(a.pairs):
                qg_loss, tps = run_quantgolf(a.quantgolf, qg_model, a.val, a.tokenizer, n_tok, T, B, a.threads)
                qg_tps.append(tps)
                t0 = time.perf_counter()
                pt_loss = torch_eval(model, tokens, T, B)
                pt_tps.append(a.tokens / (time.perf_counter() - t0))
                if rep == 0:
                    sgemm = run_sgemm(a.bench_sgemm, cfg, B * T, a.threads)
            rel = abs(qg_loss - pt_loss) / abs(pt_loss)
            fpt = flops_per_token(cfg, T)
            mq, mp = statistics.median(qg_tps), statistics.median(pt_tps)
            pair = [q / p for q, p in zip(qg_tps, pt_tps)]
            row = {"model": name, "config": cfg, "val_loss_quantgolf": qg_loss, "val_loss_torch": pt_loss,
                   "val_loss_rel_diff": rel, "val_loss_match": rel <= a.tol,
                   "tokens_per_s_quantgolf": qg_tps, "tokens_per_s_torch": pt_tps,
                   "median_tokens_per_s_quantgolf": mq, "median_tokens_per_s_torch": mp,
                   "ratio_of_medians": mq / mp, "pair_ratio_min": min(pair), "pair_ratio_max": max(pair),
                   "flops_per_token": fpt, "gflops_quantgolf": fpt * mq / 1e9, "gflops_torch": fpt * mp / 1e9,
                   "sgemm_gflops_openblas_same_shapes": sgemm["sgemm_gflops"],
                   "sgemm_gflops_torch_same_shapes": torch_sgemm_gflops(cfg, B * T, a.threads)}
            row["fraction_of_sgemm_quantgolf"] = row["gflops_quantgolf"] / row["sgemm_gflops_openblas_same_shapes"]
            ok = ok and row["val_loss_match"]
            res["results"].append(row)
            print(f"{name:7s} val_loss qg {qg_loss:.6f} torch {pt_loss:.6f} (rel {rel:.1e}) | tokens/s qg {mq:8.0f} "
                  f"torch {mp:8.0f} ratio {mq / mp:.2f} [{min(pair):.2f}, {max(pair):.2f}] | GFLOP/s qg "
                  f"{row['gflops_quantgolf']:.1f} = {100 * row['fraction_of_sgemm_quantgolf']:.0f}% of sgemm "
                  f"{row['sgemm_gflops_openblas_same_shapes']:.1f} (torch gemm {row['sgemm_gflops_torch_same_shapes']:.1f})",
                  flush=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"peer: wrote {a.out}", file=sys.stderr)
    if not ok:
        print("peer: val_loss differs beyond --tol", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
