#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every test: installs what is missing, then builds and runs the suite
# (unit, integration, CLI, package), then again under ASan+UBSan and TSan.
# CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
npipe_ensure_packages "${npipe_packages_build[@]}" "${npipe_packages_test[@]}"

status=0
for preset in default asan tsan; do
  echo "=== npipe tests: $preset ==="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset" || status=1
done
exit $status
