#!/usr/bin/env bash
# Build the local base image the Docker tests use (no registry is reachable
# here, so nothing can be pulled). It meets the base-image contract: the
# runtime's pythonX.Y with pip and headers, binutils strip, a C compiler, and a
# C++ one (GCC 12: tests/integration/test_symbol_ceilings.py compiles a C++
# extension whose libstdc++ needs are newer than Amazon Linux 2's). Debian
# bookworm's Python is 3.11, so it stands in for the python3.11 runtime.
# Reused when already present and complete.
set -euo pipefail
IMAGE="${LAYERS_TEST_BASE_IMAGE:-layers-test-base:bookworm}"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  if docker run --rm "$IMAGE" sh -c 'test -f /usr/include/python3.11/Python.h && command -v g++' >/dev/null; then
    echo "test base image $IMAGE: present"
    exit 0
  fi
  echo "test base image $IMAGE: present but without Python headers or g++; building it again"
  docker image rm -f "$IMAGE" >/dev/null
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase \
  --include=python3,python3-dev,python3-pip,python3-venv,binutils,gcc,g++,libc6-dev,ca-certificates \
  bookworm "$root" "$mirror" >/dev/null
tar -C "$root" -c . | docker import - "$IMAGE" >/dev/null
echo "test base image $IMAGE: built"
