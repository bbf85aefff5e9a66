#!/usr/bin/env bash
# The contest record's pergroup compressor (bench/pergroup_reference.py) on the same codes
# as quantgolf's rANS .qgz, for the rowwise and GPTQ-rowwise rows of bench_codes.sh (the
# pipeline groups int8-held integer codes; turbo and E8 codes are not what it was built for).
# GPTQ reuses one saved set of Hessians per model, calibrated as bench_codes.sh does.
# Needs python3 with numpy and brotli, and Debian's lrzip. Writes JSON (argv[1], default
# bench_pergroup.json) and prints a markdown table.
#   [ONLY=REGEX] bench/bench_pergroup.sh [OUT.json] [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-bench_pergroup.json}
bin=${2:-$root/build}/quantgolf
contest="$root/../shared/contest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
command -v lrzip >/dev/null || { echo "SKIP: lrzip not installed (apt-get install lrzip)" >&2; exit 0; }
tiny=tiny3L128d_nolanvild_3c063e5.pt
base=baseline7L384d_SamTruss_c839523.int8.ptz
recur=recur6x2L512d_int6qat_MontySteele_dc69b08.int8.ptz
cases=(
  "$tiny|int6|preset:int6"
  "$tiny|int5|*: rowwise bits=5"
  "$tiny|gptq int6|blocks.*: gptq bits=6; *: rowwise bits=8"
  "$tiny|gptq int5|blocks.*: gptq bits=5; *: rowwise bits=8"
  "$base|int6|preset:int6"
  "$base|gptq int6|blocks.*: gptq bits=6; *: rowwise bits=8"
  "$recur|int6|preset:int6"
  "$recur|gptq int6|blocks.*: gptq bits=6; *: rowwise bits=8"
)
calib=("--calib" "self" "--calib-seqs" "16" "--calib-len" "256")
shards=$(ls "$root"/data/kjv_contest/fineweb_train_*.bin 2>/dev/null | head -1 || true)
[ -n "$shards" ] && calib=("--calib" "$root/data/kjv_contest/fineweb_train_*.bin" "--calib-seqs" "16" "--calib-len" "512")
echo "[" > "$tmp/all.json"
first=1
for c in "${cases[@]}"; do
  IFS='|' read -r model name spec <<< "$c"
  [ -z "${ONLY:-}" ] || [[ "$model|$name" =~ $ONLY ]] || continue
  [ -r "$contest/$model" ] || { echo "SKIP: $model not found" >&2; continue; }
  echo "bench_pergroup: $model $name" >&2
  if [[ $spec == preset:* ]]; then sa=(--preset "${spec#preset:}"); else sa=(--spec "$spec"); fi
  ha=()
  if [[ $spec == *gptq* ]]; then
    h="$tmp/${model%%.*}.hessians.safetensors"
    if [ -r "$h" ]; then ha=(--load-hessians "$h"); else ha=("${calib[@]}" --save-hessians "$h"); fi
  fi
  "$bin" quantize --model "$contest/$model" "${sa[@]}" "${ha[@]}" --out "$tmp/a.qgz" --compress rans > /dev/null
  [ ${#ha[@]} -gt 0 ] && ha=(--load-hessians "$h")
  "$bin" quantize --model "$contest/$model" "${sa[@]}" "${ha[@]}" --out "$tmp/b.qgz" --compress brotli > /dev/null
  python3 "$root/bench/pergroup_reference.py" "$tmp/a.qgz" --quantgolf "$bin" --out "$tmp/p.json" > /dev/null
  [ $first = 1 ] || echo "," >> "$tmp/all.json"
  first=0
  python3 - "$tmp/p.json" "$model" "$name" "$(stat -c %s "$tmp/b.qgz")" >> "$tmp/all.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p.update({"model": sys.argv[2], "codes": sys.argv[3], "brotli11_bytes": int(sys.argv[4])})
p.pop("qgz")
print(json.dumps(p))
PY
done
echo "]" >> "$tmp/all.json"
cp "$tmp/all.json" "$out"
python3 - "$out" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
print("| model | codes | brotli-11 .qgz | pergroup as recorded | pergroup, lrzip -T | rANS .qgz | rANS vs pergroup -T | lrzip -d CPU s | quantgolf convert CPU s | decode ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    a, t = r["as_recorded"], r["T"]
    print("| %s | %s | %d | %d | %d | %d | %+.2f %% | %.2f | %.2f | %.0fx |" % (
        r["model"].split("_")[0], r["codes"], r["brotli11_bytes"], a["total_bytes"], t["total_bytes"], r["qgz_bytes"],
        100.0 * (r["qgz_bytes"] / t["total_bytes"] - 1), t["decode_cpu_seconds"], r["quantgolf_convert_cpu_seconds"],
        t["decode_cpu_seconds"] / max(r["quantgolf_convert_cpu_seconds"], 1e-9)))
PY
echo "wrote $out"
