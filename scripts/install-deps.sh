#!/usr/bin/env bash
# Installs the Debian 12 packages tlmd needs to build, run and test.
# Uses sudo when not root; installs only what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libcaf-dev libpoco-dev nlohmann-json3-dev doctest-dev libsqlite3-dev
  libcli11-dev libjemalloc-dev libpq-dev libasio-dev
  python3 python3-pytest netcat-openbsd curl openssl clang-format
)

. "$(dirname "$0")/apt-common.sh"
find_missing "${packages[@]}"
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
