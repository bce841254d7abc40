#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the benchmarks and writes docs/benchmarks.md and docs/benchmarks.png.
# Not part of the test command: it takes a few minutes. Pass --quick for a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
npipe_ensure_packages "${npipe_packages_build[@]}" libnng-dev libzmq3-dev libuv1-dev gnuplot-nox strace openssl
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DNPIPE_BUILD_TESTS=OFF -DNPIPE_BUILD_BENCH=ON >/dev/null
cmake --build build/bench --target npipe_bench npipe_cli
# The certificates of the npipe-remote-tls-cert row (a fresh PKI each run).
rm -rf build/bench/certs
scripts/make-certs.sh build/bench/certs >/dev/null
export NPIPE_BENCH_CERTS=$PWD/build/bench/certs
bench/syscalls.sh build/bench/bench/npipe_bench > build/bench/syscalls.md
build/bench/bench/npipe_bench --out docs/benchmarks.md --data build/bench/bench.dat --syscalls build/bench/syscalls.md "$@"
gnuplot -e "data='build/bench/bench.dat'; out='docs/benchmarks.png'" bench/chart.gp
echo "wrote docs/benchmarks.md and docs/benchmarks.png"
