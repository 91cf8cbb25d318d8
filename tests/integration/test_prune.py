"""``layers prune`` against a real moto server over HTTP: what a deploy may still need is never deleted.

The layer versions, the functions that use them, the SSM ``latest``
parameter and the IAM role moto wants for a function are made with boto3
against moto directly; the CLI runs as a subprocess behind the recording
fault proxy, so "nothing deleted" and "nothing asked" are what the proxy saw.
moto's ListFunctions returns Layers (and every published function version
with FunctionVersion=ALL) but ignores MaxItems and Marker and never sends a
NextMarker; the paging test puts ``Pager`` in front of Lambda, which pages
moto's whole answer as Lambda does (at most 50 a page, an opaque NextMarker).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest

from builder.publish.manifest import Entry, Manifest, manifest_path
from tests.conftest import ROOT
from tests.integration.aws_fixtures import make_client

pytestmark = pytest.mark.integration
LAYERS = [sys.executable, "-m", "builder"]
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's


def zip_bytes(text: str = "x = 1\n") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/x.py", text)
    return buffer.getvalue()


class Account:
    """What a team's account holds, made straight in moto: layer versions, functions, SSM parameters."""

    def __init__(self, moto_server) -> None:
        moto_server.reset()
        self.url = moto_server.url
        self.lam = make_client("lambda", REGION, self.url)
        self._role = None

    def publish(self, count: int, name: str = "tiny") -> list[str]:
        return [self.lam.publish_layer_version(LayerName=name, Content={"ZipFile": zip_bytes(f"v = {i}\n")},
                                               CompatibleRuntimes=["python3.11"])["LayerVersionArn"]
                for i in range(count)]

    def function(self, name: str, layers: list[str]) -> None:
        if self._role is None:
            iam = make_client("iam", REGION, self.url)
            self._role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        self.lam.create_function(FunctionName=name, Runtime="python3.11", Role=self._role, Handler="x.h",
                                 Code={"ZipFile": zip_bytes()}, Layers=layers)

    def versions(self, name: str = "tiny") -> list[int]:
        return sorted((v["Version"] for v in self.lam.list_layer_versions(LayerName=name)["LayerVersions"]),
                      reverse=True)

    def parameter(self, name: str, value: str) -> None:
        make_client("ssm", REGION, self.url).put_parameter(Name=name, Value=value, Type="String")


def write_manifest(work: Path, version: int, name: str = "tiny") -> None:
    Manifest(manifest_path(work / "published", "tiny"), "tiny").record(Entry(
        layer_name=name, architecture="x86_64", region=REGION, arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}:{version}",
        version=version, sha256="0" * 64, code_sha256="A" * 43 + "=", lock_digest="0" * 64,
        published_at="2026-01-01T00:00:00Z"))


