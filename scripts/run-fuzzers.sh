#!/usr/bin/env bash
# Runs every libFuzzer harness built in BUILD_DIR for RUNS executions each, seeded with the
# real contest files (../shared/contest, when present) and the test data, and prints one
# summary line per harness. Crashes leave reproducers in BUILD_DIR/fuzz-artifacts/.
# The fuzz build makes UBSan fatal (-fno-sanitize-recover=undefined): undefined behaviour
# aborts the run and counts as a finding, like a crash.
#   scripts/run-fuzzers.sh BUILD_DIR [RUNS [SEED [HARNESS...]]]
# SEED (default 0: libFuzzer picks one) makes a run repeatable; HARNESS names limit the run
# to those harnesses (default: every fuzz_* in BUILD_DIR).
set -euo pipefail
build=${1:?usage: run-fuzzers.sh BUILD_DIR [RUNS [SEED [HARNESS...]]]}
runs=${2:-1000000}
seed=${3:-0}
shift $(( $# < 3 ? $# : 3 ))
root=$(cd "$(dirname "$0")/.." && pwd)
contest="$root/../shared/contest"
art="$build/fuzz-artifacts"
mkdir -p "$art"

# seed files per harness: the formats it parses, and the committed corpus fuzz/seeds/HARNESS
# (real artifacts with the harness's mode bytes; scripts/make-fuzz-seeds.sh rebuilds it)
seeds_for() {
  ls "$root/fuzz/seeds/$1"/* 2>/dev/null || true
  case "$1" in
    fuzz_shards) ls "$root"/tests/data/*.bin 2>/dev/null | grep -i shard || true ;;
    fuzz_safetensors) ls "$root"/tests/data/*.safetensors 2>/dev/null || true ;;
    fuzz_spm_model) ls "$contest"/*.model 2>/dev/null || true ;;
    fuzz_spm_vocab) ls "$contest"/*.vocab 2>/dev/null || true ;;
    fuzz_zip|fuzz_ptz) ls "$contest"/*.pt "$contest"/*.ptz "$root"/tests/data/*.pt 2>/dev/null || true ;;
    fuzz_pickle) echo "@pickles" ;;
    fuzz_alloc_table) ls "$root"/experiments/*.sensitivity.json 2>/dev/null || true ;;
  esac
}

status=0
bins=()
if [ $# -gt 0 ]; then
  for h in "$@"; do bins+=("$build/$h"); done
else
  bins=("$build"/fuzz_*)
fi
echo "fuzzing with UBSan fatal, $runs executions per harness, seed $seed"
for bin in "${bins[@]}"; do
  [ -x "$bin" ] && [ -f "$bin" ] || continue
  name=$(basename "$bin")
  corpus="$build/corpus-$name"
  rm -rf "$corpus"
  mkdir -p "$corpus"
  for s in $(seeds_for "$name"); do
    if [ "$s" = "@pickles" ]; then
      # the data.pkl members of the real torch files
      for z in "$contest"/*.pt "$root"/tests/data/*.pt; do
        [ -f "$z" ] && python3 - "$z" "$corpus" 2>/dev/null <<'PY' || unzip -p "$z" '*/data.pkl' > "$corpus/$(basename "$z").pkl" 2>/dev/null || true
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
n = [x for x in z.namelist() if x.endswith("data.pkl")][0]
open(sys.argv[2] + "/" + sys.argv[1].split("/")[-1] + ".pkl", "wb").write(z.read(n))
PY
      done
    else
      # large seeds are cut to 1 MiB so the fuzzer can afford them
      head -c 1048576 "$s" > "$corpus/$(basename "$s")"
    fi
  done
  log="$build/$name.log"
  if "$bin" "$corpus" -runs="$runs" -seed="$seed" -max_len=1048576 -rss_limit_mb=4096 -timeout=20 \
       -artifact_prefix="$art/$name-" -print_final_stats=1 >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "$name: ok, $execs executions, 0 findings (UB fatal), corpus $(ls "$corpus" | wc -l) files"
  else
    status=1
    echo "$name: FAILED (see $log and $art)"
    grep -m3 -E 'ERROR|SUMMARY' "$log" || true
  fi
done
exit $status
