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
# A small contest-shaped model (4 layers, d 256, seq 256) trained twice on the KJV shards
# with the contest's recipe: plain, and with STE int6 fake quantization from the start.
# The plain one is then quantized by rowwise int6 and by GPTQ int6; every artifact is
# scored by BPB on held-out chapters and by KLD to its own float model.
if [ -f "$out/kjv1024.model" ]; then
  tr_args=(--train "$out/kjv_shards/kjv_train_*.bin" --val "$out/kjv_shards/kjv_val_*.bin"
           --tokenizer "$out/kjv1024.model" --layers 4 --dim 256 --heads 4 --kv-heads 2
           --seq-len 256 --batch-tokens 4096 --grad-accum 1 --iterations ${QS_ITERS:-40}
           --warmup-steps 0 --warmdown 15 --val-max-tokens 16385)
  # tensors of <= 65,536 weights follow the contest's passthrough rule unless named
  # exactly, so the int6 rules list every block matrix of this small model by name
  int6=""; gptq6=""
  for l in 0 1 2 3; do
    for w in attn.c_q attn.c_k attn.c_v attn.proj mlp.fc mlp.proj; do
      int6="$int6 blocks.$l.$w.weight: rowwise bits=6;"
      gptq6="$gptq6 blocks.$l.$w.weight: gptq bits=6;"
    done
  done
  step "train: plain (contest recipe: Muon + Adam, warmdown)"
  "$qg" train "${tr_args[@]}" --out "$out/train_plain"
  step "train: STE int6 QAT from the start (same data, same seed)"
  "$qg" train "${tr_args[@]}" --qat "$int6" --out "$out/train_qat"
  step "quantize: plain -> rowwise int6, plain -> GPTQ int6 (calibrated on training text), QAT -> rowwise int6"
  "$qg" quantize --model "$out/train_plain/final_model.safetensors" --spec "$int6" \
    --out "$out/plain_rtn6.qgz" --json > "$out/plain_rtn6.json"
  "$qg" quantize --model "$out/train_plain/final_model.safetensors" --spec "$gptq6" \
    --calib "$out/kjv_shards/kjv_train_*.bin" --calib-seqs 32 --calib-len 256 \
    --out "$out/plain_gptq6.qgz" --json > "$out/plain_gptq6.json"
  "$qg" quantize --model "$out/train_qat/final_model.safetensors" --spec "$int6" \
    --out "$out/qat_rtn6.qgz" --json > "$out/qat_rtn6.json"
  step "GPTQ after training vs STE QAT (KLD to each model's own float weights; BPB on held-out text)"
  printf '%-22s %14s %12s %12s %12s\n' arm artifact_bytes mean_KLD float_bpb quant_bpb
  for arm in plain:rtn6 plain:gptq6 qat:rtn6; do
    run=${arm%%:*}; q=${arm##*:}
    "$qg" kld --base "$out/train_$run/final_model.safetensors" --model "$out/${run}_$q.qgz" \
      --val "$out/kjv_shards/kjv_val_*.bin" --tokenizer "$out/kjv1024.model" --seq-len 256 \
      --max-tokens 16385 --device cpu --json > "$out/kld_${run}_$q.json"
    bytes=$(grep -o '"artifact_bytes": [0-9]*' "$out/${run}_$q.json" | grep -o '[0-9]*$')
    kld=$(grep -A1 '"kld": {' "$out/kld_${run}_$q.json" | grep -o '"mean": [-0-9.e]*' | grep -o '[-0-9.e]*$')
    fb=$(grep -A3 '"base": {' "$out/kld_${run}_$q.json" | grep -o '"val_bpb": [0-9.e]*' | grep -o '[0-9.e]*$')
    qb=$(grep -A3 '"model": {' "$out/kld_${run}_$q.json" | grep -o '"val_bpb": [0-9.e]*' | grep -o '[0-9.e]*$')
    printf '%-22s %14s %12.6f %12.6f %12.6f\n' "$run -> $q" "$bytes" "$kld" "$fb" "$qb"
  done | tee "$out/gptq_vs_qat.txt"
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
    bpb=$(grep -A3 '"model": {' "$out/kld_$m.json" | grep -o '"val_bpb": [0-9.e]*' | grep -o '[0-9.e]*$')
    top=$(grep -A1 '"same_top": {' "$out/kld_$m.json" | grep -o '"rate": [0-9.e]*' | grep -o '[0-9.e]*$')
    printf '%-12s %14s %12.6f %12.6f %10.4f\n' "$m" "$bytes" "$kld" "$bpb" "$top"
  done
fi
printf '\nquickstart: done; outputs in %s\n' "$out"
