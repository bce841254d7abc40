#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The seed sample, end to end: installs what is missing, builds npipe, starts
# `npipe serve` on \\.\pipe\tpipe and sends it a message with `npipe send`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
npipe_ensure_packages "${npipe_packages_build[@]}"

cmake --preset demo >/dev/null
cmake --build --preset demo >/dev/null
bin=build/demo/tools/npipe/npipe

# A private pipe directory keeps the demo from colliding with anything else.
if [ -z "${NPIPE_DIR:-}" ]; then
  NPIPE_DIR=$(mktemp -d /tmp/npipe-demo-XXXXXX)
  trap 'rm -rf "$NPIPE_DIR"' EXIT
fi
export NPIPE_DIR
pipe='\\.\pipe\tpipe'

echo "\$ npipe serve --once '$pipe' &"
"$bin" serve --once "$pipe" &
server=$!
for _ in $(seq 100); do [ -S "$NPIPE_DIR/tpipe" ] && break; sleep 0.05; done

echo "\$ npipe send '$pipe' 'hello from the seed client'"
"$bin" send "$pipe" 'hello from the seed client'
wait "$server"
