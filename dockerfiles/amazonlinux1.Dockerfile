# Build image for Lambda runtimes on amazonlinux1. FROM is AWS SAM's build image
# for the runtime by default (public.ecr.aws/sam/build-pythonX.Y); any image
# meeting the base-image contract works (see dockerfiles/README.md).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PYTHON
# The contract, checked once at image build: the runtime's Python with pip and
# its headers, binutils strip, a C compiler, coreutils timeout. Missing tools are installed where yum exists.
RUN command -v strip >/dev/null || yum install -y binutils; \
    command -v cc >/dev/null || yum install -y gcc; \
    python${PYTHON} -m pip --version && strip --version >/dev/null && cc --version >/dev/null && \
    python${PYTHON} -c "import os, sys, sysconfig; h = os.path.join(sysconfig.get_paths()['include'], 'Python.h'); sys.exit(0 if os.path.exists(h) else 'no ' + h + ': the contract needs the Python headers')" && \
    command -v timeout >/dev/null
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 SOURCE_DATE_EPOCH=315532800
