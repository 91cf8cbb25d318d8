"""``layers arns RECIPE --format sam|cloudformation|cdk|serverless|terraform``: whole documents, linted and parsed.

Each snippet is written by the real CLI from a manifest the real ``Manifest``
wrote, then checked by the tool of its kind: cfn-lint for CloudFormation and
SAM (error and warning findings fail), python-hcl2 for Terraform, PyYAML for
Serverless, ``ast`` for the CDK app (Python). Every check reads the ARNs and
SSM parameter names out of the parsed document and compares them with the
manifest's, region by region: a snippet that names the wrong version, or an
ARN under the wrong region, fails.
"""

from __future__ import annotations

import ast
import base64
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest
import yaml
from hcl2 import SerializationOptions

from builder.publish.manifest import Entry, Manifest
from builder.publish.snippets import hcl_string
from tests.conftest import ROOT

pytestmark = pytest.mark.functional
LAYERS = [sys.executable, "-m", "builder"]
CODE = base64.b64encode(b"\0" * 32).decode()

# recipe -> layer -> (architecture, runtimes, {region: version})
PUBLISHED = {
    "np311": {
        "np311-python311-x86_64": ("x86_64", ("python3.11",), {"us-east-1": 3, "eu-west-1": 5, "ap-southeast-2": 1}),
        "np311-python311-arm64": ("arm64", ("python3.11",), {"us-east-1": 2, "eu-west-1": 2}),
    },
    "tf18": {
        "tf18-python312-x86_64": ("x86_64", ("python3.12", "python3.13"), {"eu-central-1": 7, "sa-east-1": 1}),
    },
}


def entry(layer: str, arch: str, region: str, version: int, runtimes=("python3.11",), *, prefix="/layers",
          **changes) -> Entry:
    fields = {"layer_name": layer, "architecture": arch, "region": region,
              "arn": f"arn:aws:lambda:{region}:123456789012:layer:{layer}:{version}", "version": version,
              "sha256": "ab" * 32, "code_sha256": CODE, "lock_digest": "cd" * 32,
              "published_at": "2026-11-25T10:00:00+00:00", "runtimes": tuple(runtimes), "identity": "ef" * 32,
              "ssm": (f"{prefix}/{layer}/{arch}/latest", f"{prefix}/{layer}/{arch}/{version}")}
    fields.update(changes)
    return Entry(**fields)


def write_manifests(directory: Path, published: dict = PUBLISHED, **changes) -> dict[str, Manifest]:
    """The manifests as publish writes them (``Manifest.record``), read back through the validating loader."""
    for recipe, layers in published.items():
        manifest = Manifest(directory / f"{recipe}.json", recipe)
        for layer, (arch, runtimes, regions) in layers.items():
            for region, version in regions.items():
                manifest.record(entry(layer, arch, region, version, runtimes, **changes))
    return {recipe: Manifest.load(directory / f"{recipe}.json", recipe) for recipe in published}


def layers(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LAYERS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200", "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, dict[str, Manifest]]:
    work = tmp_path_factory.mktemp("snippets")
    return work, write_manifests(work / "published")


