"""The layer's SBOM: a CycloneDX 1.6 JSON document beside the zip, ``RECIPE-RUNTIME-ARCH.cdx.json``.

What it lists, and where ``build.py`` gets each part:

- the layer (``metadata.component``): the zip's name and sha256, the runtime, the architecture, the lock's
  digest, the layer identity and the build environment;
- every distribution of the lock (``components``), as ``pkg:pypi/NAME@VERSION``, with the sha256 of the file
  it came from: the wheel downloaded from the index or, for a wheel built here, its sdist
  (``LockedWheel.identity``: a wheel built from an sdist is not byte-reproducible). Those the strip stage
  removed (``strip.drop``, trace pruning) have scope ``excluded``: the lock resolved them, the layer does not
  ship them;
- each distribution's licence as its METADATA declares it (``declarations``): PEP 639's
  ``License-Expression``, else ``License``, else the ``License ::`` classifiers. It is read right after
  install, because the strip stage trims METADATA and removes RECORD;
- every library ``verify/repair.py`` grafted into the layer, with where it came from in the build
  environment (the report's ``grafted`` entries).

Reproducible like the zip: the same build gives the same bytes. The serial number is a UUID5 of the zip's
sha256 and the layer identity, the timestamp is the one the zip's entries carry (1980-01-01, ``archive.py``),
every bom-ref is derived from what it names, and the library sorts components, properties and dependencies.

Publishing reads it back (``license_info``) to fill Lambda's LicenseInfo when the recipe sets no
``license``. The SBOM may come from a pull request: it is read bounded, and only the parts used are read,
each checked.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from functools import cache
from pathlib import Path

from boolean import ParseError
from license_expression import ExpressionError
from packaging.utils import canonicalize_name

from .errors import BuildError, UsageError
from .files import read_json

SPEC_VERSION = "1.6"
# The zip's entries carry 1980-01-01 00:00:00 (archive.py): the SBOM claims no other time either.
TIMESTAMP = _dt.datetime(1980, 1, 1, tzinfo=_dt.UTC)
_SERIAL_NAMESPACE = uuid.UUID("5c4f7a2e-9a57-5d0c-8b1e-6c61796572ab")  # this tool's own: no other UUID5 shares it
PROPERTY = "lambda-layer-builder"  # the namespace of this tool's component properties

LICENSE_INFO_MAX = 512      # Lambda's LicenseInfo
NAME_MAX = 200              # a declared licence longer than this (a whole licence text) is named by its first line
TEXT_MAX = 64 << 10         # and carried as text up to here (the GPL-3.0 is 35 KB)
EXPRESSION_MAX = 1024
METADATA_MAX = 4 << 20      # METADATA read right after install: the long description included
MAX_SBOM_BYTES = 32 << 20   # a tf18 SBOM is 22 KB; a licence text adds up to 64 KB a distribution
MAX_COMPONENTS = 10_000
MAX_LICENCES = 64           # per component

# Trove classifiers that name one SPDX licence. The others ("BSD License", "Apache Software License",
# "Academic Free License (AFL)") name a family, not a version: they stay names, as declared.
CLASSIFIERS = {
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
    "License :: OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "License :: OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "License :: OSI Approved :: European Union Public Licence 1.2 (EUPL 1.2)": "EUPL-1.2",
    "License :: OSI Approved :: GNU Affero General Public License v3": "AGPL-3.0-only",
    "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "License :: OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "License :: OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "License :: OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "License :: OSI Approved :: Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "License :: OSI Approved :: Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: PostgreSQL License": "PostgreSQL",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "License :: OSI Approved :: Universal Permissive License (UPL)": "UPL-1.0",
    "License :: OSI Approved :: zlib/libpng License": "Zlib",
}
# What old setuptools wrote when a project declared nothing.
_NOTHING = frozenset({"", "unknown", "none", "n/a", "undefined"})
_LICENSE_REF = re.compile(r"(DocumentRef-[A-Za-z0-9.-]+:)?LicenseRef-[A-Za-z0-9.-]+")
_REF_CHARS = re.compile(r"[^A-Za-z0-9.-]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# What license_expression raises on odd input: its own errors, and Python's from inside it.
_PARSE_ERRORS = (ExpressionError, ParseError, ValueError, TypeError, AttributeError, KeyError, RecursionError)


# -- licences as distributions declare them ---------------------------------------------------------------------

@dataclass(frozen=True)
class Licence:
    """One declared licence: an SPDX expression (a single identifier is one), or else a name."""

    expression: str = ""   # normalised SPDX ("Apache-2.0 OR MIT"); "" when the declaration is no SPDX expression
    name: str = ""         # what was declared, when it is not (its first line, at most NAME_MAX characters)
    text: str = ""         # the whole declaration when it was longer than a name (at most TEXT_MAX)


@dataclass(frozen=True)
class Declared:
    """What an installed distribution's METADATA says, kept from before the strip stage trims it."""

    name: str                        # canonical
    licences: tuple[Licence, ...] = ()
    requires: tuple[str, ...] = ()   # canonical names, for the runtime's Python (strip.rules.installed_distributions)


