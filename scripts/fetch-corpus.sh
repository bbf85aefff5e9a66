#!/usr/bin/env bash
# The embedded default corpus: the King James Bible (public domain English prose, 4.4 MB),
# from Debian's bible-kjv-text package, extracted with the `bible` program of bible-kjv.
# Neither package is installed system-wide: both .debs are downloaded with apt-get and
# unpacked into data/. Output: data/corpus/kjv.txt, one document per chapter (1,189),
# a verse per line, documents separated by one blank line (the plain-text input of
# `quantgolf prepare`), plus data/corpus/kjv_heldout.txt (the last 10% of the chapters,
# for measuring a tokenizer trained on the rest, data/corpus/kjv_train.txt).
#
# It is NOT FineWeb: bits per byte measured on it are not comparable with contest numbers.
# Usage: scripts/fetch-corpus.sh [DATA_DIR]   (default: data/ in the checkout)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=${1:-$root/data}
out=$data/corpus
if [ -s "$out/kjv.txt" ] && [ -s "$out/kjv_train.txt" ] && [ -s "$out/kjv_heldout.txt" ]; then
  echo "fetch-corpus: $out/kjv.txt already there"
  exit 0
fi
mkdir -p "$data/deb" "$out"
cd "$data/deb"
if ! ls bible-kjv-text_*.deb bible-kjv_*.deb >/dev/null 2>&1; then
  # apt-get download needs package lists; refresh them once if it fails without.
  apt-get download bible-kjv-text bible-kjv 2>/dev/null ||
    { apt-get update -qq && apt-get download bible-kjv-text bible-kjv; }
fi
rm -rf root && mkdir root
for d in bible-kjv-text_*.deb bible-kjv_*.deb; do dpkg-deb -x "$d" root; done
# -f turns pretty-printing off: one verse per line as "Book1:2 text", Genesis 1:1 to Revelation 22:21
./root/usr/bin/bible -f -p "$PWD/root/usr/lib" "gen1:1-rev22:21" </dev/null > kjv_verses.txt
# a chapter is a document: strip the reference, blank line when the chapter changes
awk '{
  ref = $1; sub(/:[0-9]+$/, "", ref);
  text = $0; sub(/^[^ ]+ /, "", text);
  if (NR > 1 && ref != prev) print "";
  print text; prev = ref
}' kjv_verses.txt > "$out/kjv.txt.tmp"
mv "$out/kjv.txt.tmp" "$out/kjv.txt"
# training split (first 90% of chapters) and held-out split (last 10%)
awk -v RS= -v ORS='\n\n' 'NR <= 1070' "$out/kjv.txt" > "$out/kjv_train.txt"
awk -v RS= -v ORS='\n\n' 'NR > 1070' "$out/kjv.txt" > "$out/kjv_heldout.txt"
docs=$(awk -v RS= 'END { print NR }' "$out/kjv.txt")
echo "fetch-corpus: $out/kjv.txt: $(wc -c < "$out/kjv.txt") bytes, $docs documents (chapters)"
