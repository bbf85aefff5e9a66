#!/usr/bin/env bash
# Artifact bytes on identical codes (quantization is deterministic): for each contest
# checkpoint x quantizer spec, the .qgz under rANS (format 2), the brotli-11 .qgz, and the
# format-1 payload under zstd-22 / xz-9e / zlib-9 (+ the 32-byte header), the order-0
# estimate, plus
# `lrzip -z -L 9` over the uncompressed payload when lrzip is installed (skipped visibly
# otherwise). Writes JSON (argv[1], default bench_codes.json) and prints a markdown table.
#   bench/bench_codes.sh [OUT.json] [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-bench_codes.json}
bin=${2:-$root/build}/quantgolf
contest="$root/../shared/contest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cases=(
  "tiny3L128d_nolanvild_3c063e5.pt|int6|--preset int6"
  "tiny3L128d_nolanvild_3c063e5.pt|int5|--spec *:rowwise_bits=5"
  "recur6x2L512d_int6qat_MontySteele_dc69b08.int8.ptz|int6|--preset int6"
  "baseline7L384d_SamTruss_c839523.int8.ptz|int6|--preset int6"
)
have_lrzip=0
command -v lrzip >/dev/null && have_lrzip=1
[ $have_lrzip = 1 ] || echo "lrzip not installed: its column is skipped (apt-get install lrzip)" >&2
echo "[" > "$tmp/all.json"
first=1
for c in "${cases[@]}"; do
  IFS='|' read -r model name spec <<< "$c"
  [ -r "$contest/$model" ] || { echo "SKIP: $model not found" >&2; continue; }
  spec=${spec//_/ }
  # shellcheck disable=SC2086
  "$bin" quantize --model "$contest/$model" ${spec%% *} "${spec#* }" --out "$tmp/a.qgz" --compress rans \
    --json > "$tmp/r.json"
  # the same codes as a format-1 payload: every general-purpose compressor over it
  # shellcheck disable=SC2086
  "$bin" quantize --model "$contest/$model" ${spec%% *} "${spec#* }" --out "$tmp/b.qgz" --compress none \
    --compare-compressors --json > "$tmp/n.json"
  # shellcheck disable=SC2086
  "$bin" quantize --model "$contest/$model" ${spec%% *} "${spec#* }" --out "$tmp/c.qgz" --compress brotli \
    --json > "$tmp/b.json"
  lr=null
  if [ $have_lrzip = 1 ]; then
    tail -c +33 "$tmp/b.qgz" > "$tmp/p.bin"
    lrzip -q -z -L 9 -o "$tmp/p.lrz" "$tmp/p.bin" && lr=$(($(stat -c %s "$tmp/p.lrz") + 32))
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
       "rans_codes": g("rans_code_bytes"), "rans_meta": g("rans_meta_bytes"), "rans_tables": g("rans_table_bytes")}
print(json.dumps(row))
PY
done
echo "]" >> "$tmp/all.json"
cp "$tmp/all.json" "$out"
python3 - "$out" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
print("| model | codes | raw | order-0 | zstd-22 | brotli-11 | xz-9e | lrzip -z -L9 | rANS .qgz | rANS vs brotli |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    f = lambda v: "-" if v is None else str(v)
    d = "-" if not r["brotli11"] or not r["rans_qgz"] else "%+.2f %%" % (100.0 * (r["rans_qgz"] - r["brotli11"]) / r["brotli11"])
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (r["model"].split("_")[0], r["codes"], f(r["raw"]), f(r["order0"]),
          f(r["zstd22"]), f(r["brotli11"]), f(r["xz9e"]), f(r["lrzip_z_L9"]), f(r["rans_qgz"]), d))
PY
echo "wrote $out"
