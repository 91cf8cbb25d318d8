"""A built layer: its zip and what the build's report says about it.

``layers report`` and ``layers publish`` read a build through here: the
report beside the zip is parsed once into an ``Artifact``, and the zip's
sha256 must be the one the report records, so nothing is published that was
not the build's output.

The licence published (Lambda's LicenseInfo) is the recipe's ``license``
(recorded in the report) or, when the recipe sets none, the one the SBOM
beside the zip lists (``sbom.license_info``; the SBOM must describe this
zip). A build from before SBOMs publishes without one, as it always did.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from ..archive import open_layer_zip, sha256_of, verify_layer_zip
from ..errors import LayerError, UsageError
from ..files import read_json
from ..sbom import LICENSE_INFO_MAX, license_info, sbom_path_for


@dataclass(frozen=True)
class Artifact:
    zip_path: Path
    report: dict
    recipe: str
    layer_name: str          # the recipe's; arm64 layers are published as NAME-arm64
    runtime: str
    arch: str
    sha256_hex: str
    code_sha256: str         # base64 of the sha256: what Lambda calls CodeSha256
    zipped_bytes: int
    unzipped_bytes: int
    unzipped_budget: int     # Lambda's 250 MB minus the recipe's reserve
    verified: bool
    verification: str
    lock_digest: str
    builder_version: str
    license: str
    elf_files: int
    identity: str = ""       # lockfile.layer_identity, recorded by the build
    tmp_bytes: int = 0       # a packed layer: what its archive unpacks to in /tmp (0: not packed)
    license_source: str = "recipe"  # where ``license`` came from: "recipe", or "sbom" when the recipe set none

    @property
    def published_name(self) -> str:
        return published_name(self.layer_name, self.arch)


def published_name(layer_name: str, arch: str) -> str:
    """One layer per architecture; the x86_64 one keeps the plain name."""
    return layer_name if arch == "x86_64" else f"{layer_name}-{arch}"


def report_path_for(zip_path: Path) -> Path:
    return zip_path.with_name(zip_path.name.removesuffix(".zip") + ".report.json")


# What publishing and `layers report` read from a report, with its type: the report is checked against this
# before any of it is used (it may come from a pull request).
_NUMBER = (int, float)
_REPORT_SHAPE = {
    "recipe": str, "layer_name": str, "runtime": str, "architecture": str, "lock_digest": str,
    "builder_version": str, "versions": dict,
    "zip": {"sha256": str, "code_sha256": str, "zipped_bytes": int, "unzipped_bytes": int},
    "budget": {"unzipped_bytes": int, "unzipped_budget": int, "zipped_bytes": int, "direct_upload_limit": int,
               "fits": bool},
    "sizes": {"installed_bytes": int},
    "verification": {"verified": bool, "how": str},
    "bytecode": {"mode": str},
}


def _check_shape(data, shape: dict, name: str, where: str = "") -> None:
    if not isinstance(data, dict):
        raise UsageError(f"{name}: {where or 'the report'} is not a JSON object", hint="rebuild with 'layers build'")
    for key, kind in shape.items():
        path = f"{where}.{key}" if where else key
        if key not in data:
            raise UsageError(f"{name}: {path} is missing: not a report written by layers build",
                             hint="rebuild with 'layers build'")
        if isinstance(kind, dict):
            _check_shape(data[key], kind, name, path)
        elif not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool)):
            raise UsageError(f"{name}: {path} should be {getattr(kind, '__name__', 'a number')}, "
                             f"not {type(data[key]).__name__}", hint="rebuild with 'layers build'")


_HEX64 = re.compile(r"[0-9a-f]{64}")
_LAYER_NAME = re.compile(r"[a-zA-Z0-9_-]{1,140}")
MAX_REPORT_BYTES = 4 << 20  # a tf18 report is ~200 KB


def _check_values(report: dict, name: str) -> None:
    """What the shape cannot say: each value a build could have written (names, digests, sizes in range)."""
    from ..recipe import MAX_SIZE, UNZIPPED_LIMIT, check_recipe_name
    from ..runtimes import get_runtime

    def refuse(key: str, why: str) -> None:
        raise UsageError(f"{name}: {key} {why}: not a report written by layers build",
                         hint="rebuild with 'layers build'")

    try:
        check_recipe_name(report["recipe"])
        get_runtime(report["runtime"])
    except LayerError as exc:
        refuse("recipe or runtime", f"is not valid ({exc.message})")
    if not _LAYER_NAME.fullmatch(report["layer_name"]):
        refuse("layer_name", "is not a Lambda layer name")
    if report["architecture"] not in ("x86_64", "arm64"):
        refuse("architecture", "is not x86_64 or arm64")
    zipped = report["zip"]
    for key, value in (("lock_digest", report["lock_digest"]), ("zip.sha256", zipped["sha256"])):
        if not _HEX64.fullmatch(value):
            refuse(key, "is not a sha256 (64 hex digits)")
    if zipped["code_sha256"] != base64.b64encode(bytes.fromhex(zipped["sha256"])).decode():
        refuse("zip.code_sha256", "is not the base64 of zip.sha256")
    sizes = {f"zip.{k}": zipped[k] for k in ("zipped_bytes", "unzipped_bytes")}
    sizes |= {f"budget.{k}": report["budget"][k] for k in ("unzipped_bytes", "zipped_bytes", "direct_upload_limit")}
    sizes["sizes.installed_bytes"] = report["sizes"]["installed_bytes"]
    for key, value in sizes.items():
        if not 0 <= value <= MAX_SIZE:
            refuse(key, f"is {value}, not a size from 0 to {MAX_SIZE}")
    if not 0 < report["budget"]["unzipped_budget"] <= UNZIPPED_LIMIT:
        refuse("budget.unzipped_budget", f"is not within Lambda's {UNZIPPED_LIMIT:,} bytes")
    pack = report.get("pack")
    if pack is not None:
        if not isinstance(pack, dict) or pack.get("mode") != "tmp":
            refuse("pack", "is not a packed layer's section")
        for key in ("archive_bytes", "unpacked_bytes"):
            value = pack.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SIZE:
                refuse(f"pack.{key}", f"is not a size from 0 to {MAX_SIZE}")


def load_artifact(zip_path: Path) -> Artifact:
    """The build at ``zip_path``, checked against its report."""
    verify_layer_zip(zip_path)  # missing, not a file, hostile or damaged: refused before its report is read
    report_path = report_path_for(zip_path)
    if not report_path.is_file():
        raise UsageError(f"no report beside {zip_path} (expected {report_path.name})",
                         hint="reports are written by 'layers build'")
    try:
        report = read_json(report_path, "report", hint="rebuild with 'layers build'", limit=MAX_REPORT_BYTES)
        _check_shape(report, _REPORT_SHAPE, report_path.name)
        _check_values(report, report_path.name)
        zipped = report["zip"]
        artifact = Artifact(
            zip_path=zip_path, report=report, recipe=report["recipe"], layer_name=report["layer_name"],
            runtime=report["runtime"], arch=report["architecture"], sha256_hex=zipped["sha256"],
            code_sha256=zipped["code_sha256"], zipped_bytes=zipped["zipped_bytes"],
            unzipped_bytes=zipped["unzipped_bytes"], unzipped_budget=report["budget"]["unzipped_budget"],
            verified=bool(report["verification"]["verified"]), verification=report["verification"]["how"],
            lock_digest=report["lock_digest"], builder_version=report["builder_version"],
            license=_recipe_license(report, report_path.name), elf_files=int(report["verification"].get("elf_files", 0)),
            identity=report.get("identity", ""),
            tmp_bytes=(report.get("pack") or {}).get("unpacked_bytes", 0),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{report_path} is not a build report ({type(exc).__name__}: {exc})",
                         hint="rebuild with 'layers build'") from None
    sha_hex, _ = sha256_of(zip_path)
    if sha_hex != artifact.sha256_hex:
        raise UsageError(f"{zip_path.name} is not the zip its report describes (sha256 differs)",
                         hint="rebuild it with 'layers build'")
    if not artifact.license:
        listed = license_info(zip_path, artifact.sha256_hex)
        if listed:
            artifact = dataclasses.replace(artifact, license=listed, license_source="sbom")
    # What Lambda will unpack, read from the zip itself rather than taken on the report's word.
    return dataclasses.replace(artifact, unzipped_bytes=unzipped_size(zip_path))


def _recipe_license(report: dict, name: str) -> str:
    value = report.get("license", "")
    if not isinstance(value, str):
        raise UsageError(f"{name}: license should be str, not {type(value).__name__}",
                         hint="rebuild with 'layers build'")
    return value


def license_too_long(artifact: Artifact, limit: int = LICENSE_INFO_MAX) -> UsageError:
    """The refusal of a licence over Lambda's limit: never cut short, a shortened licence statement is a false one."""
    if artifact.license_source == "sbom":
        return UsageError(f"the licences {sbom_path_for(artifact.zip_path).name} lists join to "
                          f"{len(artifact.license):,} characters, over Lambda's {limit} for LicenseInfo",
                          hint="set license in the recipe (an SPDX expression of at most 512 characters) "
                               "and rebuild")
    return UsageError(f"the licence is over {limit} characters", hint="shorten the recipe's license")


def unzipped_size(zip_path: Path) -> int:
    """What Lambda will unpack; the members are checked on the way (no devices, no encryption, no '..')."""
    with open_layer_zip(zip_path) as archive:
        return sum(info.file_size for info in archive.infolist())


def built_zip(out_dir: Path, recipe: str, runtime: str, arch: str) -> Path:
    return out_dir / recipe / f"{recipe}-{runtime}-{arch}.zip"
