"""Fixtures for tests that talk real HTTP to a local moto server, optionally through the fault proxy.

Plain fixtures, imported by whoever needs them (a conftest or a test module):

    from tests.integration.aws_fixtures import moto_server, fault_proxy  # noqa: F401

``moto_server``  session-scoped ``MotoServer`` (one ``moto_server`` process for the run); its
                 state is shared by every test: use unique names or call ``moto_server.reset()``.
``fault_proxy``  a fresh ``FaultProxy`` in front of it for each test (no rules, no records, no
                 delay); rules and records are cleared again when the test ends.
``aws_client``   a factory: ``aws_client("lambda", "eu-west-1", endpoint_url=...)``.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from tests.support.fault_proxy import FaultProxy
from tests.support.moto_server import MotoServer

DUMMY_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}

# botocore's "max_attempts" counts *retries* (max_attempts=1 is two attempts);
# "total_max_attempts" counts attempts: 1 means a fault reaches the caller unretried.
NO_RETRIES = {"total_max_attempts": 1, "mode": "standard"}


def make_client(service: str, region: str, endpoint_url: str, *, retries: dict | None = None, **config):
    """A boto3 client for ``service`` in ``region`` talking to ``endpoint_url`` with dummy credentials."""
    if service == "s3":
        config.setdefault("s3", {"addressing_style": "path"})
    cfg = Config(retries=retries or NO_RETRIES, connect_timeout=5, read_timeout=30, **config)
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint_url, config=cfg, **DUMMY_CREDENTIALS)


@pytest.fixture(scope="session")
def moto_server():
    with MotoServer() as server:
        yield server


@pytest.fixture
def fault_proxy(moto_server):
    with FaultProxy(moto_server.url) as proxy:
        yield proxy
        proxy.clear()


@pytest.fixture
def aws_client():
    return make_client
