#!/usr/bin/env bash
# Build the stand-in for Lambda's python3.11 runtime image that the runtime-image
# tests use (no registry is reachable here, so public.ecr.aws/lambda/python:3.11
# cannot be pulled): the test base image cut down to the system libraries that
# builder/lambda_os.toml lists for Amazon Linux 2, without a C toolchain. The
# work is in tests/support/runtime_image.py (pyelftools, from the venv); the
# image is reused while the table, that script and the base image are unchanged.
# Needs the test base image (.ci/test-base-image.sh) and a running engine.
#
#   bash .ci/test-runtime-image.sh          layers-test-runtime:python3.11 (x86_64)
#   bash .ci/test-runtime-image.sh arm64    layers-test-runtime:python3.11-arm64, from
#                                           the arm64 base image (.ci/test-base-image.sh arm64),
#                                           cut down to the arm64 table; made under QEMU
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory .venv/.installed >/dev/null
.venv/bin/python -m tests.support.runtime_image ${1:+--arch "$1"}
