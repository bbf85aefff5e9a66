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
# ---- tokenizer (tok/): the embedded corpus, a trained tokenizer, shards -----------------
# The corpus is the King James Bible from Debian's bible-kjv-text (scripts/fetch-corpus.sh,
# into the git-ignored data/). It is NOT FineWeb: BPB on it is not comparable with contest
# numbers.
step "tokenizer: the embedded corpus (King James Bible; not FineWeb)"
if bash "$root/scripts/fetch-corpus.sh"; then
  step "tokenizer: train a 1024-piece BPE tokenizer with the contest's settings (as spm_train)"
  "$qg" tokenizer train --input "$root/data/corpus/kjv_train.txt" --vocab-size 1024 \
    --out "$out/kjv1024.model"
  step "tokenizer: documents to contest shards (BOS + tokens; 100 validation chapters)"
  "$qg" prepare --tokenizer "$out/kjv1024.model" --input "$root/data/corpus/kjv.txt" \
    --out "$out/kjv_shards" --name kjv --val-docs 100 --shard-tokens 1000000
  "$qg" inspect "$out/kjv_shards/kjv_val_000000.bin" | head -n 4
  step "tokenizer: encode and decode a line"
  echo "In the beginning God created the heaven and the earth." |
    "$qg" encode --tokenizer "$out/kjv1024.model" | tee "$out/kjv_ids.txt"
  "$qg" decode --tokenizer "$out/kjv1024.model" "$out/kjv_ids.txt"
else
  step "tokenizer: could not fetch the corpus (no package archive?): skipped"
fi
if [ -f "$contest/fineweb_1024_bpe.vocab" ] && \
   [ -f "$contest/noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model" ]; then
  step "tokenizer: the contest vocabulary as a real .model (nmt_nfkc charsmap of another model)"
  "$qg" tokenizer assemble --vocab "$contest/fineweb_1024_bpe.vocab" \
    --normalizer-from "$contest/noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model" \
    --out "$out/fineweb_1024_bpe.model"
  echo "Parameter Golf: the best model under 16,000,000 bytes." |
    "$qg" encode --tokenizer "$out/fineweb_1024_bpe.model"
fi
# ---- the embedded default: GPTQ after training vs STE QAT during training ----------------
# The experiment runner on a small version of experiments/gptq-vs-ste-qat.yaml: a 2-layer
# contest-shaped model trained on the KJV shards with the contest's recipe, plain and with
# STE int4 QAT; GPTQ int4 on the plain one, rowwise int4 on the QAT one; KLD against the
# plain float model, BPB on held-out chapters, a paired block-bootstrap verdict.
if [ -f "$out/kjv1024.model" ]; then
  step "run: GPTQ after training vs STE QAT (experiments/small/gptq-vs-ste-qat-small.yaml)"
  bash "$root/scripts/experiment-data.sh" "$qg" >/dev/null
  "$qg" run "$root/experiments/small/gptq-vs-ste-qat-small.yaml" --out "$out/reports" | tee "$out/gptq_vs_qat.txt"
  echo "report: $out/reports/gptq-vs-ste-qat-small/report.md"
fi

# ---- model, quantizers, KLD-first evaluation on a real contest checkpoint ----------------
sam="$contest/baseline7L384d_SamTruss_c839523.int8.ptz"
if [ -f "$sam" ] && [ -f "$out/fineweb_1024_bpe.model" ] && [ -f "$root/data/corpus/kjv.txt" ]; then
  step "eval: the contest's 7L384d model (SamTruss) on KJV text tokenized with the contest vocabulary"
  "$qg" prepare --tokenizer "$out/fineweb_1024_bpe.model" --input "$root/data/corpus/kjv.txt" \
    --out "$out/kjv_contest" --val-docs 100 >/dev/null
  val="$out/kjv_contest/fineweb_val_*.bin"
  train="$out/kjv_contest/fineweb_train_*.bin"
  "$qg" eval --model "$sam" --val "$val" --tokenizer "$out/fineweb_1024_bpe.model" --max-tokens 16385 --device cpu
  step "quantize: rowwise int6 (round to nearest) vs GPTQ int6 (calibrated on training text), same grid"
  "$qg" quantize --model "$sam" --spec 'blocks.*: rowwise bits=6' --out "$out/sam_rtn6.qgz" --json > "$out/sam_rtn6.json"
  "$qg" quantize --model "$sam" --spec 'blocks.*: gptq bits=6' --calib "$train" --calib-seqs 16 --calib-len 512 \
    --out "$out/sam_gptq6.qgz" --json > "$out/sam_gptq6.json"
  step "kld: each artifact against the float model, same 16k validation tokens"
  printf '%-12s %14s %12s %12s %10s\n' method artifact_bytes mean_KLD val_bpb same_top
  for m in rtn6 gptq6; do
    "$qg" kld --base "$sam" --model "$out/sam_$m.qgz" --val "$val" --tokenizer "$out/fineweb_1024_bpe.model" \
      --max-tokens 16385 --device cpu --json > "$out/kld_$m.json"
    bytes=$(grep -o '"artifact_bytes": [0-9]*' "$out/sam_$m.json" | grep -o '[0-9]*$')
    kld=$(grep -A1 '"kld": {' "$out/kld_$m.json" | grep -o '"mean": [-0-9.e]*' | grep -o '[-0-9.e]*$')
    bpb=$(grep -A5 '"model": {' "$out/kld_$m.json" | grep -o '"val_bpb": [0-9.e]*' | grep -o '[0-9.e]*$')
    top=$(grep -A1 '"same_top": {' "$out/kld_$m.json" | grep -o '"rate": [0-9.e]*' | grep -o '[0-9.e]*$')
    printf '%-12s %14s %12.6f %12.6f %10.4f\n' "$m" "$bytes" "$kld" "$bpb" "$top"
  done
fi
printf '\nquickstart: done; outputs in %s\n' "$out"
