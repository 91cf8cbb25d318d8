"""The fault proxy between boto3 and a real moto_server: forwarding, records, injected faults, delay.

These tests pin down what botocore does with each fault, which is what the layer publisher's
retry logic will be written against.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import time
import urllib.parse
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError
from urllib3.exceptions import ProtocolError

from tests.integration.aws_fixtures import make_client
from tests.support.fault_proxy import FaultProxy, Seen
from tests.support.moto_server import MotoServer

pytestmark = pytest.mark.integration

FIVE_MB = 5 * 1024 * 1024


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def layer_zip(size: int = 2048) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("python/payload.bin", os.urandom(size))
    return buffer.getvalue()


def test_forwards_every_request_and_records_service_region_operation(fault_proxy):
    s3 = make_client("s3", "eu-west-1", fault_proxy.url)
    lam = make_client("lambda", "eu-central-1", fault_proxy.url)
    sts = make_client("sts", "us-east-1", fault_proxy.url)
    ec2 = make_client("ec2", "ap-south-1", fault_proxy.url)
    bucket, layer = unique("bucket"), unique("layer")
    body = os.urandom(FIVE_MB)  # large enough for botocore to send "Expect: 100-continue"

    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.head_bucket(Bucket=bucket)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    put = s3.put_object(Bucket=bucket, Key="layers/a.zip", Body=body, ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=bucket, Key="layers/a.zip", ChecksumMode="ENABLED")
    got = s3.get_object(Bucket=bucket, Key="layers/a.zip")["Body"].read()

    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert put["ChecksumSHA256"] == head["ChecksumSHA256"] == sha
    assert head["ContentLength"] == FIVE_MB  # HEAD keeps the upstream Content-Length
    assert got == body

    zipped = layer_zip()
    version = lam.publish_layer_version(LayerName=layer, Content={"ZipFile": zipped},
                                        CompatibleRuntimes=["python3.11"])["Version"]
    lam.list_layer_versions(LayerName=layer)
    lam.get_layer_version(LayerName=layer, VersionNumber=version)
    lam.add_layer_version_permission(LayerName=layer, VersionNumber=version, StatementId="public",
                                     Action="lambda:GetLayerVersion", Principal="*")
    lam.get_layer_version_policy(LayerName=layer, VersionNumber=version)
    lam.delete_layer_version(LayerName=layer, VersionNumber=version)
    assert sts.get_caller_identity()["Account"]
    assert ec2.describe_regions()["Regions"]

    seen = fault_proxy.requests
    assert all(s.fault is None for s in seen)
    assert [(s.region, s.operation) for s in seen if s.service == "s3"] == [
        ("eu-west-1", op) for op in ("CreateBucket", "HeadBucket", "PutPublicAccessBlock",
                                     "PutBucketEncryption", "PutObject", "HeadObject", "GetObject")]
    assert [(s.region, s.operation) for s in seen if s.service == "lambda"] == [
        ("eu-central-1", op) for op in ("PublishLayerVersion", "ListLayerVersions", "GetLayerVersion",
                                        "AddLayerVersionPermission", "GetLayerVersionPolicy",
                                        "DeleteLayerVersion")]
    assert Seen("POST", "/", "sts", "us-east-1", "GetCallerIdentity") in seen
    assert Seen("POST", "/", "ec2", "ap-south-1", "DescribeRegions") in seen
    assert Seen("PUT", f"/{bucket}?publicAccessBlock", "s3", "eu-west-1", "PutPublicAccessBlock") in seen
    assert Seen("DELETE", f"/2018-10-31/layers/{layer}/versions/{version}", "lambda", "eu-central-1",
                "DeleteLayerVersion") in seen


def test_keep_alive_connections_are_reused(fault_proxy):
    lam = make_client("lambda", "eu-west-1", fault_proxy.url)
    for _ in range(5):
        lam.list_layers()
    assert len(fault_proxy.requests) == 5
    assert fault_proxy.connections == 1


def test_throttle_is_a_too_many_requests_client_error_with_retry_after(fault_proxy):
    lam = make_client("lambda", "eu-west-1", fault_proxy.url)
    layer = unique("layer")
    fault_proxy.add_fault("throttle", service="lambda", operation="PublishLayerVersion", retry_after=0.2)

    with pytest.raises(ClientError) as caught:
        lam.publish_layer_version(LayerName=layer, Content={"ZipFile": layer_zip()})

    err = caught.value
    assert isinstance(err, lam.exceptions.TooManyRequestsException)
    assert err.response["Error"]["Code"] == "TooManyRequestsException"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    # botocore's Lambda model maps retryAfterSeconds to the Retry-After *header* and puts the
    # modeled fields at the top level of err.response, as strings; not in err.response["Error"].
    assert err.response["retryAfterSeconds"] == "0.2"
    assert err.response["Reason"] == "CallerRateLimitExceeded"
    assert "retryAfterSeconds" not in err.response["Error"]
    # The faulted request never reached moto; the next one goes through.
    assert lam.list_layer_versions(LayerName=layer)["LayerVersions"] == []
    assert [s.fault for s in fault_proxy.requests] == ["throttle", None]


def test_rules_match_on_every_given_criterion_and_fire_times_times(fault_proxy):
    west = make_client("lambda", "eu-west-1", fault_proxy.url)
    east = make_client("lambda", "us-east-1", fault_proxy.url)
    fault_proxy.add_fault("throttle", service="lambda", operation="ListLayers", region="us-east-1", times=2)

    west.list_layers()                            # other region: forwarded
    west.list_layer_versions(LayerName="x")       # other operation: forwarded
    for _ in range(2):
        with pytest.raises(east.exceptions.TooManyRequestsException):
            east.list_layers()
    east.list_layers()                            # rule spent

    assert [(s.region, s.operation, s.fault) for s in fault_proxy.requests] == [
        ("eu-west-1", "ListLayers", None),
        ("eu-west-1", "ListLayerVersions", None),
        ("us-east-1", "ListLayers", "throttle"),
        ("us-east-1", "ListLayers", "throttle"),
        ("us-east-1", "ListLayers", None),
    ]
    fault_proxy.clear()
    assert fault_proxy.requests == []
    with pytest.raises(ValueError):
        fault_proxy.add_fault("timeout")


def test_error500_is_a_500_service_exception_or_s3_internal_error(fault_proxy):
    lam = make_client("lambda", "eu-west-1", fault_proxy.url)
    s3 = make_client("s3", "eu-west-1", fault_proxy.url)
    bucket = unique("bucket")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    fault_proxy.add_fault("error500", service="lambda")
    fault_proxy.add_fault("error500", service="s3", operation="PutObject")

    with pytest.raises(ClientError) as lambda_error:
        lam.publish_layer_version(LayerName=unique("layer"), Content={"ZipFile": layer_zip()})
    with pytest.raises(ClientError) as s3_error:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data")

    assert isinstance(lambda_error.value, lam.exceptions.ServiceException)
    assert lambda_error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert lambda_error.value.response["Error"] == {"Code": "ServiceException", "Message": "injected"}
    assert s3_error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert s3_error.value.response["Error"]["Code"] == "InternalError"


def test_reset_during_a_5mb_s3_upload_is_a_connection_closed_error(fault_proxy):
    s3 = make_client("s3", "eu-west-1", fault_proxy.url)
    bucket = unique("bucket")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    body = os.urandom(FIVE_MB)
    fault_proxy.add_fault("reset", service="s3", operation="PutObject")

    with pytest.raises(ConnectionClosedError) as caught:
        s3.put_object(Bucket=bucket, Key="layer.zip", Body=body)

    # botocore wraps urllib3's ProtocolError('Connection aborted.', ...) in ConnectionClosedError,
    # a BotoCoreError (not a ClientError): there is no HTTP status.
    assert isinstance(caught.value.kwargs["error"], ProtocolError)
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="layer.zip")  # nothing was stored
    assert missing.value.response["Error"]["Code"] == "404"
    s3.put_object(Bucket=bucket, Key="layer.zip", Body=body)  # the pool recovers
    assert s3.get_object(Bucket=bucket, Key="layer.zip")["Body"].read() == body
    assert [(s.operation, s.fault) for s in fault_proxy.requests][1:] == [
        ("PutObject", "reset"), ("HeadObject", None), ("PutObject", None), ("GetObject", None)]


def test_reset_during_a_lambda_publish_is_a_connection_closed_error(fault_proxy):
    lam = make_client("lambda", "eu-west-1", fault_proxy.url)
    layer = unique("layer")
    fault_proxy.add_fault("reset", operation="PublishLayerVersion")

    with pytest.raises(ConnectionClosedError) as caught:
        lam.publish_layer_version(LayerName=layer, Content={"ZipFile": layer_zip(256 * 1024)})

    assert isinstance(caught.value.kwargs["error"], ProtocolError)
    assert lam.list_layer_versions(LayerName=layer)["LayerVersions"] == []


def test_botocore_max_attempts_1_means_one_retry_that_hides_a_single_fault(fault_proxy):
    # The legacy "max_attempts" key counts retries, so {"max_attempts": 1} makes two attempts.
    lam = make_client("lambda", "eu-west-1", fault_proxy.url,
                      retries={"max_attempts": 1, "mode": "standard"})
    layer = unique("layer")
    fault_proxy.add_fault("reset", operation="PublishLayerVersion")

    published = lam.publish_layer_version(LayerName=layer, Content={"ZipFile": layer_zip()})

    assert published["Version"] == 1
    assert published["ResponseMetadata"]["RetryAttempts"] == 1
    assert [s.fault for s in fault_proxy.requests] == ["reset", None]


def test_delay_is_applied_concurrently(moto_server):
    delay = 0.4
    with FaultProxy(moto_server.url, delay=delay) as proxy:
        lam = make_client("lambda", "eu-west-1", proxy.url, max_pool_connections=16)
        started = time.monotonic()
        lam.list_layers()
        single = time.monotonic() - started
        proxy.clear()

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: lam.list_layers(), range(8)))
        elapsed = time.monotonic() - started

    assert single >= delay
    assert len(proxy.requests) == 8
    assert delay <= elapsed < 2 * delay + 0.5, f"8 concurrent requests took {elapsed:.2f}s"


def test_chunked_request_body_is_forwarded_dechunked(fault_proxy):
    s3 = make_client("s3", "us-east-1", fault_proxy.url)
    bucket = unique("bucket")
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(300_000)
    netloc = urllib.parse.urlsplit(fault_proxy.url).netloc
    conn = http.client.HTTPConnection(netloc, timeout=10)
    # moto does not check signatures: a well-formed credential scope is enough.
    auth = ("AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=" + "0" * 64)
    conn.request("PUT", f"/{bucket}/chunked.bin", body=iter([data[:100_000], data[100_000:]]),
                 headers={"Authorization": auth, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
                 encode_chunked=True)
    response = conn.getresponse()
    response.read()
    conn.close()

    assert response.status == 200
    assert s3.get_object(Bucket=bucket, Key="chunked.bin")["Body"].read() == data
    assert fault_proxy.requests[1] == Seen("PUT", f"/{bucket}/chunked.bin", "s3", "us-east-1", "PutObject")


def test_moto_server_is_stopped_even_when_the_body_raises():
    with pytest.raises(RuntimeError):
        with MotoServer() as server:
            process = server.process
            assert server.running
            raise RuntimeError("boom")
    assert process.poll() is not None
    assert not server.running
