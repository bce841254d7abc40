#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds npipe and installs it: the libraries, headers, CMake package and
# pkg-config files, the CLI, and the Python package for the system's
# python3 (/usr/bin/python3). Installs the Debian packages it needs first;
# downloads nothing else. PREFIX defaults to /usr/local; installing there
# needs root or sudo.
#   ./scripts/install.sh                  # into /usr/local
#   PREFIX=$HOME/.local ./scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
npipe_ensure_packages "${npipe_packages_build[@]}" python3
prefix=${PREFIX:-/usr/local}

cmake -S . -B build/install -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DNPIPE_BUILD_TESTS=OFF -DNPIPE_BUILD_EXAMPLES=OFF -DNPIPE_PYTHON=/usr/bin/python3 >/dev/null
cmake --build build/install
sudo=()
[ -w "$prefix" ] || [ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" cmake --install build/install
# The loader's cache, so that programs find libnpipe.so.0 in a system prefix.
if [ "$(id -u)" -eq 0 ] || [ ${#sudo[@]} -gt 0 ]; then "${sudo[@]}" ldconfig; fi
pydir=$(grep '^NPIPE_PYTHON_INSTALL_DIR:' build/install/CMakeCache.txt | cut -d= -f2)
echo "npipe installed in $prefix; Python package in $prefix/$pydir"
PYTHONPATH="$prefix/$pydir${PYTHONPATH:+:$PYTHONPATH}" /usr/bin/python3 -c \
  'import npipe; print("python3 -c \"import npipe\": npipe", npipe.__version__)'
