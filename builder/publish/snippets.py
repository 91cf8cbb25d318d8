"""IaC snippets for published layers: ``layers arns RECIPE --format sam|cloudformation|cdk|serverless|terraform``.

Manifest entries in, text out; nothing here reads a file or asks AWS. Each
snippet is a whole document of its kind (a template, a configuration, a CDK
app) with one minimal function per layer that uses it, so it can be linted,
deployed or pasted as it is.

Layers are regional, so every snippet says which ARN is for which region:

* ``pin`` (the default) names the exact version the manifest holds in each
  region: a ``Mappings`` table keyed by region read with ``Fn::FindInMap`` on
  ``AWS::Region`` (CloudFormation, SAM, CDK), a map keyed by region looked up
  with the provider's region (Terraform), ``custom.layerArns.<region>`` read
  with ``${aws:region}`` (Serverless). A region the layer is not published
  in fails at deploy, naming the layer, never falls back to another region.
* ``latest`` names the ``latest`` SSM parameter publish wrote in each
  region (``plan.ssm_parameter_name``; the manifest records it), resolved in
  the stack's own region at deploy: ``{{resolve:ssm:NAME}}``,
  ``data "aws_ssm_parameter"``, ``${ssm:NAME}``,
  ``ssm.StringParameter.value_for_string_parameter`` (the Python name of
  CDK's ``valueForStringParameter``).

Values reach each format only through its own serializer: YAML through
PyYAML's safe dumper, JSON through ``json``, Python through ``repr``, HCL
through ``hcl_string``. The names were validated by the manifest's loader,
but a value is never pasted into syntax unquoted. ``json`` and ``csv`` list
the rows as data (the formats ``layers arns`` always had).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

import yaml

from ..errors import UsageError
from .manifest import Entry
from .plan import ssm_parameter_name

SNIPPET_FORMATS = ("sam", "cloudformation", "cdk", "serverless", "terraform")
DATA_FORMATS = ("json", "csv")

# What the example function does: list what the layer put on sys.path, so a deploy shows the layer loads.
HANDLER = '''\
import importlib.metadata


def handler(event, context):
    # The distributions the layer put on sys.path (/opt/python), by name and version.
    return sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
'''


@dataclass(frozen=True)
class Layer:
    """One published layer (one architecture) as a snippet uses it."""

    name: str
    architecture: str
    arns: dict[str, str]          # region -> ARN, as the manifest holds them
    runtime: str                  # the function's runtime: a Lambda Python runtime every region's version lists
    ssm_parameter: str | None     # --latest: the parameter publish writes
    logical_id: str               # CamelCase, unique in the snippet

    @property
    def regions(self) -> list[str]:
        return sorted(self.arns)


def render(entries: list[Entry], fmt: str, recipe: str, *, latest: bool = False,
           ssm_prefix: str | None = None) -> str:
    """The snippet (or the data rows) for ``entries`` of ``recipe``'s manifest.

    ``latest`` names each layer's ``latest`` SSM parameter as the manifest records it
    (``latest_parameter``); ``ssm_prefix``, when given, must be the prefix publish used.
    """
    renderers = {"sam": sam, "cloudformation": cloudformation, "cdk": cdk, "serverless": serverless,
                 "terraform": terraform}
    if fmt not in (*DATA_FORMATS, *renderers):
        raise UsageError(f"unknown format {fmt!r}", hint=", ".join((*DATA_FORMATS, *SNIPPET_FORMATS)))
    parameters = {}
    if latest:
        by_name: dict[str, list[Entry]] = {}
        for entry in entries:
            by_name.setdefault(entry.layer_name, []).append(entry)
        parameters = {name: latest_parameter(name, rows, ssm_prefix) for name, rows in by_name.items()}
    if fmt == "json":
        rows = [e.to_json() for e in entries]
        for row, entry in zip(rows, entries):
            if latest:
                row["ssm_parameter"] = parameters[entry.layer_name]
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        return _csv(entries, parameters if latest else None)
    return renderers[fmt](layers(entries, parameters if latest else None), recipe, latest=latest,
                          ssm_prefix=ssm_prefix)


def latest_parameter(layer_name: str, rows: list[Entry], ssm_prefix: str | None = None) -> str:
    """The ``latest`` SSM parameter publish wrote for the layer in every region its manifest names.

    What the manifest records (``Entry.ssm``), never a guess: a region with none recorded (published
    with ``--no-ssm``, or before publish wrote them) would fail every deploy there, so it is an error;
    so is an ``ssm_prefix`` other than the one publish used.
    """
    recorded = {e.region: [n for n in e.ssm if n.endswith("/latest")] for e in rows}
    missing = sorted(region for region, names in recorded.items() if not names)
    if missing:
        raise UsageError(f"--latest: the manifest records no SSM parameter for {layer_name} in {', '.join(missing)}",
                         hint="publish it again without --no-ssm (it writes PREFIX/LAYER/ARCH/latest), or use --pin")
    names = sorted({n for found in recorded.values() for n in found})
    if ssm_prefix is not None:
        wanted = ssm_parameter_name(ssm_prefix, layer_name, rows[0].architecture, "latest")
        off = sorted(region for region, found in recorded.items() if wanted not in found)
        if off:
            raise UsageError(f"--ssm-prefix {ssm_prefix}: publish did not write {wanted} in {', '.join(off)} "
                             f"(the manifest records {', '.join(names)})",
                             hint="drop --ssm-prefix to use what the manifest records, or give the prefix publish used")
        return wanted
    if len(names) > 1:
        raise UsageError(f"--latest: {layer_name}'s 'latest' parameter is under more than one prefix "
                         f"({', '.join(names)})", hint="choose one with --ssm-prefix")
    return names[0]


def _csv(entries: list[Entry], parameters: dict[str, str] | None) -> str:
    # The csv module quotes what needs it: published_at is free text in a hand-edited manifest.
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["layer_name", "architecture", "region", "version", "arn", "sha256", "lock_digest",
                     "published_at"] + (["ssm_parameter"] if parameters is not None else []))
    for e in entries:
        writer.writerow([e.layer_name, e.architecture, e.region, e.version, e.arn, e.sha256, e.lock_digest,
                         e.published_at] + ([parameters[e.layer_name]] if parameters is not None else []))
    return buffer.getvalue().rstrip("\n")


# -- the layers as snippets see them ----------------------------------------------------
def layers(entries: list[Entry], parameters: dict[str, str] | None = None) -> list[Layer]:
    """Entries grouped by layer, each with its function's runtime and a logical ID no other layer has.

    ``parameters``: each layer's ``latest`` SSM parameter, for ``--latest``; None for pinned ARNs.
    """
    by_name: dict[str, list[Entry]] = {}
    for entry in entries:
        by_name.setdefault(entry.layer_name, []).append(entry)
    if not by_name:
        raise UsageError("no published layer to write a snippet for", hint="layers publish RECIPE --regions ...")
    taken: set[str] = set()
    found = []
    for name, rows in sorted(by_name.items()):
        architecture = rows[0].architecture
        found.append(Layer(name=name, architecture=architecture, arns={e.region: e.arn for e in rows},
                           runtime=function_runtime(name, rows),
                           ssm_parameter=parameters[name] if parameters is not None else None,
                           logical_id=_unique(_camel(name), taken)))
    return found


def function_runtime(layer_name: str, rows: list[Entry]) -> str:
    """The newest Lambda Python runtime that every region's version of the layer lists as compatible."""
    from ..runtimes import all_runtimes

    known = all_runtimes()
    common = set(rows[0].runtimes).intersection(*(e.runtimes for e in rows[1:])) & set(known)
    if not common:
        raise UsageError(f"{layer_name}: the manifest lists no Lambda Python runtime that every region's version "
                         "is compatible with, so a snippet's function would have none to use",
                         hint="publish it again (publish records the runtimes), or use --format json or csv")
    return max(common, key=lambda name: known[name].python_tuple)


