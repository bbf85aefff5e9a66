#!/usr/bin/env bash
# Artifact bytes on identical codes (quantization is deterministic; GPTQ reuses one saved
# set of Hessians per model, so its three runs below write the same codes): for each
# contest checkpoint x quantizer spec, the .qgz under rANS (format 2), the brotli-11 .qgz,
# and the format-1 payload under zstd-22 / xz-9e / zlib-9 (+ the 32-byte header), the
# order-0 estimate, plus `lrzip -T -z -L 9` (ZPAQ at level 9; -T turns off lrzip's LZ4
# pre-test, which otherwise stores these payloads uncompressed) over the uncompressed
# format-1 payload with one byte per code (as the contest's int8 tensors hold them) + the
# header, as a reference column: lrzip is a benchmark tool only, nothing in quantgolf needs
# it (skipped visibly when it is not installed, and for payloads over LRZIP_MAX bytes,
# default 2,000,000: ZPAQ runs at ~13 KB/s here). Writes JSON (argv[1], default
# bench_codes.json) and prints a markdown table.
#   [LRZIP_MAX=BYTES] [ONLY=REGEX] bench/bench_codes.sh [OUT.json] [BUILD_DIR]
# ONLY: run just the cases whose "model|codes" matches the extended regex (e.g.
# ONLY='^tiny' or ONLY='baseline.*(int6|e8p)').
# GPTQ calibrates on data/kjv_contest/fineweb_train_*.bin (scripts/experiment-data.sh)
# when present, else on text sampled from the model (--calib self).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-bench_codes.json}
bin=${2:-$root/build}/quantgolf
contest="$root/../shared/contest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tiny=tiny3L128d_nolanvild_3c063e5.pt
recur=recur6x2L512d_int6qat_MontySteele_dc69b08.int8.ptz
base=baseline7L384d_SamTruss_c839523.int8.ptz
# model | codes label | spec (a preset name, or rules)
cases=(
  "$tiny|int6|preset:int6"
  "$tiny|int5|*: rowwise bits=5"
  "$tiny|gptq int6|blocks.*: gptq bits=6; *: rowwise bits=8"
  "$tiny|gptq int5|blocks.*: gptq bits=5; *: rowwise bits=8"
  "$tiny|turbo int4|blocks.*: turbo bits=4 group=128; *: rowwise bits=8"
  "$tiny|turbo int5|blocks.*: turbo bits=5 group=128; *: rowwise bits=8"
  "$tiny|e8 ball 1 bit|blocks.*: e8 cb=ball bits=1; *: rowwise bits=8"
  "$tiny|e8p 2 bit|blocks.*: e8 bits=2; *: rowwise bits=8"
  "$recur|int6|preset:int6"
  "$recur|gptq int6|blocks.*: gptq bits=6; *: rowwise bits=8"
  "$base|int6|preset:int6"
  "$base|gptq int6|blocks.*: gptq bits=6; *: rowwise bits=8"
  "$base|turbo int4|blocks.*: turbo bits=4 group=128; *: rowwise bits=8"
  "$base|e8p 2 bit|blocks.*: e8 bits=2; *: rowwise bits=8"
)
calib=("--calib" "self" "--calib-seqs" "16" "--calib-len" "256")
shards=$(ls "$root"/data/kjv_contest/fineweb_train_*.bin 2>/dev/null | head -1 || true)
[ -n "$shards" ] && calib=("--calib" "$root/data/kjv_contest/fineweb_train_*.bin" "--calib-seqs" "16" "--calib-len" "512")
lrzip_max=${LRZIP_MAX:-2000000}
have_lrzip=0
command -v lrzip >/dev/null && have_lrzip=1
[ $have_lrzip = 1 ] || echo "lrzip not installed: its reference column is skipped (apt-get install lrzip)" >&2
echo "[" > "$tmp/all.json"
first=1
for c in "${cases[@]}"; do
  IFS='|' read -r model name spec <<< "$c"
  [ -z "${ONLY:-}" ] || [[ "$model|$name" =~ $ONLY ]] || continue
  [ -r "$contest/$model" ] || { echo "SKIP: $model not found" >&2; continue; }
  echo "bench_codes: $model $name" >&2
  if [[ $spec == preset:* ]]; then sa=(--preset "${spec#preset:}"); else sa=(--spec "$spec"); fi
  ha=()
  if [[ $spec == *gptq* ]]; then
    h="$tmp/${model%%.*}.hessians.safetensors"
    if [ -r "$h" ]; then ha=(--load-hessians "$h"); else ha=("${calib[@]}" --save-hessians "$h"); fi
  fi
  q=("$bin" quantize --model "$contest/$model" "${sa[@]}")
  "${q[@]}" "${ha[@]}" --out "$tmp/a.qgz" --compress rans --json > "$tmp/r.json"
  [ ${#ha[@]} -gt 0 ] && ha=(--load-hessians "$h")
  # the same codes as a format-1 payload: every general-purpose compressor over it
  "${q[@]}" "${ha[@]}" --out "$tmp/b.qgz" --compress none --compare-compressors --json > "$tmp/n.json"
  "${q[@]}" "${ha[@]}" --out "$tmp/c.qgz" --compress brotli --json > "$tmp/b.json"
  lr=null
  # the byte-per-code payload is never smaller than the packed one (b.qgz): skip early
  if [ $have_lrzip = 1 ] && [ "$(stat -c %s "$tmp/b.qgz")" -gt $((lrzip_max + 32)) ]; then
    echo "bench_codes: lrzip skipped for $model $name (payload over LRZIP_MAX=$lrzip_max bytes)" >&2
  elif [ $have_lrzip = 1 ]; then
    "${q[@]}" "${ha[@]}" --out "$tmp/d.qgz" --compress none --layout bytes > /dev/null
    tail -c +33 "$tmp/d.qgz" > "$tmp/p.bin"
    rm -f "$tmp/p.lrz"
    if [ "$(stat -c %s "$tmp/p.bin")" -le "$lrzip_max" ]; then
      lrzip -q -T -z -L 9 -o "$tmp/p.lrz" "$tmp/p.bin" 2>/dev/null && lr=$(($(stat -c %s "$tmp/p.lrz") + 32))
    else
      echo "bench_codes: lrzip skipped for $model $name (payload over LRZIP_MAX=$lrzip_max bytes)" >&2
    fi
  fi
  [ $first = 1 ] || echo "," >> "$tmp/all.json"
  first=0
  python3 - "$tmp/r.json" "$model" "$name" "$lr" "$tmp/n.json" "$tmp/b.json" >> "$tmp/all.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["totals"]
n = json.load(open(sys.argv[5]))["totals"]
b = json.load(open(sys.argv[6]))["totals"]
g = lambda k: t.get(k)
# general-purpose figures: header + that compressor over the format-1 payload (brotli:
# the real brotli .qgz, whose layout is the better of packed and one byte per code)
h = lambda v: None if v is None else v + 32
row = {"model": sys.argv[2], "codes": sys.argv[3], "raw": n.get("artifact_bytes"), "order0": g("entropy_bytes"),
       "zstd22": h(n.get("zstd_bytes")), "brotli11": b.get("artifact_bytes"), "xz9e": h(n.get("xz_bytes")),
       "zlib9": h(n.get("zlib_bytes")),
       "lrzip_z_L9": None if sys.argv[4] == "null" else int(sys.argv[4]), "rans_qgz": g("artifact_bytes"),
       "rans_codes": g("rans_code_bytes"), "rans_meta": g("rans_meta_bytes"), "rans_tables": g("rans_table_bytes"),
       "rans_streams": {k: g("rans_streams_" + k) for k in ("own", "shared", "context", "wide", "brotli", "row_ordered")},
       "rans_sections_inline": g("rans_sections_inline")}
print(json.dumps(row))
PY
done
echo "]" >> "$tmp/all.json"
cp "$tmp/all.json" "$out"
python3 - "$out" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
print("| model | codes | raw | order-0 | zstd-22 | brotli-11 | xz-9e | lrzip -T -z -L9 (reference) | rANS .qgz | rANS vs brotli | rANS vs lrzip |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    f = lambda v: "-" if v is None else str(v)
    d = lambda a, b: "-" if not a or not b else "%+.2f %%" % (100.0 * (a - b) / b)
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (r["model"].split("_")[0], r["codes"], f(r["raw"]),
          f(r["order0"]), f(r["zstd22"]), f(r["brotli11"]), f(r["xz9e"]), f(r["lrzip_z_L9"]), f(r["rans_qgz"]),
          d(r["rans_qgz"], r["brotli11"]), d(r["rans_qgz"], r["lrzip_z_L9"])))
PY
echo "wrote $out"
