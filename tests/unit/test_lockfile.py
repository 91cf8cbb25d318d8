"""Locks, identities and schedules: pure parts."""

from __future__ import annotations

import pytest

from builder.backends.base import Lock, LockedWheel
from builder.errors import UsageError
from builder.lockfile import LockFile, layer_identity, requirements_digest, version_changes
from builder.rebuild.schedule import WorkflowOptions, check_cron, github_workflow
from builder.recipe import parse_recipe


def recipe(pin="six==1.16.0", **extra):
    return parse_recipe({"name": "sixer", "runtime": "python3.11", "requirements": [pin],
                         "smoke": {"imports": ["six"], "code": ""}, **extra})


def test_requirements_digest_follows_pins_and_runtime_only():
    base = requirements_digest(recipe())
    assert base == requirements_digest(recipe(description="other words"))
    assert base != requirements_digest(recipe("six==1.17.0"))
    assert base != requirements_digest(recipe("six==1.16.0 --hash=sha256:" + "a" * 64))
    assert base != requirements_digest(parse_recipe({"name": "sixer", "runtime": "python3.12",
                                                     "requirements": ["six==1.16.0"],
                                                     "smoke": {"imports": ["six"], "code": ""}}))


def test_identity_changes_with_what_changes_the_layer_and_nothing_else():
    base = layer_identity(recipe(), "lock1", "pip")
    assert base == layer_identity(recipe(description="other words"), "lock1", "pip")
    assert base == layer_identity(recipe(smoke={"imports": ["six"], "code": "pass"}), "lock1", "pip")
    for other in (layer_identity(recipe(), "lock2", "pip"),
                  layer_identity(recipe(), "lock1", "docker:sha256:abc"),
                  layer_identity(recipe(strip={"remove": ["six.py"]}), "lock1", "pip"),
                  layer_identity(recipe(bytecode="only"), "lock1", "pip"),
                  layer_identity(recipe(compression=9), "lock1", "pip"),
                  layer_identity(recipe(include={"model_loader": True}), "lock1", "pip")):
        assert other != base


def test_a_traced_layer_changes_identity_with_its_workload():
    traced = recipe(strip={"profile": "trace"})
    other_workload = recipe(strip={"profile": "trace"}, smoke={"imports": ["six"], "code": "import six.moves"})
    assert layer_identity(traced, "lock1", "pip") != layer_identity(other_workload, "lock1", "pip")


def test_a_lock_is_used_only_while_the_requirements_are_the_ones_it_was_made_from():
    lock = Lock("sixer", "python3.11", "x86_64", (LockedWheel("six", "1.16.0", "six-1.16.0-py2.py3-none-any.whl", "a" * 64),))
    lockfile = LockFile("sixer", "python3.11", requirements_digest(recipe()), {"x86_64": lock})
    assert lockfile.fresh_for(recipe()) and not lockfile.fresh_for(recipe("six==1.17.0"))
    assert lockfile.to_json()["targets"]["x86_64"]["digest"] == lock.digest


def test_version_changes_name_every_move():
    assert version_changes({"numpy": "1.26.3", "chardet": "5.2.0", "six": "1.16.0"},
                           {"numpy": "1.26.4", "idna": "3.10", "six": "1.16.0"}) == [
        "- chardet 5.2.0", "+ idna 3.10", "numpy 1.26.3 → 1.26.4"]


def test_workflow_has_cron_matrix_oidc_artifacts():
    recipes = [recipe(), parse_recipe({"name": "onnx", "runtime": "python3.12", "architectures": ["x86_64", "arm64"],
                                       "requirements": ["numpy"], "smoke": {"imports": ["numpy"], "code": ""}})]
    text = github_workflow(recipes, WorkflowOptions(cron="0 6 * * *", regions=("us-east-1", "eu-west-1")))
    assert '- cron: "0 6 * * *"' in text and "id-token: write" in text
    assert text.count('"recipe": ') == 3 and '"runner": "ubuntu-24.04-arm"' in text
    assert "aws-actions/configure-aws-credentials@v4" in text and "actions/upload-artifact@v4" in text
    assert "--publish --regions us-east-1,eu-west-1" in text


@pytest.mark.parametrize("cron", ["daily", "0 6 * *", "0 6 * * * *", "0 6 ? * 1;"])
def test_bad_cron_is_refused(cron):
    with pytest.raises(UsageError):
        check_cron(cron)


def test_drop_names_must_name_a_distribution_of_the_locked_stack():
    from builder.errors import RecipeError
    from builder.lockfile import check_drop_names

    lock = Lock("sixer", "python3.11", "x86_64", (LockedWheel("six", "1.16.0", "six-1.16.0-py2.py3-none-any.whl",
                                                              "0" * 64),
                                                  LockedWheel("tensorboard", "1.8.0", "t.whl", "1" * 64)))
    check_drop_names(recipe(strip={"drop": ["tensorboard"]}), lock)
    with pytest.raises(RecipeError, match="strip.drop: tensorbord is not in the x86_64 stack") as refused:
        check_drop_names(recipe(strip={"drop": ["tensorbord"]}), lock)
    assert "'tensorboard'" in refused.value.hint
