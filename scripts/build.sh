#!/usr/bin/env bash
# Configures and builds everything into ./build (Release-like: -O2 -g1).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
