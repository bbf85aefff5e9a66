#!/usr/bin/env python3
"""CPU peer benchmark for training: `quantgolf train` against the contest's own GPT and
optimizers from train_gpt.py under PyTorch (fp32, CPU), a few optimizer steps of the
quickstart's model (scripts/quickstart.sh trains it through
experiments/small/gptq-vs-ste-qat-small.yaml: 2 layers, dim 128, 4 heads, 2 KV heads, MLP
x2, vocabulary 1024, seq 128, 4,096 tokens per step, no gradient accumulation), from the
same initial weights, on the same tokens, with the same thread count.

The contest's train_gpt.py is not part of quantgolf: pass its path (--train-gpt). Used from
it: GPT (the model and its init, run in fp32: no autocast, as quantgolf's CPU trainer),
DistributedTokenLoader (rank 0 of 1: the batches, which quantgolf cuts the same way), its
CONTROL_TENSOR_NAME_PATTERNS and optimizer split (Adam, fused, for the embedding and the
control tensors; Muon for the block matrices) with its default lrs, betas, eps, Muon
momentum warmup and 5 Newton-Schulz steps. The one change, as in quantgolf's CPU trainer:
Newton-Schulz runs in fp32 (train_gpt.py runs it in bf16; the fp32 quintic is
tests/reference/make_train_refs.py's). Its Muon class still rounds each update to bf16
(its updates_flat buffer), which quantgolf does not, so the weights are also checked after
a second, untimed torch run with make_train_refs.py's fp32 Muon (the same arithmetic as
quantgolf's): tight tolerance there, a bf16-sized one for the contest class.

Initial weights: train_gpt.py's init under torch.manual_seed(--seed), written as a
safetensors and given to quantgolf with --init. Schedule: --iterations N --warmdown 0
--warmup-steps 0 (lr_mul 1, as the quickstart's first 25 of 40 steps). Checks: step 1's
train_loss (<= --loss-tol relative), and the weights after the N steps.

--baseline B adds a second quantgolf build to every round (quantgolf, B, torch), for a
before/after comparison under the same load. Timing: each run takes N steps from the init; the figure is steps 2..N (tokens/s =
(N-1) x batch tokens / their seconds), so both exclude the first step's allocations and
warm-up. quantgolf's seconds come from its train.log (the cumulative train_time of step 1
and step N, in ms); torch's from perf_counter around the same steps. Runs alternate
(quantgolf, torch, quantgolf, ...), --pairs pairs; medians and the ratio of medians, with
the min/max of the per-pair ratios. GFLOP/s: the step's matrix-product FLOPs (forward x 3,
causal attention at half, plus Newton-Schulz) against bench_sgemm's OpenBLAS rate on the
model's shapes at the step's rows, measured in this run between the pairs.

Prints a summary, writes JSON (--out). Figures only: nothing passes or fails on time; a
loss or weight mismatch exits 1.
"""
import argparse
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import make_train_refs  # noqa: E402  (fp32 Newton-Schulz and the fp32 Muon)
from peer_torch_cpu import flops_per_token, load_contest_module, run_sgemm, torch_sgemm_gflops  # noqa: E402

# train_gpt.py's Hyperparameters defaults for the optimizers (quantgolf's defaults too)
OPT = dict(tied_embed_lr=0.05, matrix_lr=0.04, scalar_lr=0.04, beta1=0.9, beta2=0.95, adam_eps=1e-8,
           muon_momentum=0.95, muon_momentum_warmup_start=0.85, muon_momentum_warmup_steps=500, backend_steps=5)


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().contiguous().float().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "F32":
            raise SystemExit(f"peer: {path}: {name} is {e['dtype']}, expected F32")
        a, b = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").copy().reshape(e["shape"]))
    return out


