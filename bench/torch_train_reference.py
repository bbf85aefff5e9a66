#!/usr/bin/env python3
"""The contest's training step in PyTorch, timed on the GPU: what bench/bench_train.c's GPU
figure is compared with. Shape: the 9x512 baseline (8 heads, 4 KV heads, MLP 1024, vocab
1024, tied embedding), seq 1024, 524,288 tokens per optimizer step as gradient accumulation
over 8 micro-batches of 64 sequences on one GPU.

The model and optimizers are tests/reference/make_train_refs.py's (the PyTorch reference
of train_gpt.py that quantgolf's CPU trainer is checked against), resized to the baseline;
as in train_gpt.py the model is torch.compile'd and runs under bf16 autocast, and Muon's
Newton-Schulz runs in bf16 (the contest's setting; the reference file's fp32 one is kept
for the CPU comparison only). Timed: fwd+bwd of the 8 micro-batches, and the optimizer
step, separately and together, median of --reps steps after --warmup, with CUDA events.

Prints one JSON object and writes it to --out. Without a CUDA GPU it prints
{"skipped": "..."} and exits 0. Figures only.
"""
import argparse
import json
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))


def zeropower_ns5_bf16(G, steps):
    """train_gpt.py's zeropower_via_newtonschulz5: the same quintic, in bfloat16."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16()
    X /= X.norm() + 1e-7
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if transposed else X


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="torch_train_reference.json")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        res = {"benchmark": "torch_train_reference", "skipped": "no CUDA GPU visible to torch"}
        print(json.dumps(res))
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
        return
    import make_train_refs as R  # the reference model and optimizers

    # the baseline shape (the reference module reads these globals when building)
    R.VOCAB, R.LAYERS, R.DIM, R.HEADS, R.KV_HEADS, R.MLP_MULT, R.SEQ = 1024, 9, 512, 8, 4, 2, 1024
    R.zeropower_ns5_fp32 = zeropower_ns5_bf16  # Muon.step looks it up at call time
    seq, accum, step_tokens = 1024, 8, 524288
    B = step_tokens // accum // seq
    dev = torch.device("cuda")
    torch.manual_seed(1337)
    model = R.GPT().to(dev)
    for blk in model.blocks:  # the reference keeps its rotary tables as plain attributes
        blk.attn.cos, blk.attn.sin = blk.attn.cos.to(dev), blk.attn.sin.to(dev)
    named = list(model.blocks.named_parameters())
    matrix = [p for n, p in named if p.ndim == 2 and not any(c in n for c in R.CONTROL)]
    scalar = [p for n, p in named if p.ndim < 2 or any(c in n for c in R.CONTROL)] + [model.skip_weights]
    opts = [
        torch.optim.Adam([model.tok_emb.weight], lr=0.05, betas=(0.9, 0.95), eps=1e-8, fused=True),
        R.Muon(matrix, 0.04, 0.95, 5),
        torch.optim.Adam(scalar, lr=0.04, betas=(0.9, 0.95), eps=1e-8, fused=True),
    ]
    fwd = model if args.no_compile else torch.compile(model, dynamic=False, fullgraph=True)
    tokens = torch.randint(0, 1024, (step_tokens + 1,), device=dev)
    x = tokens[:-1].view(accum, B, seq)
    y = tokens[1:].view(accum, B, seq)

    def fb():
        for k in range(accum):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = fwd(x[k], y[k])
            (loss / accum).backward()

    def opt_step():
        for o in opts:
            o.step()
        for o in opts:
            o.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        fb()
        opt_step()
    torch.cuda.synchronize()
    t_fb, t_opt = [], []
    for _ in range(args.reps):
        e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        e0.record()
        fb()
        e1.record()
        opt_step()
        e2.record()
        torch.cuda.synchronize()
        t_fb.append(e0.elapsed_time(e1) / 1000)
        t_opt.append(e1.elapsed_time(e2) / 1000)
    fb_s, opt_s = statistics.median(t_fb), statistics.median(t_opt)
    res = {
        "benchmark": "torch_train_reference",
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "compiled": not args.no_compile,
        "case": "9L d512 8H/4KV seq1024, 524288 tokens/step, grad_accum 8 (64 seqs), bf16 autocast",
        "params": sum(p.numel() for p in model.parameters()),
        "fwd_bwd_seconds_per_step": fb_s,
        "optimizer_seconds_per_step": opt_s,
        "seconds_per_step": fb_s + opt_s,
        "tokens_per_s": step_tokens / (fb_s + opt_s),
    }
    print(json.dumps(res))
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
