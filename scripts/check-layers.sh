#!/usr/bin/env bash
# The folders' dependency order, checked on the sources: a folder may include its own
# headers and those of folders below it, never one above it or beside it (eval and train
# share a level and stay apart). The build enforces the same order (CMakeLists.txt: one
# library per folder, each seeing only its own headers and those of the libraries it
# links); this script also covers headers that no .c of their own folder includes, and
# names the wrong include without building. Usage: scripts/check-layers.sh [source root]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

order="core:0 comm:1 io:2 tok:3 kernels:4 model:5 quant:6 eval:7 train:7 lab:8 cli:9"
dirs=$(for e in $order; do [ -d "${e%%:*}" ] && echo "${e%%:*}"; done)

# file:line:text of every #include "folder/..." in those folders
grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^/"]+/' $dirs \
     --include='*.c' --include='*.h' --include='*.cu' --include='*.inc' |
awk -v order="$order" '
  BEGIN {
    n = split(order, e, " ")
    for (i = 1; i <= n; i++) { split(e[i], kv, ":"); lvl[kv[1]] = kv[2]; name[i] = kv[1] }
  }
  {
    file = $0; sub(/:.*/, "", file)
    rest = substr($0, length(file) + 2); line = rest; sub(/:.*/, "", line)
    dir = file; sub(/\/.*/, "", dir)
    inc = rest; sub(/^[^"]*"/, "", inc); sub(/\/.*/, "", inc)
    if (!(inc in lvl)) next               # not a project folder (tests/, a system path)
    seen[dir, inc] = 1
    if (inc != dir && lvl[inc] >= lvl[dir]) {
      printf "layers: %s:%s: %s (level %d) includes %s (level %d)\n", file, line, dir, lvl[dir], inc, lvl[inc] > "/dev/stderr"
      bad = 1
    }
  }
  END {
    for (i = 1; i <= n; i++) {
      d = name[i]; s = ""
      for (j = 1; j <= n; j++) if ((d, name[j]) in seen) s = s " " name[j]
      if (s != "") printf "%-8s ->%s\n", d, s
    }
    path = "core -> comm -> io -> tok -> kernels -> model -> quant -> eval|train -> lab -> cli"
    if (bad) { print "layers: FAILED (order: " path ")" > "/dev/stderr"; exit 1 }
    print "layers: ok (order: " path ")"
  }'
