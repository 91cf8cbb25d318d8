"""Publishing's pure parts: checks before any AWS call, the plan, pruning, the rate limiter, the manifest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from builder.errors import BudgetError, UsageError, VerifyError
from builder.publish.artifact import Artifact
from builder.publish.aws import PublishedVersion, RateLimiter, _retry_after
from builder.publish.manifest import Entry, Manifest
from builder.publish.snippets import render
from builder.publish.plan import (
    Grant,
    PruneFacts,
    PublishRequest,
    check_request,
    layer_description,
    make_plan,
    plan_prune,
    staging_key,
)

CODE = "uqEPhBiY/EGKUhgz4BSnfTygHBWwxs3M5qDSiX5tu98="


def artifact(**changes) -> Artifact:
    base = Artifact(
        zip_path=Path("dist/np311/np311-python3.11-x86_64.zip"), report={}, recipe="np311", layer_name="np311",
        runtime="python3.11", arch="x86_64", sha256_hex="ba2a2909" + "0" * 56, code_sha256=CODE,
        zipped_bytes=22_455_644, unzipped_bytes=71_245_925, unzipped_budget=256_901_120, verified=True,
        verification="python3.11 in a container", lock_digest="acccaf588e48fbbe" + "0" * 48,
        builder_version="0.1.0", license="BSD-3-Clause", elf_files=50,
    )
    return dataclasses.replace(base, **changes)


REQUEST = PublishRequest(regions=("us-east-1", "eu-west-1"))


def test_a_good_request_passes():
    check_request(artifact(), REQUEST)


@pytest.mark.parametrize("changes,request_changes,error,words", [
    ({"unzipped_bytes": 256_901_121}, {}, BudgetError, "over its budget"),
    ({"verified": False}, {}, VerifyError, "was not verified"),
    ({"layer_name": "np 311"}, {}, UsageError, "not a valid Lambda layer name"),
    ({"layer_name": "x" * 141}, {}, UsageError, "not a valid Lambda layer name"),
    ({}, {"runtimes": ("python3.99",)}, UsageError, "not a Lambda Python runtime"),
    ({}, {"runtimes": ("nodejs20.x",)}, UsageError, "not a Lambda Python runtime"),
    ({}, {"runtimes": ("python3.11", "python3.12")}, UsageError, "compiled code for Python 3.11"),
    ({"runtime": "python3.6", "arch": "arm64", "layer_name": "tf18"}, {}, UsageError, "does not run on arm64"),
    ({"license": "x" * 513}, {}, UsageError, "licence is over 512"),
    ({"recipe": "r" * 200}, {}, UsageError, "description is over 256"),
    ({"zipped_bytes": 60_000_000}, {"direct_upload": True}, UsageError, "direct-upload limit"),
    ({}, {"regions": ("us-east-1", "eu-west1")}, UsageError, "not an AWS region"),
    ({}, {"regions": ("us-east-1", "us-east-1")}, UsageError, "listed twice"),
    ({}, {"grants": (Grant.account("1234"),)}, UsageError, "not an AWS account ID"),
    ({}, {"grants": (Grant.organization("org-1"),)}, UsageError, "not an organization ID"),
    ({}, {"bucket_template": "my-layers-{account}"}, UsageError, "has no {region}"),
    ({}, {"bucket_template": "My_Layers-{region}"}, UsageError, "not a valid S3 bucket name"),
    ({}, {"bucket_template": "layers-{acount}-{region}"}, UsageError, "not valid"),
])
def test_bad_requests_are_refused(changes, request_changes, error, words):
    with pytest.raises(error) as caught:
        check_request(artifact(**changes), dataclasses.replace(REQUEST, **request_changes))
    assert words in caught.value.message


def test_region_typo_suggests_the_region():
    with pytest.raises(UsageError) as caught:
        check_request(artifact(), dataclasses.replace(REQUEST, regions=("eu-west1",)))
    assert caught.value.hint == "did you mean 'eu-west-1'?"


def test_unverified_layer_may_be_forced_and_pure_layers_may_claim_more_runtimes():
    check_request(artifact(verified=False), dataclasses.replace(REQUEST, force=True))
    check_request(artifact(elf_files=0), dataclasses.replace(REQUEST, runtimes=("python3.11", "python3.12")))


def test_arm64_layers_get_their_own_name():
    assert artifact().published_name == "np311"
    assert artifact(arch="arm64", runtime="python3.12").published_name == "np311-arm64"


def test_description_names_recipe_lock_zip_and_builder():
    text = layer_description(artifact())
    assert "np311" in text and "acccaf588e48fbbe" in text and "ba2a2909" in text and "0.1.0" in text
    assert len(text) <= 256


def test_plan_publishes_where_the_zip_is_new_and_skips_where_it_is_there():
    same = PublishedVersion("arn:aws:lambda:us-east-1:1:layer:np311:4", 4, code_sha256=CODE)
    other = PublishedVersion("arn:aws:lambda:eu-west-1:1:layer:np311:2", 2, code_sha256="other=")
    regions = ("us-east-1", "eu-west-1", "ap-south-1")
    plan = make_plan(artifact(), REQUEST, regions, "123456789012",
                     {"us-east-1": same, "eu-west-1": other, "ap-south-1": None})
    actions = {r.region: (r.action, r.reason) for r in plan.regions}
    assert actions == {"us-east-1": ("unchanged", "version 4 has this zip"),
                       "eu-west-1": ("publish", "version 2 has another zip"),
                       "ap-south-1": ("publish", "no version yet")}
    assert [r.bucket for r in plan.regions] == [f"lambda-layer-builder-123456789012-{r}" for r in regions]
    assert json.loads(json.dumps(plan.to_json()))["regions"][0]["current_version"] == 4
    assert staging_key(artifact()).endswith(f"/np311/{artifact().sha256_hex}.zip")


def test_prune_keeps_the_newest_and_the_current():
    versions = {"us-east-1": [PublishedVersion(f"arn:{v}", v) for v in (1, 2, 3, 4, 5)],
                "eu-west-1": [PublishedVersion(f"arn:{v}", v) for v in (1, 2)]}
    facts = {region: PruneFacts(tuple(listed), manifest_version=2 if region == "us-east-1" else None)
             for region, listed in versions.items()}
    doomed = {region: [d.version for d in plan_prune("np311", facts, keep=2) if d.region == region and d.delete]
              for region in versions}
    assert doomed == {"us-east-1": [3, 1], "eu-west-1": []}
    with pytest.raises(UsageError):
        plan_prune("np311", facts, keep=0)


def test_rate_limiter_allows_a_burst_then_the_steady_rate():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds

    limiter = RateLimiter(15, burst=15, clock=lambda: now[0], sleep=sleep)
    for _ in range(45):
        limiter.acquire()
    assert len(slept) == 30  # the first 15 go at once
    assert now[0] == pytest.approx(2.0, abs=1e-6)  # then 30 more at 15 per second


def test_retry_after_is_read_from_the_body_or_the_header():
    assert _retry_after({"retryAfterSeconds": "2"}) == 2.0
    assert _retry_after({"Error": {"Code": "X"}, "ResponseMetadata": {"HTTPHeaders": {"retry-after": "3"}}}) == 3.0
    assert _retry_after({"Error": {}}) is None


def test_manifest_merges_runs_and_renders(tmp_path):
    path = tmp_path / "published" / "np311.json"
    first = Manifest.load(path, "np311")
    entry = Entry("np311", "x86_64", "us-east-1", "arn:aws:lambda:us-east-1:123456789012:layer:np311:1", 1, "ab" * 32,
                  CODE, "0" * 64, "2026-11-25T10:00:00+00:00", ("python3.11",))
    first.record(entry)
    second = Manifest.load(path, "np311")
    second.record(dataclasses.replace(entry, region="eu-west-1", arn="arn:aws:lambda:eu-west-1:123456789012:layer:np311:3",
                                      version=3))
    merged = Manifest.load(path, "np311")
    assert [(e.region, e.version) for e in merged.rows()] == [("eu-west-1", 3), ("us-east-1", 1)]
    assert [p.name for p in path.parent.iterdir()] == ["np311.json"]  # no temp file left
    terraform = render(merged.rows(), "terraform", "np311")
    assert '"eu-west-1" = "arn:aws:lambda:eu-west-1:123456789012:layer:np311:3"' in terraform
    assert render(merged.rows("us-east-1"), "csv", "np311").count("\n") == 1
    assert json.loads(render(merged.rows(), "json", "np311"))[0]["region"] == "eu-west-1"


def test_a_damaged_manifest_is_a_usage_error(tmp_path):
    path = tmp_path / "np311.json"
    path.write_text("{not json")
    with pytest.raises(UsageError, match="manifest .* is not valid JSON"):
        Manifest.load(path, "np311")
