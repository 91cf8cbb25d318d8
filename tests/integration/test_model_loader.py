"""layer_runtime.model_loader against moto's S3 over HTTP (through the proxy, which counts downloads)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

from builder.runner import Runner
from builder.runtime.model_loader import ChecksumMismatch, ModelCache, ModelTooLarge
from builder.verify.interpreters import find_interpreter
from tests.conftest import ROOT
from tests.integration.aws_fixtures import make_client

pytestmark = pytest.mark.integration
BUCKET = "models"
MB = 1 << 20


@pytest.fixture
def s3(moto_server, fault_proxy):
    moto_server.reset()
    fault_proxy.clear()
    direct = make_client("s3", "us-east-1", moto_server.url)
    direct.create_bucket(Bucket=BUCKET)
    models = {}
    for name, size in (("a.bin", 3 * MB), ("b.bin", 2 * MB), ("c.bin", 2 * MB)):
        data = os.urandom(size)
        direct.put_object(Bucket=BUCKET, Key=f"m/{name}", Body=data)
        models[name] = (f"s3://{BUCKET}/m/{name}", hashlib.sha256(data).hexdigest(), data)
    return make_client("s3", "us-east-1", fault_proxy.url), fault_proxy, models


def handler_for(cache: ModelCache, models):
    """A function serving two models, as a Lambda handler would."""

    def handler(event, context=None):
        uri, sha, _ = models[event["model"]]
        with open(cache.load(uri, sha256=sha), "rb") as model:
            return hashlib.sha256(model.read()).hexdigest()

    return handler


def test_two_models_and_warm_invocations_download_nothing(s3, tmp_path):
    client, proxy, models = s3
    cache = ModelCache(root=str(tmp_path / "tmp" / "models"), s3_client=client)
    handler = handler_for(cache, models)
    assert handler({"model": "a.bin"}) == models["a.bin"][1]
    assert handler({"model": "b.bin"}) == models["b.bin"][1]
    assert proxy.operations(operation="GetObject") == ["GetObject", "GetObject"]
    for _ in range(3):  # warm invocations
        assert handler({"model": "a.bin"}) == models["a.bin"][1]
        assert handler({"model": "b.bin"}) == models["b.bin"][1]
    assert len(proxy.operations(operation="GetObject")) == 2 and cache.downloads == 2


def test_a_corrupt_download_is_rejected_and_leaves_nothing(s3, tmp_path):
    client, _, models = s3
    root = tmp_path / "models"
    cache = ModelCache(root=str(root), s3_client=client)
    uri, _, _ = models["a.bin"]
    with pytest.raises(ChecksumMismatch, match="expected " + "0" * 64):
        cache.load(uri, sha256="0" * 64)
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_a_model_bigger_than_tmp_fails_clearly_before_downloading(s3, tmp_path):
    client, proxy, models = s3
    cache = ModelCache(root=str(tmp_path / "models"), budget_bytes=2 * MB, s3_client=client)
    uri, sha, _ = models["a.bin"]
    with pytest.raises(ModelTooLarge) as caught:
        cache.load(uri, sha256=sha)
    assert "ephemeral storage" in str(caught.value) and "3145728 bytes" in str(caught.value)
    assert proxy.operations(operation="GetObject") == []


def test_least_recently_used_model_is_evicted_when_tmp_is_full(s3, tmp_path):
    client, _, models = s3
    cache = ModelCache(root=str(tmp_path / "models"), budget_bytes=5 * MB, s3_client=client)
    a = cache.load(models["a.bin"][0], models["a.bin"][1])
    b = cache.load(models["b.bin"][0], models["b.bin"][1])
    os.utime(b, (1, 1))  # b used longest ago
    os.utime(a, None)
    c = cache.load(models["c.bin"][0], models["c.bin"][1])
    assert os.path.exists(a) and os.path.exists(c) and not os.path.exists(b)


def test_two_processes_asking_at_once_download_once(s3, tmp_path, fault_proxy):
    _, proxy, models = s3
    proxy.delay = 0.3  # both processes are surely inside load() together
    uri, sha, _ = models["a.bin"]
    script = textwrap.dedent(f"""
        import boto3, sys
        from botocore.config import Config
        from builder.runtime.model_loader import ModelCache
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url="{proxy.url}", aws_access_key_id="t",
                          aws_secret_access_key="t", config=Config(s3={{"addressing_style": "path"}}))
        cache = ModelCache(root=sys.argv[1], s3_client=s3)
        path = cache.load("{uri}", sha256="{sha}")
        print(cache.downloads, path)
    """)
    root = str(tmp_path / "shared-tmp")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, root], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert sorted(int(out.split()[0]) for out, _ in results) == [0, 1]
    assert len({out.split()[1] for out, _ in results}) == 1
    assert len(proxy.operations(operation="GetObject")) == 1


def test_the_loader_parses_with_python36():
    # tf18 runs on python3.6, and the loader ships in its layer.
    py36 = find_interpreter("3.6", Runner())
    assert py36 is not None, "python3.6 (pyenv) is needed: tf18's runtime"
    compiled = subprocess.run([py36.path, "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read())",
                               str(ROOT / "builder" / "runtime" / "model_loader.py")], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