def snippet(work: Path, recipe: str, fmt: str, mode: str, name: str, *extra: str) -> Path:
    """The snippet as the CLI writes it (--output), after checking it printed nothing and exited 0."""
    out = work / "out" / f"{recipe}-{mode}-{name}"
    result = layers("arns", recipe, "--format", fmt, f"--{mode}", *extra, "--manifests", str(work / "published"),
                    "--output", str(out), cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    return out


def expected_arns(manifest: Manifest) -> dict[str, dict[str, str]]:
    """layer -> region -> ARN, as the manifest holds them."""
    arns: dict[str, dict[str, str]] = {}
    for e in manifest.rows():
        arns.setdefault(e.layer_name, {})[e.region] = e.arn
    return arns


def expected_latest(manifest: Manifest) -> dict[str, str]:
    """layer -> the 'latest' SSM parameter the manifest records (the same in every region)."""
    names: dict[str, set[str]] = {}
    for e in manifest.rows():
        names.setdefault(e.layer_name, set()).update(n for n in e.ssm if n.endswith("/latest"))
    assert all(len(v) == 1 for v in names.values())
    return {layer: found.pop() for layer, found in names.items()}


# -- CloudFormation and SAM ---------------------------------------------------------------
CFN_CASES = [(recipe, fmt, mode) for recipe in PUBLISHED for fmt in ("cloudformation", "sam")
             for mode in ("pin", "latest")]


@pytest.fixture(scope="module")
def linted(published):
    """Every CloudFormation and SAM snippet through cfn-lint's API (informational checks on too), plus a control."""
    from cfnlint.api import ManualArgs, lint_file

    work = published[0]
    paths = {case: snippet(work, *case, f"{case[1]}.yaml") for case in CFN_CASES}
    # The control: the np311 template with one function reading a key the Mappings lack must be an error.
    broken = work / "out" / "broken.yaml"
    text = paths[("np311", "cloudformation", "pin")].read_text()
    broken.write_text(text.replace("- Np311Python311Arm64\n", "- Np311Python311Arm65\n", 1))
    assert broken.read_text() != text
    findings = {key: lint_file(path, config=ManualArgs(include_checks=["I"]))
                for key, path in [*paths.items(), ("broken", broken)]}
    return paths, findings


@pytest.mark.parametrize("case", CFN_CASES, ids=["-".join(c) for c in CFN_CASES])
def test_cloudformation_and_sam_pass_cfn_lint_and_name_the_manifests_arns(case, published, linted):
    manifests = published[1]
    recipe, fmt, mode = case
    paths, findings = linted
    assert [(m.rule.id, m.message) for m in findings[case] if m.rule.severity in ("error", "warning")] == []
    template = yaml.safe_load(paths[case].read_text())  # long-form intrinsics: plain YAML
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    if fmt == "sam":
        assert template["Transform"] == "AWS::Serverless-2016-10-31"
    arns, latest = expected_arns(manifests[recipe]), expected_latest(manifests[recipe])
    functions = {name: r for name, r in template["Resources"].items()
                 if r["Type"] == ("AWS::Serverless::Function" if fmt == "sam" else "AWS::Lambda::Function")}
    assert len(functions) == len(arns)  # one function per layer
    seen = set()
    for function in functions.values():
        properties = function["Properties"]
        layer = re.fullmatch(r"Uses the layer (\S+) \((\w+)\)", properties["Description"])[1]
        seen.add(layer)
        arch, runtimes, _ = PUBLISHED[recipe][layer]
        assert properties["Architectures"] == [arch]
        assert properties["Runtime"] == max(runtimes, key=lambda r: tuple(map(int, r[6:].split("."))))
        (value,) = properties["Layers"]
        if mode == "latest":
            assert value == "{{resolve:ssm:" + latest[layer] + "}}"
            assert "Mappings" not in template
        else:
            table, region_ref, key = value["Fn::FindInMap"]
            assert (table, region_ref) == ("LayerArns", {"Ref": "AWS::Region"})
            # Region by region: exactly the manifest's ARN, and no region the layer is not published in.
            by_region = {region: keys[key] for region, keys in template["Mappings"]["LayerArns"].items() if key in keys}
            assert by_region == arns[layer]
        # The stack is refused in a region without the layer, before anything is made.
        (rule,) = [r for r in template["Rules"].values()
                   if r["Assertions"][0]["AssertDescription"].startswith(f"{layer} is published only in")]
        regions, ref = rule["Assertions"][0]["Assert"]["Fn::Contains"]
        assert (sorted(regions), ref) == (sorted(arns[layer]), {"Ref": "AWS::Region"})
    assert seen == set(arns)


def test_the_cfn_lint_check_can_fail(linted):
    _, findings = linted
    errors = [m for m in findings["broken"] if m.rule.severity == "error"]
    assert errors and any("Np311Python311Arm65" in m.message for m in errors), findings["broken"]


# -- Terraform -------------------------------------------------------------------------
HCL = SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)


