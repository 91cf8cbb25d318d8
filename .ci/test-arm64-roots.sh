#!/usr/bin/env bash
# aarch64 interpreters for the arm64 smoke tests, run under emulation.
#
# No arm64 machine is needed: QEMU's user-mode emulator, registered with the
# kernel's binfmt_misc, runs aarch64 binaries as if they were native. The F
# flag ("fix binary") makes the kernel open the emulator once, at
# registration, so it also runs inside namespaces and chroots where its path
# is not visible: the pip backend's bubblewrap sandbox is one.
#
# Two Debian roots hold the interpreters (builder/verify/interpreters.py
# finds them at these default paths, or through LAYERS_ARM64_ROOTS):
#   /var/cache/layers-test/arm64-bookworm  python3.11 (Debian 12)
#   /var/cache/layers-test/arm64-trixie    python3.13 (Debian 13)
# debootstrap makes each in about 2 minutes; each is reused when present and
# complete (its python answers as aarch64 and the right version).
# Lambda's python3.12 has no Debian release to take it from, so there is none.
#
# Needs root (binfmt_misc, debootstrap). Idempotent.
set -euo pipefail

CACHE="${LAYERS_TEST_ARM64_CACHE:-/var/cache/layers-test}"
BINFMT=/proc/sys/fs/binfmt_misc
ENTRY="$BINFMT/qemu-aarch64"
EMULATOR=/usr/bin/qemu-aarch64-static

fail() { echo "test-arm64-roots: $*" >&2; exit 1; }

# -- 1. the emulator, registered with the F flag ---------------------------
missing=()
[ -x "$EMULATOR" ] || missing+=(qemu-user-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "could not install ${missing[*]} (apt-get install ${missing[*]})"
fi
[ -x "$EMULATOR" ] || fail "$EMULATOR is missing after installing qemu-user-static"

if [ ! -e "$BINFMT/register" ]; then
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
    || fail "cannot mount binfmt_misc at $BINFMT: this needs root and a kernel with binfmt_misc" \
            "(in a container: run it --privileged, or register qemu-aarch64 on the host)"
fi

entry_ok() { [ -f "$ENTRY" ] && grep -qx enabled "$ENTRY" && grep -q '^flags:.*F' "$ENTRY"; }

if ! entry_ok; then
  if [ -f "$ENTRY" ] && ! grep -q '^flags:.*F' "$ENTRY"; then
    # Without F the kernel looks the emulator up at each exec, which fails in the sandbox: register it again.
    echo "qemu-aarch64 is registered without the F flag: registering it again with F"
    echo -1 > "$ENTRY" || fail "cannot remove the qemu-aarch64 entry at $ENTRY"
  fi
  if [ -f /usr/share/binfmts/qemu-aarch64 ] && grep -q '^fix_binary yes' /usr/share/binfmts/qemu-aarch64; then
    update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  if ! entry_ok; then
    [ -f "$ENTRY" ] && echo -1 > "$ENTRY"
    # The same magic and mask as Debian's /usr/share/binfmts/qemu-aarch64 (an ELF64 little-endian EM_AARCH64).
    magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
    mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    echo ":qemu-aarch64:M::$magic:$mask:$EMULATOR:F" > "$BINFMT/register" \
      || fail "the kernel refused to register $EMULATOR for aarch64 binaries in $BINFMT/register"
  fi
  entry_ok || fail "qemu-aarch64 is not registered with the F flag in $ENTRY:" "$(tr '\n' ' ' < "$ENTRY" 2>/dev/null)"
fi
echo "binfmt: qemu-aarch64 registered ($(grep '^flags' "$ENTRY"))"

# -- 2. the roots ------------------------------------------------------------
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"

root_ok() {  # ROOT VERSION: its python3 is an aarch64 python VERSION with a working standard library
  local check="import platform, sys, ssl, ctypes, sqlite3, zlib
assert platform.machine() == 'aarch64', platform.machine()
assert '%d.%d' % sys.version_info[:2] == '$2', sys.version"
  [ -x "$1/usr/bin/python$2" ] && chroot "$1" "/usr/bin/python$2" -I -c "$check" 2>/dev/null
}

make_root() {  # SUITE VERSION; run in a subshell of its own (its trap is the subshell's)
  local root="$CACHE/arm64-$1" log="$CACHE/arm64-$1.debootstrap.log"
  if root_ok "$root" "$2"; then
    echo "arm64 root $root (python$2): present"
    return
  fi
  mkdir -p "$CACHE"
  partial="$root.partial.$$"
  trap 'rm -rf "$partial"' EXIT
  rm -rf "$partial"
  # With the F-flag handler, debootstrap runs the aarch64 second stage itself.
  if ! debootstrap --arch=arm64 --variant=minbase --include=python3 "$1" "$partial" "$mirror" > "$log" 2>&1; then
    tail -5 "$log" >&2
    fail "debootstrap of $1 (arm64) failed; the whole log: $log"
  fi
  rm -f "$log"
  rm -rf "$partial/var/cache/apt/archives"/*.deb
  root_ok "$partial" "$2" || { fail "the new $1 root has no working aarch64 python$2"; }
  rm -rf "$root"
  mv "$partial" "$root"
  echo "arm64 root $root (python$2): built"
}

(make_root bookworm 3.11) &
bookworm=$!
(make_root trixie 3.13) &
trixie=$!
status=0
wait "$bookworm" || status=1
wait "$trixie" || status=1
exit "$status"
