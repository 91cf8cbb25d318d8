"""Compare two layer zips: which files differ, and why.

Two builds of one lock (the pip backend on the host, the Docker backend in a
container) should hold the same files. Where they do not, each difference
gets a reason read from the path and the bytes: a shared object stripped by
another binutils, bytecode from another patch release of Python, a
distribution at another version. ``layers diff`` prints it; ``layers build
--compare-to`` puts it in the build report.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .archive import open_layer_zip, read_member_head, verify_layer_zip

_DIST_INFO = re.compile(r"^(?:python/)?([^/]+)-([^/-]+)\.dist-info/")
_ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class Difference:
    path: str
    kind: str  # "only in first" | "only in second" | "content" | "mode"
    reason: str

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "reason": self.reason}


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    files: tuple[int, int]
    differences: tuple[Difference, ...]

    @property
    def same_file_list(self) -> bool:
        return not any(d.kind.startswith("only in") for d in self.differences)

    @property
    def identical(self) -> bool:
        return not self.differences

    def to_json(self) -> dict:
        return {
            "first": self.first,
            "second": self.second,
            "files": list(self.files),
            "same_file_list": self.same_file_list,
            "identical": self.identical,
            "differences": [d.to_json() for d in self.differences],
        }


def _versions(names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        match = _DIST_INFO.match(name)
        if match:
            out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def _distribution_of(path: str) -> str | None:
    match = _DIST_INFO.match(path)
    return match.group(1).lower().replace("_", "-") if match else None


def _why_only(path: str, versions_here: dict[str, str], versions_there: dict[str, str]) -> str:
    owner = _distribution_of(path)
    if owner and owner in versions_there and versions_there[owner] != versions_here[owner]:
        return f"{owner} {versions_here[owner]} here, {versions_there[owner]} in the other build"
    if owner and owner not in versions_there:
        return f"the distribution {owner} is in one build only"
    if path.endswith(".pyc"):
        return "bytecode compiled in one build only (its bytecode setting or interpreter differs)"
    return "installed or kept by one build only (a strip rule or a wheel differs)"


def _why_content(path: str, first: bytes, second: bytes) -> str:
    if first[:4] == _ELF_MAGIC and second[:4] == _ELF_MAGIC:
        return "shared object: stripped by another binutils, or compiled from source in a different image"
    if path.endswith(".pyc"):
        return "bytecode: compiled by another patch release of the runtime's Python"
    if "/RECORD" in path or path.endswith("/INSTALLER") or path.endswith("/WHEEL"):
        return "installer metadata (hashes of files that differ, or another pip)"
    return "content differs"


def _read(path: Path) -> dict[str, zipfile.ZipInfo]:
    with open_layer_zip(path) as archive:
        return {info.filename: info for info in archive.infolist() if not info.is_dir()}


def compare_zips(first: Path, second: Path) -> Comparison:
    verify_layer_zip(first)
    verify_layer_zip(second)
    a, b = _read(first), _read(second)
    versions_a, versions_b = _versions(list(a)), _versions(list(b))
    differences = []
    for name in sorted(set(a) - set(b)):
        differences.append(Difference(name, "only in first", _why_only(name, versions_a, versions_b)))
    for name in sorted(set(b) - set(a)):
        differences.append(Difference(name, "only in second", _why_only(name, versions_b, versions_a)))
    with open_layer_zip(first) as za, open_layer_zip(second) as zb:
        for name in sorted(set(a) & set(b)):
            ia, ib = a[name], b[name]
            if ia.CRC != ib.CRC or ia.file_size != ib.file_size:
                # The reason needs only the first bytes: a member declaring 1 GiB is never read whole.
                first_head, second_head = read_member_head(za, ia, 4), read_member_head(zb, ib, 4)
                differences.append(Difference(name, "content", _why_content(name, first_head, second_head)))
            elif (ia.external_attr >> 16) != (ib.external_attr >> 16):
                differences.append(Difference(name, "mode", "file mode (executable bit) differs"))
    return Comparison(str(first), str(second), (len(a), len(b)), tuple(differences))