@pytest.mark.parametrize("mode", ["pin", "latest"])
@pytest.mark.parametrize("recipe", sorted(PUBLISHED))
def test_terraform_parses_and_names_the_manifests_arns(published, recipe, mode):
    work, manifests = published
    config = hcl2.loads(snippet(work, recipe, "terraform", mode, "main.tf").read_text(), serialization_options=HCL)
    arns, latest = expected_arns(manifests[recipe]), expected_latest(manifests[recipe])
    providers = config["terraform"][0]["required_providers"][0]
    assert providers["aws"]["source"] == "hashicorp/aws" and providers["archive"]["source"] == "hashicorp/archive"
    locals_ = {k: v for block in config["locals"] for k, v in block.items()}
    functions = {name: body for block in config["resource"] for kind, named in block.items()
                 if kind == "aws_lambda_function" for name, body in named.items()}
    ssm = {name: body for block in config.get("data", []) for kind, named in block.items()
           if kind == "aws_ssm_parameter" for name, body in named.items()}
    assert len(functions) == len(arns)
    for ident, function in functions.items():
        layer = re.fullmatch(r"Uses the layer (\S+) \((\w+)\)", function["description"])[1]
        assert function["architectures"] == [PUBLISHED[recipe][layer][0]]
        assert len(function["function_name"]) <= 64
        (value,) = function["layers"]
        condition = function["lifecycle"][0]["precondition"][0]["condition"]
        if mode == "latest":
            assert value == f"${{data.aws_ssm_parameter.{ident}_latest.value}}"
            assert ssm[f"{ident}_latest"]["name"] == latest[layer]
            assert sorted(locals_[f"{ident}_layer_regions"]) == sorted(arns[layer])
        else:
            assert value == f"${{local.{ident}_layer_arns[data.aws_region.current.region]}}"
            assert locals_[f"{ident}_layer_arns"] == arns[layer]  # region -> ARN, exactly the manifest's
            assert ssm == {}
        assert "data.aws_region.current.region" in condition


@pytest.mark.parametrize("value", ["plain", 'quote " and \\ backslash', "new\nline\ttab\r", "${var.x}", "%{ if x }",
                                   "$${already}", "$ and % alone", "\x01\x7f\u2028 é ✓ \U0001F600"])
def test_hcl_string_means_exactly_its_value(value):
    text = f"x = {hcl_string(value)}\n"
    assert "\n" not in text[:-1]
    assert re.search(r"(?<!\$)\$\{|(?<!%)%\{", text[4:].replace("$${", "").replace("%%{", "")) is None
    parsed = hcl2.loads(text, serialization_options=HCL)["x"]
    # python-hcl2 decodes the escapes but leaves "$${" and "%%{" as written; HCL reads them as "${" and "%{".
    assert parsed.replace("$${", "${").replace("%%{", "%{") == value


# -- Serverless ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["pin", "latest"])
@pytest.mark.parametrize("recipe", sorted(PUBLISHED))
def test_serverless_yaml_names_the_manifests_arns_by_region(published, recipe, mode):
    work, manifests = published
    config = yaml.safe_load(snippet(work, recipe, "serverless", mode, "serverless.yml").read_text())
    arns, latest = expected_arns(manifests[recipe]), expected_latest(manifests[recipe])
    assert re.fullmatch(r"[a-zA-Z][0-9a-zA-Z-]*", config["service"])
    assert config["provider"] == {"name": "aws"}  # no region chosen for the user: --region names it
    assert len(config["functions"]) == len(arns)
    for key, function in config["functions"].items():
        layer = re.fullmatch(r"Uses the layer (\S+) \((\w+)\)", function["description"])[1]
        assert function["architecture"] == PUBLISHED[recipe][layer][0]
        assert function["handler"] == "index.handler" and function["runtime"].startswith("python3.")
        (value,) = function["layers"]
        if mode == "latest":
            assert value == f"${{ssm:{latest[layer]}}}"
            assert "custom" not in config
        else:
            assert value == f"${{self:custom.layerArns.${{aws:region}}.{key}}}"
            by_region = {region: keys[key] for region, keys in config["custom"]["layerArns"].items() if key in keys}
            assert by_region == arns[layer]


