"""Pure parts of the Docker backend: CA bundles, forwarded settings, engine version, base images."""

from __future__ import annotations

import pytest

from builder.backends.certs import CONTAINER_PATH, bundle_sources, container_environment, merge_bundles
from builder.backends.container import Container, check_engine_version
from builder.backends.docker import DockerBackend, forwarded_environment, resolve_base_image
from builder.backends.images import check_architecture, image_tag
from builder.errors import BuildError, ToolMissing, UsageError
from builder.runner import Runner

CERT_A = "-----BEGIN CERTIFICATE-----\nAAAA\nAAAA\n-----END CERTIFICATE-----\n"
CERT_B = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"


def test_bundles_named_by_the_environment_come_first_and_once(tmp_path):
    corporate = tmp_path / "corporate.pem"
    corporate.write_text(CERT_B)
    system = tmp_path / "system.crt"
    system.write_text(CERT_A)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "proxy.crt").write_text(CERT_B)
    (extra / "readme.txt").write_text("not a certificate")
    environ = {"SSL_CERT_FILE": str(corporate), "REQUESTS_CA_BUNDLE": str(corporate), "PIP_CERT": ""}
    sources = bundle_sources(environ, system_bundles=[str(system), str(tmp_path / "missing.crt")],
                             extra_dirs=[str(extra)])
    assert sources == [corporate, system, extra / "proxy.crt"]


def test_merged_bundle_holds_each_certificate_once():
    merged = merge_bundles([CERT_A + CERT_B, "junk\n" + CERT_B.replace("\n", "\r\n"), CERT_A])
    assert merged.count("BEGIN CERTIFICATE") == 2
    assert merged.index("AAAA") < merged.index("BBBB")
    assert merge_bundles(["no certificates here"]) == ""


def test_container_tools_all_point_at_the_mounted_bundle():
    env = container_environment()
    assert set(env) >= {"PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}
    assert set(env.values()) == {CONTAINER_PATH}


def test_forwarded_settings_drop_host_only_locations():
    environ = {"PIP_INDEX_URL": "https://pypi.corp.example/simple",
               "PIP_EXTRA_INDEX_URL": "file:///opt/pypi/simple https://extra.example/simple",
               "PIP_FIND_LINKS": "/opt/wheels", "HTTPS_PROXY": "http://proxy:3128", "HOME": "/root"}
    assert forwarded_environment(environ) == {
        "PIP_INDEX_URL": "https://pypi.corp.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://extra.example/simple",
        "HTTPS_PROXY": "http://proxy:3128",
    }
    assert forwarded_environment({"PIP_EXTRA_INDEX_URL": "file:///opt/pypi/simple"}) == {}


@pytest.mark.parametrize("version,ok", [
    ({"Version": "20.10.24", "ApiVersion": "1.41"}, True),
    ({"Version": "27.3.1", "ApiVersion": "1.47"}, True),
    ({"Version": "19.03.15", "ApiVersion": "1.40"}, False),
    ({"Version": "1.13.1", "ApiVersion": "1.26"}, False),
    ({}, False),
])
def test_engine_version_check(version, ok):
    if ok:
        check_engine_version(version)
    else:
        with pytest.raises(ToolMissing) as caught:
            check_engine_version(version)
        assert "too old" in caught.value.message and "--backend pip" in caught.value.hint


def test_base_image_template_takes_the_architecture():
    assert resolve_base_image("registry.corp/lambda-build:3.11-{arch}", "arm64") == "registry.corp/lambda-build:3.11-arm64"
    assert resolve_base_image("", "x86_64") is None and resolve_base_image(None, "x86_64") is None


def test_image_tag_follows_every_input():
    base = image_tag("FROM x", "sha256:1", "3.11")
    assert base == image_tag("FROM x", "sha256:1", "3.11")
    assert len({base, image_tag("FROM y", "sha256:1", "3.11"), image_tag("FROM x", "sha256:2", "3.11"),
                image_tag("FROM x", "sha256:1", "3.12")}) == 4


def test_base_image_of_another_architecture_is_refused():
    check_architecture({"Architecture": "arm64"}, "img", "arm64")
    with pytest.raises(BuildError) as caught:
        check_architecture({"Architecture": "amd64"}, "img", "arm64")
    assert "built for amd64, the target is arm64" in caught.value.message


def test_the_container_network_is_the_bridge_unless_another_is_named(tmp_path):
    assert DockerBackend(Runner(), tmp_path).network == "bridge"
    assert DockerBackend(Runner(), tmp_path, network="host").network == "host"
    for bad in ("host; rm", "container:other", ""):
        with pytest.raises(UsageError, match="unknown container network"):
            DockerBackend(Runner(), tmp_path, network=bad)
        with pytest.raises(UsageError, match="unknown container network"):
            Container("image", network=bad)


def test_the_test_run_caches_in_its_own_folder_never_the_users(own_cache_dir, tmp_path_factory):
    from builder.backends.select import cache_dir

    assert cache_dir() == own_cache_dir
    assert tmp_path_factory.getbasetemp() in cache_dir().parents
