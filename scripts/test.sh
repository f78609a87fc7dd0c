#!/usr/bin/env bash
# The README's second command: install what is missing (also the real
# influxd 1.x and redis-server the backend tests start), build, run every
# test (doctest unit tests and the integration tests against the real
# binary and real servers) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/install-test-servers.sh
scripts/build.sh
cd build
ctest --output-on-failure -j2 --timeout 900