def _camel(name: str) -> str:
    text = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)
    # A logical ID is alphanumeric; one that starts with a digit reads as a number in some tools.
    return text if text[:1].isalpha() else "Layer" + text


def _unique(candidate: str, taken: set[str]) -> str:
    """``candidate``, or it with the first free number: "a-b" and "a_b" both camel-case to "AB"."""
    name, n = candidate, 2
    while name.lower() in taken:
        name, n = f"{candidate}{n}", n + 1
    taken.add(name.lower())
    return name


def _header(recipe: str, fmt: str, latest: bool, ssm_prefix: str | None, marker: str,
            extra: tuple[str, ...] = ()) -> str:
    mode = "--latest" + (f" --ssm-prefix {ssm_prefix}" if ssm_prefix is not None else "") if latest else "--pin"
    how = ("each layer's ARN is read at deploy from the SSM parameter `layers publish` writes in every region"
           if latest else "each layer's exact published version, by region, from the manifest")
    lines = [f"Written by `layers arns {recipe} --format {fmt} {mode}`: one minimal function per layer of",
             f"recipe {recipe}; {how}.", *extra]
    # Comments carry only names the manifest loader validated, and never a line break of their own.
    return "".join(f"{marker} {_one_line(line)}".rstrip() + "\n" for line in lines)


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


