"""The budget planner: package, S3 + /tmp, or container image, with Lambda's numbers."""

from __future__ import annotations

import pytest

from builder.errors import UsageError
from builder.plan import EPHEMERAL_DEFAULT, MIB, Item, ephemeral_for, plan_budget, storage_for, usable

MB = MIB  # Lambda's megabyte


def test_a_small_model_goes_in_the_package():
    plan = plan_budget(5 * MB, [Item("np311", 71 * MB, "report")], [Item("m", 20 * MB, "given")])
    assert plan.recommended.name == "package"
    assert "direct upload" in plan.recommended.advice


def test_tf18_standard_layer_leaves_no_room_for_a_100mb_model_and_s3_is_next():
    standard = Item("tf18", 217_201_622, "report")
    plan = plan_budget(5 * MB, [standard], [Item("model.h5", 100 * MB, "given")])
    package = plan.options[0]
    assert not package.fits and "over the 250 MB" in package.advice
    assert plan.recommended.name == "s3-tmp"


def test_a_pruned_layer_makes_room_for_the_model_in_the_package():
    pruned = Item("tf18-lean", 149 * MB, "report")
    plan = plan_budget(1 * MB, [pruned], [Item("model.h5", 100 * MB, "given")])
    assert plan.recommended.name == "package"
    assert "through S3" in plan.recommended.advice  # 101 MB of function zip is over the direct-upload limit
    over = plan_budget(2 * MB, [pruned], [Item("model.h5", 100 * MB, "given")])
    assert over.recommended.name == "s3-tmp" and "1.0 MiB over the 250 MB" in over.options[0].advice


def test_models_over_512mb_of_tmp_ask_for_more_ephemeral_storage():
    plan = plan_budget(0, [Item("tf18", 210 * MB, "report")], [Item("a", 400 * MB, "s3"), Item("b", 300 * MB, "s3")])
    tmp = plan.options[1]
    assert tmp.fits and "set EphemeralStorage to" in tmp.advice


def test_too_much_for_lambda_layers_is_a_container_image():
    plan = plan_budget(0, [Item("tf221", 793 * MIB, "report")], [Item("m", 20 * MB, "given")])
    assert plan.recommended.name == "image"


def test_ephemeral_in_lambdas_own_units_is_accepted():
    from builder.recipe import parse_size

    assert plan_budget(0, [], [], ephemeral=parse_size("512MB")).ephemeral == EPHEMERAL_DEFAULT
    assert plan_budget(0, [], [], ephemeral=parse_size("10240MB")).ephemeral == 10_240 * MIB


def test_limits_on_layers_and_ephemeral():
    with pytest.raises(UsageError, match="at most 5"):
        plan_budget(0, [Item(str(i), MB, "given") for i in range(6)], [])
    with pytest.raises(UsageError, match="between 512 MB and 10,240 MB"):
        plan_budget(0, [], [], ephemeral=EPHEMERAL_DEFAULT // 2)


def test_a_packed_layer_counts_its_archive_in_the_package_and_its_tree_in_tmp():
    packed = Item("tf18-packed", 37 * MB, "report", tmp_bytes=212 * MB)
    plan = plan_budget(1 * MB, [packed], [Item("model.h5", 100 * MB, "given")])
    package = plan.options[0]
    assert plan.recommended.name == "package"
    assert "112.0 MiB to spare" in package.advice and "unpack to 212.0 MiB in /tmp, within 512 MB" in package.advice
    # With the model in S3 as well, /tmp holds both.
    s3 = plan.options[1]
    assert s3.checks[1].value == (100 + 212 + 32) * MB


def test_a_packed_layer_over_512mb_unpacked_asks_for_ephemeral_storage():
    packed = Item("tf2", 220 * MB, "report", tmp_bytes=800 * MB)
    plan = plan_budget(1 * MB, [packed], [])
    package = plan.options[0]
    assert package.fits  # the check's limit is the storage it asks for, up to 10,240 MB
    # 800 + 32 MiB need 960 MB: a fresh ext4 of 832 MB leaves 743 MiB usable (measured), of 960 MB 844.
    assert "set EphemeralStorage to 960 MB" in package.advice and "SnapStart" in package.advice
    assert package.checks[-1].limit == usable(960 * MB) >= 832 * MB


def test_the_storage_asked_for_holds_what_goes_there_once_its_file_system_took_its_part():
    # The default 512 MB holds 450 MiB: a 480 MiB model (with 32 MiB headroom) no longer "just fits".
    assert usable(EPHEMERAL_DEFAULT) // MB == 450
    assert plan_budget(0, [], [Item("m", 480 * MB, "given")]).options[1].checks[1].limit == usable(640 * MB)
    for needed in (1, 450 * MB, 451 * MB, 1000 * MB, 9000 * MB):
        size = storage_for(needed)
        assert usable(size) >= needed > usable(size - 64 * MB) and size % (64 * MB) == 0
    assert ephemeral_for(212 * MB) == EPHEMERAL_DEFAULT and ephemeral_for(420 * MB) == 576 * MB
