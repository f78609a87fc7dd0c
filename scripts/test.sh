#!/usr/bin/env bash
# The README's second command: install what is missing, build, run every
# test (doctest unit tests and the integration tests against the real
# binary) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure -j2 --timeout 900
