#!/usr/bin/env bash
# Installs the Debian packages quantgolf needs, only those missing. Idempotent; run as root.
# Prints what it installed, or that nothing was needed.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libopenblas-dev liblapacke-dev
  libzstd-dev zlib1g-dev liblzma-dev libbrotli-dev
  libyaml-dev libcmocka-dev
  libopenmpi-dev openmpi-bin   # the MPI communication backend (comm/) and mpirun for its tests
  clang libclang-rt-dev   # libFuzzer and sanitizer runtimes for `make fuzz`
  python3-numpy python3-brotli  # test_qgz_load_py: python/qgz_load.py against the C reader
  lrzip   # bench/bench_codes.sh's reference column only; nothing in quantgolf needs it
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present, nothing to do"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run this script as root to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed ${missing[*]}"
