"""Sizes and Lambda's budgets: pure arithmetic over file listings.

``Inventory`` maps every file of a tree to its size and owning distribution
(from the RECORD files read right after install, before stripping removes
them). Comparing the inventory taken after install with the final one gives
per-package before/after sizes; ``check_budget`` compares totals with
Lambda's limits minus the recipe's reserve.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .recipe import DIRECT_UPLOAD_LIMIT, UNZIPPED_LIMIT


@dataclass(frozen=True)
class Inventory:
    sizes: dict[str, int]   # relative posix path -> bytes
    owners: dict[str, str]  # relative posix path -> distribution name

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def by_package(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for path, size in self.sizes.items():
            out[self.owner_of(path)] += size
        return dict(out)

    def owner_of(self, path: str) -> str:
        if path in self.owners:
            return self.owners[path]
        if path.endswith(".pyc") and path[:-1] in self.owners:  # sourceless bytecode: its source's owner
            return self.owners[path[:-1]]
        # Not in any RECORD (e.g. written after install): its top-level entry.
        return path.split("/", 1)[0]

    def biggest(self, n: int = 10) -> list[tuple[str, int]]:
        return sorted(self.sizes.items(), key=lambda item: (-item[1], item[0]))[:n]


def take_inventory(tree: Path, owners: dict[str, str] | None = None) -> Inventory:
    sizes = {}
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink():
            sizes[path.relative_to(tree).as_posix()] = path.stat().st_size
    return Inventory(sizes, owners or {})


def record_owners(tree: Path, distributions: dict) -> dict[str, str]:
    """File -> distribution name, from ``strip.installed_distributions``."""
    owners = {}
    for name, dist in distributions.items():
        for file in dist.files:
            owners[file.relative_to(tree).as_posix()] = name
        for file in dist.dist_info.rglob("*"):
            owners[file.relative_to(tree).as_posix()] = name
    return owners


@dataclass(frozen=True)
class Budget:
    unzipped: int
    unzipped_limit: int       # 250 MB minus the recipe's reserve
    reserve: int
    zipped: int

    @property
    def fits(self) -> bool:
        return self.unzipped <= self.unzipped_limit

    @property
    def direct_upload(self) -> bool:
        return self.zipped <= DIRECT_UPLOAD_LIMIT

    @property
    def headroom(self) -> int:
        return self.unzipped_limit - self.unzipped

    def to_json(self) -> dict:
        return {
            "unzipped_bytes": self.unzipped,
            "lambda_unzipped_limit": UNZIPPED_LIMIT,
            "reserve_bytes": self.reserve,
            "unzipped_budget": self.unzipped_limit,
            "fits": self.fits,
            "headroom_bytes": self.headroom,
            "zipped_bytes": self.zipped,
            "direct_upload_limit": DIRECT_UPLOAD_LIMIT,
            "publish_via": "direct upload or S3" if self.direct_upload else "S3 (over 50 MB zipped)",
        }


def package_table(before: Inventory, after: Inventory) -> list[dict]:
    """Per distribution: bytes after install and in the layer, biggest first."""
    raw, final = before.by_package(), after.by_package()
    rows = [{"package": name, "installed_bytes": raw.get(name, 0), "layer_bytes": final.get(name, 0)}
            for name in set(raw) | set(final)]
    return sorted(rows, key=lambda r: (-r["layer_bytes"], -r["installed_bytes"], r["package"]))


def human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n} B"