def make_optimizers(mod, model, muon_kind):
    """train_gpt.py's split: Adam (fused) for tok_emb, Muon for block matrices, Adam for the
    control tensors and skip_weights (tied embedding: no lm_head)."""
    pats = mod.CONTROL_TENSOR_NAME_PATTERNS
    named = list(model.blocks.named_parameters())
    matrix = [p for n, p in named if p.ndim == 2 and not any(c in n for c in pats)]
    scalar = [p for n, p in named if p.ndim < 2 or any(c in n for c in pats)]
    if model.skip_weights.numel() > 0:
        scalar.append(model.skip_weights)
    betas = (OPT["beta1"], OPT["beta2"])
    tok = torch.optim.Adam([{"params": [model.tok_emb.weight], "lr": OPT["tied_embed_lr"],
                             "base_lr": OPT["tied_embed_lr"]}], betas=betas, eps=OPT["adam_eps"], fused=True)
    if muon_kind == "contest":
        muon = mod.Muon(matrix, lr=OPT["matrix_lr"], momentum=OPT["muon_momentum"], backend_steps=OPT["backend_steps"])
    else:
        muon = make_train_refs.Muon(matrix, OPT["matrix_lr"], OPT["muon_momentum"], OPT["backend_steps"])
    for g in muon.param_groups:
        g["base_lr"] = OPT["matrix_lr"]
    sc = torch.optim.Adam([{"params": scalar, "lr": OPT["scalar_lr"], "base_lr": OPT["scalar_lr"]}], betas=betas,
                          eps=OPT["adam_eps"], fused=True)
    return [tok, muon, sc], muon


def torch_train(mod, cfg, init, train_glob, steps, batch_tokens, seq, muon_kind):
    """train_gpt.py's loop body (grad_accum 1, lr_mul 1, no clipping), fp32 on the CPU.
    Returns (losses, seconds of steps 2..N, final weights)."""
    model = mod.GPT(**cfg).float()
    model.load_state_dict(init, strict=True)
    model.train()
    opts, muon = make_optimizers(mod, model, muon_kind)
    loader = mod.DistributedTokenLoader(train_glob, 0, 1, torch.device("cpu"))
    losses, t1 = [], None
    for step in range(steps):
        if step == 1:
            t1 = time.perf_counter()
        for o in opts:
            o.zero_grad(set_to_none=True)
        x, y = loader.next_batch(batch_tokens, seq, 1)
        loss = model(x, y)
        loss.backward()
        frac = min(step / OPT["muon_momentum_warmup_steps"], 1.0)
        for g in muon.param_groups:
            g["momentum"] = (1 - frac) * OPT["muon_momentum_warmup_start"] + frac * OPT["muon_momentum"]
        for o in opts:
            for g in o.param_groups:
                g["lr"] = g["base_lr"]  # lr_mul 1 (warmdown 0)
        for o in opts:
            o.step()
        losses.append(float(loss.detach()))
    dt = time.perf_counter() - t1
    return losses, dt, {n: p.detach().clone() for n, p in model.named_parameters()}


def run_quantgolf(a, init_path, out_dir, cfg, binary=None):
    cmd = [binary or a.quantgolf, "train", "--train", a.train, "--val", a.val, "--tokenizer", a.tokenizer, "--out", out_dir,
           "--layers", str(cfg["num_layers"]), "--dim", str(cfg["model_dim"]), "--heads", str(cfg["num_heads"]),
           "--kv-heads", str(cfg["num_kv_heads"]), "--mlp-mult", str(cfg["mlp_mult"]), "--seq-len", str(a.seq),
           "--batch-tokens", str(a.batch_tokens), "--grad-accum", "1", "--iterations", str(a.steps),
           "--warmup-steps", "0", "--warmdown", "0", "--init", init_path, "--threads", str(a.threads),
           "--export", "none", "--val-max-tokens", str(a.seq * 8 + 1), "--device", "cpu", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"peer: quantgolf train failed ({p.returncode}): {p.stderr.strip()[-600:]}")
    j = json.loads(p.stdout)
    ms = {}
    with open(os.path.join(out_dir, "train.log")) as f:
        for line in f:
            m = re.match(r"step:(\d+)/\d+ .*train_time:(\d+)ms", line)
            if m:
                ms[int(m.group(1))] = float(m.group(2))
    if 1 not in ms or a.steps not in ms:
        raise SystemExit(f"peer: {out_dir}/train.log: no step lines for steps 1 and {a.steps}")
    return j, (ms[a.steps] - ms[1]) / 1000.0, read_safetensors(os.path.join(out_dir, "final_model.safetensors"))


