"""Lambda Python runtimes: Python version, OS, glibc, wheel tags, build image, system libraries.

The facts live in ``runtimes.toml`` and ``lambda_os.toml``; this module turns
them into frozen ``Runtime`` and ``SystemLibraries`` objects. It derives what
pip needs (platform tags and ABIs) from the runtime's glibc, so that no wheel
newer than the runtime's OS is chosen; ``SystemLibraries`` is what the load
check and the smoke-test sandbox take as the runtime image's /lib64: which
sonames Lambda has, which it lacks, which no source tells, and the newest
symbol versions its libraries define.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from .errors import RecipeError

ARCHITECTURES = ("x86_64", "arm64")
# Lambda calls it arm64; wheels and ELF headers call it aarch64.
MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
# Legacy manylinux names and the glibc they stand for (PEP 600 aliases).
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
# The oldest glibc any aarch64 manylinux wheel targets.
_MIN_GLIBC = {"x86_64": (2, 5), "aarch64": (2, 17)}


@dataclass(frozen=True)
class Runtime:
    name: str
    python: str
    os: str
    os_title: str
    glibc: tuple[int, int]
    architectures: tuple[str, ...]
    # Lambda's three end-of-life steps; None where no source gives the date.
    end_of_support: _dt.date | None
    block_create: _dt.date | None
    block_update: _dt.date | None
    dates_source: str
    image_template: str
    function_image_template: str = "public.ecr.aws/lambda/python:{python}{arch_suffix}"

    @property
    def python_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)

    @property
    def glibc_text(self) -> str:
        return "%d.%d" % self.glibc

    def is_deprecated(self, today: _dt.date | None = None) -> bool:
        return self.end_of_support is not None and (today or _dt.date.today()) >= self.end_of_support

    def lifecycle_notice(self, today: _dt.date | None = None) -> str | None:
        """Which of Lambda's three end-of-life dates have passed, in words; None while none has."""
        today = today or _dt.date.today()
        steps = (("end of support (no security patches)", self.end_of_support),
                 ("creating functions blocked", self.block_create), ("updating functions blocked", self.block_update))
        passed = [f"{what} since {when}" for what, when in steps if when is not None and today >= when]
        if not passed:
            unknown = [what for what, when in steps if when is None]
            if len(unknown) == len(steps):
                return f"Lambda's end-of-life dates for {self.name} are not known here ({self.dates_source})"
            return None
        note = f"{self.name} on Lambda: " + "; ".join(passed)
        if self.block_update is None or today < self.block_update:
            note += ". A layer for it still serves existing functions"
        return note

    def function_image(self, arch: str) -> str:
        """AWS's base image for a Lambda container image of this runtime."""
        return self.function_image_template.format(python=self.python, arch_suffix="-arm64" if arch == "arm64" else "")

    def build_image(self, arch: str) -> str:
        return self.image_template.format(
            python=self.python, arch_suffix="-arm64" if arch == "arm64" else ""
        )

    def abis(self) -> list[str]:
        """ABI tags the runtime's CPython accepts, most specific first."""
        major, minor = self.python_tuple
        # Before 3.8 CPython's ABI tag carried the pymalloc "m" flag.
        own = f"cp{major}{minor}" + ("m" if (major, minor) < (3, 8) else "")
        return [own, "abi3", "none"]

    def platform_tags(self, arch: str) -> list[str]:
        """Every manylinux tag loadable on this runtime, newest first.

        pip does not expand one manylinux tag into the older ones, so all of
        them are listed; nothing newer than the runtime's glibc is.
        """
        machine = MACHINE[arch]
        major, top = self.glibc
        low = _MIN_GLIBC[machine][1]
        tags = [f"manylinux_{major}_{minor}_{machine}" for minor in range(top, low - 1, -1)]
        for legacy, glibc in _LEGACY_MANYLINUX.items():
            if glibc <= self.glibc and glibc >= _MIN_GLIBC[machine]:
                tags.append(f"{legacy}_{machine}")
        return tags


@cache
def _table() -> dict:
    text = resources.files(__package__).joinpath("runtimes.toml").read_text()
    return tomllib.loads(text)


def _date(value) -> _dt.date | None:
    return None if value == "unknown" else value


@cache
def all_runtimes() -> dict[str, Runtime]:
    table = _table()
    template = table["image"]["template"]
    out = {}
    for name, row in table["runtime"].items():
        os_row = table["os"][row["os"]]
        out[name] = Runtime(
            name=name,
            python=row["python"],
            os=row["os"],
            os_title=os_row["title"],
            glibc=tuple(int(p) for p in os_row["glibc"].split(".")),
            architectures=tuple(row["architectures"]),
            end_of_support=_date(row["end_of_support"]),
            block_create=_date(row["block_create"]),
            block_update=_date(row["block_update"]),
            dates_source=row["dates_source"],
            image_template=template,
            function_image_template=table["image"]["function_template"],
        )
    return out


