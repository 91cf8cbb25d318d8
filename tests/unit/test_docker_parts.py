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


# -- a base image that fails the contract: one line naming what it lacks, the build log in a file ----------------

def _contract_log(*output: str, code: int = 1, python: str = "3.12", os_name: str = "amazonlinux2023") -> list[dict]:
    """docker-py's build log of ``dockerfiles/<os>.Dockerfile`` whose RUN line printed ``output`` and failed."""
    from builder.backends.images import DOCKERFILES

    text = (DOCKERFILES / f"{os_name}.Dockerfile").read_text()
    run = " ".join(line.rstrip("\\").strip() for line in text.split("RUN ", 1)[1].split("\nENV")[0].splitlines())
    command = run.replace("${PYTHON}", python)
    failed = f"The command '/bin/sh -c {command}' returned a non-zero code: {code}"
    return [
        {"stream": "Step 1/5 : ARG BASE_IMAGE"}, {"stream": "\n"},
        {"stream": "Step 2/5 : FROM ${BASE_IMAGE}"}, {"stream": "\n"}, {"stream": " ---> 5f1c0bd8e5a2\n"},
        {"stream": "Step 3/5 : ARG PYTHON"}, {"stream": "\n"}, {"stream": " ---> Running in 0c3f5e1d2b7a\n"},
        {"stream": "Removing intermediate container 0c3f5e1d2b7a\n"}, {"stream": " ---> 9a8b7c6d5e4f\n"},
        {"stream": f"Step 4/5 : RUN {run}"}, {"stream": "\n"}, {"stream": " ---> Running in 4d2e6f8a0b1c\n"},
        *({"stream": line + "\n"} for line in output),
        {"errorDetail": {"code": code, "message": failed},
         "error": failed},
    ]


PIP_VERSION = "pip 23.0.1 from /usr/lib/python3/dist-packages/pip (python 3.11)"
NO_HEADERS = "no /usr/include/python3.12/Python.h: the contract needs the Python headers"


@pytest.mark.parametrize("output,code,missing", [
    (["/bin/sh: 1: python3.12: not found"], 127,
     "the image has no python3.12: the contract needs the runtime's Python on PATH"),
    (["/usr/bin/python3.12: No module named pip"], 1,
     "the image's python3.12 has no pip: the contract needs python3.12 -m pip"),
    (["/bin/sh: 1: yum: not found", PIP_VERSION.replace("3.11", "3.12"), "/bin/sh: 1: strip: not found"], 127,
     "the image has no strip: the contract needs binutils strip"),
    (["/bin/sh: 1: yum: not found", PIP_VERSION.replace("3.11", "3.12"), "/bin/sh: 1: cc: not found"], 127,
     "the image has no cc: the contract needs a C compiler as cc"),
    ([PIP_VERSION.replace("3.11", "3.12"), NO_HEADERS],
     1, "the image has no Python.h (/usr/include/python3.12/Python.h): the contract needs the Python headers"),
    ([PIP_VERSION.replace("3.11", "3.12")], 1, "the image has no timeout: the contract needs coreutils timeout"),
], ids=["python", "pip", "strip", "cc", "headers", "timeout"])
def test_the_contract_failure_names_what_the_image_lacks(output, code, missing):
    from builder.backends.images import build_log_text, contract_failure

    assert contract_failure(build_log_text(_contract_log(*output, code=code)), "3.12") == missing


def test_an_unknown_build_failure_gives_the_logs_decisive_line():
    from builder.backends.images import build_log_text, contract_failure

    log = build_log_text(_contract_log("E: Unable to locate package binutils", "cc: error: unrecognized option"))
    assert contract_failure(log, "3.12") == "cc: error: unrecognized option"


class _Images:
    """docker-py's ``client.images``: the base is there, the build image is not, and building it fails."""

    def __init__(self, build_log: list[dict]) -> None:
        self.build_log = build_log

    def get(self, name):
        import docker.errors

        if name.startswith("lambda-layer-builder/build:"):
            raise docker.errors.ImageNotFound(name)
        return type("Image", (), {"attrs": {"Id": "sha256:base", "Architecture": "amd64"}})()

    def build(self, **kwargs):
        import docker.errors

        raise docker.errors.BuildError(self.build_log[-1]["error"], iter(self.build_log))


def test_a_base_image_without_python_headers_fails_in_one_line_and_keeps_the_log(tmp_path):
    from builder.backends.images import ensure_build_image
    from builder.runtimes import get_runtime

    output = [PIP_VERSION.replace("3.11", "3.12"), NO_HEADERS]
    client = type("Client", (), {"images": _Images(_contract_log(*output))})()
    with pytest.raises(BuildError) as caught:
        ensure_build_image(client, get_runtime("python3.12"), "x86_64", "debian:bookworm", log_dir=tmp_path)
    error = caught.value
    assert error.message == ("the build image from debian:bookworm fails the base-image contract: the image has no "
                             "Python.h (/usr/include/python3.12/Python.h): the contract needs the Python headers")
    assert "\n" not in error.hint and "--base-image" in error.hint
    (log,) = tmp_path.glob("build-image-*.log")
    assert str(log) in error.hint
    assert "Step 4/5 : RUN" in log.read_text() and "returned a non-zero code: 1" in log.read_text()
