#!/usr/bin/env bash
# A short end-to-end demonstration of what quantgolf does today, on the files that ship
# with it (tests/data) and, when present, the real contest files in ../shared/contest.
# Results go to build/quickstart/.  Usage: scripts/quickstart.sh [PATH/TO/quantgolf]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
qg=${1:-$root/build/quantgolf}
out=$root/build/quickstart
contest=$root/../shared/contest
mkdir -p "$out"
step() { printf '\n== %s\n' "$*"; }

step "build and GPU"
"$qg" info

step "a contest int8+zlib artifact, as stored (tests/data/small_artifact.int8.ptz, written by torch)"
"$qg" inspect "$root/tests/data/small_artifact.int8.ptz"

step "dequantized exactly as the contest's loader does, to safetensors"
"$qg" convert "$root/tests/data/small_artifact.int8.ptz" "$out/small_artifact.safetensors"
"$qg" inspect "$out/small_artifact.safetensors" | tail -n 4

if [ -f "$contest/tiny3L128d_nolanvild_3c063e5.pt" ]; then
  step "the contest's int8 export of a real checkpoint (nolanvild 3L128d), bit-exact"
  "$qg" export-int8 "$contest/tiny3L128d_nolanvild_3c063e5.pt" "$out/tiny.int8.ptz"
  "$qg" inspect "$out/tiny.int8.ptz" | head -n 6
  step "a real 7L384d artifact (SamTruss) in JSON"
  "$qg" inspect --json "$contest/baseline7L384d_SamTruss_c839523.int8.ptz" | grep -E '"(format|quant_format|parameters|file_bytes)"'
  step "the contest vocabulary and its BPB lookup tables"
  "$qg" inspect "$contest/fineweb_1024_bpe.vocab"
else
  step "../shared/contest not found: skipping the real contest files"
fi
printf '\nquickstart: done; outputs in %s\n' "$out"