def get_runtime(name: str) -> Runtime:
    runtimes = all_runtimes()
    try:
        return runtimes[name]
    except KeyError:
        close = difflib.get_close_matches(name, runtimes, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(runtimes)}"
        raise RecipeError(f"unknown Lambda runtime {name!r}", hint=hint) from None


Status = Literal["present", "absent", "unknown"]
# Symbol-version families whose ceilings the tables give: GLIBC_2.26,
# GLIBCXX_3.4.24, CXXABI_1.3.11, GCC_7.0.0.
VERSION_FAMILIES = ("GLIBC", "GLIBCXX", "CXXABI", "GCC")


@dataclass(frozen=True)
class SystemLibraries:
    """The shared libraries of one Lambda runtime image (OS family and architecture), as data."""

    os: str
    arch: str
    complete: bool                 # present is the image's whole /lib64 and /usr/lib64
    present: frozenset[str]
    absent: frozenset[str]
    ceilings: Mapping[str, tuple[int, ...] | None]  # family -> newest version defined; None: unknown
    loader: str                    # the dynamic loader's soname
    ld_library_path: tuple[str, ...]
    system_dirs: tuple[str, ...]
    layer_root: str
    sources: tuple[str, ...]

    def status(self, soname: str) -> Status:
        if soname in self.present:
            return "present"
        if soname in self.absent or self.complete:
            return "absent"
        return "unknown"

    def ceiling(self, family: str) -> tuple[int, ...] | None:
        return self.ceilings.get(family)

    @property
    def label(self) -> str:
        return f"{self.os}/{self.arch}"


def _version(text: str) -> tuple[int, ...] | None:
    return None if text == "unknown" else tuple(int(part) for part in text.split("."))


@cache
def _os_table() -> dict:
    return tomllib.loads(resources.files(__package__).joinpath("lambda_os.toml").read_text())


@cache
def _system_libraries(os_name: str, arch: str) -> SystemLibraries:
    table = _os_table()
    try:
        row = table["os"][os_name][arch]
    except KeyError:
        raise RecipeError(f"no table of Lambda's system libraries for {os_name} on {arch}",
                          hint=f"add [os.{os_name}.{arch}] to builder/lambda_os.toml, or build for another runtime "
                               "or architecture") from None
    present = set(row["present"])
    if "present_like" in row:  # another architecture's list, with its own loader
        like_os, like_arch = row["present_like"].split(".")
        present |= set(table["os"][like_os][like_arch]["present"])
        present -= set(row.get("drop", ()))
    lam = table["lambda"]
    return SystemLibraries(
        os=os_name, arch=arch, complete=bool(row["complete"]), present=frozenset(present),
        absent=frozenset(row.get("absent", ())),
        ceilings={family: _version(row["ceilings"].get(family, "unknown")) for family in VERSION_FAMILIES},
        loader=table["loader"][arch], ld_library_path=tuple(lam["ld_library_path"]),
        system_dirs=tuple(lam["system_dirs"]), layer_root=lam["layer_root"],
        sources=tuple(lam["sources"]) + tuple(row["sources"]),
    )


def system_libraries(runtime: Runtime, arch: str) -> SystemLibraries:
    """What the Lambda runtime image of ``runtime`` on ``arch`` holds in /lib64 and /usr/lib64."""
    return _system_libraries(runtime.os, arch)


def layer_python_paths(runtime: Runtime) -> tuple[str, ...]:
    """Where Lambda's Python finds a layer's code under /opt, in order."""
    return tuple(path.format(python=runtime.python) for path in _os_table()["lambda"]["layer_python_paths"])


def wheel_min_glibc(filename: str) -> tuple[int, int] | None:
    """The oldest glibc a wheel runs on, from its platform tags; None for pure wheels.

    A wheel tagged with several (``manylinux2014...manylinux_2_28``) runs
    wherever the oldest of them does.
    """
    from packaging.utils import parse_wheel_filename

    _, _, _, tags = parse_wheel_filename(filename)
    needs = []
    for tag in tags:
        platform = tag.platform
        if platform == "any":
            return None
        for legacy, glibc in _LEGACY_MANYLINUX.items():
            if platform.startswith(legacy + "_"):
                needs.append(glibc)
        if platform.startswith("manylinux_"):
            major, minor = platform.split("_")[1:3]
            needs.append((int(major), int(minor)))
    return min(needs) if needs else (99, 0)  # linux_x86_64 and the like: no promise at all