# -- CDK (Python) ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["pin", "latest"])
@pytest.mark.parametrize("recipe", sorted(PUBLISHED))
def test_cdk_app_parses_and_names_the_manifests_arns(published, recipe, mode):
    work, manifests = published
    source = snippet(work, recipe, "cdk", mode, "app.py").read_text()
    tree = ast.parse(source)
    compile(tree, "app.py", "exec")
    assigned = {node.targets[0].id: node.value for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    data = ast.literal_eval(assigned["LAYERS"])  # a literal: the values are data, not code
    compile(ast.literal_eval(assigned["HANDLER"]), "index.py", "exec")
    imports = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names} | {
        node.names[0].name for node in tree.body if isinstance(node, ast.Import)}
    assert {"aws_cdk", "aws_lambda", "Construct"} <= imports
    calls = {node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute)}
    arns, latest = expected_arns(manifests[recipe]), expected_latest(manifests[recipe])
    assert {item["name"] for item in data} == set(arns)
    for item in data:
        assert item["architecture"] == PUBLISHED[recipe][item["name"]][0]
        assert sorted(item["regions"]) == sorted(arns[item["name"]])
        if mode == "latest":
            assert item["ssm_parameter"] == latest[item["name"]] and "arns" not in item
        else:
            assert item["arns"] == arns[item["name"]] and "ssm_parameter" not in item
    assert ("value_for_string_parameter" in calls) == (mode == "latest")
    assert ("find_in_map" in calls) == (mode == "pin")
    assert {"from_layer_version_arn", "condition_contains", "synth"} <= calls


# -- the data formats, --region and what a manifest may hold ------------------------------------
def test_json_and_csv_name_the_ssm_parameter_with_latest(tmp_path):
    manifests = write_manifests(tmp_path / "published", {"np311": PUBLISHED["np311"]},
                                published_at='2026-11-25, "a hand edit"')
    base = ("arns", "np311", "--manifests", str(tmp_path / "published"))
    rows = json.loads(layers(*base, "--format", "json", "--latest", cwd=tmp_path).stdout)
    latest = expected_latest(manifests["np311"])
    assert {(r["region"], r["arn"], r["ssm_parameter"]) for r in rows} == {
        (e.region, e.arn, latest[e.layer_name]) for e in manifests["np311"].rows()}
    pinned = json.loads(layers(*base, "--format", "json", cwd=tmp_path).stdout)
    assert "ssm_parameter" not in pinned[0]  # the format as it always was
    table = list(csv.DictReader(io.StringIO(layers(*base, "--format", "csv", "--latest", cwd=tmp_path).stdout)))
    assert len(table) == 5 and {r["published_at"] for r in table} == {'2026-11-25, "a hand edit"'}
    assert {r["ssm_parameter"] for r in table} == set(latest.values())


def test_region_narrows_the_snippet_to_that_region(published):
    work = published[0]
    template = yaml.safe_load(snippet(work, "np311", "cloudformation", "pin", "eu.yaml", "--region", "eu-west-1")
                              .read_text())
    assert list(template["Mappings"]["LayerArns"]) == ["eu-west-1"]
    assert template["Mappings"]["LayerArns"]["eu-west-1"]["Np311Python311X8664"] == \
        "arn:aws:lambda:eu-west-1:123456789012:layer:np311-python311-x86_64:5"


