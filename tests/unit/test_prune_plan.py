"""``plan_prune``: every version decided, with every reason to keep it or the one to delete it; ``--older-than``."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from builder.errors import UsageError
from builder.publish.aws import PublishedVersion
from builder.publish.plan import PruneDecision, PruneFacts, parse_age, plan_prune

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LAYER = "np311"


def arn(version: int, region: str = "us-east-1") -> str:
    return f"arn:aws:lambda:{region}:123456789012:layer:{LAYER}:{version}"


def versions(ages_in_days: dict[int, float], region: str = "us-east-1") -> tuple[PublishedVersion, ...]:
    """Versions as ListLayerVersions gives them: CreatedDate in Lambda's own format (+0000, milliseconds)."""
    def created(days: float) -> str:
        return (NOW - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    return tuple(PublishedVersion(arn(v, region), v, created=created(d)) for v, d in ages_in_days.items())


def reasons(decisions) -> dict[int, str]:
    return {d.version: d.describe() for d in decisions}


FIVE = versions({1: 200, 2: 150, 3: 100, 4: 60, 5: 40})


def test_only_keep_newest():
    decided = plan_prune(LAYER, {"us-east-1": PruneFacts(FIVE)}, keep=2)
    assert reasons(decided) == {5: "keep: newest 2", 4: "keep: newest 2", 3: "delete: beyond the newest 2",
                                2: "delete: beyond the newest 2", 1: "delete: beyond the newest 2"}
    assert [d.version for d in decided] == [5, 4, 3, 2, 1]  # newest first, whatever order the listing had
    assert all(isinstance(d, PruneDecision) and d.region == "us-east-1" and d.layer_name == LAYER for d in decided)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decided[0].delete = True  # type: ignore[misc]


def test_the_manifests_current_is_kept():
    decided = plan_prune(LAYER, {"us-east-1": PruneFacts(FIVE, manifest_version=2)}, keep=1)
    assert reasons(decided)[2] == "keep: manifest's current"
    assert [d.version for d in decided if d.delete] == [4, 3, 1]


def test_the_ssm_latest_is_kept_and_a_value_naming_nothing_listed_protects_nothing():
    decided = plan_prune(LAYER, {"us-east-1": PruneFacts(FIVE, ssm_latest=arn(3))}, keep=1)
    assert reasons(decided)[3] == "keep: SSM latest"
    assert [d.version for d in decided if d.delete] == [4, 2, 1]
    # Another region's ARN of the same version number is not this version.
    other = plan_prune(LAYER, {"us-east-1": PruneFacts(FIVE, ssm_latest=arn(3, "eu-west-1"))}, keep=1)
    assert [d.version for d in other if d.delete] == [4, 3, 2, 1]


def test_a_version_a_function_lists_is_kept():
    users = {arn(1): ("my-fn",), arn(2): ("a", "b:3"), arn(3): ("a", "b", "c", "d:1", "e:7"),
             arn(4, "eu-west-1"): ("elsewhere",)}
    decided = plan_prune(LAYER, {"us-east-1": PruneFacts(FIVE, users=users)}, keep=1)
    assert reasons(decided) == {
        5: "keep: newest 1",
        4: "delete: beyond the newest 1",  # only an ARN of this region's version 4 would keep it
        3: "keep: used by functions a, b, c and 2 more (us-east-1)",
        2: "keep: used by functions a, b:3 (us-east-1)",
        1: "keep: used by function my-fn (us-east-1)",
    }


def test_older_than_keeps_the_young_ones():
    decided = plan_prune(LAYER, {"us-east-1": PruneFacts(versions({1: 40, 2: 29.5, 3: 1.5, 4: 3 / 24, 5: 0.01}))},
                         keep=1, older_than=parse_age("30d"), now=NOW)
    assert reasons(decided) == {
        5: "keep: under an hour old, younger than 30d; newest 1",
        4: "keep: 3 hours old, younger than 30d",
        3: "keep: 36 hours old, younger than 30d",
        2: "keep: 29 days old, younger than 30d",
        1: "delete: older than 30d, beyond the newest 1",
    }


def test_older_than_keeps_a_version_whose_age_is_unknown():
    listed = (PublishedVersion(arn(2), 2, created=""), PublishedVersion(arn(1), 1, created="last tuesday"),
              PublishedVersion(arn(3), 3, created="2020-01-01T00:00:00"))  # no zone: taken as UTC
    decided = plan_prune(LAYER, {"us-east-1": PruneFacts(listed)}, keep=1, older_than=parse_age("2w"), now=NOW)
    assert reasons(decided) == {3: "keep: newest 1",
                                2: "keep: no creation date, so not known to be older than 2w",
                                1: "keep: no creation date, so not known to be older than 2w"}
    with pytest.raises(ValueError):
        plan_prune(LAYER, {"us-east-1": PruneFacts(listed)}, keep=1, older_than=parse_age("2w"))  # no now


def test_every_protection_together_across_regions():
    east = PruneFacts(versions({1: 400, 2: 300, 3: 200, 4: 100, 5: 90, 6: 5, 7: 1}), manifest_version=5,
                      ssm_latest=arn(7), users={arn(2): ("api",), arn(5): ("api:4",)})
    west = PruneFacts(versions({1: 400, 2: 300}, "eu-west-1"), manifest_version=1, ssm_latest=arn(1, "eu-west-1"))
    decided = plan_prune(LAYER, {"us-east-1": east, "eu-west-1": west}, keep=1, older_than=parse_age("30d"), now=NOW)
    by_region = {region: reasons(d for d in decided if d.region == region) for region in ("us-east-1", "eu-west-1")}
    assert by_region["us-east-1"] == {
        7: "keep: SSM latest; 24 hours old, younger than 30d; newest 1",
        6: "keep: 5 days old, younger than 30d",
        5: "keep: manifest's current; used by function api:4 (us-east-1)",
        4: "delete: older than 30d, beyond the newest 1",
        3: "delete: older than 30d, beyond the newest 1",
        2: "keep: used by function api (us-east-1)",
        1: "delete: older than 30d, beyond the newest 1",
    }
    assert by_region["eu-west-1"] == {2: "keep: newest 1", 1: "keep: manifest's current; SSM latest"}
    assert [d.to_json()["action"] for d in decided if d.region == "eu-west-1"] == ["keep", "keep"]
    assert decided[0].to_json() == {"layer_name": LAYER, "region": "us-east-1", "version": 7, "arn": arn(7),
                                    "created": east.versions[-1].created, "action": "keep",
                                    "reasons": ["SSM latest", "24 hours old, younger than 30d", "newest 1"]}


def test_a_region_without_versions_has_no_decisions():
    assert plan_prune(LAYER, {"us-east-1": PruneFacts(())}, keep=3) == ()


@pytest.mark.parametrize("text, hours", [("12h", 12), ("1h", 1), ("30d", 720), ("2w", 336), ("3650d", 87600),
                                         ("521w", 521 * 168), ("87600h", 87600)])
def test_older_than_parses_hours_days_and_weeks(text, hours):
    age = parse_age(text)
    assert age.delta == timedelta(hours=hours) and age.text == text


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "00d", "030d", "-1d", "+1d", "1.5d", "30D", "30 d", " 30d",
                                  "30d ", "30m", "30s", "1y", "30dd", "1d2h", "٣d", "３0d", "1e3d", "3651d", "522w",
                                  "87601h", "9999999d", "30d\n", "[/]"])
def test_older_than_refuses_anything_else(text):
    with pytest.raises(UsageError) as caught:
        parse_age(text)
    assert "--older-than" in caught.value.message and caught.value.hint
