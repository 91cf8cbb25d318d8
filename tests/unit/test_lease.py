"""Publishing's concurrency and SSM decisions, pure: the lease record, its expiry, and what gets written where.

The S3 and SSM calls themselves are tested against moto in
tests/integration/test_publish_race.py and test_publish_ssm.py.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from builder.errors import UsageError
from builder.publish import lease
from builder.publish.lease import (
    DEFAULT_LEASE_SECONDS,
    Found,
    decide,
    expiry,
    lease_key,
    new_lease,
    next_wait,
    parse_lease,
    poll_interval,
    read_lease_seconds,
    wait_limit,
)
from builder.publish.manifest import Entry, Manifest
from builder.publish.plan import (
    DEFAULT_SSM_PREFIX,
    ParameterConflict,
    PublishRequest,
    check_arguments,
    make_plan,
    newer_named,
    parameter_writes,
)
from tests.unit.test_publish_plan import CODE, artifact

SHA = "ba2a2909" + "0" * 56
TOKEN = "0123456789abcdef" * 2
NOW = 1_800_000_000.0


def a_lease(**changes) -> lease.Lease:
    made = new_lease("np311", SHA, host="runner-1", pid=4242, token=TOKEN, now=NOW, seconds=600)
    return dataclasses.replace(made, **changes)


def found(record: lease.Lease | bytes | None = None, last_modified: float | None = NOW) -> Found:
    body = record if isinstance(record, bytes) else (record or a_lease()).to_bytes()
    return Found(body, '"etag-1"', last_modified)


# -- the record --------------------------------------------------------------------
def test_a_lease_round_trips_and_names_its_holder():
    made = a_lease()
    assert parse_lease(made.to_bytes(), "np311", SHA) == made
    assert made.expires_at - made.acquired_at == 600 and made.describe() == "runner-1 pid 4242"
    assert lease_key("np311", SHA) == f"leases/np311/{SHA}.json"


def test_a_host_name_is_kept_printable_and_short():
    made = new_lease("np311", SHA, host="evil\x1b[2J host\n" + "x" * 400, pid=1, token=TOKEN, now=NOW, seconds=5)
    assert made.host.startswith("evil?[2J?host?") and len(made.host) == 253
    assert parse_lease(made.to_bytes(), "np311", SHA) == made


def _with(**fields) -> bytes:
    data = json.loads(a_lease().to_bytes())
    data.update(fields)
    return json.dumps(data).encode()


@pytest.mark.parametrize("body", [
    b"", b"{", b"[]", b"\xff\xfe", b"null", b'"x"', b"[" * 5000 + b"]" * 5000,
    _with(format=2), _with(format=True), _with(layer_name="other"), _with(sha256="f" * 64),
    _with(token="short"), _with(token="Z" * 32), _with(pid=0), _with(pid=True), _with(pid="1"), _with(pid=2**31),
    _with(host=""), _with(host="a\nb"), _with(host=7), _with(acquired_at="1"), _with(expires_at=None),
    _with(expires_at=NOW - 1), _with(expires_at=NOW + 3601), _with(acquired_at=float("nan")),
    _with(expires_at=True), _with(pad="x" * 5000),
])
def test_anything_but_a_lease_of_this_layer_and_zip_is_not_trusted(body):
    assert parse_lease(body, "np311", SHA) is None


def test_nan_and_infinity_in_json_are_not_times():
    text = a_lease().to_bytes().decode().replace(str(NOW + 600), "Infinity")
    assert "Infinity" in text and parse_lease(text.encode(), "np311", SHA) is None


# -- decisions ------------------------------------------------------------------------
def test_a_live_lease_of_another_holder_is_waited_for():
    record = a_lease()
    assert decide(record, found(record), token="f" * 32, now=NOW + 10, seconds=600, waited=10) == "wait"


def test_our_own_token_is_ours_even_when_the_write_that_made_it_answered_412():
    record = a_lease()
    assert decide(record, found(record), token=TOKEN, now=NOW + 10, seconds=600, waited=0) == "mine"


def test_a_lease_past_its_expiry_is_taken_over():
    record = a_lease()
    for now in (NOW + 600, NOW + 601, NOW + 10**6):
        assert decide(record, found(record), token="f" * 32, now=now, seconds=600, waited=0) == "take-over"


def test_the_holders_written_expiry_counts_not_the_waiters_lease_length():
    record = a_lease(expires_at=NOW + 5)  # the holder ran with LAYERS_LEASE_SECONDS=5
    assert decide(record, found(record), token="f" * 32, now=NOW + 6, seconds=600, waited=1) == "take-over"


def test_waiting_is_bounded():
    record = a_lease(expires_at=NOW + 3600)
    limit = wait_limit(600)
    assert 600 < limit <= 620
    assert decide(record, found(record), token="f" * 32, now=NOW + 1, seconds=600, waited=limit - 1) == "wait"
    assert decide(record, found(record), token="f" * 32, now=NOW + 1, seconds=600, waited=limit) == "give-up"


def test_an_unreadable_lease_lapses_by_s3s_last_modified_plus_our_length():
    garbage = found(b"not a lease", last_modified=NOW)
    assert expiry(None, garbage, 600) == NOW + 600
    assert decide(None, garbage, token=TOKEN, now=NOW + 599, seconds=600, waited=0) == "wait"
    assert decide(None, garbage, token=TOKEN, now=NOW + 600, seconds=600, waited=0) == "take-over"
    undated = found(b"not a lease", last_modified=None)
    assert expiry(None, undated, 600) == -math.inf
    assert decide(None, undated, token=TOKEN, now=NOW, seconds=600, waited=0) == "take-over"


def test_polls_are_a_twentieth_of_the_lease_within_bounds_and_stop_at_the_expiry():
    assert poll_interval(600) == 2.0 and poll_interval(3) == 0.2 and poll_interval(20) == 1.0
    record = a_lease()
    assert next_wait(record, found(record), now=NOW, seconds=600) == 2.0
    assert next_wait(record, found(record), now=NOW + 599.5, seconds=600) == pytest.approx(0.55)
    assert next_wait(record, found(record), now=NOW + 700, seconds=600) == 0.05


@pytest.mark.parametrize("text", ["0", "-1", "3601", "1.5", "", " 5", "5 ", "+5", "1_0", "٣", "x", "99999",
                                  "1e3", "nan"])
def test_a_bad_lease_length_is_refused(text):
    with pytest.raises(UsageError) as caught:
        read_lease_seconds({"LAYERS_LEASE_SECONDS": text})
    assert "LAYERS_LEASE_SECONDS" in caught.value.message and caught.value.hint


def test_the_lease_length_defaults_and_reads():
    assert read_lease_seconds({}) == DEFAULT_LEASE_SECONDS == 600
    assert read_lease_seconds({"LAYERS_LEASE_SECONDS": "3"}) == 3
    assert read_lease_seconds({"LAYERS_LEASE_SECONDS": "3600"}) == 3600
    with pytest.raises(UsageError):
        check_arguments(PublishRequest(regions=("us-east-1",), lease_seconds=0))


# -- SSM parameters ----------------------------------------------------------------------
ARN = "arn:aws:lambda:eu-west-1:123456789012:layer:np311:4"
PIN, LATEST = "/layers/np311/x86_64/4", "/layers/np311/x86_64/latest"


def writes(current: dict, **options) -> list[tuple[str, str, bool]]:
    return [(w.name, w.value, w.overwrite)
            for w in parameter_writes("/layers", "np311", "x86_64", ARN, 4, current, **options)]


def test_missing_parameters_are_written_the_pin_first_and_only_latest_overwritten():
    assert writes({PIN: None, LATEST: None}) == [(PIN, ARN, False), (LATEST, ARN, True)]


def test_parameters_that_name_the_version_are_not_written_again():
    assert writes({PIN: ARN, LATEST: ARN}) == []


def test_latest_moves_to_a_new_version_and_the_old_pin_is_left_alone():
    old = ARN[:-1] + "3"
    assert writes({PIN: None, LATEST: old}) == [(PIN, ARN, False), (LATEST, ARN, True)]


def test_latest_naming_a_newer_existing_version_stays():
    newer = ARN[:-1] + "5"
    assert newer_named(newer, ARN) == 5
    assert writes({PIN: None, LATEST: newer}, keep_latest=True) == [(PIN, ARN, False)]


@pytest.mark.parametrize("value", [None, "", ARN, ARN[:-1] + "3", "arn:aws:lambda:eu-west-1:123456789012:layer:np31:9",
                                   "arn:aws:lambda:eu-west-1:123456789012:layer:np311:x",
                                   "arn:aws:lambda:eu-west-1:123456789012:layer:np311:4:5", "garbage"])
def test_only_a_newer_version_of_the_same_layer_counts_as_newer(value):
    assert newer_named(value, ARN) is None


def test_a_pin_holding_another_arn_is_a_conflict_not_overwritten():
    with pytest.raises(ParameterConflict) as caught:
        writes({PIN: ARN.replace("123456789012", "999999999999"), LATEST: None})
    assert PIN in caught.value.message and "delete-parameter" in caught.value.hint


def test_the_request_defaults_to_the_shared_prefix_and_checks_it():
    assert PublishRequest().ssm_prefix == DEFAULT_SSM_PREFIX
    for bad in ("layers", "/aws/x", "/", "/a b", "/a//b", "/" + "x" * 65, "/a" * 9):
        with pytest.raises(UsageError):
            check_arguments(PublishRequest(regions=("us-east-1",), ssm_prefix=bad))
    check_arguments(PublishRequest(regions=("us-east-1",), ssm_prefix=None))


def test_the_plan_names_the_parameters_and_the_lease_per_region():
    from builder.publish.aws import PublishedVersion

    same = PublishedVersion("arn:aws:lambda:us-east-1:1:layer:np311:4", 4, code_sha256=CODE)
    request = PublishRequest(regions=("us-east-1", "eu-west-1"), ssm_prefix="/team/layers", lease_seconds=30)
    plan = make_plan(artifact(), request, request.regions, "123456789012", {"us-east-1": same, "eu-west-1": None})
    data = json.loads(json.dumps(plan.to_json()))
    assert data["ssm_prefix"] == "/team/layers" and data["lease_seconds"] == 30
    unchanged, new = data["regions"]
    assert unchanged["ssm_parameters"] == ["/team/layers/np311/x86_64/4", "/team/layers/np311/x86_64/latest"]
    assert unchanged["lease"] is None  # nothing to publish: no lease
    assert new["ssm_parameters"] == ["/team/layers/np311/x86_64/<new version>", "/team/layers/np311/x86_64/latest"]
    assert new["lease"] == f"s3://lambda-layer-builder-123456789012-eu-west-1/leases/np311/{artifact().sha256_hex}.json"

    none = make_plan(artifact(), dataclasses.replace(request, ssm_prefix=None, direct_upload=True), request.regions,
                     "123456789012", {"us-east-1": same, "eu-west-1": None}).to_json()
    assert none["ssm_prefix"] is None and none["lease_seconds"] is None
    assert all(r["ssm_parameters"] == [] and r["lease"] is None for r in none["regions"])


# -- the manifest's field ------------------------------------------------------------------
def _entry(**changes) -> Entry:
    base = Entry(layer_name="np311", architecture="x86_64", region="eu-west-1", arn=ARN, version=4, sha256="0" * 64,
                 code_sha256=CODE, lock_digest="0" * 64, published_at="2026-01-01T00:00:00+00:00",
                 ssm=(PIN, LATEST))
    return dataclasses.replace(base, **changes)


def test_the_manifest_records_the_parameters_and_old_manifests_still_load(tmp_path):
    path = tmp_path / "np311.json"
    Manifest(path, "np311").record(_entry())
    assert Manifest.load(path, "np311").current("np311", "eu-west-1").ssm == (PIN, LATEST)
    data = json.loads(path.read_text())
    del data["layers"]["np311"]["regions"]["eu-west-1"]["ssm"]  # written before SSM parameters existed
    path.write_text(json.dumps(data))
    assert Manifest.load(path, "np311").current("np311", "eu-west-1").ssm == ()


@pytest.mark.parametrize("ssm", ["/layers/np311/x86_64/latest", [1], [None], ["/layers/np311/arm64/latest"],
                                 ["/layers/other/x86_64/latest"], ["/aws/np311/x86_64/latest"],
                                 ["layers/np311/x86_64/latest"], ["/layers/np311/x86_64/04"],
                                 ["/layers/np311/x86_64/next"], [LATEST, LATEST], [PIN, LATEST, LATEST],
                                 ["/layers/np311/x86_64/latest\n"], ["/[/]/np311/x86_64/latest"]])
def test_a_manifest_with_bad_parameter_names_is_refused(tmp_path, ssm):
    path = tmp_path / "np311.json"
    Manifest(path, "np311").record(_entry())
    data = json.loads(path.read_text())
    data["layers"]["np311"]["regions"]["eu-west-1"]["ssm"] = ssm
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError) as caught:
        Manifest.load(path, "np311")
    assert "SSM parameter names" in caught.value.message
