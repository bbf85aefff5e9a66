#!/usr/bin/env python3
"""Writes tests/data/reference.safetensors with the real `safetensors` library (run once;
CI does not need Python). tests/test_safetensors.c rebuilds the same tensors from the same
splitmix64 stream and checks that our writer produces these bytes exactly.

Every tensor's bytes come from splitmix64 seeded with 1000 + its index in TENSORS (BOOL
bytes reduced to 0/1), 8 little-endian bytes per draw. Usage:
    pip install safetensors numpy
    python3 tests/reference/make_safetensors_ref.py tests/data/reference.safetensors
"""
import sys

import numpy as np
from safetensors import TensorSpec, serialize_file

M64 = (1 << 64) - 1

# (name, safetensors dtype, numpy dtype for the buffer, shape). The names exercise the
# writer's escaping: quote, backslash, newline, tab, a raw control byte, non-ASCII.
TENSORS = [
    ("tok_emb.weight", "float32", np.float32, (16, 8)),
    ("blocks.0.attn.c_q.weight", "bfloat16", np.uint16, (8, 8)),
    ("blocks.0.mlp.fc.weight", "float16", np.float16, (4, 8)),
    ("scalar_f64", "float64", np.float64, ()),
    ("q_int8", "int8", np.int8, (3, 5)),
    ("bytes_u8", "uint8", np.uint8, (7,)),
    ("cube_i16", "int16", np.int16, (2, 3, 2)),
    ("vec_i32", "int32", np.int32, (5,)),
    ("deep_i64", "int64", np.int64, (1, 1, 3)),
    ("mask", "bool", np.bool_, (9,)),
    ("empty_f32", "float32", np.float32, (0, 4)),
    ("empty_bf16", "bfloat16", np.uint16, (2, 0)),
    ("scalar_i32", "int32", np.int32, ()),
    ('odd "name"\\with\nescapes\t\x01 \u00fc\U0001F600', "int8", np.int8, (2,)),
]
METADATA = {"format": 'pt "quoted"\ttab \u00e9\U0001F600 \x1f end'}


def splitmix64_bytes(seed, n):
    state, out = seed, bytearray()
    while len(out) < n:
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        out += z.to_bytes(8, "little")
    return bytes(out[:n])


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/data/reference.safetensors"
    keep, specs = [], {}
    for i, (name, st_dtype, np_dtype, shape) in enumerate(TENSORS):
        count = int(np.prod(shape, dtype=np.int64))
        raw = bytearray(splitmix64_bytes(1000 + i, count * np.dtype(np_dtype).itemsize))
        if np_dtype is np.bool_:
            raw = bytearray(b & 1 for b in raw)
        arr = np.frombuffer(bytes(raw), dtype=np_dtype).reshape(shape).copy()
        keep.append(arr)
        specs[name] = TensorSpec(dtype=st_dtype, shape=list(shape),
                                 data_ptr=arr.ctypes.data, data_len=arr.nbytes)
    serialize_file(specs, path, metadata=METADATA)


if __name__ == "__main__":
    main()
