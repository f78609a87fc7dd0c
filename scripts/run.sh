#!/usr/bin/env bash
# The README's first command: install what is missing, build, start tlmd
# with its defaults (extra arguments go to tlmd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec build/bin/tlmd "$@"
