# Sourced by the install scripts: `sudo` is the prefix for root commands
# (empty when root), and `find_missing PKG...` fills `missing` with the
# packages not installed yet.
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

find_missing() {
  missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
      || missing+=("$p")
  done
}