def test_a_manifest_runtime_never_reaches_a_snippet_unless_lambda_knows_it(tmp_path):
    # runtimes are free text in a manifest (32 characters); only a Lambda Python runtime becomes the function's.
    evil = 'x"}\n${file("/etc/passwd")}'
    write_manifests(tmp_path / "published", {"np311": {"np311-python311-x86_64": (
        "x86_64", (evil, "python3.12"), {"us-east-1": 3})}})
    for fmt in ("cloudformation", "sam", "terraform", "serverless", "cdk"):
        result = layers("arns", "np311", "--format", fmt, "--manifests", str(tmp_path / "published"), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "python3.12" in result.stdout and "passwd" not in result.stdout
    only_evil = tmp_path / "only"
    write_manifests(only_evil, {"np311": {"np311-python311-x86_64": ("x86_64", (evil,), {"us-east-1": 3})}})
    result = layers("arns", "np311", "--format", "sam", "--manifests", str(only_evil), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "no Lambda Python runtime" in result.stderr and "hint:" in result.stderr


def test_latest_needs_the_parameters_the_manifest_records(tmp_path):
    write_manifests(tmp_path / "none", {"np311": PUBLISHED["np311"]}, ssm=())  # published with --no-ssm
    result = layers("arns", "np311", "--format", "terraform", "--latest", "--manifests", str(tmp_path / "none"),
                    cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "records no SSM parameter" in result.stderr and "--pin" in result.stderr.splitlines()[1]
    # Published under /team/layers: that is what --latest names, and another --ssm-prefix is refused.
    manifests = write_manifests(tmp_path / "team", {"np311": PUBLISHED["np311"]}, prefix="/team/layers")
    base = ("arns", "np311", "--format", "sam", "--latest", "--manifests", str(tmp_path / "team"))
    template = yaml.safe_load(layers(*base, cwd=tmp_path).stdout)
    values = {r["Properties"]["Layers"][0] for r in template["Resources"].values()}
    assert values == {"{{resolve:ssm:" + n + "}}" for n in expected_latest(manifests["np311"]).values()}
    assert layers(*base, "--ssm-prefix", "/team/layers", cwd=tmp_path).stdout == layers(*base, cwd=tmp_path).stdout \
        .replace("--latest`", "--latest --ssm-prefix /team/layers`")
    wrong = layers(*base, "--ssm-prefix", "/layers", cwd=tmp_path)
    assert wrong.returncode == 2 and "publish did not write /layers/" in wrong.stderr


# -- refused before anything is written ----------------------------------------------------------
@pytest.mark.parametrize("args, words, hint", [
    (["np311", "--format", "yaml"], "--format 'yaml' is not one of", "--format table, json"),
    (["np311", "--format", "cloudformatoin"], "--format 'cloudformatoin'", "did you mean 'cloudformation'?"),
    (["np311", "--format", "sam", "--pin", "--latest"], "--pin and --latest: choose one", "--pin (the default)"),
    (["np311", "--all", "--format", "html"], "--all indexes every manifest, so it takes no recipe", "drop"),
    (["--all", "--format", "sam"], "--all --format sam", "--format table, json or html"),
    (["--format", "json"], "say which", "layers arns RECIPE"),
    (["np311", "--format", "sam", "--ssm-prefix", "/team"], "--ssm-prefix says where --latest reads",
     "add --latest"),
    (["np311", "--format", "sam", "--latest", "--ssm-prefix", "team"], "is not an SSM parameter path", "/layers"),
    (["--all", "--latest", "--format", "json"], "--latest is for a recipe's snippets", "drop --latest"),
    (["np311", "--region", "eu-west1", "--format", "sam"], "'eu-west1' is not an AWS region", "eu-west-1"),
    (["np311"], "--output writes a document", "--format"),
])
def test_bad_arguments_are_refused_before_any_output(published, tmp_path, args, words, hint):
    work, _ = published
    kept = tmp_path / "kept.txt"
    kept.write_text("as it was\n")
    # An existing output is left as it was; a new one (in a folder not made yet) is not begun.
    targets = [tmp_path / "site" / "out.txt"] + ([kept] if "--all" in args or "--pin" in args or "yaml" in args else [])
    for target in targets:
        result = layers("arns", *args, "--manifests", str(work / "published"), "--output", str(target), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stdout == "" and "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 2 and lines[0].startswith("error: ") and words in lines[0], lines
        assert lines[1].startswith("hint: ") and hint in lines[1], lines
    assert kept.read_text() == "as it was\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]  # no folder, no temporary left either
