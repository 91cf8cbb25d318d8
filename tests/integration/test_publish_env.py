"""A bad AWS environment or a bad argument to publish, prune or arns: exit 2, one line and a hint, nothing sent.

The CLI runs as a subprocess against moto_server behind the recording fault
proxy (``AWS_ENDPOINT_URL`` points at it), so "before any AWS request" is
what the proxy saw: nothing. ``publish`` is given a recipe whose zip is not
built, so "before any build work" is what it did not do: say it builds, or
make ``dist/``. A good environment, in the same harness, does reach the proxy
(the control at the end), so an empty record means the refusal, not a deaf proxy.

The pure check (``read_aws_environment``) and the session and client checks
are also tested directly, with good and bad environments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.publish.aws import AwsClient, AwsSettings, open_session, read_aws_environment
from builder.publish.manifest import Entry, Manifest, manifest_path
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
LAYERS = [sys.executable, "-m", "builder"]
RECIPE = 'name = "tiny"\nruntime = "python3.11"\nrequirements = ["six==1.17.0"]\n'


def layers(*args: str, proxy, cwd: Path, **env: str | None) -> subprocess.CompletedProcess:
    """``layers ARGS`` with only the AWS environment the test gives (None: the variable unset)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAYERS_AWS_"))}
    environment.update({
        "PYTHONPATH": str(ROOT), "COLUMNS": "200", "AWS_ENDPOINT_URL": proxy.url,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "LAYERS_AWS_BASE_DELAY": "0.05",
        # Config files of the test's own (absent unless it writes them): never the user's ~/.aws.
        "AWS_CONFIG_FILE": str(cwd / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "aws-credentials"),
    })
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run([*LAYERS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=environment,
                          check=False)


def assert_refused(result: subprocess.CompletedProcess, proxy, *words: str) -> None:
    """Exit 2, exactly an ``error:`` line and a ``hint:`` line, no traceback, and no request reached the proxy."""
    shown = result.stdout + result.stderr
    assert result.returncode == 2, shown
    assert "Traceback" not in shown and result.stdout == "", shown
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), shown
    for word in words:
        assert word in lines[0], (word, shown)
    assert proxy.requests == []


@pytest.fixture
def proxy(moto_server, fault_proxy):
    fault_proxy.clear()
    return fault_proxy