def layers(*args: str, cwd: Path, endpoint: str, lambda_endpoint: str | None = None,
           **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAYERS_AWS_"))}
    environment.update({
        "PYTHONPATH": str(ROOT), "COLUMNS": "250", "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
        "LAYERS_AWS_BASE_DELAY": "0.05",
        "AWS_CONFIG_FILE": str(cwd / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "aws-credentials"),
    })
    if lambda_endpoint:
        environment["AWS_ENDPOINT_URL_LAMBDA"] = lambda_endpoint
    environment.update(env)
    return subprocess.run([*LAYERS, *args, "--manifests", str(cwd / "published")], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=environment, check=False)


def rows(stdout: str) -> dict[int, str]:
    """The table's decision for each version (rich draws the cells between '│')."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) >= 5 and cells[2].isdigit():
            found[int(cells[2])] = cells[4]
    return found


@pytest.fixture
def proxy(moto_server, fault_proxy):
    fault_proxy.clear()
    return fault_proxy


def test_a_version_a_function_uses_survives_and_the_dry_run_says_why(moto_server, proxy, tmp_path):
    account = Account(moto_server)
    v1, _, _ = account.publish(3)
    account.function("my-fn", [v1])
    write_manifest(tmp_path, 3)

    dry = layers("prune", "tiny", "--keep", "1", "--dry-run", cwd=tmp_path, endpoint=proxy.url)
    assert dry.returncode == 0, dry.stderr
    assert rows(dry.stdout) == {3: "keep: manifest's current; newest 1", 2: "delete: beyond the newest 1",
                                1: "keep: used by function my-fn (us-east-1)"}, dry.stdout
    assert "would delete 1 of 3 version(s)" in dry.stdout
    assert account.versions() == [3, 2, 1]
    assert proxy.operations() == ["ListLayerVersions", "GetParameter", "ListFunctions"]
    listing = next(s for s in proxy.requests if s.operation == "ListFunctions")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(listing.path).query) == {"FunctionVersion": ["ALL"],
                                                                                 "MaxItems": ["50"]}
    # GetParameter found no /layers/tiny/x86_64/latest: no protection, and no error.

    proxy.clear()
    done = layers("prune", "tiny", "--keep", "1", "--json", cwd=tmp_path, endpoint=proxy.url)
    assert done.returncode == 0, done.stderr
    assert account.versions() == [3, 1]
    assert proxy.operations(operation="DeleteLayerVersion") == ["DeleteLayerVersion"]
    outcome = {d["version"]: (d["action"], d["outcome"], d["reasons"]) for d in json.loads(done.stdout)["decisions"]}
    assert outcome == {3: ("keep", "kept", ["manifest's current", "newest 1"]),
                       2: ("delete", "deleted", ["beyond the newest 1"]),
                       1: ("keep", "kept", ["used by function my-fn (us-east-1)"])}


def test_ssm_latest_a_published_function_version_and_age_each_keep_a_version(moto_server, proxy, tmp_path):
    account = Account(moto_server)
    v1, v2, v3, v4, _ = account.publish(5)
    account.function("api", [v1])
    account.lam.publish_version(FunctionName="api")          # api:1 keeps version 1 for a rollback
    account.lam.update_function_configuration(FunctionName="api", Layers=[v4])
    account.parameter("/team/layers/tiny/x86_64/latest", v3)  # under the prefix asked for
    account.parameter("/layers/tiny/x86_64/latest", v2)       # the default prefix: read only without --ssm-prefix
    write_manifest(tmp_path, 5)

    dry = layers("prune", "tiny", "--keep", "1", "--ssm-prefix", "/team/layers", "--dry-run", cwd=tmp_path,
                 endpoint=proxy.url)
    assert dry.returncode == 0, dry.stderr
    assert rows(dry.stdout) == {5: "keep: manifest's current; newest 1", 4: "keep: used by function api (us-east-1)",
                                3: "keep: SSM latest", 2: "delete: beyond the newest 1",
                                1: "keep: used by function api:1 (us-east-1)"}, dry.stdout

    # Everything was published a moment ago: younger than 1h, so nothing may go, and with nothing to delete
    # the costly function listing is not made at all.
    proxy.clear()
    young = layers("prune", "tiny", "--keep", "1", "--older-than", "1h", cwd=tmp_path, endpoint=proxy.url)
    assert young.returncode == 0, young.stderr
    decided = rows(young.stdout)
    assert decided[4] == "keep: under an hour old, younger than 1h" and len(decided) == 5, young.stdout
    assert decided[2] == "keep: SSM latest; under an hour old, younger than 1h"  # the default prefix, this time
    assert "DeleteLayerVersion" not in proxy.operations() and "ListFunctions" not in proxy.operations()
    assert account.versions() == [5, 4, 3, 2, 1]

    done = layers("prune", "tiny", "--keep", "1", "--ssm-prefix", "/team/layers", cwd=tmp_path, endpoint=proxy.url)
    assert done.returncode == 0, done.stderr
    assert account.versions() == [5, 4, 3, 1]
    assert "deleted 1 of 5 version(s)" in done.stdout


def test_a_failed_deletion_is_said_the_others_still_made_and_a_rerun_finishes(moto_server, proxy, tmp_path):
    account = Account(moto_server)
    account.publish(4)
    other = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:other:9"
    account.parameter("/layers/tiny/x86_64/latest", other)  # names no version of tiny: protects nothing, said
    write_manifest(tmp_path, 4)
    proxy.add_fault("error500", service="lambda", operation="DeleteLayerVersion", times=1)
    first = layers("prune", "tiny", "--keep", "1", cwd=tmp_path, endpoint=proxy.url, LAYERS_AWS_MAX_ATTEMPTS="1")
    assert first.returncode == 7 and "Traceback" not in first.stderr, first.stdout + first.stderr
    assert "1 version(s) could not be deleted; run the same command again" in first.stderr
    assert (f"notice: /layers/tiny/x86_64/latest in us-east-1 holds {other!r}, no listed version of tiny: "
            "it protects nothing") in first.stderr
    assert "failed: DeleteLayerVersion in us-east-1 failed after 1 attempts: ServiceException" in first.stdout
    assert account.versions() == [4, 3] and "deleted 2 of 4 version(s); 1 failed" in first.stdout, first.stdout
    again = layers("prune", "tiny", "--keep", "1", cwd=tmp_path, endpoint=proxy.url)
    assert again.returncode == 0, again.stderr
    assert account.versions() == [4]


class Pager:
    """Lambda's ListFunctions paging over moto's one-page answer; everything else is passed on untouched.

    ``circle``: answer every page with the same NextMarker, as a broken endpoint might.
    """

    def __init__(self, upstream: str, circle: bool = False) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.circle = circle
        self.pages: list[dict[str, list[str]]] = []   # the query of each ListFunctions asked
        pager = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._pass()

            do_POST = do_DELETE = do_PUT = do_GET

            def _pass(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                paged = self.command == "GET" and parts.path.rstrip("/") == "/2015-03-31/functions"
                path = self.path
                if paged:
                    pager.pages.append(query)
                    path = parts.path + "?" + urllib.parse.urlencode({"FunctionVersion": query["FunctionVersion"][0]})
                conn = http.client.HTTPConnection(pager.upstream.hostname, pager.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, path, body=body or None, headers=headers)
                answer = conn.getresponse()
                payload = answer.read()
                if paged and answer.status == 200:
                    payload = pager.page(json.loads(payload), query)
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                conn.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, everything: dict, query: dict[str, list[str]]) -> bytes:
        size = min(int(query.get("MaxItems", ["50"])[0]), 50)
        start = int(query["Marker"][0].removeprefix("page-")) if "Marker" in query else 0
        answer = {"Functions": everything["Functions"][start:start + size]}
        if self.circle:
            answer["NextMarker"] = "page-0"
        elif start + size < len(everything["Functions"]):
            answer["NextMarker"] = f"page-{start + size}"
        return json.dumps(answer).encode()

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crowded(moto_server, tmp_path):
    """56 functions, the one using version 1 made last: on ListFunctions' second page."""
    account = Account(moto_server)
    v1, v2, _ = account.publish(3)
    for i in range(55):
        account.function(f"filler-{i:02d}", [v2] if i == 0 else [])
    account.function("last-fn", [v1])
    write_manifest(tmp_path, 3)
    return account


def test_a_function_on_the_second_page_still_keeps_its_version(crowded, proxy, tmp_path):
    with Pager(proxy.url) as pager:
        done = layers("prune", "tiny", "--keep", "1", cwd=tmp_path, endpoint=proxy.url, lambda_endpoint=pager.url)
    assert done.returncode == 0, done.stderr
    assert [(q.get("MaxItems"), q.get("Marker")) for q in pager.pages] == [(["50"], None), (["50"], ["page-50"])]
    assert rows(done.stdout)[1] == "keep: used by function last-fn (us-east-1)", done.stdout
    assert rows(done.stdout)[2] == "keep: used by function filler-00 (us-east-1)", done.stdout
    assert crowded.versions() == [3, 2, 1]  # nothing was beyond what the functions use


def test_an_endpoint_that_pages_in_a_circle_stops_prune_before_any_deletion(crowded, proxy, tmp_path):
    crowded.lam.delete_function(FunctionName="filler-00")  # version 2 is then a candidate
    with Pager(proxy.url, circle=True) as pager:
        result = layers("prune", "tiny", "--keep", "1", cwd=tmp_path, endpoint=proxy.url, lambda_endpoint=pager.url)
    assert result.returncode == 7, result.stdout + result.stderr
    assert "gave the same NextMarker twice" in result.stderr and "Traceback" not in result.stderr
    assert len(pager.pages) == 2 and "DeleteLayerVersion" not in proxy.operations()
    assert crowded.versions() == [3, 2, 1]


@pytest.mark.parametrize("args, words", [
    (["--older-than", "30"], ["--older-than '30' is not an age"]),
    (["--older-than", "30m"], ["--older-than '30m'"]),
    (["--older-than", "0d"], ["--older-than '0d'"]),
    (["--older-than", "1.5d"], ["--older-than '1.5d'"]),
    (["--older-than", "3651d"], ["--older-than 3651d is over 3,650 days"]),
    (["--older-than", ""], ["--older-than ''"]),
    (["--ssm-prefix", "layers"], ["--ssm-prefix 'layers' is not an SSM parameter path"]),
    (["--ssm-prefix", "/aws/layers"], ["--ssm-prefix '/aws/layers'"]),
    (["--ssm-prefix", "/a b"], ["--ssm-prefix '/a b'"]),
    (["--ssm-prefix", ""], ["--ssm-prefix ''"]),
    (["--ssm-prefix", "/a/b/c/d/e/f/g/h/i"], ["--ssm-prefix '/a/b/c/d/e/f/g/h/i'"]),
])
def test_a_bad_older_than_or_ssm_prefix_is_refused_before_any_request(proxy, tmp_path, args, words):
    write_manifest(tmp_path, 1)
    result = layers("prune", "tiny", "--keep", "1", *args, cwd=tmp_path, endpoint=proxy.url)
    shown = result.stdout + result.stderr
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in shown, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), shown
    assert all(word in lines[0] for word in words), shown
    assert proxy.requests == []
