#!/usr/bin/env bash
# Run on the GPU machine (CUDA 13, cmake and PyTorch, no package registry, no network):
# unpacks the .debs that scripts/gpu-fetch-debs.sh downloaded into a prefix inside the
# checkout (dpkg -x, never over /), configures and builds quantgolf with CUDA against that
# prefix, runs the gpu-labelled tests, the CPU suite and the benchmarks, and writes logs
# and JSON into OUTDIR.
#
#   scripts/gpu-run.sh OUTDIR [--build-only] [--no-cpu-suite]
#
# Env: QG_GPU_PKGS (default gpu-pkgs/ in the checkout), QG_CONTEST_DIR (default the copy
# gpu-fetch-debs.sh made in gpu-pkgs/contest, else ../shared/contest). Without a GPU it
# builds (CUDA compile only), says so, and skips the GPU tests and benchmarks visibly.
# Files in OUTDIR (8 at most, so all come back from a device run): summary.txt, build.log,
# ctest-gpu.log, ctest-cpu.log, bench_cuda_model.json, bench_cuda_model.log,
# torch_reference.json, torch_reference.log. Exit status: non-zero if a step failed.
set -uo pipefail

usage() { echo "usage: scripts/gpu-run.sh OUTDIR [--build-only] [--no-cpu-suite]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1; shift
build_only=0; cpu_suite=1
for a in "$@"; do
  case "$a" in --build-only) build_only=1 ;; --no-cpu-suite) cpu_suite=0 ;; *) usage ;; esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out" && out=$(cd "$out" && pwd)
pkgs=${QG_GPU_PKGS:-$root/gpu-pkgs}
prefix=$root/build-gpu-prefix # under the repo (git-ignored as build-*/), not in $pkgs: carrying $pkgs must not carry it
build=$root/build-gpu
summary=$out/summary.txt
: >"$summary"
failed=0
say() { echo "gpu-run: $*" | tee -a "$summary"; }
step() { # step NAME LOG CMD...: runs, logs, records the outcome
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  if "$@" >>"$log" 2>&1; then say "$name: ok ($((SECONDS - t0)) s)"; else say "$name: FAILED ($((SECONDS - t0)) s; see $(basename "$log"))"; failed=1; return 1; fi
}

