#!/usr/bin/env bash
# Rebuilds the committed seed corpora fuzz/seeds/fuzz_qgz and fuzz/seeds/fuzz_rans: real
# .qgz files of every quantizer, layout and compressor, from a micro model (1 layer, dim 16)
# trained for 3 steps on the experiment data (scripts/experiment-data.sh), each file
# prefixed with the harness's mode bytes so the fuzzer starts inside a valid artifact:
#   fuzz_qgz  00 + whole file (format 1: brotli, zstd, xz, zlib; format 3: rans), and
#             (1 | layout << 1), tensor count, payload: an uncompressed format-1 payload
#             (the harness writes the header and CRC, so mutations reach the parser);
#   fuzz_rans 03 00 + whole rans file (the reader of the rans code block).
#   scripts/make-fuzz-seeds.sh [QUANTGOLF]   (default build/quantgolf)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
q=${1:-$root/build/quantgolf}
data=$root/data/kjv_contest
[ -f "$data/fineweb_train_000000.bin" ] || { echo "make-fuzz-seeds: no $data (run scripts/experiment-data.sh)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$q" train --train "$data/fineweb_train_*.bin" --val "$data/fineweb_val_*.bin" \
  --tokenizer "$root/data/fineweb_1024_bpe.model" --out "$tmp/micro" --layers 1 --dim 16 --heads 2 \
  --kv-heads 1 --seq-len 32 --batch-tokens 64 --grad-accum 1 --iterations 3 --warmup-steps 0 \
  --warmdown 1 --export none --val-max-tokens 256 --threads 1 >/dev/null 2>&1
m=$tmp/micro/final_model.safetensors
# the embedding at 2-3 bits keeps every seed small; the blocks carry the methods
specs=(
  "tok_emb.weight: rowwise bits=2; blocks.*.mlp.*: turbo bits=4 group=16; blocks.*.attn.c_q.*: e8 bits=2; blocks.*.attn.c_k.*: lloydmax bits=3; blocks.*.attn.c_v.*: rowwise bits=5 clip=search; *: rowwise bits=6"
  "tok_emb.weight: rowwise bits=2; blocks.*.mlp.fc.*: fp16; blocks.*.mlp.proj.*: bf16; blocks.*.attn.c_q.*: fp32; *: raw"
  "tok_emb.weight: rowwise bits=2; *: contest-int8"
  "tok_emb.weight: rowwise bits=3; *: e8 bits=3"
)
qd=$root/fuzz/seeds/fuzz_qgz rd=$root/fuzz/seeds/fuzz_rans
rm -rf "$qd" "$rd"
mkdir -p "$qd" "$rd"
prefixed() { # OUT PREFIX_HEX FILE [SKIP]
  { printf "$2"; tail -c +$((${4:-0} + 1)) "$3"; } > "$1"
}
comps=(brotli zstd xz zlib)
for i in "${!specs[@]}"; do
  s=${specs[$i]}
  c=${comps[$((i % 4))]}
  for l in packed bytes; do
    "$q" quantize --model "$m" --spec "$s" --out "$tmp/none.$l.qgz" --compress none --layout $l --threads 1 >/dev/null 2>&1
    lb=$([ $l = packed ] && echo 0 || echo 1)
    count=$(od -An -tu1 -j8 -N1 "$tmp/none.$l.qgz" | tr -d ' ')
    prefixed "$qd/s$i.payload.$l" "\\x$(printf %02x $((1 | lb << 1)))\\x$(printf %02x "$count")" "$tmp/none.$l.qgz" 32
  done
  "$q" quantize --model "$m" --spec "$s" --out "$tmp/c.qgz" --compress "$c" --layout packed --threads 1 >/dev/null 2>&1
  prefixed "$qd/s$i.$c" '\x00' "$tmp/c.qgz"
  "$q" quantize --model "$m" --spec "$s" --out "$tmp/r.qgz" --compress rans --threads 1 >/dev/null 2>&1
  prefixed "$qd/s$i.rans" '\x00' "$tmp/r.qgz"
  prefixed "$rd/s$i.rans" '\x03\x00' "$tmp/r.qgz"
done
echo "make-fuzz-seeds: $(ls "$qd" | wc -l) seeds in $qd, $(ls "$rd" | wc -l) in $rd ($(cat "$qd"/* "$rd"/* | wc -c) bytes)"
