#!/usr/bin/env bash
# Build the local base image the Docker tests use (no registry is reachable
# here, so nothing can be pulled). It meets the base-image contract: the
# runtime's pythonX.Y with pip and headers, binutils strip, a C compiler, and a
# C++ one (GCC 12: tests/integration/test_symbol_ceilings.py compiles a C++
# extension whose libstdc++ needs are newer than Amazon Linux 2's). Debian
# bookworm's Python is 3.11, so it stands in for the python3.11 runtime.
# Reused when already present and complete.
#
#   bash .ci/test-base-image.sh          layers-test-base:bookworm (amd64)
#   bash .ci/test-base-image.sh arm64    layers-test-base:bookworm-arm64
#
# arm64: the same packages for Debian's arm64, in an image recorded as
# linux/arm64. Its programs run under QEMU's user-mode emulator, so the aarch64
# handler must be registered in binfmt_misc with the F flag
# (.ci/test-arm64-roots.sh does it; so does this script, where it can): F makes
# the kernel open the emulator at registration, so it also runs inside
# containers, whose file systems lack it. With the handler, debootstrap runs
# its aarch64 second stage itself (about 4 minutes on two cores, measured;
# the image is reused afterwards).
set -euo pipefail
ARCH="${1:-x86_64}"
case "$ARCH" in
  x86_64|amd64) ARCH=x86_64; PLATFORM=linux/amd64; DEBIAN_ARCH=""  # the host's, as it always was
    IMAGE="${LAYERS_TEST_BASE_IMAGE:-layers-test-base:bookworm}" ;;
  arm64|aarch64) ARCH=arm64; PLATFORM=linux/arm64; DEBIAN_ARCH=arm64
    IMAGE="${LAYERS_TEST_BASE_IMAGE_ARM64:-layers-test-base:bookworm-arm64}" ;;
  *) echo "test-base-image: unknown architecture $ARCH (x86_64 or arm64)" >&2; exit 2 ;;
esac

if [ "$ARCH" = arm64 ]; then
  # The handler, idempotently: Debian's qemu-user-static registers it with F (flags: PF) via binfmt-support.
  entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
  handler_ok() { [ -f "$entry" ] && grep -qx enabled "$entry" && grep -q '^flags:.*F' "$entry"; }
  if ! handler_ok; then
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    command -v update-binfmts >/dev/null && update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  handler_ok || { echo "test-base-image: no aarch64 binfmt handler with the F flag in $entry;" \
                       "run .ci/test-arm64-roots.sh as root (it installs qemu-user-static and registers it)" >&2; exit 1; }
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  if [ "$(docker image inspect --format '{{.Architecture}}' "$IMAGE")" = "${PLATFORM#linux/}" ] &&
     docker run --rm --platform "$PLATFORM" "$IMAGE" \
       sh -c 'test -f /usr/include/python3.11/Python.h && command -v g++' >/dev/null; then
    echo "test base image $IMAGE: present"
    exit 0
  fi
  echo "test base image $IMAGE: present but not $PLATFORM, or without Python headers or g++; building it again"
  docker image rm -f "$IMAGE" >/dev/null
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"
root=$(mktemp -d)
log="$root.debootstrap.log"
trap 'rm -rf "$root" "$log"' EXIT
started=$SECONDS
if ! debootstrap ${DEBIAN_ARCH:+--arch="$DEBIAN_ARCH"} --variant=minbase \
  --include=python3,python3-dev,python3-pip,python3-venv,binutils,gcc,g++,libc6-dev,ca-certificates \
  bookworm "$root" "$mirror" >"$log" 2>&1; then
  tail -20 "$log" >&2
  echo "test-base-image: debootstrap of bookworm ($ARCH) failed" >&2
  exit 1
fi
if [ "$ARCH" = x86_64 ]; then
  tar -C "$root" -c . | docker import - "$IMAGE" >/dev/null
else
  # Not `docker import --platform`: Docker 20.10 ignores it (outside experimental mode) and records the
  # engine's own architecture. A build FROM scratch for the platform, which ADD unpacks the root into, does not.
  rm -rf "$root/var/cache/apt/archives"/*.deb  # 200 MB of packages the image does not need
  context=$(mktemp -d)
  trap 'rm -rf "$root" "$log" "$context"' EXIT
  tar -C "$root" -c . > "$context/root.tar"
  printf 'FROM scratch\nADD root.tar /\n' > "$context/Dockerfile"
  # The classic builder: no registry, no buildx here (it warns that it is deprecated: kept out of the way).
  DOCKER_BUILDKIT=0 docker build -q --platform "$PLATFORM" -t "$IMAGE" "$context" >"$context/build.log" 2>&1 \
    || { tail -20 "$context/build.log" >&2; echo "test-base-image: docker build of $IMAGE failed" >&2; exit 1; }
fi
echo "test base image $IMAGE: built in $((SECONDS - started)) s"
