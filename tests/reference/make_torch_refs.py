"""Generates the torch.save reference files the .pt reader is tested against (run once;
the outputs are committed and CI needs no Python).

  python3 tests/reference/make_torch_refs.py tests/data

Writes, for pickle protocols 2 and 4:
  torch_views_p{2,4}.pt   a state dict whose tensors are views: transposes, slices with
                          storage offsets, shared storages, every dtype quantgolf reads,
                          a 0-d scalar and an empty tensor; saved by torch.save.
  torch_views_expected.bin  the same tensors made contiguous, as a plain manifest:
                          per tensor a text line "name dtype ndim d0 d1 ... nbytes\n"
                          followed by the raw little-endian bytes.
"""
import sys
from collections import OrderedDict

import torch

out = sys.argv[1]
g = torch.Generator().manual_seed(1234)

base = torch.randn(6, 10, generator=g)
big = torch.randn(4, 5, 6, generator=g)
sd = OrderedDict()
sd["plain.weight"] = torch.randn(3, 4, generator=g)
sd["transposed"] = base.t()                    # strides (1, 10)
sd["row_slice"] = base[2:5]                    # storage offset 20, shares storage
sd["col_slice"] = base[:, 3:7]                 # offset 3, row stride 10
sd["step_slice"] = base[::2, ::3]              # strides (20, 3)
sd["permuted3d"] = big.permute(2, 0, 1)        # 3-D, non-contiguous
sd["bf16"] = torch.randn(5, 7, generator=g).to(torch.bfloat16)
sd["f16"] = torch.randn(9, generator=g).to(torch.float16)
sd["f64"] = torch.randn(2, 3, generator=g).to(torch.float64)
sd["i8"] = torch.randint(-128, 127, (4, 4), generator=g).to(torch.int8)
sd["u8"] = torch.randint(0, 255, (10,), generator=g).to(torch.uint8)
sd["i16"] = torch.randint(-30000, 30000, (3, 2), generator=g).to(torch.int16)
sd["i32"] = torch.randint(-2**31, 2**31 - 1, (5,), generator=g).to(torch.int32)
sd["i64"] = torch.tensor([-(2**40), 0, 2**50 + 3, -1], dtype=torch.int64)
sd["bool"] = torch.tensor([True, False, True, True])
sd["scalar"] = torch.tensor(3.25)
sd["empty"] = torch.zeros(0, 5)
sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))

for proto in (2, 4):
    torch.save(sd, f"{out}/torch_views_p{proto}.pt", pickle_protocol=proto)

names = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16",
         torch.float64: "float64", torch.int8: "int8", torch.uint8: "uint8", torch.int16: "int16",
         torch.int32: "int32", torch.int64: "int64", torch.bool: "bool"}
with open(f"{out}/torch_views_expected.bin", "wb") as f:
    for k, v in sd.items():
        t = v.detach().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        head = [k, names[t.dtype], str(t.dim())] + [str(d) for d in t.shape] + [str(len(raw))]
        f.write((" ".join(head) + "\n").encode())
        f.write(raw)
