"""Lambda's LicenseInfo, published against a real moto server over HTTP: the recipe's ``license``, else the
licences the build's SBOM lists; a build without an SBOM publishes as before; a foreign or crafted SBOM is
refused before any request."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from builder.backends.pip import PipBackend
from builder.build import BuildOptions, build
from builder.recipe import parse_recipe
from builder.runner import Runner
from tests.integration.aws_fixtures import make_client
from tests.integration.test_publish import publish

pytestmark = pytest.mark.integration
STEM = "{name}-python3.11-x86_64"


def recipe(name: str, license: str, pins: list[str]):
    return parse_recipe({"name": name, "runtime": "python3.11", "requirements": pins, "license": license,
                         "smoke": {"imports": ["six"]}})


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Real builds: six + idna from a recipe that sets no licence, six alone from one that does."""
    work = tmp_path_factory.mktemp("license-builds")
    backend = PipBackend(Runner(), work / "cache")
    made = {}
    for name, license, pins in (("licsbom", "", ["six==1.17.0", "idna==3.10"]),
                                ("licrecipe", "Apache-2.0 AND BSD-3-Clause", ["six==1.17.0"])):
        result = build(recipe(name, license, pins), "x86_64", backend, BuildOptions(out_dir=work, time_imports=False))
        assert result.report["verification"]["verified"] and result.sbom_path.is_file()
        made[name] = result.zip.path
    return made


@pytest.fixture
def fresh(moto_server, fault_proxy):
    moto_server.reset()
    fault_proxy.clear()
    return fault_proxy


def license_info(moto_server, name: str) -> str | None:
    client = make_client("lambda", "us-east-1", moto_server.url)
    (listed,) = client.list_layer_versions(LayerName=name)["LayerVersions"]
    return client.get_layer_version(LayerName=name, VersionNumber=listed["Version"]).get("LicenseInfo")


def copy_build(zip_path: Path, where: Path, *, sbom: bool) -> Path:
    """The zip and its report (and its SBOM) in a directory of their own."""
    where.mkdir()
    shutil.copy(zip_path, where)
    shutil.copy(zip_path.with_name(zip_path.name[:-4] + ".report.json"), where)
    if sbom:
        shutil.copy(zip_path.with_name(zip_path.name[:-4] + ".cdx.json"), where)
    return where / zip_path.name


def test_a_recipe_without_license_publishes_the_licences_its_sbom_lists(builds, fresh, moto_server, tmp_path):
    result = publish(str(builds["licsbom"]), "--regions", "us-east-1", proxy=fresh, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # six declares MIT; idna only the "BSD License" classifier, which names no one licence: named, not left out.
    assert license_info(moto_server, "licsbom") == "LicenseRef-idna AND MIT"


def test_a_recipe_with_license_publishes_the_recipes(builds, fresh, moto_server, tmp_path):
    result = publish(str(builds["licrecipe"]), "--regions", "us-east-1", proxy=fresh, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert license_info(moto_server, "licrecipe") == "Apache-2.0 AND BSD-3-Clause"


def test_a_build_from_before_sboms_publishes_without_licence_info_as_before(builds, fresh, moto_server, tmp_path):
    older = copy_build(builds["licsbom"], tmp_path / "older", sbom=False)
    result = publish(str(older), "--regions", "us-east-1", proxy=fresh, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert license_info(moto_server, "licsbom") in (None, "")


def test_a_foreign_or_crafted_sbom_is_refused_before_any_request(builds, fresh, tmp_path):
    foreign = copy_build(builds["licsbom"], tmp_path / "foreign", sbom=False)
    other = builds["licrecipe"].with_name(STEM.format(name="licrecipe") + ".cdx.json")
    shutil.copy(other, foreign.with_name(STEM.format(name="licsbom") + ".cdx.json"))
    refused = publish(str(foreign), "--regions", "us-east-1", proxy=fresh, cwd=tmp_path)
    assert refused.returncode == 2 and "describes another zip" in refused.stderr, refused.stderr

    # An SBOM of this zip whose licences join past Lambda's 512 characters: refused, never cut short.
    crafted = copy_build(builds["licsbom"], tmp_path / "crafted", sbom=True)
    sbom_path = crafted.with_name(STEM.format(name="licsbom") + ".cdx.json")
    sbom = json.loads(sbom_path.read_text())
    sbom["components"] = [{"type": "library", "name": f"distribution-{i:03}", "licenses": [
        {"license": {"name": "Custom"}}]} for i in range(40)]
    sbom_path.write_text(json.dumps(sbom))
    too_long = publish(str(crafted), "--regions", "us-east-1", proxy=fresh, cwd=tmp_path)
    assert too_long.returncode == 2, too_long.stderr
    assert "over Lambda's 512 for LicenseInfo" in too_long.stderr and "set license in the recipe" in too_long.stderr

    sbom["components"] = [{"name": "six", "licenses": [{"expression": "MIT AND"}]}]
    sbom_path.write_text(json.dumps(sbom))
    bad = publish(str(crafted), "--regions", "us-east-1", proxy=fresh, cwd=tmp_path)
    assert bad.returncode == 2 and "is not an SPDX licence expression" in bad.stderr, bad.stderr

    for result in (refused, too_long, bad):
        assert "Traceback" not in result.stderr
    assert fresh.requests == []  # nothing reached the server
    assert not (tmp_path / "published").exists()
