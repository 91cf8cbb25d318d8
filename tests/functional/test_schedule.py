"""``layers schedule github`` as users run it: what it writes parses to the workflow, and what it refuses writes nothing.

The refusals come from a filed issue: a ``--role-secret`` holding a newline
wrote an extra key into the workflow, an empty one wrote ``${{ secrets. }}``,
and ``--output /dev/full`` was written through (a rename would have put a
file in place of the device node). Every refusal here is exit 2, one error
line and a hint, and leaves no file, folder or temporary behind.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import VALID_RECIPE
from tests.functional.test_cli import layers

pytestmark = pytest.mark.functional

TWO_ARCHES = VALID_RECIPE.replace('runtime = "python3.11"', 'runtime = "python3.11"\narchitectures = ["x86_64", "arm64"]')


@pytest.fixture
def project(tmp_path):
    """Two recipes, three matrix entries: demo on x86_64, both on arm64 and x86_64."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "demo.toml").write_text(VALID_RECIPE.format(name="demo"))
    (recipes / "both.toml").write_text(TWO_ARCHES.format(name="both"))
    return tmp_path


def schedule(project: Path, *args: str, output: str | Path | None = None):
    target = str(output if output is not None else project / "wf" / "layers.yml")
    return layers("schedule", "github", "--recipes", str(project / "recipes"), "--output", target, *args, cwd=project)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_refused(result, option: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and option in errors[0], result.stderr
    assert any(line.startswith("hint:") for line in result.stderr.splitlines()), result.stderr


# -- what it writes ---------------------------------------------------------------------
def test_a_good_run_parses_to_the_workflow(project):
    before = tree(project)
    result = schedule(project, "--regions", "us-east-1,eu-west-1", "--role-secret", "MY_ROLE",
                      "--cron", "*/30 6 * JAN-MAR MON-FRI")
    assert result.returncode == 0, result.stderr
    output = project / "wf" / "layers.yml"
    assert tree(project) - before == {"wf", "wf/layers.yml"}  # no temporary left beside it
    text = output.read_text()
    assert text.startswith("# Written by `layers schedule github`")
    workflow = yaml.safe_load(text)

    assert workflow["on"] == {"schedule": [{"cron": "*/30 6 * JAN-MAR MON-FRI"}], "workflow_dispatch": {}}
    assert workflow["permissions"] == {"id-token": "write", "contents": "read"}
    assert workflow["concurrency"] == {"group": "layers-rebuild", "cancel-in-progress": False}
    job = workflow["jobs"]["rebuild"]
    assert job["runs-on"] == "${{ matrix.runner }}"
    assert job["strategy"]["matrix"]["include"] == [
        {"recipe": "both", "arch": "x86_64", "runner": "ubuntu-24.04"},
        {"recipe": "both", "arch": "arm64", "runner": "ubuntu-24.04-arm"},
        {"recipe": "demo", "arch": "x86_64", "runner": "ubuntu-24.04"},
    ]
    steps = job["steps"]
    assert [s.get("uses") for s in steps] == ["actions/checkout@v4", "actions/setup-python@v5",
                                              "aws-actions/configure-aws-credentials@v4", None, None,
                                              "actions/upload-artifact@v4"]
    assert steps[1]["with"] == {"python-version": "3.12"}  # a string: 3.10 as a number would be 3.1
    assert steps[2]["with"] == {"role-to-assume": "${{ secrets.MY_ROLE }}", "aws-region": "us-east-1"}
    assert steps[3]["run"] == "python -m pip install ."
    assert "--publish --regions us-east-1,eu-west-1 --json" in steps[4]["run"]
    assert steps[5]["with"]["path"].splitlines()[1:] == [
        "dist/${{ matrix.recipe }}/", "recipes/${{ matrix.recipe }}.lock", "published/${{ matrix.recipe }}.json"]
    assert stat.S_IMODE(output.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert "set the secret MY_ROLE" in result.stdout


def test_an_existing_workflow_is_replaced_and_keeps_its_mode(project):
    output = project / "layers.yml"
    output.write_text("old\n")
    output.chmod(0o664)
    result = schedule(project, output=output)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(output.read_text())["name"] == "Rebuild Lambda layers"
    assert stat.S_IMODE(output.stat().st_mode) == 0o664
    assert tree(project) == {"recipes", "recipes/demo.toml", "recipes/both.toml", "layers.yml"}


@pytest.mark.parametrize("cron", ["* * * * *", "0,30 8-18/2 1 * 0", "59 23 31 12 6", "0 0 * * sun"])
def test_good_crons_are_written_as_given(project, cron):
    result = schedule(project, "--cron", cron)
    assert result.returncode == 0, result.stderr
    workflow = yaml.safe_load((project / "wf" / "layers.yml").read_text())
    assert workflow["on"]["schedule"] == [{"cron": cron}]


# -- what it refuses ----------------------------------------------------------------------
@pytest.mark.parametrize("secret", [
    "X }}\n  evil: ${{ github.token",  # the issue's: a newline and an indent made a key
    "",  # the issue's: ${{ secrets. }}
    "1ROLE", "GITHUB_TOKEN", "github_role", "ROLE-ARN", "ROLE ARN", "ROLE\n", "RÔLE", "A" * 101,
])
def test_a_bad_role_secret_is_refused_and_nothing_written(project, secret):
    before = tree(project)
    result = schedule(project, "--role-secret", secret)
    assert_refused(result, "--role-secret")
    assert tree(project) == before


@pytest.mark.parametrize("cron", [
    "daily", "0 6 * *", "0 6 * * * *", "0 6 ? * 1;", "",
    '17 5 * * 1"\n  evil: x', "17 5 * * 1\n", "17  5 * * 1", "17\t5 * * 1 *", " 17 5 * * 1",
    "60 * * * *", "* 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 7", "5-1 * * * *",
    "*/0 * * * *", "5/15 * * * *", "0 0 * FOO *", "0 0 * * MON-FRX", "0 0 * JAN *,", "0 0 MON * *",
    "٣ * * * *", ",".join(["1"] * 60) + " * * * *",
])
def test_a_bad_cron_is_refused_and_nothing_written(project, cron):
    before = tree(project)
    result = schedule(project, "--cron", cron)
    assert_refused(result, "--cron")
    assert tree(project) == before


@pytest.mark.parametrize("regions", ["us-east-1;rm -rf ~", "us-east-1,us-east-1", "mars-north-1", ","])
def test_bad_regions_are_refused_and_nothing_written(project, regions):
    before = tree(project)
    result = schedule(project, "--regions", regions)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert tree(project) == before


def _refuses_device(project: Path, device: Path) -> None:
    before = os.stat(device)
    result = schedule(project, output=device)
    assert_refused(result, "--output")
    assert "device" in result.stderr
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and (after.st_rdev, after.st_ino) == (before.st_rdev, before.st_ino)
    assert not [name for name in os.listdir(device.parent) if name.startswith(f".{device.name}.")]


def test_a_device_is_never_written_or_replaced(project):
    # First a device node of our own, where it can be made (root, CAP_MKNOD): a regression then replaces
    # that one and fails here, before /dev/full is touched. Run as root, the old code replaced /dev/full
    # and /dev/null with regular files.
    own = project / "full"
    try:
        os.mknod(own, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except OSError:
        pass
    else:
        _refuses_device(project, own)
    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full here")
    _refuses_device(project, Path("/dev/full"))


def test_a_symlink_to_a_device_is_refused(project):
    link = project / "layers.yml"
    link.symlink_to("/dev/null")
    result = schedule(project, output=link)
    assert_refused(result, "--output")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"


def test_a_directory_or_fifo_output_is_refused(project):
    (project / "adir").mkdir()
    os.mkfifo(project / "fifo")
    before = tree(project)
    for output, kind in ((project / "adir", "directory"), (project / "fifo", "FIFO")):
        result = schedule(project, output=output)
        assert_refused(result, "--output")
        assert kind in result.stderr
    assert tree(project) == before
    assert stat.S_ISFIFO((project / "fifo").stat().st_mode)


@pytest.mark.parametrize("under", ["afile/layers.yml", "afile/deeper/still/layers.yml"])
def test_an_output_under_a_file_is_refused(project, under):
    (project / "afile").write_text("not a folder\n")
    before = tree(project)
    result = schedule(project, output=project / under)
    assert_refused(result, "--output")
    assert "not a directory" in result.stderr
    assert tree(project) == before and (project / "afile").read_text() == "not a folder\n"


def test_the_output_is_checked_before_the_recipes_are_read(tmp_path):
    result = layers("schedule", "github", "--recipes", str(tmp_path / "none"), "--output", "/dev/full", cwd=tmp_path)
    assert_refused(result, "--output")


def test_a_failed_write_is_one_line_and_leaves_no_temporary(project, monkeypatch):
    from builder.cli import app
    from builder import files as module  # where the workflow writer lives (files.write_output_file)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(module.os, "replace", full)
    before = tree(project)
    result = CliRunner().invoke(app, ["schedule", "github", "--recipes", str(project / "recipes"),
                                      "--output", str(project / "wf" / "layers.yml")])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error: cannot write" in result.stderr and "No space left on device" in result.stderr
    assert "hint:" in result.stderr
    assert tree(project) - before == {"wf"}  # the folder it made, nothing in it
