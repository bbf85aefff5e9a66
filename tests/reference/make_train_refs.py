"""Reference for quantgolf's trainer (tests/test_train.c): the contest model and its
optimizers written from openai/parameter-golf train_gpt.py, run in fp32 on the CPU for 20
steps on a tiny model, writing

  tests/data/train_ref/train.bin          the token shard (contest format, < 200 KB)
  tests/data/train_ref/init.safetensors   the initial weights (train_gpt.py's init, torch RNG)
  tests/data/train_ref/losses.txt         train_loss of every step

Differences from train_gpt.py, on purpose: fp32 everywhere (no bf16 autocast), and
Newton-Schulz in fp32 (the contest runs it in bf16) to match quantgolf's CPU trainer.
Everything else (init, Muon with Nesterov and momentum warmup, Adam groups, lr_mul warmdown
by iterations, gradient accumulation, the loader's order) follows the script.

Run once from the repository root: python3 tests/reference/make_train_refs.py
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "train_ref")
VOCAB, LAYERS, DIM, HEADS, KV_HEADS, MLP_MULT = 1024, 2, 64, 4, 2, 2
SEQ, BATCH_TOKENS, GRAD_ACCUM, ITERS, WARMDOWN = 32, 128, 2, 20, 5
TIED_LR, MATRIX_LR, SCALAR_LR = 0.05, 0.04, 0.04
MOMENTUM, MOMENTUM_START, MOMENTUM_WARMUP, NS_STEPS = 0.95, 0.85, 500, 5
BETAS, EPS = (0.9, 0.95), 1e-8
CONTROL = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes", "q_gain",
           "skip_weight", "skip_weights")


def make_shard(n):
    # a seeded order-1 Markov chain with a few strong transitions, so the loss can fall
    rng = np.random.default_rng(20240520)
    nxt = rng.integers(0, VOCAB, size=(VOCAB, 4))
    toks = np.empty(n, dtype=np.uint16)
    t = 1
    for i in range(n):
        toks[i] = t
        t = int(nxt[t, rng.integers(0, 4)]) if rng.random() < 0.8 else int(rng.integers(0, VOCAB))
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = 20240520, 1, n
    with open(os.path.join(OUT, "train.bin"), "wb") as f:
        f.write(header.tobytes())
        f.write(toks.astype("<u2").tobytes())
    return torch.from_numpy(toks.astype(np.int64))


def zeropower_ns5_fp32(G, steps):
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.float()
    X = X / (X.norm() + 1e-7)
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr, momentum, backend_steps):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(g)
                g = g.add(buf, alpha=group["momentum"])
                g = zeropower_ns5_fp32(g, group["backend_steps"])
                g *= max(1, g.size(0) / g.size(1)) ** 0.5
                p.add_(g, alpha=-group["lr"])


def apply_rotary(x, cos, sin):
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.hd = DIM // HEADS
        self.q_gain = nn.Parameter(torch.full((HEADS,), 1.5))
        self.c_q = nn.Linear(DIM, DIM, bias=False)
        self.c_k = nn.Linear(DIM, KV_HEADS * self.hd, bias=False)
        self.c_v = nn.Linear(DIM, KV_HEADS * self.hd, bias=False)
        self.proj = nn.Linear(DIM, DIM, bias=False)
        inv = 1.0 / (10000.0 ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        freqs = torch.outer(torch.arange(SEQ, dtype=torch.float32), inv)
        self.cos, self.sin = freqs.cos()[None, None], freqs.sin()[None, None]

    def forward(self, x):
        b, t, _ = x.shape
        q = self.c_q(x).reshape(b, t, HEADS, self.hd).transpose(1, 2)
        k = self.c_k(x).reshape(b, t, KV_HEADS, self.hd).transpose(1, 2)
        v = self.c_v(x).reshape(b, t, KV_HEADS, self.hd).transpose(1, 2)
        q = F.rms_norm(q, (q.size(-1),))
        k = F.rms_norm(k, (k.size(-1),))
        q = apply_rotary(q, self.cos[:, :, :t], self.sin[:, :, :t])
        k = apply_rotary(k, self.cos[:, :, :t], self.sin[:, :, :t])
        q = q * self.q_gain[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, DIM))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(DIM, MLP_MULT * DIM, bias=False)
        self.proj = nn.Linear(MLP_MULT * DIM, DIM, bias=False)

    def forward(self, x):
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.mlp = Attn(), MLP()
        self.attn_scale = nn.Parameter(torch.ones(DIM))
        self.mlp_scale = nn.Parameter(torch.ones(DIM))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(DIM), torch.zeros(DIM))))

    def forward(self, x, x0):
        x = self.resid_mix[0] * x + self.resid_mix[1] * x0
        x = x + self.attn_scale * self.attn(F.rms_norm(x, (DIM,)))
        return x + self.mlp_scale * self.mlp(F.rms_norm(x, (DIM,)))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_emb = nn.Embedding(VOCAB, DIM)
        self.n_enc = LAYERS // 2
        self.n_dec = LAYERS - self.n_enc
        self.skip_weights = nn.Parameter(torch.ones(min(self.n_enc, self.n_dec), DIM))
        self.blocks = nn.ModuleList([Block() for _ in range(LAYERS)])
        nn.init.normal_(self.tok_emb.weight, mean=0.0, std=0.005)
        for blk in self.blocks:
            nn.init.zeros_(blk.attn.proj.weight)
            nn.init.zeros_(blk.mlp.proj.weight)

    def forward(self, idx, tgt):
        x = F.rms_norm(self.tok_emb(idx), (DIM,))
        x0, skips = x, []
        for i in range(self.n_enc):
            x = self.blocks[i](x, x0)
            skips.append(x)
        for i in range(self.n_dec):
            if skips:
                x = x + self.skip_weights[i] * skips.pop()
            x = self.blocks[self.n_enc + i](x, x0)
        logits = F.linear(F.rms_norm(x, (DIM,)).reshape(-1, DIM), self.tok_emb.weight)
        logits = 30.0 * torch.tanh(logits / 30.0)
        return F.cross_entropy(logits.float(), tgt.reshape(-1))


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


def lr_mul(step):
    start = max(ITERS - WARMDOWN, 0)
    return max((ITERS - step) / max(WARMDOWN, 1), 0.0) if start <= step < ITERS else 1.0


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1337)
    stream = make_shard(4096)
    model = GPT()
    write_safetensors(os.path.join(OUT, "init.safetensors"), model.state_dict())
    named = list(model.blocks.named_parameters())
    matrix = [p for n, p in named if p.ndim == 2 and not any(c in n for c in CONTROL)]
    scalar = [p for n, p in named if p.ndim < 2 or any(c in n for c in CONTROL)] + [model.skip_weights]
    opt_tok = torch.optim.Adam([{"params": [model.tok_emb.weight], "lr": TIED_LR, "base_lr": TIED_LR}],
                               betas=BETAS, eps=EPS)
    opt_muon = Muon(matrix, MATRIX_LR, MOMENTUM, NS_STEPS)
    for g in opt_muon.param_groups:
        g["base_lr"] = MATRIX_LR
    opt_scalar = torch.optim.Adam([{"params": scalar, "lr": SCALAR_LR, "base_lr": SCALAR_LR}], betas=BETAS, eps=EPS)
    opts = [opt_tok, opt_muon, opt_scalar]
    pos, local = 0, BATCH_TOKENS // GRAD_ACCUM
    losses = []
    for step in range(ITERS):
        scale = lr_mul(step)
        for o in opts:
            o.zero_grad(set_to_none=True)
        train_loss = torch.zeros(())
        for _ in range(GRAD_ACCUM):
            idx = torch.arange(pos, pos + local + 1) % stream.numel()  # the stream wraps
            chunk = stream[idx]
            pos = (pos + local + 1) % stream.numel()
            x, y = chunk[:-1].reshape(-1, SEQ), chunk[1:].reshape(-1, SEQ)
            loss = model(x, y)
            train_loss += loss.detach()
            (loss / GRAD_ACCUM).backward()
        train_loss /= GRAD_ACCUM
        frac = min(step / MOMENTUM_WARMUP, 1.0)
        for g in opt_muon.param_groups:
            g["momentum"] = (1 - frac) * MOMENTUM_START + frac * MOMENTUM
        for o in opts:
            for g in o.param_groups:
                g["lr"] = g["base_lr"] * scale
        for o in opts:
            o.step()
        losses.append(float(train_loss))
        print(f"step:{step + 1}/{ITERS} train_loss:{float(train_loss):.6f}")
    with open(os.path.join(OUT, "losses.txt"), "w") as f:
        f.write("# make_train_refs.py: vocab %d layers %d dim %d heads %d kv %d mlp %d seq %d batch_tokens %d "
                "grad_accum %d iterations %d warmdown %d, fp32, NS fp32, torch %s\n"
                % (VOCAB, LAYERS, DIM, HEADS, KV_HEADS, MLP_MULT, SEQ, BATCH_TOKENS, GRAD_ACCUM, ITERS, WARMDOWN,
                   torch.__version__))
        for v in losses:
            f.write("%.9f\n" % v)


if __name__ == "__main__":
    main()
