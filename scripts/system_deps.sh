#!/usr/bin/env bash
# Installs the system packages keras_lincon needs, only when missing.
# Required: libcdd-dev libgmp-dev (pycddlib 3 builds against them).
# Optional: dataset-fashion-mnist (real 28x28 images for the demo and tests).
set -euo pipefail
required=(libcdd-dev libgmp-dev)
optional=(dataset-fashion-mnist)

have_headers() {
  { [ -e /usr/include/cddlib/cdd.h ] || [ -e /usr/include/cdd/cdd.h ] || [ -e /usr/local/include/cddlib/cdd.h ]; } &&
    { [ -e /usr/include/gmp.h ] || ls /usr/include/*/gmp.h >/dev/null 2>&1 || [ -e /usr/local/include/gmp.h ]; }
}

if ! command -v apt-get >/dev/null 2>&1; then
  if have_headers; then exit 0; fi
  echo "keras_lincon needs the cddlib and GMP development headers to build pycddlib." >&2
  echo "This machine has no apt-get: install them with your package manager" >&2
  echo "(Debian/Ubuntu: libcdd-dev libgmp-dev; Fedora: cddlib-devel gmp-devel;" >&2
  echo " Homebrew: cddlib gmp), then run make again." >&2
  exit 1
fi

missing() { for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done; }
need=$(missing "${required[@]}")
want=$(missing "${optional[@]}")
[ -z "$need$want" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "Missing system packages: $need $want. Run as root: apt-get install -y $need $want" >&2
  [ -z "$need" ] && exit 0 || exit 1
fi
echo "Installing system packages: $need $want"
$sudo apt-get update -qq
export DEBIAN_FRONTEND=noninteractive
if [ -n "$need" ]; then $sudo apt-get install -y -qq $need; fi
if [ -n "$want" ]; then
  $sudo apt-get install -y -qq $want || echo "note: optional $want not installed; the demo falls back to scikit-learn digits."
fi