def ns_flops(cfg):
    """Newton-Schulz FLOPs of one optimizer step: per matrix r x k (r <= k), per iteration
    X X^T (2 r r k), A A (2 r^3), B X (2 r r k)."""
    d, hd = cfg["model_dim"], cfg["model_dim"] // cfg["num_heads"]
    kvd, hid = cfg["num_kv_heads"] * hd, cfg["mlp_mult"] * d
    tot = 0.0
    for rows, cols in [(d, d), (kvd, d), (kvd, d), (d, d), (hid, d), (d, hid)]:
        r, k = min(rows, cols), max(rows, cols)
        tot += OPT["backend_steps"] * (4.0 * r * r * k + 2.0 * r ** 3)
    return cfg["num_layers"] * tot


def weight_diff(qg, ref, w0):
    """Largest |qg - ref| over every tensor, in absolute terms and relative to the largest
    change |ref - w0| of that tensor (the scale the optimizer moved it by); and the whole
    model's ||qg - ref|| / ||ref - w0|| (Frobenius, over all tensors)."""
    worst_abs, worst_rel, where, dd, mm = 0.0, 0.0, "", 0.0, 0.0
    for n, r in ref.items():
        if n not in qg:
            raise SystemExit(f"peer: quantgolf's weights lack {n}")
        e = (qg[n] - r).double()
        d = float(e.abs().max())
        moved = float((r - w0[n]).abs().max())
        dd += float((e * e).sum())
        mm += float(((r - w0[n]).double() ** 2).sum())
        rel = d / moved if moved > 0 else (0.0 if d == 0 else float("inf"))
        worst_abs = max(worst_abs, d)
        if rel > worst_rel:
            worst_rel, where = rel, n
    return worst_abs, worst_rel, where, (dd / mm) ** 0.5 if mm > 0 else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-gpt", required=True, help="the contest's train_gpt.py (not shipped)")
    ap.add_argument("--quantgolf", default=os.path.join(ROOT, "build", "quantgolf"))
    ap.add_argument("--baseline", help="a second quantgolf (e.g. an older build), timed in every round too: "
                    "(quantgolf, baseline, torch), ...")
    ap.add_argument("--bench-sgemm", default=os.path.join(ROOT, "build", "bench_sgemm"))
    ap.add_argument("--train", default=os.path.join(ROOT, "data", "kjv_shards", "kjv_train_*.bin"))
    ap.add_argument("--val", default=os.path.join(ROOT, "data", "kjv_shards", "kjv_val_*.bin"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "data", "kjv1024.model"))
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--mlp-mult", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=1024, help="the tokenizer's piece count")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per run (timed: 2..N)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=5, help="alternating (quantgolf, torch) pairs")
    ap.add_argument("--seed", type=int, default=1337, help="torch.manual_seed before GPT(): the init")
    ap.add_argument("--loss-tol", type=float, default=1e-5, help="largest relative step-1 train_loss difference")
    ap.add_argument("--w-tol-fp32", type=float, default=5e-3,
                    help="largest max|w_qg - w_torch| / max|w_torch - w0| of a tensor, fp32 Muon run")
    ap.add_argument("--w-tol-contest", type=float, default=2e-2,
                    help="the same for the contest's Muon class (bf16-rounded updates)")
    ap.add_argument("--out", default="peer_torch_train_cpu.json")
    a = ap.parse_args()
    if a.steps < 2:
        raise SystemExit("peer: --steps must be at least 2 (step 1 is not timed)")
    torch.set_num_threads(a.threads)
    mod = load_contest_module(a.train_gpt)
    # the contest's Muon class with quantgolf's fp32 Newton-Schulz (its module-level name is
    # what Muon.step calls)
    mod.zeropower_via_newtonschulz5 = make_train_refs.zeropower_ns5_fp32
    cfg = dict(vocab_size=a.vocab, num_layers=a.layers, model_dim=a.dim, num_heads=a.heads, num_kv_heads=a.kv_heads,
               mlp_mult=a.mlp_mult, tie_embeddings=True, tied_embed_init_std=0.005, logit_softcap=30.0,
               rope_base=10000.0, qk_gain_init=1.5)
    torch.manual_seed(a.seed)
    init = {n: p.detach().clone().float() for n, p in mod.GPT(**cfg).named_parameters()}
    fpt = flops_per_token(cfg, a.seq)
    step_flops = 3.0 * fpt * a.batch_tokens + ns_flops(cfg)
    res = {"benchmark": "peer_torch_train_cpu", "torch": torch.__version__, "threads": a.threads, "config": cfg,
           "seq_len": a.seq, "batch_tokens": a.batch_tokens, "steps_per_run": a.steps, "timed_steps": a.steps - 1,
           "pairs": a.pairs, "order": "alternating quantgolf, torch",
           "statistic": "median over runs; ratio = median(quantgolf) / median(torch), min/max over pairs",
           "step_flops": step_flops, "flops_note": "3 x forward matrix products (causal attention at half) + Newton-Schulz"}
    with tempfile.TemporaryDirectory() as tmp:
        init_path = os.path.join(tmp, "init.safetensors")
        write_safetensors(init_path, init)
        # untimed agreement run with the fp32 Muon, and a warm-up of torch's allocator and pool
        ref_losses, _, ref_w = torch_train(mod, cfg, init, a.train, a.steps, a.batch_tokens, a.seq, "fp32")
        qg_tps, pt_tps, base_tps, sgemm = [], [], [], None
        for rep in range(a.pairs):
            j, qdt, qg_w = run_quantgolf(a, init_path, os.path.join(tmp, f"qg{rep}"), cfg)
            qg_tps.append((a.steps - 1) * a.batch_tokens / qdt)
            if a.baseline:
                _, bdt, _ = run_quantgolf(a, init_path, os.path.join(tmp, f"base{rep}"), cfg, a.baseline)
                base_tps.append((a.steps - 1) * a.batch_tokens / bdt)
            pt_losses, pdt, pt_w = torch_train(mod, cfg, init, a.train, a.steps, a.batch_tokens, a.seq, "contest")
            pt_tps.append((a.steps - 1) * a.batch_tokens / pdt)
            if rep == 0:
                sgemm = run_sgemm(a.bench_sgemm, cfg, a.batch_tokens, a.threads)
                sgemm_torch = torch_sgemm_gflops(cfg, a.batch_tokens, a.threads)
    # a quantgolf from before first_train_loss was in --json (an A/B against an old build):
    # timed, but step 1's loss is then not checked
    l_qg, l_pt = j.get("first_train_loss"), pt_losses[0]
    loss_rel = abs(l_qg - l_pt) / abs(l_pt) if l_qg is not None else float("nan")
    if l_qg is None:
        print("peer: this quantgolf reports no first_train_loss: step 1's loss is not checked", file=sys.stderr)
    fp32_abs, fp32_rel, fp32_where, fp32_fro = weight_diff(qg_w, ref_w, init)
    con_abs, con_rel, con_where, con_fro = weight_diff(qg_w, pt_w, init)
    mq, mp = statistics.median(qg_tps), statistics.median(pt_tps)
    pair = [q / p for q, p in zip(qg_tps, pt_tps)]
    gq, gp = step_flops / a.batch_tokens * mq / 1e9, step_flops / a.batch_tokens * mp / 1e9
    res.update({
        "first_train_loss_quantgolf": l_qg, "first_train_loss_torch": l_pt,
        "first_train_loss_rel_diff": None if l_qg is None else loss_rel,
        "first_train_loss_match": None if l_qg is None else loss_rel <= a.loss_tol,
        "last_train_loss_quantgolf": j.get("last_train_loss"), "last_train_loss_torch": pt_losses[-1],
        "last_train_loss_torch_fp32_muon": ref_losses[-1],
        "weights_fp32_muon": {"max_abs_diff": fp32_abs, "max_rel_to_update": fp32_rel, "worst_tensor": fp32_where,
                              "frobenius_rel_to_update": fp32_fro,
                              "tol": a.w_tol_fp32, "match": fp32_rel <= a.w_tol_fp32},
        "weights_contest_muon": {"max_abs_diff": con_abs, "max_rel_to_update": con_rel, "worst_tensor": con_where,
                                 "frobenius_rel_to_update": con_fro,
                                 "tol": a.w_tol_contest, "match": con_rel <= a.w_tol_contest},
        "tokens_per_s_quantgolf": qg_tps, "tokens_per_s_torch": pt_tps,
        "median_tokens_per_s_quantgolf": mq, "median_tokens_per_s_torch": mp,
        "ratio_of_medians": mq / mp, "pair_ratio_min": min(pair), "pair_ratio_max": max(pair),
        "gflops_quantgolf": gq, "gflops_torch": gp,
        "sgemm_gflops_openblas_same_shapes": sgemm["sgemm_gflops"], "sgemm_gflops_torch_same_shapes": sgemm_torch,
        "fraction_of_sgemm_quantgolf": gq / sgemm["sgemm_gflops"], "fraction_of_sgemm_torch": gp / sgemm_torch,
    })
    if base_tps:
        mb = statistics.median(base_tps)
        res.update({"baseline": a.baseline, "tokens_per_s_baseline": base_tps, "median_tokens_per_s_baseline": mb,
                    "ratio_baseline_to_torch": mb / mp, "ratio_quantgolf_to_baseline": mq / mb,
                    "pair_ratio_quantgolf_to_baseline": [q / b for q, b in zip(qg_tps, base_tps)]})
        print(f"baseline {a.baseline}: tokens/s {mb:8.0f}, ratio to torch {mb / mp:.2f}; quantgolf / baseline "
              f"{mq / mb:.2f}", flush=True)
    ok = res["first_train_loss_match"] is not False and res["weights_fp32_muon"]["match"] and res["weights_contest_muon"]["match"]
    print(f"step-1 train_loss qg {l_qg if l_qg is not None else float('nan'):.9f} torch {l_pt:.9f} (rel {loss_rel:.1e}); weights after {a.steps} steps: "
          f"fp32 Muon max|dw| {fp32_abs:.1e} ({fp32_rel:.1e} of the update, {fp32_where}; Frobenius "
          f"{fp32_fro:.1e}), contest Muon {con_abs:.1e} ({con_rel:.1e}, {con_where}; {con_fro:.1e})")
    print(f"tokens/s qg {mq:8.0f} torch {mp:8.0f} ratio {mq / mp:.2f} [{min(pair):.2f}, {max(pair):.2f}] | GFLOP/s qg "
          f"{gq:.1f} = {100 * gq / sgemm['sgemm_gflops']:.0f}% of sgemm {sgemm['sgemm_gflops']:.1f}; torch {gp:.1f} "
          f"= {100 * gp / sgemm_torch:.0f}% of its gemm {sgemm_torch:.1f}", flush=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"peer: wrote {a.out}", file=sys.stderr)
    if not ok:
        print("peer: train_loss or weights differ beyond the tolerances", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
