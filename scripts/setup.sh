#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages npipe needs (only the missing ones), as root
# or through sudo. Sourced by demo.sh and test.sh; usable alone.
set -euo pipefail

npipe_packages_build=(g++ cmake ninja-build pkg-config libcli11-dev libasio-dev libssl-dev)
# openssl makes the remote tests' certificates; iproute2 (ip netns) runs the two-host test;
# unicode-data's CaseFolding.txt is what the name-folding table is checked against
# (and what scripts/gen-case-fold.py reads); python3-pytest runs the Python package's tests
# with the system's python3, and python3-mypy checks its type hints; libboost-dev is Boost.Asio,
# on which the tests build npipe a second time (the boost preset).
npipe_packages_test=(libgtest-dev libgmock-dev googletest openssl iproute2 unicode-data python3 python3-pytest
  python3-mypy libboost-dev)
# The Windows build: the mingw-w64 compiler with posix threads, and Wine to run its tests.
npipe_packages_windows=(g++-mingw-w64-x86-64-posix wine64 wine)

npipe_ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "npipe: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  npipe_ensure_packages "${npipe_packages_build[@]}" "${npipe_packages_test[@]}"
fi
