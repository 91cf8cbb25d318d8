"""A packed layer goes through ``layers publish`` as it is: no option, no step of its own.

The zip is a real pip build of a small packed recipe (six and idna, zstd);
moto over HTTP takes it. What Lambda holds afterwards (the published
version's content, fetched back from moto's S3 staging object) is the same
zip, and the layer it makes still unpacks and imports from a read-only copy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zipfile

import pytest

from builder.runner import Runner
from builder.verify.interpreters import find_interpreter
from tests.functional.test_packed_build import _build, _read_only_copy
from tests.integration.aws_fixtures import make_client
from tests.integration.test_publish import manifest, publish, server_versions

pytestmark = pytest.mark.integration
REGIONS = ("us-east-1", "eu-west-1")


def test_a_packed_layer_publishes_like_any_other_and_what_was_published_still_unpacks(
        moto_server, fault_proxy, tmp_path):
    moto_server.reset()
    zip_path, report = _build(tmp_path, "zstd", 9)
    assert report["pack"]["counted_bytes"] == report["budget"]["unzipped_bytes"]

    first = publish(str(zip_path), "--regions", ",".join(REGIONS), proxy=fault_proxy, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    code_sha256 = base64.b64encode(hashlib.sha256(zip_path.read_bytes()).digest()).decode()
    for region in REGIONS:
        [listed] = server_versions(moto_server, region)
        assert manifest(tmp_path)[region]["arn"] == listed["LayerVersionArn"]
        version = make_client("lambda", region, moto_server.url).get_layer_version(
            LayerName="tiny", VersionNumber=listed["Version"])
        assert version["Content"]["CodeSha256"] == code_sha256

    # What the region staged is what Lambda unpacks under /opt: the same bytes, and it still runs.
    s3 = make_client("s3", "eu-west-1", moto_server.url)
    [bucket] = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("eu-west-1")]
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    staged = tmp_path / "staged.zip"
    staged.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert staged.read_bytes() == zip_path.read_bytes()
    assert "python/layer_runtime/packed.tar.zst" in zipfile.ZipFile(staged).namelist()
    layer = _read_only_copy(staged, tmp_path / "opt")
    python = find_interpreter("3.11", Runner()).path
    run = subprocess.run([python, "-I", "-c", f"import sys; sys.path.insert(0, {str(layer)!r}); import idna, six; "
                          "print(idna.__file__)"], capture_output=True, text=True, timeout=120, check=False,
                         env={"PATH": os.environ["PATH"], "LAYER_UNPACK_DIR": str(tmp_path / "unpacked")})
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(tmp_path / "unpacked" / report["pack"]["id"]))

    # A second publish of the same packed zip changes nothing, as for any layer.
    fault_proxy.clear()
    again = publish(str(zip_path), "--regions", ",".join(REGIONS), "--json", proxy=fault_proxy, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert {o["status"] for o in json.loads(again.stdout)["outcomes"]} == {"unchanged"}
    assert fault_proxy.operations(operation="PublishLayerVersion") == []
