#!/usr/bin/env bash
# Formats every C++ file of the project with .clang-format; with --check,
# changes nothing and fails (listing the files) when one is not formatted.
# ctest runs the check, so the code and .clang-format stay in step.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cpp' '*.hpp' 2>/dev/null \
        || find actors api app bench cloud_backends core storage_backends tests \
             -name '*.cpp' -o -name '*.hpp')
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in $files; do
    clang-format --style=file "$f" | cmp -s - "$f" || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "not formatted (run scripts/format.sh): ${bad[*]}" >&2
    exit 1
  fi
  exit 0
fi
clang-format --style=file -i $files
