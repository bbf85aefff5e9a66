#!/usr/bin/env python3
"""The contest GPT in PyTorch, timed on the GPU: the reference bench/bench_cuda_model.c is
compared with (same shapes, seq 1024, batch 8, the same eval work: forward, soft-cap,
fp32 log-softmax, target NLL).

Variants: eager and torch.compile, each in bf16 autocast (the contest's own setting) and
fp32 with TF32 off; attention through F.scaled_dot_product_attention(is_causal=True).
Models: random weights of the 9x512 baseline shape, and a checkpoint converted to
safetensors (`quantgolf convert X.int8.ptz X.safetensors`) when --checkpoint is given.

Prints one JSON object (and writes it to --out): tokens/s per model and variant, the
median of --reps timed runs after warm-up, timed with CUDA events. Figures only.
Needs torch; reads safetensors with its own 20-line reader (no extra package).
"""
import argparse
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    """name -> float32 tensor, from the raw format (8-byte header length, JSON, data)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        lo, hi = meta["data_offsets"]
        dt = DTYPES[meta["dtype"]]
        t = torch.frombuffer(bytearray(data[lo:hi]), dtype=dt).reshape(meta["shape"])
        out[name] = t.float()
    return out


def random_state(L=9, d=512, H=8, KVH=4, hidden=1024, V=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    hd = d // H

    def r(*shape, scale=1.0):
        return (torch.rand(*shape, generator=g) * 2 - 1) * scale

    s = {"tok_emb.weight": r(V, d, scale=0.5), "skip_weights": r(L // 2, d)}
    for i in range(L):
        p = f"blocks.{i}."
        s[p + "attn.c_q.weight"] = r(d, d, scale=d ** -0.5)
        s[p + "attn.c_k.weight"] = r(KVH * hd, d, scale=d ** -0.5)
        s[p + "attn.c_v.weight"] = r(KVH * hd, d, scale=d ** -0.5)
        s[p + "attn.proj.weight"] = r(d, d, scale=d ** -0.5)
        s[p + "mlp.fc.weight"] = r(hidden, d, scale=d ** -0.5)
        s[p + "mlp.proj.weight"] = r(d, hidden, scale=hidden ** -0.5)
        s[p + "attn_scale"] = r(d)
        s[p + "mlp_scale"] = r(d)
        s[p + "resid_mix"] = r(2, d)
        s[p + "attn.q_gain"] = r(H, scale=2.0)
    return s


class GPT(torch.nn.Module):
    """The contest model as model/gpt.c runs it (no recurrent adapters)."""

    def __init__(self, state, softcap=30.0, rope_base=10000.0, mlp_power=2.0):
        super().__init__()
        self.L = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        self.V, self.d = state["tok_emb.weight"].shape
        self.H = state["blocks.0.attn.q_gain"].shape[0]
        self.hd = self.d // self.H
        self.KVH = state["blocks.0.attn.c_k.weight"].shape[0] // self.hd
        self.n_enc = self.L // 2
        self.n_dec = self.L - self.n_enc
        self.n_skip = min(self.n_enc, self.n_dec)
        self.softcap, self.rope_base, self.p = softcap, rope_base, mlp_power
        self.w = torch.nn.ParameterDict(
            {k.replace(".", "_"): torch.nn.Parameter(v, requires_grad=False) for k, v in state.items()})
        self.head = "lm_head_weight" if "lm_head_weight" in self.w else "tok_emb_weight"

    def rope(self, x, T):
        half = self.hd // 2
        inv = 1.0 / (self.rope_base ** (torch.arange(0, self.hd, 2, device=x.device, dtype=torch.float32) / self.hd))
        f = torch.outer(torch.arange(T, device=x.device, dtype=torch.float32), inv)
        cos, sin = f.cos().to(x.dtype), f.sin().to(x.dtype)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)

    def block(self, i, x, x0):
        w = lambda n: self.w[f"blocks_{i}_{n}"]
        B, T, d = x.shape
        mix = w("resid_mix")
        x = mix[0] * x + mix[1] * x0
        h = F.rms_norm(x, (d,))
        q = F.linear(h, w("attn_c_q_weight")).view(B, T, self.H, self.hd).transpose(1, 2)
        k = F.linear(h, w("attn_c_k_weight")).view(B, T, self.KVH, self.hd).transpose(1, 2)
        v = F.linear(h, w("attn_c_v_weight")).view(B, T, self.KVH, self.hd).transpose(1, 2)
        q = self.rope(F.rms_norm(q, (self.hd,)), T) * w("attn_q_gain").to(q.dtype)[None, :, None, None]
        k = self.rope(F.rms_norm(k, (self.hd,)), T)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.KVH != self.H)
        y = y.transpose(1, 2).reshape(B, T, d)
        x = x + w("attn_scale") * F.linear(y, w("attn_proj_weight"))
        h = F.rms_norm(x, (d,))
        u = torch.relu(F.linear(h, w("mlp_fc_weight")))
        u = u * u if self.p == 2.0 else u.pow(self.p)
        return x + w("mlp_scale") * F.linear(u, w("mlp_proj_weight"))

    def forward(self, tok, tgt):
        T = tok.shape[1]
        x = F.rms_norm(F.embedding(tok, self.w["tok_emb_weight"]), (self.d,))
        x0, skips = x, []
        for i in range(self.n_enc):
            x = self.block(i, x, x0)
            if i < self.n_skip:
                skips.append(x)
        for i in range(self.n_dec):
            if i < self.n_skip:
                x = x + self.w["skip_weights"][i] * skips[self.n_skip - 1 - i]
            x = self.block(self.n_enc + i, x, x0)
        z = F.linear(F.rms_norm(x, (self.d,)), self.w[self.head]).float()
        z = self.softcap * torch.tanh(z / self.softcap)
        lp = torch.log_softmax(z, dim=-1)  # fp32, as the contest's eval
        return -lp.gather(-1, tgt[..., None]).squeeze(-1)  # per-token NLL


def time_variant(model, B, T, reps, bf16, compiled):
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(1)
    tok = torch.randint(0, model.V, (B, T + 1), device=dev, generator=g)
    inp, tgt = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()
    fn = torch.compile(model) if compiled else model
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    def step():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            return fn(inp, tgt).sum().item()  # .item(): the eval reads the loss back, as ours does

    t0 = time.time()
    for _ in range(3):  # warm-up (and compilation)
        step()
    warm = time.time() - t0
    times = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        step()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    times.sort()
    med = times[len(times) // 2]
    return {"tokens_per_s": B * T / med, "median_s": med, "warmup_s": warm}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="a contest checkpoint converted to .safetensors (7L384d)")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--out", default="torch_reference.json")
    a = ap.parse_args()
    res = {"torch": torch.__version__, "seq_len": a.seq, "batch": a.batch, "results": []}
    if not torch.cuda.is_available():
        res["skipped"] = "no CUDA GPU"
        print("SKIP: no CUDA GPU visible to torch", file=sys.stderr)
    else:
        res["device"] = torch.cuda.get_device_name(0)
        models = [("random_9x512", random_state())]
        if a.checkpoint:
            models.append(("samtruss_7L384d", read_safetensors(a.checkpoint)))
        for name, state in models:
            model = GPT(state).cuda().eval()
            for compiled in (False, True):
                for bf16 in (False, True):
                    row = {"model": name, "mode": "compile" if compiled else "eager",
                           "precision": "bf16" if bf16 else "fp32"}
                    try:
                        row.update(time_variant(model, a.batch, a.seq, a.reps, bf16, compiled))
                    except Exception as e:  # torch.compile may fail where a toolchain is missing
                        row["error"] = f"{type(e).__name__}: {e}"[:500]
                    res["results"].append(row)
                    print(f"{name:18s} {row['mode']:8s} {row['precision']:5s} "
                          + (f"{row['tokens_per_s']:12.0f} tok/s" if "tokens_per_s" in row else row["error"]),
                          file=sys.stderr, flush=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
