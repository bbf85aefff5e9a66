"""Writes tests/data/small_artifact.int8.ptz: a tiny artifact in the contest's
int8_clean_per_row_v1 layout (per-row, per-tensor, passthrough with and without an original
dtype), saved by torch.save and zlib level 9 exactly as train_gpt.py does, so the reader
and the fuzzers have a small real-torch seed.

  python3 tests/reference/make_small_artifact.py tests/data
"""
import io
import sys
import zlib

import torch

out = sys.argv[1]
g = torch.Generator().manual_seed(99)
obj = {
    "__quant_format__": "int8_clean_per_row_v1",
    "quantized": {
        "blocks.0.attn.c_q.weight": torch.randint(-127, 128, (6, 8), generator=g).to(torch.int8),
        "tok_emb.weight": torch.randint(-127, 128, (5, 8), generator=g).to(torch.int8),
        "vec": torch.randint(-127, 128, (7,), generator=g).to(torch.int8),
    },
    "scales": {
        "blocks.0.attn.c_q.weight": (torch.rand(6, generator=g) / 50 + 1 / 127).to(torch.float16),
        "tok_emb.weight": (torch.rand(5, generator=g) / 50 + 1 / 127).to(torch.float16),
        "vec": torch.tensor(0.0123, dtype=torch.float32),
    },
    "dtypes": {"blocks.0.attn.c_q.weight": "float32", "tok_emb.weight": "bfloat16", "vec": "float32"},
    "passthrough": {
        "blocks.0.attn_scale": torch.randn(8, generator=g),
        "blocks.0.mlp.fc.weight": torch.randn(4, 8, generator=g).to(torch.float16),
        "repeat_scales": torch.randn(2, 8, generator=g).to(torch.float16),
    },
    "qmeta": {
        "blocks.0.attn.c_q.weight": {"scheme": "per_row", "axis": 0},
        "tok_emb.weight": {"scheme": "per_row", "axis": 0},
    },
    "passthrough_orig_dtypes": {"blocks.0.mlp.fc.weight": "float32", "repeat_scales": "bfloat16"},
}
buf = io.BytesIO()
torch.save(obj, buf)
open(f"{out}/small_artifact.int8.ptz", "wb").write(zlib.compress(buf.getvalue(), level=9))

# The contest's own dequantization of it, as the expected values (float32 bytes of each
# tensor after .float(), in dequantize_state_dict_int8's order) with a manifest line each.
def dequantize(obj):
    res = {}
    qmeta = obj.get("qmeta", {})
    po = obj.get("passthrough_orig_dtypes", {})
    for name, q in obj["quantized"].items():
        dtype = getattr(torch, obj["dtypes"][name])
        s = obj["scales"][name]
        if qmeta.get(name, {}).get("scheme") == "per_row" or s.ndim > 0:
            s = s.to(dtype=torch.float32)
            res[name] = (q.float() * s.view(q.shape[0], *([1] * (q.ndim - 1)))).to(dtype=dtype).contiguous()
        else:
            res[name] = (q.float() * float(s.item())).to(dtype=dtype).contiguous()
    for name, t in obj["passthrough"].items():
        o = t.detach().contiguous()
        if isinstance(po.get(name), str):
            o = o.to(dtype=getattr(torch, po[name])).contiguous()
        res[name] = o
    return res

names = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
with open(f"{out}/small_artifact_expected.bin", "wb") as f:
    for k, v in dequantize(obj).items():
        raw = v.reshape(-1).view(torch.uint8).numpy().tobytes()
        head = [k, names[v.dtype], str(v.dim())] + [str(d) for d in v.shape] + [str(len(raw))]
        f.write((" ".join(head) + "\n").encode())
        f.write(raw)
