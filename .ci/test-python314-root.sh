#!/usr/bin/env bash
# A Python 3.14 for the packed-layer tests: the runtimes table lists
# python3.14, whose layers unpack with the standard library's
# compression.zstd rather than a zstandard wheel, and pyenv here stops at
# 3.13. Debian unstable (sid) carries python3.14: debootstrap makes a small
# root holding it (about 2 minutes), which the tests run under bwrap with
# their own /tmp bound in. Reused when already present and complete.
set -euo pipefail
ROOT="${LAYERS_TEST_PY314_ROOT:-/var/cache/layers-test/py314-root}"
check='import compression.zstd, sys; assert sys.version_info[:2] == (3, 14)'
if [ -x "$ROOT/usr/bin/python3.14" ] && chroot "$ROOT" /usr/bin/python3.14 -c "$check" 2>/dev/null; then
  echo "python3.14 root $ROOT: present"
  exit 0
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"
mkdir -p "$(dirname "$ROOT")"
partial="$ROOT.partial.$$"
trap 'rm -rf "$partial"' EXIT
debootstrap --variant=minbase --include=python3.14 sid "$partial" "$mirror" >/dev/null
chroot "$partial" /usr/bin/python3.14 -c "$check"
rm -rf "$ROOT"
mv "$partial" "$ROOT"
echo "python3.14 root $ROOT: built"