# -- YAML: CloudFormation, SAM, Serverless ------------------------------------------------
class _Literal(str):
    """Written as a ``|`` block: the handler's code, as people write it."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


_Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|"))


def _yaml(document: dict) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16,
                     allow_unicode=False)


def _cfn_layer_value(layer: Layer) -> object:
    if layer.ssm_parameter:
        return "{{resolve:ssm:" + layer.ssm_parameter + "}}"
    return {"Fn::FindInMap": ["LayerArns", {"Ref": "AWS::Region"}, layer.logical_id]}


def _cfn_common(all_layers: list[Layer], recipe: str, latest: bool, template: str) -> dict:
    description = (f"A function per layer of recipe {recipe} (lambda-layer-builder), "
                   + ("each layer's ARN from the SSM parameter layers publish writes in the stack's region"
                      if latest else "each pinned to the version published in the stack's region"))
    document: dict = {"AWSTemplateFormatVersion": "2010-09-09"}
    if template == "sam":
        document["Transform"] = "AWS::Serverless-2016-10-31"
    document["Description"] = description
    # A stack in a region the layer is not published in is refused before any resource is made, with a sentence.
    document["Rules"] = {
        f"{layer.logical_id}Region": {"Assertions": [{
            "Assert": {"Fn::Contains": [layer.regions, {"Ref": "AWS::Region"}]},
            "AssertDescription": f"{layer.name} is published only in {', '.join(layer.regions)}",
        }]} for layer in all_layers}
    if not latest:
        regions = sorted({region for layer in all_layers for region in layer.arns})
        document["Mappings"] = {"LayerArns": {
            region: {layer.logical_id: layer.arns[region] for layer in all_layers if region in layer.arns}
            for region in regions}}
    return document


def cloudformation(all_layers: list[Layer], recipe: str, *, latest: bool = False,
                   ssm_prefix: str | None = None) -> str:
    """A CloudFormation template: the region table (or SSM references), a role, a function per layer."""
    document = _cfn_common(all_layers, recipe, latest, "cloudformation")
    resources: dict = {"FunctionRole": {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
        # Logs only: the example function needs nothing else.
        "ManagedPolicyArns": [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                                          "AWSLambdaBasicExecutionRole"}]}}}
    outputs: dict = {}
    for layer in all_layers:
        resources[f"{layer.logical_id}Function"] = {"Type": "AWS::Lambda::Function", "Properties": {
            "Description": f"Uses the layer {layer.name} ({layer.architecture})",
            "Runtime": layer.runtime, "Architectures": [layer.architecture], "Handler": "index.handler",
            "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]}, "Code": {"ZipFile": _Literal(HANDLER)},
            "Layers": [_cfn_layer_value(layer)], "MemorySize": 1024, "Timeout": 30}}
        outputs.update(_cfn_outputs(layer))
    document["Resources"] = resources
    document["Outputs"] = outputs
    return _header(recipe, "cloudformation", latest, ssm_prefix, "#") + _yaml(document)


def sam(all_layers: list[Layer], recipe: str, *, latest: bool = False, ssm_prefix: str | None = None) -> str:
    """A SAM template: the same table or references, an ``AWS::Serverless::Function`` per layer."""
    document = _cfn_common(all_layers, recipe, latest, "sam")
    resources: dict = {}
    outputs: dict = {}
    for layer in all_layers:
        resources[f"{layer.logical_id}Function"] = {"Type": "AWS::Serverless::Function", "Properties": {
            "Description": f"Uses the layer {layer.name} ({layer.architecture})",
            "Runtime": layer.runtime, "Architectures": [layer.architecture], "Handler": "index.handler",
            "InlineCode": _Literal(HANDLER), "Layers": [_cfn_layer_value(layer)], "MemorySize": 1024,
            "Timeout": 30}}
        outputs.update(_cfn_outputs(layer))
    document["Resources"] = resources
    document["Outputs"] = outputs
    return _header(recipe, "sam", latest, ssm_prefix, "#") + _yaml(document)


def _cfn_outputs(layer: Layer) -> dict:
    return {f"{layer.logical_id}FunctionName": {"Description": f"The function that uses {layer.name}",
                                                "Value": {"Ref": f"{layer.logical_id}Function"}},
            f"{layer.logical_id}LayerArn": {"Description": f"The {layer.name} version this stack's region uses",
                                            "Value": _cfn_layer_value(layer)}}


def serverless(all_layers: list[Layer], recipe: str, *, latest: bool = False,
               ssm_prefix: str | None = None) -> str:
    """A ``serverless.yml``: ARNs under ``custom.layerArns`` by region, read with ``${aws:region}``; or ``${ssm:}``."""
    # A service name is letters, digits and '-', starting with a letter; a recipe name may hold '.' and '_'.
    service = re.sub(r"[^A-Za-z0-9-]", "-", recipe)
    service = (service if service[:1].isalpha() else "layers-" + service) + "-layers"
    document: dict = {"service": service, "frameworkVersion": ">=3",  # ${aws:region} needs v2.50 or later
                      "provider": {"name": "aws"}}
    if not latest:
        regions = sorted({region for layer in all_layers for region in layer.arns})
        document["custom"] = {"layerArns": {
            region: {layer.logical_id: layer.arns[region] for layer in all_layers if region in layer.arns}
            for region in regions}}
    functions = {}
    for layer in all_layers:
        source = (f"${{ssm:{layer.ssm_parameter}}}" if layer.ssm_parameter
                  else f"${{self:custom.layerArns.${{aws:region}}.{layer.logical_id}}}")
        functions[layer.logical_id] = {"description": f"Uses the layer {layer.name} ({layer.architecture})",
                                       "handler": "index.handler", "runtime": layer.runtime,
                                       "architecture": layer.architecture, "memorySize": 1024, "timeout": 30,
                                       "layers": [source]}
    document["functions"] = functions
    regions = ", ".join(sorted({r for layer in all_layers for r in layer.arns}))
    extra = (f"Deploy with --region, one of: {regions} (where it is published). A region without",
             "the layer fails to resolve the variable, naming it. The handler, saved beside this file as index.py:",
             "", *HANDLER.splitlines())
    return _header(recipe, "serverless", latest, ssm_prefix, "#", extra) + _yaml(document)


# -- Terraform ---------------------------------------------------------------------------
_HCL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def hcl_string(value: str) -> str:
    """``value`` as an HCL quoted string that means exactly it: escapes, and no ``${`` or ``%{`` template."""
    out = []
    for i, char in enumerate(value):
        if char in _HCL_ESCAPES:
            out.append(_HCL_ESCAPES[char])
        elif char in "$%" and value[i + 1:i + 2] == "{":
            out.append(char * 2)  # "$${" is a literal "${" in HCL, "%%{" a literal "%{"
        elif not char.isprintable():
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _hcl_identifier(text: str, taken: set[str]) -> str:
    """A Terraform name: letters, digits and '_' (a '-' is legal, but reads as subtraction), unique."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return _unique(name if name[:1].isalpha() or name[:1] == "_" else "l_" + name, taken)


def _function_name(layer: Layer, taken: set[str]) -> str:
    # A Lambda function name is at most 64 characters; a layer name may be 140.
    return _unique(layer.name[:56] + "-example", taken)


_TERRAFORM_PROVIDERS = """\
terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100" # data.aws_region's `region` attribute
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }
}

data "aws_region" "current" {}

data "aws_partition" "current" {}
"""


def terraform(all_layers: list[Layer], recipe: str, *, latest: bool = False,
              ssm_prefix: str | None = None) -> str:
    """A Terraform configuration: providers, the ARNs by region (or SSM data sources), a role, a function per layer."""
    q = hcl_string
    parts = [_header(recipe, "terraform", latest, ssm_prefix, "#", (
        "The provider's region picks the ARN; a region the layer is not published in fails the plan.",)),
        _TERRAFORM_PROVIDERS]
    taken_names: set[str] = set()
    names = {layer.name: _hcl_identifier(layer.name, taken_names) for layer in all_layers}
    locals_ = []
    for layer in all_layers:
        key = f"{names[layer.name]}_layer_arns" if not latest else f"{names[layer.name]}_layer_regions"
        if latest:
            body = ", ".join(q(r) for r in layer.regions)
            locals_.append(f"  # {layer.name} ({layer.architecture}): the regions it is published in\n"
                           f"  {key} = [{body}]")
        else:
            body = "\n".join(f"    {q(region)} = {q(arn)}" for region, arn in sorted(layer.arns.items()))
            locals_.append(f"  # {recipe}: {layer.name} ({layer.architecture}), by region\n  {key} = {{\n{body}\n  }}")
    parts.append("locals {\n" + "\n".join(locals_) + "\n}\n")
    if latest:
        for layer in all_layers:
            parts.append(f"data \"aws_ssm_parameter\" \"{names[layer.name]}_latest\" {{\n"
                         f"  name = {q(layer.ssm_parameter)}\n}}\n")
    parts.append("data \"archive_file\" \"handler\" {\n"
                 "  type        = \"zip\"\n"
                 "  output_path = \"${path.module}/handler.zip\"\n"
                 "  source {\n"
                 f"    content  = {q(HANDLER)}\n"
                 "    filename = \"index.py\"\n"
                 "  }\n"
                 "}\n")
    parts.append("resource \"aws_iam_role\" \"function\" {\n"
                 "  assume_role_policy = jsonencode({\n"
                 "    Version = \"2012-10-17\"\n"
                 "    Statement = [{\n"
                 "      Effect    = \"Allow\"\n"
                 "      Principal = { Service = \"lambda.amazonaws.com\" }\n"
                 "      Action    = \"sts:AssumeRole\"\n"
                 "    }]\n"
                 "  })\n"
                 "}\n\n"
                 "# Logs only: the example function needs nothing else.\n"
                 "resource \"aws_iam_role_policy_attachment\" \"logs\" {\n"
                 "  role       = aws_iam_role.function.name\n"
                 "  policy_arn = \"arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/"
                 "AWSLambdaBasicExecutionRole\"\n"
                 "}\n")
    taken: set[str] = set()
    for layer in all_layers:
        ident = names[layer.name]
        if latest:
            value = f"data.aws_ssm_parameter.{ident}_latest.value"
            regions = f"local.{ident}_layer_regions"
        else:
            value = f"local.{ident}_layer_arns[data.aws_region.current.region]"
            regions = f"keys(local.{ident}_layer_arns)"
        message = q(f"{layer.name} is published only in {', '.join(layer.regions)}.")
        parts.append(f"resource \"aws_lambda_function\" \"{ident}\" {{\n"
                     f"  description      = {q(f'Uses the layer {layer.name} ({layer.architecture})')}\n"
                     f"  function_name    = {q(_function_name(layer, taken))}\n"
                     "  role             = aws_iam_role.function.arn\n"
                     f"  runtime          = {q(layer.runtime)}\n"
                     f"  architectures    = [{q(layer.architecture)}]\n"
                     "  handler          = \"index.handler\"\n"
                     "  filename         = data.archive_file.handler.output_path\n"
                     "  source_code_hash = data.archive_file.handler.output_base64sha256\n"
                     "  memory_size      = 1024\n"
                     "  timeout          = 30\n"
                     f"  layers           = [{value}]\n\n"
                     "  lifecycle {\n"
                     "    precondition {\n"
                     f"      condition     = contains({regions}, data.aws_region.current.region)\n"
                     f"      error_message = {message}\n"
                     "    }\n"
                     "  }\n"
                     "}\n\n"
                     f"output \"{ident}_layer_arn\" {{\n"
                     + (f"  value     = {value}\n"
                        "  sensitive = true # the provider marks an SSM parameter's value sensitive\n"
                        if latest else f"  value = {value}\n")
                     + "}\n")
    return "\n".join(parts)


# -- CDK (Python) ---------------------------------------------------------------------------
def cdk(all_layers: list[Layer], recipe: str, *, latest: bool = False, ssm_prefix: str | None = None) -> str:
    """A CDK app in Python (``app.py``): a stack with a function per layer, the ARN by region or from SSM."""
    data = []
    for layer in all_layers:
        item: dict = {"name": layer.name, "logical_id": layer.logical_id, "architecture": layer.architecture,
                      "runtime": layer.runtime, "regions": layer.regions}
        if latest:
            item["ssm_parameter"] = layer.ssm_parameter
        else:
            item["arns"] = dict(sorted(layer.arns.items()))
        data.append(item)
    stack_id = _camel(recipe) + "Layers"
    lines = [
        "#!/usr/bin/env python3",
        _header(recipe, "cdk", latest, ssm_prefix, "#",
                ("A CDK v2 app in Python: save as app.py; cdk.json: {\"app\": \"python3 app.py\"}.",)).rstrip("\n"),
        "import aws_cdk as cdk",
        "from aws_cdk import aws_lambda as lambda_",
        "from aws_cdk import aws_ssm as ssm" if latest else None,
        "from constructs import Construct",
        "",
        "# Layers are regional: " + ("the SSM parameter publish writes in each region of each layer."
                                    if latest else "each layer's published ARN by region."),
        f"LAYERS = {_python_literal(data)}",
        "",
        f"HANDLER = {HANDLER!r}",
        "",
        "ARCHITECTURES = {\"x86_64\": lambda_.Architecture.X86_64, \"arm64\": lambda_.Architecture.ARM_64}",
        "",
        "",
        "class LayerFunctionsStack(cdk.Stack):",
        "    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:",
        "        super().__init__(scope, construct_id, **kwargs)",
        "        for layer in LAYERS:",
        "            name = layer[\"logical_id\"]",
        "            # A stack in a region without the layer is refused at deploy, before anything is made.",
        "            cdk.CfnRule(self, f\"{name}Region\", assertions=[cdk.CfnRuleAssertion(",
        "                assert_=cdk.Fn.condition_contains(layer[\"regions\"], cdk.Aws.REGION),",
        "                assert_description=f\"{layer['name']} is published only in {', '.join(layer['regions'])}\")])",
    ]
    if latest:
        lines += [
            "            arn = ssm.StringParameter.value_for_string_parameter(self, layer[\"ssm_parameter\"])",
        ]
    else:
        lines += [
            "            table = cdk.CfnMapping(self, f\"{name}Arns\",",
            "                                   mapping={region: {\"Arn\": arn} for region, arn in layer[\"arns\"].items()})",
            "            arn = table.find_in_map(cdk.Aws.REGION, \"Arn\")",
        ]
    lines += [
        "            function = lambda_.Function(",
        "                self, f\"{name}Function\",",
        "                description=f\"Uses the layer {layer['name']} ({layer['architecture']})\",",
        "                runtime=lambda_.Runtime(layer[\"runtime\"], lambda_.RuntimeFamily.PYTHON, supports_inline_code=True),",
        "                architecture=ARCHITECTURES[layer[\"architecture\"]],",
        "                handler=\"index.handler\",",
        "                code=lambda_.Code.from_inline(HANDLER),",
        "                layers=[lambda_.LayerVersion.from_layer_version_arn(self, f\"{name}Layer\", arn)],",
        "                memory_size=1024,",
        "                timeout=cdk.Duration.seconds(30),",
        "            )",
        "            cdk.CfnOutput(self, f\"{name}FunctionName\", value=function.function_name)",
        "",
        "",
        "app = cdk.App()",
        f"LayerFunctionsStack(app, {stack_id!r})",
        "app.synth()",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def _python_literal(value: object, indent: int = 0) -> str:
    """``value`` (dicts, lists, str) as Python source, one item a line: every string through ``repr``."""
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{k!r}: {_python_literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return "[" + ", ".join(repr(v) for v in value) + "]"
        items = [f"{pad}{_python_literal(v, indent + 4)}," for v in value]
        return "[\n" + "\n".join(items) + "\n" + " " * indent + "]"
    if isinstance(value, str):
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")
