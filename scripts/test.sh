#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every test: installs what is missing, then builds and runs the suite
# (unit, integration, stress in short form under the sanitizers, CLI,
# package, examples, fuzz corpora) with the default preset, under
# ASan+UBSan and under TSan; the async and gateway tests again with npipe
# built on Boost.Asio (the boost preset builds only those); then cross-builds for Windows with mingw-w64 and
# runs the Windows suite under Wine. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
npipe_ensure_packages "${npipe_packages_build[@]}" "${npipe_packages_test[@]}" "${npipe_packages_windows[@]}"

declare -A result took
status=0
for preset in default asan tsan boost; do
  echo "=== npipe tests: $preset ==="
  start=$SECONDS
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  built=$SECONDS
  if ctest --preset "$preset"; then result[$preset]=passed; else result[$preset]=FAILED; status=1; fi
  took[$preset]="build $((built - start)) s, tests $((SECONDS - built)) s"
done

# Windows under Wine. Wine's helper processes keep whatever output they
# were started with open, so start them first, detached from our output, and
# stop them at the end (see cmake/toolchains/mingw-w64.cmake).
echo "=== npipe tests: windows (under Wine) ==="
# No Mono/Gecko installers on first start (console tests need neither).
export WINEPREFIX="$PWD/build/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
mkdir -p "$WINEPREFIX"
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT
wineserver -p </dev/null >/dev/null 2>&1
wine wineboot --init </dev/null >/dev/null 2>&1
start=$SECONDS
cmake --preset windows >/dev/null
cmake --build --preset windows
built=$SECONDS
if ctest --preset windows; then result[windows]=passed; else result[windows]=FAILED; status=1; fi
took[windows]="build $((built - start)) s, tests $((SECONDS - built)) s"

echo "=== npipe test summary ==="
for preset in default asan tsan boost windows; do
  printf '  %-8s %-7s (%s)\n' "$preset" "${result[$preset]}" "${took[$preset]}"
done
echo "  total    $SECONDS s (packages, every build and every test)"
exit $status