@cache
def _licensing():
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def spdx_expression(text: str) -> str | None:
    """``text`` as a normalised SPDX licence expression ("mit or apache-2.0" -> "MIT OR Apache-2.0"); else None.

    ``LicenseRef-`` identifiers (PEP 639 allows them) are accepted and kept as written.
    """
    text = " ".join(text.split())
    if not text or len(text) > EXPRESSION_MAX:
        return None
    try:
        info = _licensing().validate(text)
    except _PARSE_ERRORS:
        return None
    if not info.errors:
        return info.normalized_expression
    if info.invalid_symbols and all(_LICENSE_REF.fullmatch(s) for s in info.invalid_symbols) \
            and all(error.startswith("Unknown license key") for error in info.errors):
        try:
            return str(_licensing().parse(text, validate=False))
        except _PARSE_ERRORS:
            return None
    return None


def _named(value: str) -> Licence:
    lines = [line.strip() for line in value.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(lines) == 1 and len(first) <= NAME_MAX:
        return Licence(name=first)
    name = first if len(first) <= NAME_MAX else first[:NAME_MAX - 1].rstrip() + "…"
    text = value.strip()
    if len(text) > TEXT_MAX:
        text = text[:TEXT_MAX] + f"\n[… {len(text) - TEXT_MAX:,} more characters in the distribution's METADATA]"
    return Licence(name=name, text=text)


def licences_from_metadata(text: str) -> tuple[Licence, ...]:
    """The licences a METADATA file declares, the most precise declaration first found.

    PEP 639's ``License-Expression``; else ``License`` when it is an SPDX expression; else the ``License ::``
    classifiers when each names one SPDX licence; else ``License`` as the name it is; else the classifiers
    as names. Nothing declared gives ().
    """
    headers = HeaderParser().parsestr(text, headersonly=True)

    def header(key: str) -> str:
        value = headers.get(key)
        return "" if value is None else str(value)

    expression = header("License-Expression").strip()
    if expression:
        spdx = spdx_expression(expression)
        return (Licence(expression=spdx),) if spdx else (_named(expression),)
    declared = header("License")
    if declared.strip().lower() in _NOTHING:
        declared = ""
    spdx = spdx_expression(declared) if declared and "\n" not in declared.strip() else None
    if spdx:
        return (Licence(expression=spdx),)
    classifiers = [str(c).strip() for c in headers.get_all("Classifier") or [] if str(c).startswith("License ::")]
    classifiers = list(dict.fromkeys(c for c in classifiers if c != "License :: OSI Approved"))
    if classifiers and all(c in CLASSIFIERS for c in classifiers):
        return tuple(Licence(expression=CLASSIFIERS[c]) for c in classifiers)
    if declared:
        return (_named(declared),)
    return tuple(Licence(expression=CLASSIFIERS[c]) if c in CLASSIFIERS else _named(c.rsplit(" :: ", 1)[-1])
                 for c in classifiers)


def declarations(distributions: Mapping[str, object]) -> dict[str, Declared]:
    """Each installed distribution's licences and requirements, from ``strip.rules.installed_distributions``."""
    declared = {}
    for name, dist in distributions.items():
        metadata = Path(dist.dist_info) / "METADATA"
        try:
            with metadata.open("rb") as handle:
                text = handle.read(METADATA_MAX).decode("utf-8", errors="replace")
        except OSError:
            text = ""
        declared[canonicalize_name(name)] = Declared(canonicalize_name(name), licences_from_metadata(text),
                                                     tuple(sorted(set(dist.requires))))
    return declared


def distributions_in(tree: Path) -> frozenset[str]:
    """The distributions whose dist-info is still in the tree: what the layer ships."""
    return frozenset(canonicalize_name(path.name.split("-", 1)[0]) for path in tree.glob("*.dist-info"))


# -- the document ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Subject:
    """The layer the SBOM describes."""

    name: str            # the recipe's layer name
    stem: str            # RECIPE-RUNTIME-ARCH
    zip_sha256: str
    runtime: str
    arch: str
    lock_digest: str
    identity: str        # lockfile.layer_identity
    environment: str     # the backend's environment_id: "pip", "docker:<image ID>"
    builder_version: str
    description: str = ""


def serial_number(zip_sha256: str, identity: str) -> uuid.UUID:
    return uuid.uuid5(_SERIAL_NAMESPACE, f"{zip_sha256}:{identity}")


def layer_bom(subject: Subject, lock, declared: Mapping[str, Declared], shipped: Iterable[str],
              grafts: Iterable[Mapping] = ()):
    """The CycloneDX ``Bom`` of one build: ``lock`` a ``backends.base.Lock``, ``grafts`` the report's entries."""
    from cyclonedx import __version__ as cyclonedx_version
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentScope, ComponentType
    from cyclonedx.model.tool import ToolRepository
    from packageurl import PackageURL

    shipped = set(shipped)

    def sha256(hex_digest: str) -> list:
        return [HashType(alg=HashAlgorithm.SHA_256, content=hex_digest)]

    def properties(**values: str) -> list:
        return [Property(name=f"{PROPERTY}:{key.replace('_', '-')}", value=value) for key, value in values.items()
                if value]

    root = Component(
        type=ComponentType.LIBRARY, name=subject.name, bom_ref=f"layer:{subject.stem}",
        description=subject.description or f"AWS Lambda layer for {subject.runtime} on {subject.arch}",
        hashes=sha256(subject.zip_sha256),
        properties=properties(zip=f"{subject.stem}.zip", runtime=subject.runtime, architecture=subject.arch,
                              lock_digest=subject.lock_digest, identity=subject.identity,
                              build_environment=subject.environment))
    builder = Component(type=ComponentType.APPLICATION, name="lambda-layer-builder",
                        version=subject.builder_version, bom_ref="tool:lambda-layer-builder")
    library = Component(type=ComponentType.LIBRARY, group="CycloneDX", name="cyclonedx-python-lib",
                        version=cyclonedx_version, bom_ref="tool:cyclonedx-python-lib")
    bom = Bom(serial_number=serial_number(subject.zip_sha256, subject.identity),
              metadata=BomMetaData(component=root, timestamp=TIMESTAMP,
                                   tools=ToolRepository(components=[builder, library])))

    by_name = {}
    for wheel in lock.wheels:
        name = canonicalize_name(wheel.name)
        purl = PackageURL(type="pypi", name=name, version=wheel.version)
        facts = declared.get(name, Declared(name))
        component = Component(
            type=ComponentType.LIBRARY, name=name, version=wheel.version, purl=purl, bom_ref=purl.to_string(),
            scope=ComponentScope.REQUIRED if name in shipped else ComponentScope.EXCLUDED,
            hashes=sha256(wheel.identity), licenses=_cyclonedx_licences(facts.licences),
            properties=properties(wheel=wheel.filename,
                                  source="sdist" if wheel.origin == "sdist" else "index-wheel"))
        by_name[name] = (component, facts)
        bom.components.add(component)

    grafted = []
    for graft in grafts:
        component = Component(
            type=ComponentType.LIBRARY, name=graft["soname"], bom_ref=f"graft:{graft['path']}",
            scope=ComponentScope.REQUIRED, hashes=sha256(graft["sha256"]),
            description=f"grafted by the load check's repair from {graft['origin']} in the build environment",
            properties=properties(grafted_from=graft["origin"], path=graft["path"],
                                  build_environment=subject.environment))
        grafted.append(component)
        bom.components.add(component)

    in_layer = [component for name, (component, _) in sorted(by_name.items()) if name in shipped]
    bom.register_dependency(root, [*in_layer, *grafted])
    for name, (component, facts) in sorted(by_name.items()):
        needs = [by_name[r][0] for r in facts.requires if r in by_name and r in shipped and r != name]
        bom.register_dependency(component, needs if name in shipped else [])
    for component in grafted:
        bom.register_dependency(component, [])
    return bom


def _cyclonedx_licences(licences: Iterable[Licence]) -> list:
    from cyclonedx.model import AttachedText
    from cyclonedx.model.license import DisjunctiveLicense, LicenseAcknowledgement, LicenseExpression
    from cyclonedx.spdx import is_supported_id

    declared = LicenseAcknowledgement.DECLARED
    out = []
    for licence in licences:
        if licence.expression and is_supported_id(licence.expression):
            out.append(DisjunctiveLicense(id=licence.expression, acknowledgement=declared))
        elif licence.expression:
            out.append(LicenseExpression(licence.expression, acknowledgement=declared))
        else:
            text = AttachedText(content=licence.text) if licence.text else None
            out.append(DisjunctiveLicense(name=licence.name, text=text, acknowledgement=declared))
    if len(out) > 1 and any(isinstance(x, LicenseExpression) for x in out):
        # CycloneDX holds one expression or a list of licences, not both: one expression says it all.
        expression = " AND ".join(_term(licence.expression) if licence.expression else licence_ref(licence.name)
                                  for licence in licences)
        out = [LicenseExpression(expression, acknowledgement=declared)]
    return out


def render(bom) -> str:
    """The BOM as CycloneDX 1.6 JSON: indented, one trailing newline."""
    from cyclonedx.output.json import JsonV1Dot6

    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def schema_problem(text: str) -> str | None:
    """Why ``text`` is not a valid CycloneDX 1.6 document (the library's strict JSON validator), or None."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(getattr(error, "data", error)).splitlines()[0][:500]


def write_sbom(path: Path, subject: Subject, lock, declared: Mapping[str, Declared], shipped: Iterable[str],
               grafts: Iterable[Mapping] = ()) -> dict:
    """Write the SBOM at ``path`` (a staging file: build.py delivers it), checked against the schema first.

    Returns what the report records of it.
    """
    bom = layer_bom(subject, lock, declared, shipped, grafts)
    text = render(bom)
    problem = schema_problem(text)
    if problem is not None:  # the builder's own fault, never the recipe's: say so rather than ship it
        raise BuildError(f"the SBOM for {subject.stem} is not valid CycloneDX {SPEC_VERSION}: {problem}",
                         hint="report this as a bug of lambda-layer-builder, with the recipe")
    path.write_text(text, encoding="utf-8")
    components = list(bom.components)
    return {"file": path.name, "format": f"CycloneDX {SPEC_VERSION}", "serial_number": bom.serial_number.urn,
            "components": len(components),
            "excluded": sorted(c.name for c in components if c.scope is not None and c.scope.value == "excluded")}


# -- LicenseInfo, read back by publish ---------------------------------------------------------------------------

def _term(expression: str) -> str:
    return f"({expression})" if " " in expression else expression


def licence_ref(name: str) -> str:
    """``LicenseRef-NAME``: "the terms this part ships with", for a part that states no SPDX licence."""
    idstring = _REF_CHARS.sub("-", name).strip("-.")[:64] or "unnamed"
    return f"LicenseRef-{idstring}"


def join_licences(parts: Iterable[tuple[str, Iterable[str]]]) -> str:
    """LicenseInfo from (part name, its SPDX expressions): each expression once, sorted, joined with " AND ".

    A top-level AND is split so its terms dedupe with the others'. A part without an SPDX expression (a
    licence only named, a licence text, nothing declared, a grafted system library) is named by
    ``licence_ref``: dropping it would understate what the layer's licence terms are.
    """
    terms: set[str] = set()
    for name, expressions in parts:
        expressions = [e for e in expressions if e]
        if not expressions:
            terms.add(licence_ref(name))
        for expression in expressions:
            terms.update(_top_level_and(expression))
    return " AND ".join(sorted(terms, key=lambda term: (term.lstrip("(").casefold(), term)))


def _top_level_and(expression: str) -> list[str]:
    try:
        parsed = _licensing().parse(expression, validate=False)
    except _PARSE_ERRORS:
        return [_term(expression)]
    if isinstance(parsed, _licensing().AND):
        return [_term(str(arg)) for arg in parsed.args]
    return [_term(str(parsed))]


def sbom_path_for(zip_path: Path) -> Path:
    return zip_path.with_name(zip_path.name.removesuffix(".zip") + ".cdx.json")


def shipped_licences(data: object, zip_sha256: str, name: str) -> list[tuple[str, list[str]]]:
    """(component name, its SPDX expressions) for each part the layer ships, from an untrusted SBOM.

    Reads only ``metadata.component.hashes`` (it must describe this zip) and each component's ``name``,
    ``scope`` and ``licenses``, each checked; every expression must be valid SPDX.
    """
    def refuse(why: str) -> None:
        raise UsageError(f"{name}: {why}: not an SBOM written by layers build",
                         hint="rebuild with 'layers build', or set license in the recipe")

    if not isinstance(data, dict) or data.get("bomFormat") != "CycloneDX" or data.get("specVersion") != SPEC_VERSION:
        refuse(f"it is not a CycloneDX {SPEC_VERSION} document")
    metadata = data.get("metadata")
    component = metadata.get("component") if isinstance(metadata, dict) else None
    hashes = component.get("hashes") if isinstance(component, dict) else None
    if not isinstance(hashes, list) or not all(isinstance(h, dict) for h in hashes):
        refuse("metadata.component.hashes is missing")
    digests = {h.get("content") for h in hashes if h.get("alg") == "SHA-256"}
    if not digests or not all(isinstance(d, str) and _HEX64.fullmatch(d) for d in digests):
        refuse("metadata.component.hashes holds no SHA-256")
    if digests != {zip_sha256}:
        raise UsageError(f"{name} describes another zip (its sha256 is not this zip's)",
                         hint="rebuild with 'layers build' so the zip and its SBOM are one build's")
    components = data.get("components", [])
    if not isinstance(components, list) or len(components) > MAX_COMPONENTS:
        refuse(f"components is not a list of at most {MAX_COMPONENTS:,}")
    parts = []
    for index, entry in enumerate(components):
        where = f"components[{index}]"
        if not isinstance(entry, dict):
            refuse(f"{where} is not an object")
        part = entry.get("name")
        scope = entry.get("scope", "required")
        licences = entry.get("licenses", [])
        if not isinstance(part, str) or not 0 < len(part) <= 512:
            refuse(f"{where}.name is not a name")
        if scope not in ("required", "optional", "excluded"):
            refuse(f"{where}.scope is not a CycloneDX scope")
        if not isinstance(licences, list) or len(licences) > MAX_LICENCES:
            refuse(f"{where}.licenses is not a list of at most {MAX_LICENCES}")
        expressions = [_licence_entry(licence, f"{where}.licenses[{i}]", refuse) for i, licence in enumerate(licences)]
        if scope != "excluded":
            parts.append((part, [e for e in expressions if e]))
    return parts


def _licence_entry(entry: object, where: str, refuse) -> str:
    """The SPDX expression a ``licenses`` entry states: its expression or its licence id; "" for a name."""
    if isinstance(entry, dict) and "expression" in entry:
        value = entry["expression"]
    elif isinstance(entry, dict) and isinstance(entry.get("license"), dict):
        licence = entry["license"]
        if "id" not in licence:
            if not isinstance(licence.get("name"), str):
                refuse(f"{where}.license has neither an id nor a name")
            return ""
        value = licence["id"]
    else:
        refuse(f"{where} is neither a licence nor an expression")
    if not isinstance(value, str) or len(value) > EXPRESSION_MAX:
        refuse(f"{where} is not a string of at most {EXPRESSION_MAX} characters")
    spdx = spdx_expression(value)
    if spdx is None:
        refuse(f"{where} ({value[:60]!r}) is not an SPDX licence expression")
    return spdx


def license_info(zip_path: Path, zip_sha256: str) -> str | None:
    """LicenseInfo from the SBOM beside ``zip_path``: None when there is none (a build from before SBOMs)."""
    path = sbom_path_for(zip_path)
    if not path.exists() and not path.is_symlink():
        return None
    data = read_json(path, "SBOM", hint="rebuild with 'layers build', or set license in the recipe",
                     limit=MAX_SBOM_BYTES)
    return join_licences(shipped_licences(data, zip_sha256, path.name))
