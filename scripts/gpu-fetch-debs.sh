#!/usr/bin/env bash
# Run on a machine WITH a Debian/Ubuntu package registry: downloads (apt-get download, no
# install, no root needed) the packages quantgolf's build needs that a bare CUDA machine
# lacks: the -dev packages and their runtime libraries (OpenBLAS, LAPACKE, zstd, zlib, xz,
# brotli, libyaml, cmocka, pkgconf). Also copies the contest files (../shared/contest) when
# present, so the GPU machine's tests can use the real checkpoints.
#
#   scripts/gpu-fetch-debs.sh [DIR]      (default: gpu-pkgs/ in the checkout, git-ignored)
#
# Then carry DIR to the GPU machine and run scripts/gpu-run.sh there. The .debs come from
# this machine's release (built against its glibc); the GPU machine needs a glibc at least
# as new. The C library, libgcc and libstdc++ are never shipped: they must come from the
# GPU machine (the list below is checked, and what is assumed present is printed).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/gpu-pkgs}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

pkgs=(
  libopenblas-dev libopenblas-pthread-dev libopenblas0 libopenblas0-pthread
  liblapacke liblapacke-dev libtmglib3 libtmglib-dev liblapack-dev libblas-dev liblapack3 libblas3
  libgfortran5 libquadmath0
  libzstd-dev libzstd1 zlib1g-dev zlib1g liblzma-dev liblzma5
  libbrotli-dev libbrotli1 libyaml-dev libyaml-0-2 libcmocka-dev libcmocka0
  pkgconf pkgconf-bin libpkgconf3
)
# Dependencies satisfied by any Linux machine that runs CUDA and PyTorch (never shipped:
# a second C library in the library path would break every program started with it).
assumed=(libc6 libc6-dev libgcc-s1 libstdc++6 gcc-12-base gcc-13-base gcc-14-base libc-dev-bin linux-libc-dev
  libcrypt-dev libnsl-dev libtirpc-dev dpkg debconf)

cd "$dir"
if ! apt-cache show "${pkgs[0]}" >/dev/null 2>&1; then
  echo "gpu-fetch-debs: the package lists are empty; running apt-get update" >&2
  apt-get update -qq
fi
rm -f ./*.deb
echo "gpu-fetch-debs: downloading ${#pkgs[@]} packages into $dir"
# (as root, apt warns that its _apt user cannot write here and downloads anyway)
apt-get download -q "${pkgs[@]}" 2>&1 | grep -v "^Get:\|unsandboxed as root" || true
n=$(ls ./*.deb 2>/dev/null | wc -l)
if [ "$n" -ne "${#pkgs[@]}" ]; then
  echo "gpu-fetch-debs: expected ${#pkgs[@]} .deb files, got $n" >&2
  exit 1
fi

# Every dependency of every package must be shipped, provided by a shipped package, or on
# the assumed list; anything else is reported (and fails the script).
have=" ${assumed[*]} "
for f in ./*.deb; do
  have+="$(dpkg-deb -f "$f" Package) "
  prov=$(dpkg-deb -f "$f" Provides | tr ',' '\n' | sed 's/(.*)//; s/ //g')
  have+="$(echo $prov) "
done
missing=()
for f in ./*.deb; do
  deps=$(dpkg-deb -f "$f" Depends Pre-Depends | sed 's/^[A-Za-z-]*: //' | tr ',' '\n')
  while IFS= read -r group; do
    [ -z "${group// /}" ] && continue
    ok=0
    IFS='|' read -ra alts <<<"$group"
    for a in "${alts[@]}"; do
      name=$(echo "$a" | sed 's/(.*)//; s/:any//; s/ //g')
      case "$have" in *" $name "*) ok=1 ;; esac
    done
    [ $ok -eq 1 ] || missing+=("$(dpkg-deb -f "$f" Package): $group")
  done <<<"$deps"
done
if [ ${#missing[@]} -gt 0 ]; then
  printf 'gpu-fetch-debs: unresolved dependency: %s\n' "${missing[@]}" >&2
  exit 1
fi

if [ -d "$root/../shared/contest" ]; then
  rm -rf "$dir/contest"
  cp -r "$root/../shared/contest" "$dir/contest"
  echo "gpu-fetch-debs: copied the contest files to $dir/contest ($(du -sh "$dir/contest" | cut -f1))"
else
  echo "gpu-fetch-debs: no ../shared/contest beside the checkout: GPU tests on real checkpoints will skip"
fi
echo "gpu-fetch-debs: $n packages, $(du -sh "$dir" | cut -f1) in all; every dependency resolved"
echo "gpu-fetch-debs: assumed present on the GPU machine: ${assumed[*]}"
