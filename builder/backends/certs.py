"""The CA certificates pip in a build container must trust: the host's.

Behind a TLS-intercepting proxy (corporate networks, this CI machine) pip in
a container fails with CERTIFICATE_VERIFY_FAILED: the proxy's CA is in the
host's trust store, not the image's. ``host_ca_bundle`` gathers what the host
trusts (the bundles named by SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT and
CURL_CA_BUNDLE, the system bundle, and extra CAs installed locally) into one
PEM text; the Docker backend mounts it read-only and points pip, requests,
OpenSSL and curl at it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

# Environment variables that name a CA bundle, in the order tools consult them.
BUNDLE_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")
# The system bundle of Debian/Ubuntu/Alpine, then RHEL/Fedora/Amazon Linux, then SUSE.
SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem")
# Where administrators drop extra CAs before running update-ca-certificates / update-ca-trust.
EXTRA_CA_DIRS = ("/usr/local/share/ca-certificates", "/etc/pki/ca-trust/source/anchors")
# Where the bundle is mounted in the container, and what is pointed at it there.
CONTAINER_PATH = "/etc/lambda-layer-builder/ca-bundle.pem"
CONTAINER_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.S)


def bundle_sources(environ: Mapping[str, str], system_bundles: Iterable[str] = SYSTEM_BUNDLES,
                   extra_dirs: Iterable[str] = EXTRA_CA_DIRS) -> list[Path]:
    """Existing files whose certificates the container should trust, without repeats."""
    candidates = [Path(environ[v]) for v in BUNDLE_VARIABLES if environ.get(v)]
    candidates += [Path(p) for p in system_bundles]
    for directory in map(Path, extra_dirs):
        if directory.is_dir():
            candidates += sorted(p for p in directory.rglob("*") if p.suffix in (".crt", ".pem"))
    seen: set[Path] = set()
    sources = []
    for path in candidates:
        resolved = path.resolve()
        if resolved in seen or not resolved.is_file():
            continue
        seen.add(resolved)
        sources.append(path)
    return sources


def merge_bundles(texts: Iterable[str]) -> str:
    """One PEM text holding every certificate of ``texts`` once, in first-seen order."""
    seen: set[str] = set()
    out = []
    for text in texts:
        for block in _PEM.findall(text):
            normal = "\n".join(line.strip() for line in block.strip().splitlines())
            if normal not in seen:
                seen.add(normal)
                out.append(normal)
    return "\n".join(out) + ("\n" if out else "")


def host_ca_bundle(environ: Mapping[str, str]) -> tuple[str, list[Path]]:
    """The merged PEM text and the files it came from ("" when the host has none)."""
    sources = bundle_sources(environ)
    texts = []
    for path in sources:
        try:
            texts.append(path.read_text(errors="replace"))
        except OSError:
            continue
    return merge_bundles(texts), sources


def container_environment() -> dict[str, str]:
    return {variable: CONTAINER_PATH for variable in CONTAINER_VARIABLES}
