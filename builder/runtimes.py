"""Lambda Python runtimes: Python version, OS, glibc, wheel tags, build image.

The facts live in ``runtimes.toml``; this module turns them into frozen
``Runtime`` objects and derives what pip needs (platform tags and ABIs) from
the runtime's glibc, so that no wheel newer than the runtime's OS is chosen.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

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
    deprecated: _dt.date
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
        return (today or _dt.date.today()) >= self.deprecated

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
            deprecated=row["deprecated"],
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
