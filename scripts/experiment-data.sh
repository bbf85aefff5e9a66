#!/usr/bin/env bash
# The data the shipped experiments (experiments/*.yaml) read, made from the embedded corpus
# (the King James Bible, scripts/fetch-corpus.sh; NOT FineWeb) into the git-ignored data/:
#   data/kjv1024.model                a 1024-piece BPE tokenizer trained as spm_train would
#   data/kjv_shards/kjv_{train,val}_*  its token shards (100 held-out chapters for val)
# and, when ../shared/contest is beside the checkout, the contest's vocabulary:
#   data/fineweb_1024_bpe.model       the contest .vocab assembled into a real .model
#   data/kjv_contest/fineweb_{train,val}_*  KJV tokenized with it (for the contest checkpoints)
# Idempotent: what exists is kept. Usage: scripts/experiment-data.sh [path/to/quantgolf]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
qg=${1:-$root/build/quantgolf}
data=$root/data
contest=$root/../shared/contest
bash "$root/scripts/fetch-corpus.sh" "$data"
if [ ! -s "$data/kjv1024.model" ]; then
  "$qg" tokenizer train --input "$data/corpus/kjv_train.txt" --vocab-size 1024 --out "$data/kjv1024.model"
fi
if [ ! -s "$data/kjv_shards/kjv_val_000000.bin" ]; then
  "$qg" prepare --tokenizer "$data/kjv1024.model" --input "$data/corpus/kjv.txt" --out "$data/kjv_shards" \
    --name kjv --val-docs 100 --shard-tokens 1000000 >/dev/null
fi
if [ -f "$contest/fineweb_1024_bpe.vocab" ] &&
   [ -f "$contest/noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model" ]; then
  if [ ! -s "$data/fineweb_1024_bpe.model" ]; then
    "$qg" tokenizer assemble --vocab "$contest/fineweb_1024_bpe.vocab" \
      --normalizer-from "$contest/noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model" \
      --out "$data/fineweb_1024_bpe.model"
  fi
  if [ ! -s "$data/kjv_contest/fineweb_val_000000.bin" ]; then
    "$qg" prepare --tokenizer "$data/fineweb_1024_bpe.model" --input "$data/corpus/kjv.txt" \
      --out "$data/kjv_contest" --val-docs 100 >/dev/null
  fi
else
  echo "experiment-data: ../shared/contest not found: the contest-vocabulary data is skipped" >&2
fi
echo "experiment-data: ready in $data"