@pytest.fixture
def work(tmp_path) -> Path:
    """A folder with a recipe that is not built, and a manifest naming one published version of it."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny.toml").write_text(RECIPE)
    Manifest(manifest_path(tmp_path / "published", "tiny"), "tiny").record(Entry(
        layer_name="tiny", architecture="x86_64", region="us-east-1",
        arn="arn:aws:lambda:us-east-1:123456789012:layer:tiny:1", version=1, sha256="0" * 64,
        code_sha256="A" * 43 + "=", lock_digest="0" * 64, published_at="2024-01-01T00:00:00Z"))
    return tmp_path


def publish_recipe(work: Path, proxy, *extra: str, **env: str | None) -> subprocess.CompletedProcess:
    return layers("publish", "tiny", "--recipes", str(work / "recipes"), "--out", str(work / "dist"),
                  "--manifests", str(work / "published"), *extra, proxy=proxy, cwd=work, **env)


def assert_not_built(result: subprocess.CompletedProcess, work: Path) -> None:
    assert "building it first" not in result.stderr and not (work / "dist").exists()


BAD_ENVIRONMENTS = [
    ("LAYERS_AWS_BASE_DELAY", "-1"),
    ("LAYERS_AWS_BASE_DELAY", "nan"),
    ("LAYERS_AWS_BASE_DELAY", "inf"),
    ("LAYERS_AWS_BASE_DELAY", "61"),
    ("LAYERS_AWS_BASE_DELAY", "half"),
    ("LAYERS_AWS_BASE_DELAY", ""),
    ("LAYERS_AWS_MAX_ATTEMPTS", "0"),
    ("LAYERS_AWS_MAX_ATTEMPTS", "51"),
    ("LAYERS_AWS_MAX_ATTEMPTS", "1.5"),
    ("LAYERS_AWS_MAX_ATTEMPTS", "+3"),
    ("AWS_ENDPOINT_URL", "not-a-url"),
    ("AWS_ENDPOINT_URL", "ftp://localhost:5000"),
    ("AWS_ENDPOINT_URL", "http://"),
    ("AWS_ENDPOINT_URL", "http://localhost:99999"),
    ("AWS_ENDPOINT_URL_S3", "localhost:5000"),
    ("AWS_ENDPOINT_URL_LAMBDA", "http://[::1"),
    ("AWS_ENDPOINT_URL_STS", "http://local host"),
    ("AWS_DEFAULT_REGION", "bad region!"),
    ("AWS_DEFAULT_REGION", "us-east-1\x1b[31m"),
    ("AWS_REGION", "US-EAST-1"),
]


@pytest.mark.parametrize("name, value", BAD_ENVIRONMENTS)
def test_publish_refuses_a_bad_variable_before_building_or_asking_aws(work, proxy, name, value):
    result = publish_recipe(work, proxy, "--regions", "us-east-1", **{name: value})
    # The value is shown as repr: quoted, its escape characters written out, never obeyed by the terminal.
    assert_refused(result, proxy, name, repr(value))
    assert "\x1b" not in result.stderr
    assert_not_built(result, work)


@pytest.mark.parametrize("profile", ["nosuch", ""])
def test_publish_refuses_a_profile_that_does_not_exist(work, proxy, profile):
    (work / "aws-config").write_text("[profile dev]\nregion = eu-west-1\n")
    result = publish_recipe(work, proxy, "--regions", "us-east-1", AWS_PROFILE=profile)
    assert_refused(result, proxy, "AWS_PROFILE", repr(profile), "names no profile")
    assert "list-profiles" in result.stderr
    assert_not_built(result, work)


@pytest.mark.parametrize("config, env, words", [
    # botocore refuses these itself, while making the session or the first client: a typed error too.
    ("[default\nregion = eu-west-1\n", {}, ["the AWS configuration cannot be read"]),
    ("[default]\nregion = bad region!\n", {"AWS_DEFAULT_REGION": None}, ["cannot make the AWS", "bad region!"]),
    ("", {"AWS_RETRY_MODE": "bogus"}, ["cannot make the AWS", "bogus"]),
    ("", {"AWS_DEFAULTS_MODE": "bogus"}, ["cannot make the AWS", "bogus"]),
])
def test_publish_refuses_what_botocore_refuses_when_making_the_session_or_a_client(work, proxy, config, env, words):
    (work / "aws-config").write_text(config)
    result = publish_recipe(work, proxy, "--regions", "us-east-1", **env)
    assert_refused(result, proxy, *words)
    assert_not_built(result, work)


@pytest.mark.parametrize("name, value", [
    ("LAYERS_AWS_BASE_DELAY", "-1"), ("LAYERS_AWS_MAX_ATTEMPTS", "0"), ("AWS_ENDPOINT_URL", "not-a-url"),
    ("AWS_DEFAULT_REGION", "bad region!"), ("AWS_PROFILE", "nosuch"),
])
def test_prune_refuses_a_bad_variable_before_listing(work, proxy, name, value):
    result = layers("prune", "tiny", "--keep", "1", "--manifests", str(work / "published"), proxy=proxy, cwd=work,
                    **{name: value})
    assert_refused(result, proxy, name, repr(value))


@pytest.mark.parametrize("args, words", [
    (["--keep", "-1"], ["--keep -1", "from 1 to 10,000"]),
    (["--keep", "0"], ["--keep 0"]),
    (["--keep", "10001"], ["--keep 10001"]),
    (["--keep", "1", "--regions", "eu-west1"], ["'eu-west1' is not an AWS region"]),
    (["--keep", "1", "--regions", ","], ["--regions ',' names nothing"]),
])
def test_prune_refuses_bad_arguments_before_asking_aws(work, proxy, args, words):
    result = layers("prune", "tiny", *args, "--manifests", str(work / "published"), proxy=proxy, cwd=work)
    assert_refused(result, proxy, *words)


def test_prune_arguments_are_checked_before_the_environment(work, proxy):
    # Both wrong: the command line is what the user just typed, so it is what is named.
    result = layers("prune", "tiny", "--keep", "-1", "--manifests", str(work / "published"), proxy=proxy, cwd=work,
                    AWS_ENDPOINT_URL="not-a-url")
    assert_refused(result, proxy, "--keep -1")


@pytest.mark.parametrize("args, words", [
    (["--regions", "us-east-1", "--arch", "arm65"], ["--arch 'arm65' is not a Lambda architecture"]),
    (["--regions", "us-east-1", "--runtimes", "python3.99"], ["'python3.99' is not a Lambda Python runtime"]),
    (["--regions", "us-east-1,eu-west1"], ["'eu-west1' is not an AWS region"]),
    (["--regions", "us-east-1,us-east-1"], ["us-east-1 is listed twice"]),
    (["--regions", "mars-1"], ["'mars-1' is not an AWS region"]),
    ([], ["say where"]),
    (["--regions", "us-east-1", "--all-regions"], ["say where"]),
])
def test_publish_refuses_bad_arguments_before_building(work, proxy, args, words):
    result = publish_recipe(work, proxy, *args)
    assert_refused(result, proxy, *words)
    assert_not_built(result, work)


@pytest.mark.parametrize("args, words, hint", [
    (["--format", "yaml"], ["--format 'yaml' is not one of table, json, csv, terraform"], "--format table, json"),
    (["--format", "jsno"], ["--format 'jsno'"], "did you mean 'json'?"),
    (["--region", "eu-west1"], ["'eu-west1' is not an AWS region"], "did you mean 'eu-west-1'?"),
])
def test_arns_refuses_bad_arguments_before_reading_the_manifest(work, proxy, args, words, hint):
    # No manifest for "other": the argument is refused first, not taken for "nothing published".
    result = layers("arns", "other", *args, "--manifests", str(work / "published"), proxy=proxy, cwd=work)
    assert_refused(result, proxy, *words)
    assert hint in result.stderr.splitlines()[1]


def test_a_good_environment_reaches_the_proxy(work, proxy):
    """The control: the same harness, nothing wrong, and the proxy records the listing."""
    result = layers("prune", "tiny", "--keep", "1", "--dry-run", "--manifests", str(work / "published"),
                    proxy=proxy, cwd=work, LAYERS_AWS_MAX_ATTEMPTS="50", LAYERS_AWS_BASE_DELAY="0")
    assert result.returncode == 0, result.stderr
    assert "ListLayerVersions" in proxy.operations()


# -- the checks themselves ----------------------------------------------------------
@pytest.mark.parametrize("environ, expected", [
    ({}, AwsSettings(8, 0.5)),
    ({"LAYERS_AWS_MAX_ATTEMPTS": "1", "LAYERS_AWS_BASE_DELAY": "0"}, AwsSettings(1, 0.0)),
    ({"LAYERS_AWS_MAX_ATTEMPTS": "50", "LAYERS_AWS_BASE_DELAY": "60"}, AwsSettings(50, 60.0)),
    ({"LAYERS_AWS_BASE_DELAY": ".5"}, AwsSettings(8, 0.5)),
    ({"LAYERS_AWS_BASE_DELAY": "2."}, AwsSettings(8, 2.0)),
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_S3": "https://s3.example.com/path/",
      "AWS_ENDPOINT_URL_LAMBDA": "http://[::1]:8080", "AWS_ENDPOINT_URL_STS": "https://sts.us-east-1.amazonaws.com",
      "AWS_ENDPOINT_URL_EC2": "http://localhost"}, AwsSettings()),
    ({"AWS_DEFAULT_REGION": "us-gov-west-1", "AWS_REGION": "cn-north-1"}, AwsSettings()),
    ({"AWS_DEFAULT_REGION": "us-isob-east-1", "AWS_REGION": "ap-southeast-2"}, AwsSettings()),
    # Empty is unset, as botocore takes it.
    ({"AWS_ENDPOINT_URL": "", "AWS_DEFAULT_REGION": "", "AWS_REGION": ""}, AwsSettings()),
    # botocore is told to ignore the endpoint variables: a bad one is then harmless.
    ({"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true", "AWS_ENDPOINT_URL": "not-a-url"}, AwsSettings()),
    # Variables botocore never reads for the services this tool calls.
    ({"AWS_ENDPOINT_URL_DYNAMODB": "not-a-url", "LAYERS_OTHER": "x"}, AwsSettings()),
])
def test_good_environments_are_read(environ, expected):
    assert read_aws_environment(environ) == expected


@pytest.mark.parametrize("name, value", [*BAD_ENVIRONMENTS,
                                         ("LAYERS_AWS_MAX_ATTEMPTS", " 3"), ("LAYERS_AWS_MAX_ATTEMPTS", "1_0"),
                                         ("LAYERS_AWS_MAX_ATTEMPTS", "٣"), pytest.param("LAYERS_AWS_MAX_ATTEMPTS", "9" * 5000, id="attempts-5000-digits"),
                                         ("LAYERS_AWS_BASE_DELAY", "1e3"),
                                         pytest.param("LAYERS_AWS_BASE_DELAY", "9" * 5000, id="delay-5000-digits"),
                                         ("LAYERS_AWS_BASE_DELAY", "1_0"), ("AWS_ENDPOINT_URL", "http://:80"),
                                         ("AWS_ENDPOINT_URL_EC2", "file:///etc/passwd"),
                                         ("AWS_REGION", "us-east-1 ")])
def test_bad_environments_are_refused_naming_the_variable_and_its_value(name, value):
    with pytest.raises(UsageError) as caught:
        read_aws_environment({"AWS_DEFAULT_REGION": "us-east-1", name: value})
    error = caught.value
    assert error.exit_code == 2 and error.message.startswith(f"{name}={value[:120]!r}")
    assert error.hint and "\n" not in error.message + error.hint


def test_a_long_value_is_shown_cut_short():
    with pytest.raises(UsageError) as caught:
        read_aws_environment({"AWS_ENDPOINT_URL": "x" * 100_000})
    assert len(caught.value.message) < 300 and "..." in caught.value.message


def test_the_environment_is_only_read(monkeypatch):
    # Pure: what it checks is the mapping it is given, not the process's environment.
    monkeypatch.setenv("LAYERS_AWS_BASE_DELAY", "-1")
    assert read_aws_environment({}) == AwsSettings()


def test_a_session_opens_with_an_existing_profile_and_refuses_a_missing_one(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.write_text("[profile dev]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.delenv("AWS_DEFAULT_PROFILE", raising=False)
    monkeypatch.setenv("AWS_PROFILE", "dev")
    assert open_session().region_name == "eu-west-1"
    monkeypatch.setenv("AWS_PROFILE", "prod")
    with pytest.raises(UsageError) as caught:
        open_session()
    assert caught.value.message.startswith("AWS_PROFILE='prod' names no profile in ") and str(config) in caught.value.message
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_DEFAULT_PROFILE", "prod")
    with pytest.raises(UsageError, match="^AWS_DEFAULT_PROFILE='prod'"):
        open_session()


def test_what_botocore_refuses_when_making_a_client_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Credentials given: a client made without them would look for them on the network (instance metadata).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_RETRY_MODE", "bogus")
    client = AwsClient(session=open_session())
    with pytest.raises(UsageError, match="cannot make the AWS sts client for us-east-1: .*bogus") as caught:
        client.open_clients()
    assert caught.value.exit_code == 2 and caught.value.hint
    monkeypatch.delenv("AWS_RETRY_MODE")
    assert AwsClient(session=open_session()).open_clients() is not None  # no request: nothing listens
