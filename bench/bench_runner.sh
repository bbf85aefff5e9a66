#!/usr/bin/env bash
# What the experiment runner costs over its parts: a 3-arm x 3-seed rowwise experiment on
# the contest's 7L384d checkpoint (65,536 validation tokens, no calibration) against the
# same quantize + kld commands run by hand (one per arm: rowwise artifacts do not depend on
# the seed, and the runner shares them between seeds), then the re-run on a warm cache.
# Prints the figures and writes them as JSON. Needs ../shared/contest and
# scripts/experiment-data.sh's data. Usage: bench/bench_runner.sh [quantgolf] [out.json]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
qg=${1:-$root/build/quantgolf}
json=${2:-$root/build/bench_runner.json}
model=$root/../shared/contest/baseline7L384d_SamTruss_c839523.int8.ptz
tok=$root/data/fineweb_1024_bpe.model
val="$root/data/kjv_contest/fineweb_val_*.bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
specs=('blocks.*: rowwise bits=6' 'blocks.*.mlp.*: rowwise bits=5; blocks.*.attn.*: rowwise bits=6' 'blocks.*: rowwise bits=8')
cat > "$work/bench.yaml" <<YAML
id: bench
hypothesis: "bench"
model: $model
tokenizer: $tok
data: {val: '$val', seq_len: 1024, max_tokens: 65536}
baseline: a0
arms:
  a0: {spec: '${specs[0]}'}
  a1: {spec: '${specs[1]}'}
  a2: {spec: '${specs[2]}'}
seeds: [1, 2, 3]
YAML
now() { date +%s.%N; }
t0=$(now)
for i in 0 1 2; do
  "$qg" quantize --model "$model" --spec "${specs[$i]}" --out "$work/h$i.qgz" >/dev/null 2>&1
  "$qg" kld --base "$model" --model "$work/h$i.qgz" --val "$val" --tokenizer "$tok" --max-tokens 65536 \
    --device cpu --json >/dev/null 2>&1
done
t1=$(now)
"$qg" run "$work/bench.yaml" --out "$work/reports" >/dev/null 2>&1
t2=$(now)
"$qg" run "$work/bench.yaml" --out "$work/reports" >/dev/null 2>&1
t3=$(now)
hand=$(echo "$t1 - $t0" | bc -l); cold=$(echo "$t2 - $t1" | bc -l); warm=$(echo "$t3 - $t2" | bc -l)
ratio=$(echo "$cold / $hand" | bc -l); wratio=$(echo "$warm / $cold" | bc -l)
printf 'by hand (3 quantize + 3 kld): %.1f s\nrunner, cold cache:           %.1f s (%.2fx the commands by hand)\nrunner, warm cache:           %.1f s (%.1f%% of the cold run)\n' \
  "$hand" "$cold" "$ratio" "$warm" "$(echo "100 * $wratio" | bc -l)"
printf '{"bench": "runner", "tokens": 65536, "arms": 3, "seeds": 3, "hand_seconds": %.3f, "runner_cold_seconds": %.3f, "runner_warm_seconds": %.3f, "cold_over_hand": %.4f, "warm_over_cold": %.4f}\n' \
  "$hand" "$cold" "$warm" "$ratio" "$wratio" > "$json"
echo "wrote $json"
