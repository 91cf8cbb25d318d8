"""The SBOM's pure parts: licences as METADATA declares them, LicenseInfo, reproducible bytes, untrusted reads."""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path, PurePosixPath

import pytest

from builder.backends.base import Lock, LockedWheel
from builder.errors import UsageError
from builder.lockfile import load_lockfile
from builder.publish.artifact import Artifact
from builder.publish.plan import PublishRequest, check_request
from builder.recipe import load_recipe
from builder.sbom import (
    NAME_MAX,
    TEXT_MAX,
    Declared,
    Licence,
    Subject,
    declarations,
    join_licences,
    layer_bom,
    licences_from_metadata,
    license_info,
    render,
    schema_problem,
    shipped_licences,
    spdx_expression,
)
from builder.verify.repair import Graft
from tests.conftest import ROOT

ZIP_SHA = "e3" * 32
SUBJECT = Subject("demo", "demo-python3.11-x86_64", ZIP_SHA, "python3.11", "x86_64", "ab" * 32, "cd" * 32, "pip",
                  "0.1.0")
LOCK = Lock("demo", "python3.11", "x86_64", (
    LockedWheel("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "1" * 64),
    LockedWheel("idna", "3.10", "idna-3.10-py3-none-any.whl", "2" * 64),
    LockedWheel("gast", "0.2.2", "gast-0.2.2-py3-none-any.whl", "3" * 64, origin="sdist", source_sha256="4" * 64),
    LockedWheel("Typing_Extensions", "4.12.2", "typing_extensions-4.12.2-py3-none-any.whl", "5" * 64),
))
DECLARED = {
    "six": Declared("six", (Licence(expression="MIT"),)),
    "idna": Declared("idna", (Licence(expression="BSD-3-Clause"),), ("six",)),
    "gast": Declared("gast", (Licence(name="BSD"),)),
    "typing-extensions": Declared("typing-extensions", (Licence(expression="PSF-2.0"),)),
}
# As the report records it (RepairReport.to_dict's "grafted" entries).
GRAFT = Graft("libbz2.so.1.0", "libbz2-66666666.so.1.0", PurePosixPath("python/x.libs/libbz2-66666666.so.1.0"),
              "/usr/lib/x86_64-linux-gnu/libbz2.so.1.0.8", "6" * 64, 70_000,
              (PurePosixPath("python/x/_bz.cpython-311-x86_64-linux-gnu.so"),)).to_dict()


def metadata(*headers: str, body: str = "") -> str:
    return "Metadata-Version: 2.4\nName: demo\nVersion: 1.0\n" + "".join(h + "\n" for h in headers) + "\n" + body


# -- licences as distributions declare them ---------------------------------------------------------------------

@pytest.mark.parametrize("headers,expected", [
    (["License-Expression: MIT OR Apache-2.0"], (Licence(expression="MIT OR Apache-2.0"),)),
    (["License-Expression: mit or apache-2.0"], (Licence(expression="MIT OR Apache-2.0"),)),  # normalised
    (["License-Expression: LicenseRef-Proprietary"], (Licence(expression="LicenseRef-Proprietary"),)),
    # PEP 639's field wins over the legacy ones it replaces.
    (["License-Expression: BSD-3-Clause", "License: MIT", "Classifier: License :: OSI Approved :: MIT License"],
     (Licence(expression="BSD-3-Clause"),)),
    (["License-Expression: see the LICENSE file"], (Licence(name="see the LICENSE file"),)),
    (["License: BSD-3-Clause"], (Licence(expression="BSD-3-Clause"),)),
    (["License: GPL-2.0+"], (Licence(expression="GPL-2.0-or-later"),)),
    (["License: Apache 2.0"], (Licence(name="Apache 2.0"),)),
    # Not an SPDX name, but the classifiers name one licence each: the machine-readable declaration is kept.
    (["License: Apache 2.0", "Classifier: License :: OSI Approved :: MIT License"], (Licence(expression="MIT"),)),
    (["License: UNKNOWN", "Classifier: License :: OSI Approved :: ISC License (ISCL)"], (Licence(expression="ISC"),)),
    (["Classifier: License :: OSI Approved :: MIT License",
      "Classifier: License :: OSI Approved :: Python Software Foundation License",
      "Classifier: Programming Language :: Python :: 3"],
     (Licence(expression="MIT"), Licence(expression="PSF-2.0"))),
    # "BSD License" names a family, not one licence: kept as the name it is.
    (["Classifier: License :: OSI Approved :: BSD License"], (Licence(name="BSD License"),)),
    (["Classifier: License :: OSI Approved :: MIT License", "Classifier: License :: OSI Approved :: BSD License"],
     (Licence(expression="MIT"), Licence(name="BSD License"))),
    (["License: BSD", "Classifier: License :: OSI Approved :: BSD License"], (Licence(name="BSD"),)),
    ([], ()),
    (["License: UNKNOWN"], ()),
    (["License: ", "Classifier: Topic :: Utilities"], ()),
])
def test_licences_from_metadata(headers, expected):
    assert licences_from_metadata(metadata(*headers, body="License: MIT (the body is not a header)\n")) == expected


def test_a_whole_licence_text_in_license_is_named_by_its_first_line_and_kept_as_text():
    text = "Copyright (c) 2005-2018, NumPy Developers.\n        All rights reserved.\n" + "        Redistribution.\n" * 9
    (licence,) = licences_from_metadata(metadata("License: " + text))
    assert licence.expression == "" and licence.name == "Copyright (c) 2005-2018, NumPy Developers."
    assert "All rights reserved." in licence.text and licence.text.count("Redistribution.") == 9


def test_a_very_long_or_garbage_licence_is_bounded():
    (long_line,) = licences_from_metadata(metadata("License: " + "x" * 100_000))
    assert len(long_line.name) == NAME_MAX and long_line.name.endswith("…")
    assert len(long_line.text) < TEXT_MAX + 100 and long_line.text.endswith("more characters in the distribution's METADATA]")
    (garbage,) = licences_from_metadata(metadata("License: \x00\x1b[31m((( AND OR \ufffd"))
    assert garbage.expression == "" and garbage.name.startswith("\x00")
    assert spdx_expression("MIT AND") is None and spdx_expression("MIT OR") is None and spdx_expression("(MIT") is None
    assert spdx_expression("MIT " * 1000) is None


def test_declarations_read_metadata_bytes_as_they_are(tmp_path):
    class Dist:
        def __init__(self, dist_info: Path, requires=()):
            self.dist_info, self.requires = dist_info, requires

    good, bad, missing = (tmp_path / f"{n}-1.0.dist-info" for n in ("good", "bad", "missing"))
    good.mkdir()
    bad.mkdir()
    (good / "METADATA").write_text(metadata("License-Expression: MIT"))
    (bad / "METADATA").write_bytes(b"Name: bad\nLicense: caf\xe9 \xff\xfe licence\n\n")
    found = declarations({"Good": Dist(good, ("six", "idna", "six")), "bad": Dist(bad), "missing": Dist(missing)})
    assert found["good"] == Declared("good", (Licence(expression="MIT"),), ("idna", "six"))
    assert found["bad"].licences == (Licence(name="caf\ufffd \ufffd\ufffd licence"),)
    assert found["missing"] == Declared("missing")


# -- LicenseInfo -------------------------------------------------------------------------------------------------

def test_license_info_dedupes_sorts_and_joins_with_and():
    parts = [("numpy", ["BSD-3-Clause"]), ("six", ["MIT"]), ("idna", ["BSD-3-Clause"]),
             ("packaging", ["Apache-2.0 OR BSD-2-Clause"]), ("scipy", ["BSD-3-Clause AND MIT"]),
             ("pillow", ["HPND"])]
    assert join_licences(parts) == "(Apache-2.0 OR BSD-2-Clause) AND BSD-3-Clause AND HPND AND MIT"


def test_license_info_names_what_states_no_spdx_licence_rather_than_leaving_it_out():
    parts = [("six", ["MIT"]), ("gast", []), ("libstdc++.so.6", []), ("Weird Name!", [])]
    assert join_licences(parts) == "LicenseRef-gast AND LicenseRef-libstdc-.so.6 AND LicenseRef-Weird-Name AND MIT"


def test_the_512_character_limit_is_refused_with_a_hint_not_cut_short():
    base = Artifact(zip_path=Path("dist/demo/demo-python3.11-x86_64.zip"), report={}, recipe="demo",
                    layer_name="demo", runtime="python3.11", arch="x86_64", sha256_hex=ZIP_SHA,
                    code_sha256="", zipped_bytes=1000, unzipped_bytes=2000, unzipped_budget=256_901_120,
                    verified=True, verification="passed", lock_digest="ab" * 32, builder_version="0.1.0",
                    license="", elf_files=0)
    many = join_licences([(f"dist{i:03}", []) for i in range(40)])
    assert len(many) > 512
    request = PublishRequest(regions=("us-east-1",))
    with pytest.raises(UsageError) as caught:
        check_request(dataclasses.replace(base, license=many, license_source="sbom"), request)
    assert f"join to {len(many):,} characters, over Lambda's 512" in caught.value.message
    assert "demo-python3.11-x86_64.cdx.json" in caught.value.message
    assert "set license in the recipe" in caught.value.hint
    exactly = "A" * 512
    check_request(dataclasses.replace(base, license=exactly, license_source="sbom"), request)
    with pytest.raises(UsageError) as caught:
        check_request(dataclasses.replace(base, license=exactly + "B"), request)
    assert "licence is over 512" in caught.value.message and caught.value.hint == "shorten the recipe's license"


# -- the document ------------------------------------------------------------------------------------------------

def sbom_text(subject=SUBJECT, lock=LOCK, declared=DECLARED, shipped=("six", "idna", "gast", "typing-extensions"),
              grafts=(GRAFT,)) -> str:
    return render(layer_bom(subject, lock, declared, shipped, grafts))


def test_same_inputs_give_the_same_bytes_in_any_order():
    first = sbom_text()
    shuffled = list(LOCK.wheels)
    random.Random(7).shuffle(shuffled)
    again = sbom_text(lock=dataclasses.replace(LOCK, wheels=tuple(shuffled)),
                      declared=dict(reversed(DECLARED.items())), shipped=("typing-extensions", "gast", "idna", "six"))
    assert first == again
    data = json.loads(first)
    assert data["serialNumber"] == json.loads(sbom_text())["serialNumber"]
    assert data["metadata"]["timestamp"] == "1980-01-01T00:00:00+00:00"
    other = json.loads(sbom_text(subject=dataclasses.replace(SUBJECT, zip_sha256="f0" * 32)))
    assert other["serialNumber"] != data["serialNumber"] and other["serialNumber"].startswith("urn:uuid:")
    assert [c["name"] for c in data["components"]] == sorted(c["name"] for c in data["components"])


def test_the_document_is_valid_cyclonedx_and_says_what_the_layer_holds():
    text = sbom_text(shipped=("six", "idna", "typing-extensions"))
    assert schema_problem(text) is None
    data = json.loads(text)
    assert data["specVersion"] == "1.6" and data["metadata"]["component"]["hashes"] == [
        {"alg": "SHA-256", "content": ZIP_SHA}]
    components = {c["name"]: c for c in data["components"]}
    assert components["typing-extensions"]["purl"] == "pkg:pypi/typing-extensions@4.12.2"
    assert components["six"]["hashes"] == [{"alg": "SHA-256", "content": "1" * 64}]
    # A wheel built here from an sdist: the sdist's hash, the file it came from.
    assert components["gast"]["hashes"] == [{"alg": "SHA-256", "content": "4" * 64}]
    assert components["gast"]["scope"] == "excluded" and components["six"]["scope"] == "required"
    assert components["six"]["licenses"] == [{"license": {"id": "MIT", "acknowledgement": "declared"}}]
    graft = components["libbz2.so.1.0"]
    assert graft["hashes"][0]["content"] == "6" * 64
    assert {"name": "lambda-layer-builder:grafted-from", "value": GRAFT["origin"]} in graft["properties"]
    dependencies = {d["ref"]: d.get("dependsOn", []) for d in data["dependencies"]}
    assert dependencies["layer:demo-python3.11-x86_64"] == sorted(
        ["pkg:pypi/six@1.17.0", "pkg:pypi/idna@3.10", "pkg:pypi/typing-extensions@4.12.2", f"graft:{GRAFT['path']}"])
    assert dependencies["pkg:pypi/idna@3.10"] == ["pkg:pypi/six@1.17.0"]
    assert shipped_licences(data, ZIP_SHA, "x") == [
        ("idna", ["BSD-3-Clause"]), ("libbz2.so.1.0", []), ("six", ["MIT"]), ("typing-extensions", ["PSF-2.0"])]


def test_a_long_licence_text_and_multiple_licences_stay_valid():
    declared = {**DECLARED, "six": Declared("six", licences_from_metadata(metadata("License: " + "y" * 90_000))),
                "idna": Declared("idna", (Licence(expression="MIT"), Licence(name="BSD License"))),
                "gast": Declared("gast", (Licence(expression="MIT"), Licence(expression="Apache-2.0 OR MIT"))),
                "typing-extensions": Declared("typing-extensions", licences_from_metadata(
                    metadata("License: \x00\x1b[31m(((\ufffd \\u0000")))}
    text = sbom_text(declared=declared)
    assert schema_problem(text) is None
    components = {c["name"]: c for c in json.loads(text)["components"]}
    # CycloneDX holds one expression or a list of licences: several with an expression become one expression.
    assert components["gast"]["licenses"] == [{"expression": "MIT AND (Apache-2.0 OR MIT)",
                                               "acknowledgement": "declared"}]
    assert len(components["idna"]["licenses"]) == 2


def test_the_committed_tf18_lock_makes_a_valid_sbom_listing_each_distribution_with_its_hash():
    """tf18 without building it (minutes): its committed lock, the layer without what strip.drop removes."""
    recipe = load_recipe("tf18", ROOT / "recipes")
    lock = load_lockfile(recipe).targets["x86_64"]
    dropped = {"tensorboard", "grpcio"}
    shipped = {w.name for w in lock.wheels} - dropped
    text = render(layer_bom(dataclasses.replace(SUBJECT, name="tf18"), lock, {}, shipped))
    assert schema_problem(text) is None
    components = {c["purl"]: c for c in json.loads(text)["components"]}
    assert len(components) == len(lock.wheels) > 20
    for wheel in lock.wheels:
        component = components[f"pkg:pypi/{wheel.name}@{wheel.version}"]
        assert component["hashes"] == [{"alg": "SHA-256", "content": wheel.identity}]
        assert component["scope"] == ("excluded" if wheel.name in dropped else "required")


# -- read back, untrusted ----------------------------------------------------------------------------------------

def write(tmp_path: Path, data) -> Path:
    zip_path = tmp_path / "demo-python3.11-x86_64.zip"
    (tmp_path / "demo-python3.11-x86_64.cdx.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return zip_path


def test_license_info_from_the_file_beside_the_zip(tmp_path):
    assert license_info(tmp_path / "demo-python3.11-x86_64.zip", ZIP_SHA) is None  # older builds: none
    zip_path = write(tmp_path, sbom_text())
    assert license_info(zip_path, ZIP_SHA) == "BSD-3-Clause AND LicenseRef-gast AND LicenseRef-libbz2.so.1.0 " \
                                              "AND MIT AND PSF-2.0"
    excluded = write(tmp_path, sbom_text(shipped=("six",), grafts=()))
    assert license_info(excluded, ZIP_SHA) == "MIT"


def _good() -> dict:
    return json.loads(sbom_text())


def _set(path: str, value):
    def change(data: dict) -> dict:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is KeyError:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return data
    return change


@pytest.mark.parametrize("change,words", [
    (_set("bomFormat", "SPDX"), "not a CycloneDX 1.6 document"),
    (_set("specVersion", "1.4"), "not a CycloneDX 1.6 document"),
    (_set("metadata", KeyError), "metadata.component.hashes is missing"),
    (_set("metadata.component.hashes", "e3"), "metadata.component.hashes is missing"),
    (_set("metadata.component.hashes", [{"alg": "SHA-1", "content": "e3"}]), "holds no SHA-256"),
    (_set("metadata.component.hashes.0.content", "../../etc"), "holds no SHA-256"),
    (_set("metadata.component.hashes.0.content", "f0" * 32), "describes another zip"),
    (_set("components", {"a": 1}), "components is not a list"),
    (_set("components", [{}] * 10_001), "components is not a list"),
    (_set("components.0", "six"), "components[0] is not an object"),
    (_set("components.0.name", ["six"]), "components[0].name is not a name"),
    (_set("components.0.name", "x" * 513), "components[0].name is not a name"),
    (_set("components.0.scope", "maybe"), "components[0].scope is not a CycloneDX scope"),
    (_set("components.0.licenses", {"expression": "MIT"}), "components[0].licenses is not a list"),
    (_set("components.0.licenses", [{"license": {"name": "x"}}] * 65), "components[0].licenses is not a list"),
    (_set("components.0.licenses", [{"expression": "MIT AND"}]), "is not an SPDX licence expression"),
    (_set("components.0.licenses", [{"expression": 7}]), "is not a string of at most 1024"),
    (_set("components.0.licenses", [{"expression": "MIT " * 400}]), "is not a string of at most 1024"),
    (_set("components.0.licenses", [{"license": {"id": "Not-A-Licence"}}]), "is not an SPDX licence expression"),
    (_set("components.0.licenses", [{"license": {}}]), "has neither an id nor a name"),
    (_set("components.0.licenses", ["MIT"]), "is neither a licence nor an expression"),
])
def test_a_damaged_or_hostile_sbom_is_refused(tmp_path, change, words):
    zip_path = write(tmp_path, change(_good()))
    with pytest.raises(UsageError) as caught:
        license_info(zip_path, ZIP_SHA)
    assert words in caught.value.message and caught.value.hint


@pytest.mark.parametrize("content,words", [
    ("[" * 40 + "]" * 40, "nests more than"),
    ("{not json", "not valid JSON"),
    ('{"a": NaN}', "not valid JSON"),
])
def test_an_sbom_that_is_no_json_is_refused(tmp_path, content, words):
    with pytest.raises(UsageError, match=words):
        license_info(write(tmp_path, content), ZIP_SHA)


def test_an_oversized_fifo_or_directory_sbom_is_refused_without_reading_it_all(tmp_path):
    sbom = tmp_path / "demo-python3.11-x86_64.cdx.json"
    with sbom.open("wb") as handle:
        handle.truncate((32 << 20) + 1)  # sparse: the read stops at the limit
    with pytest.raises(UsageError, match="is over 33,554,432 bytes"):
        license_info(tmp_path / "demo-python3.11-x86_64.zip", ZIP_SHA)
    sbom.unlink()
    os.mkfifo(sbom)
    with pytest.raises(UsageError, match="is a FIFO"):
        license_info(tmp_path / "demo-python3.11-x86_64.zip", ZIP_SHA)
    sbom.unlink()
    sbom.mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        license_info(tmp_path / "demo-python3.11-x86_64.zip", ZIP_SHA)
