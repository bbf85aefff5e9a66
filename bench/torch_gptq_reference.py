#!/usr/bin/env python3
"""Reference GPTQ in PyTorch (IST-DASLab's gptq.py `fasterquant`: Cholesky inverse, lazy
blocks of 128), written for quantgolf's benchmark, on the shapes of bench_cuda_gptq.c: the
contest's 9 x 512 model (per layer c_q 512x512, c_k/c_v 256x512, proj 512x512, fc 1024x512,
mlp proj 512x1024; plus tok_emb 1024x512), random weights, Hessians from 128 x 1024 random
correlated activation rows per linear input (accumulated as the reference does:
H += (sqrt(2/n) X)^T (sqrt(2/n) X), fp32). Quantizer: symmetric int6 per row, absmax scale.
There is no model here, so the calibration forward is not timed: compare the Hessians and
solve figures with bench_cuda_gptq's. Prints and writes JSON (argv[1], default
torch_gptq_reference.json). Run on the same GPU as bench_cuda_gptq."""
import json
import math
import sys
import time

import torch


def quantize(x, scale, maxq):
    q = torch.clamp(torch.round(x / scale), -maxq, maxq)
    return scale * q


def fasterquant(W, H, bits=6, blocksize=128, percdamp=0.01):
    W = W.clone().float()
    rows, cols = W.shape
    maxq = 2 ** (bits - 1) - 1
    scale = (W.abs().amax(dim=1, keepdim=True) / maxq).clamp_min(1e-8)
    H = H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    Q = torch.zeros_like(W)
    Losses = torch.zeros(rows, device=W.device)
    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(cols, device=W.device)
    H[idx, idx] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Losses1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            q = quantize(w.unsqueeze(1), scale, maxq).flatten()
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        Losses += torch.sum(Losses1, 1) / 2
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return Q, Losses


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "torch_gptq_reference.json"
    if not torch.cuda.is_available():
        print("SKIP: torch_gptq_reference needs a CUDA GPU")
        return
    dev = torch.device("cuda")
    torch.manual_seed(2024)
    L, d, kv, hidden, V, tokens = 9, 512, 256, 1024, 1024, 128 * 1024
    mats = []  # (rows, cols, input id): c_q, c_k, c_v share the block's attention input
    for b in range(L):
        mats += [(d, d, (b, 0)), (kv, d, (b, 0)), (kv, d, (b, 0)), (d, d, (b, 1)), (hidden, d, (b, 2)),
                 (d, hidden, (b, 3))]
    mats.append((V, d, ("head", 0)))
    inputs = {}
    for _, cols, key in mats:
        inputs.setdefault(key, cols)
    # warm-up (cuBLAS / cuSOLVER handles, kernels)
    X = torch.randn(1024, d, device=dev)
    fasterquant(torch.randn(64, d, device=dev), X.t() @ X)
    torch.cuda.synchronize()
    # Hessians, as the reference's add_batch accumulates them, in chunks of 8 sequences
    Hs = {}
    t0 = time.perf_counter()
    for key, cols in inputs.items():
        H = torch.zeros(cols, cols, device=dev)
        n = 0
        for c in range(0, tokens, 8192):
            x = torch.randn(8192, cols, device=dev)
            x[:, 1:] += 0.6 * x[:, :-1]  # correlated columns
            H *= n / (n + x.shape[0])
            n += x.shape[0]
            x = math.sqrt(2 / n) * x.float()
            H += x.t() @ x
        Hs[key] = H
    torch.cuda.synchronize()
    t_hess = time.perf_counter() - t0  # includes generating the random activations
    Ws = [torch.randn(r, c, device=dev) / math.sqrt(c) for r, c, _ in mats]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for W, (_, _, key) in zip(Ws, mats):
        fasterquant(W, Hs[key])
    torch.cuda.synchronize()
    t_solve = time.perf_counter() - t0
    res = {"bench": "torch_gptq_reference", "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "shape": "9L d512 KV256 mlp1024 V1024, random weights", "calibration_tokens": tokens,
           "quantizer": "int6 symmetric per row, absmax; blocksize 128; percdamp 0.01",
           "seconds_hessians_incl_random_activations": t_hess, "seconds_solve": t_solve, "matrices": len(mats),
           "seconds_whole_model_excl_forward": t_hess + t_solve}
    print(json.dumps(res, indent=1))
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