# ---- 1. unpack into the prefix -------------------------------------------------------------
ls "$pkgs"/*.deb >/dev/null 2>&1 || { say "no .deb files in $pkgs (run scripts/gpu-fetch-debs.sh where a registry is reachable)"; exit 1; }
rm -rf "$prefix" && mkdir -p "$prefix"
for deb in "$pkgs"/*.deb; do
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$deb" "$prefix" || { say "cannot unpack $deb"; exit 1; }
  else # no dpkg: a .deb is an ar archive holding data.tar.*
    (cd "$prefix" && ar p "$deb" "$(ar t "$deb" | grep '^data\.tar')" | tar -x -a -f - 2>/dev/null ||
      ar p "$deb" "$(ar t "$deb" | grep '^data\.tar')" | tar -x --zstd -f -) || { say "cannot unpack $deb"; exit 1; }
  fi
done
lib=$prefix/usr/lib/x86_64-linux-gnu
ob=$lib/openblas-pthread
# What dpkg's maintainer scripts would have done: the update-alternatives links that make
# OpenBLAS the BLAS/LAPACK (libblas.so.3, liblapack.so.3, libopenblas.so, cblas.h).
for l in libblas.so.3 liblapack.so.3 libblas.so liblapack.so libopenblas.so libopenblas.so.0; do
  [ -e "$ob/$l" ] && ln -sfn "openblas-pthread/$l" "$lib/$l"
done
inc=$prefix/usr/include/x86_64-linux-gnu
[ -e "$inc/openblas-pthread/cblas.h" ] && ln -sfn openblas-pthread/cblas.h "$inc/cblas.h"
# Absolute links inside the packages point at /usr/...: re-point them into the prefix.
find "$prefix" -type l | while read -r l; do
  t=$(readlink "$l")
  case "$t" in /*) [ -e "$prefix$t" ] && ln -sfn "$prefix$t" "$l" ;; esac
done
say "unpacked $(ls "$pkgs"/*.deb | wc -l) packages into $prefix"

# ---- 2. configure and build against the prefix ---------------------------------------------
export PKG_CONFIG_LIBDIR=$lib/pkgconfig:$prefix/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$prefix # the .pc files say prefix=/usr
runlibs=$lib:$ob
pc=$(command -v pkg-config || command -v pkgconf || echo "$prefix/usr/bin/pkgconf")
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$nvcc" ] || { say "no nvcc found (PATH or /usr/local/cuda/bin)"; exit 1; }
rm -rf "$build"
log=$out/build.log
: >"$log"
step configure "$log" env LD_LIBRARY_PATH="$runlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DQG_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DPKG_CONFIG_EXECUTABLE="$pc" \
  -DCMAKE_PREFIX_PATH="$prefix/usr" -DCMAKE_LIBRARY_PATH="$lib;$ob" \
  -DCMAKE_INCLUDE_PATH="$prefix/usr/include;$inc;$inc/openblas-pthread" \
  -DCMAKE_C_FLAGS="-I$prefix/usr/include -I$inc -I$inc/openblas-pthread" \
  -DCMAKE_EXE_LINKER_FLAGS="-L$lib -L$ob -Wl,-rpath-link,$lib:$ob" || { cat "$log" | tail -30; exit 1; }
# The libraries found must be the prefix's (on a machine that has them in /usr too, this
# is what shows the configuration really used the prefix).
grep -E '^(BLAS_openblas_LIBRARY|LAPACKE_LIB|LAPACKE_INCLUDE|pkgcfg_lib_ZSTD_zstd|pkgcfg_lib_CMOCKA_cmocka|pkgcfg_lib_YAML_yaml|ZLIB_LIBRARY_RELEASE):' \
  "$build/CMakeCache.txt" | tee -a "$log" | sed 's/^/gpu-run:   /'
if grep -E '^(BLAS_openblas_LIBRARY|LAPACKE_LIB|pkgcfg_lib_ZSTD_zstd|pkgcfg_lib_CMOCKA_cmocka):' "$build/CMakeCache.txt" | grep -vq "$prefix"; then
  say "WARNING: some libraries above come from the system, not $prefix"
fi
step build "$log" env LD_LIBRARY_PATH="$runlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  cmake --build "$build" -j"$(nproc)" || { tail -30 "$log"; exit 1; }
grep -iE "warning" "$log" | grep -E "kernels/|tests/test_cuda|bench/bench_cuda" | head -20 | sed 's/^/gpu-run: warning: /' | tee -a "$summary"
[ $build_only -eq 1 ] && { say "--build-only: stopping after the build"; exit $failed; }

# ---- 3. tests and benchmarks -----------------------------------------------------------------
export LD_LIBRARY_PATH="$runlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" # our programs only: python runs without it
if [ -z "${QG_CONTEST_DIR:-}" ] && [ -d "$pkgs/contest" ]; then export QG_CONTEST_DIR=$pkgs/contest; fi
say "contest files: ${QG_CONTEST_DIR:-../shared/contest beside the checkout (if present)}"
gpu=0
if "$build/quantgolf" info 2>/dev/null | grep -q "device 0"; then gpu=1; fi
"$build/quantgolf" info 2>&1 | sed 's/^/gpu-run: info: /' | tee -a "$summary"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu-run: nvidia-smi: /' | tee -a "$summary"
if [ $gpu -eq 1 ]; then
  step "ctest -L gpu" "$out/ctest-gpu.log" ctest --test-dir "$build" -L gpu -V --timeout 600
  grep -E "rel err|SKIP|FAILED|PASSED|Error" "$out/ctest-gpu.log" | tail -80 >>"$summary"
else
  say "SKIP: no CUDA GPU on this machine: the gpu tests and the benchmarks were NOT run"
fi
if [ $cpu_suite -eq 1 ]; then
  step "ctest -L cpu" "$out/ctest-cpu.log" ctest --test-dir "$build" -L cpu -j"$(nproc)" --output-on-failure --timeout 900
  grep -E "tests passed|SKIP" "$out/ctest-cpu.log" | sort | uniq -c | tail -20 >>"$summary"
fi
if [ $gpu -eq 1 ]; then
  step bench_cuda_model "$out/bench_cuda_model.log" "$build/bench_cuda_model" "$out/bench_cuda_model.json"
  cat "$out/bench_cuda_model.log" >>"$summary"
  ck="${QG_CONTEST_DIR:-$root/../shared/contest}/baseline7L384d_SamTruss_c839523.int8.ptz"
  st=$build/samtruss_7L384d.safetensors
  ckarg=()
  if [ -f "$ck" ] && "$build/quantgolf" convert "$ck" "$st" >/dev/null 2>&1; then ckarg=(--checkpoint "$st"); fi
  step torch_reference "$out/torch_reference.log" env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 \
    python3 "$root/bench/torch_reference.py" --out "$out/torch_reference.json" "${ckarg[@]}"
  grep -E "tok/s|SKIP|Error" "$out/torch_reference.log" >>"$summary"
fi
say "done: $([ $failed -eq 0 ] && echo 'every step passed' || echo 'SOME STEPS FAILED')"
exit $failed
