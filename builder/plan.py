"""``layers plan``: where a function's layers and models fit, with numbers.

Pure arithmetic over Lambda's limits:

- 250 MB unzipped for the function and all its layers together (at most 5
  layers);
- 50 MB zipped for a direct upload of the function's zip (above that: S3);
- /tmp (ephemeral storage) of 512 MB by default, configurable up to 10,240 MB;
- 10 GB for a container image.

Three places for the models are weighed, in this order of preference: in
the deployment package (nothing to fetch at cold start), in S3 fetched to
/tmp at cold start (``builder.runtime.model_loader``), or a container image.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError
from .measure import human
from .recipe import DIRECT_UPLOAD_LIMIT, IMAGE_LIMIT, UNZIPPED_LIMIT

MAX_LAYERS = 5
MIB = 1 << 20
EPHEMERAL_DEFAULT = 512 * MIB
EPHEMERAL_MAX = 10_240 * MIB
# What the runtime itself keeps in /tmp is small; leave room for the function's own scratch files.
TMP_HEADROOM = 32 * MIB
# Of an EphemeralStorage of N MB the file system keeps part for itself: a fresh ext4 made with mkfs's
# defaults leaves a non-root user (Lambda's) 451 of 512 MiB, 743 of 832 and 906 of 1,024 (journal, inode
# tables, 5% reserved), measured with bench/pack_bench.py's loop mounts. Lambda does not document its
# /tmp's file system, so the planner asks for enough that such an ext4 would hold what goes there.
TMP_USABLE = 0.88


@dataclass(frozen=True)
class Item:
    name: str
    bytes: int
    source: str  # where the size came from: a build report, a file, S3, the command line
    # A packed layer (recipe [pack] mode = "tmp"): what it unpacks to in /tmp at cold start. ``bytes`` is
    # then what it counts against the 250 MB: its stubs, unpacker and archive.
    tmp_bytes: int = 0


@dataclass(frozen=True)
class Check:
    measure: str
    value: int
    limit: int

    @property
    def ok(self) -> bool:
        return self.value <= self.limit


@dataclass(frozen=True)
class Option:
    name: str            # "package" | "s3-tmp" | "image"
    title: str
    checks: tuple[Check, ...]
    advice: str

    @property
    def fits(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass(frozen=True)
class BudgetPlan:
    function: int
    layers: tuple[Item, ...]
    models: tuple[Item, ...]
    ephemeral: int
    options: tuple[Option, ...]

    @property
    def recommended(self) -> Option | None:
        return next((o for o in self.options if o.fits), None)

    def to_json(self) -> dict:
        best = self.recommended
        return {
            "function_bytes": self.function, "ephemeral_bytes": self.ephemeral,
            "layers": [vars(i) for i in self.layers], "models": [vars(i) for i in self.models],
            "options": [{"name": o.name, "title": o.title, "fits": o.fits, "advice": o.advice,
                         "checks": [{"measure": c.measure, "value": c.value, "limit": c.limit, "ok": c.ok}
                                    for c in o.checks]} for o in self.options],
            "recommended": best.name if best else None,
        }


def plan_budget(function: int, layers: list[Item], models: list[Item], ephemeral: int = EPHEMERAL_DEFAULT) -> BudgetPlan:
    if len(layers) > MAX_LAYERS:
        raise UsageError(f"{len(layers)} layers: a Lambda function takes at most {MAX_LAYERS}",
                         hint="merge layers (one recipe can hold several stacks), or build a container image")
    if not EPHEMERAL_DEFAULT <= ephemeral <= EPHEMERAL_MAX:
        raise UsageError(f"--ephemeral must be between 512 MB and 10,240 MB, not {human(ephemeral)}",
                         hint="Lambda's /tmp is 512 MB by default and can be raised to 10,240 MB")
    layer_total = sum(i.bytes for i in layers)
    model_total = sum(i.bytes for i in models)
    largest = max((i.bytes for i in models), default=0)
    code = function + layer_total
    unpacked = sum(i.tmp_bytes for i in layers)  # packed layers' trees, in /tmp in every option but the image

    package_tmp = unpacked + TMP_HEADROOM
    package_raise = min(EPHEMERAL_MAX, max(ephemeral, storage_for(package_tmp)))
    package_checks = [Check("function + layers + models, unzipped", code + model_total, UNZIPPED_LIMIT),
                      Check("layers", len(layers) + (1 if models else 0), MAX_LAYERS)]
    if unpacked:
        package_checks.append(Check("packed layers unpacked in /tmp (with 32 MiB for the function's own files), "
                                    f"of the usable part of {package_raise // MIB} MB", package_tmp,
                                    usable(package_raise)))
    in_package = Option("package", "models in the deployment package (or a model layer)", tuple(package_checks),
                        _package_advice(code, model_total, function)
                        + (_ephemeral_note(ephemeral, package_raise, unpacked) if unpacked else ""))

    tmp_needed = model_total + unpacked + TMP_HEADROOM
    raise_to = min(EPHEMERAL_MAX, max(ephemeral, storage_for(tmp_needed)))
    what = "models and packed layers" if unpacked else "models"
    in_tmp = Option("s3-tmp", "models in S3, fetched to /tmp at cold start", (
        Check("function + layers, unzipped", code, UNZIPPED_LIMIT),
        Check(f"{what} in /tmp (with 32 MiB for the function's own files), of the usable part of "
              f"{raise_to // MIB} MB", tmp_needed, usable(raise_to)),
    ), _tmp_advice(ephemeral, raise_to, tmp_needed, largest))

    image = Option("image", "a container image (layers build --image)", (
        Check("function + layers + models in the image", code + model_total, IMAGE_LIMIT),
    ), "10 GB for everything; no layers, no /tmp download; cold starts pull the image")
    return BudgetPlan(function, tuple(layers), tuple(models), ephemeral, (in_package, in_tmp, image))


def _package_advice(code: int, models: int, function: int) -> str:
    room = UNZIPPED_LIMIT - code - models
    if room < 0:
        return f"{human(-room)} over the 250 MB unzipped limit"
    upload = "a direct upload" if function + models <= DIRECT_UPLOAD_LIMIT else "an upload through S3 (over 50 MB zipped)"
    return f"{human(room)} to spare; the function zip with its models needs {upload}"


def _ephemeral_note(ephemeral: int, raise_to: int, unpacked: int) -> str:
    # SnapStart snapshots /tmp only while EphemeralStorage stays at its 512 MB default.
    if raise_to > ephemeral:
        return (f"; the packed layers unpack to {human(unpacked)} in /tmp: set EphemeralStorage to "
                f"{raise_to // MIB} MB (SnapStart needs 512 MB, so it cannot keep the unpacked tree)")
    return f"; the packed layers unpack to {human(unpacked)} in /tmp, within {ephemeral // MIB} MB"


def _tmp_advice(ephemeral: int, raise_to: int, needed: int, largest: int) -> str:
    if needed > usable(EPHEMERAL_MAX):
        return (f"the models need {human(needed)} of /tmp, over what the 10,240 MB maximum holds "
                f"({human(usable(EPHEMERAL_MAX))} usable)")
    if raise_to > ephemeral:
        return (f"set EphemeralStorage to {raise_to // MIB} MB ({ephemeral // MIB} MB holds "
                f"{human(usable(ephemeral))}, too little for {human(needed)})")
    return f"{human(usable(ephemeral) - needed)} of /tmp to spare; the largest model is {human(largest)}"


def ephemeral_for(tmp_bytes: int) -> int:
    """The EphemeralStorage (bytes) a function needs for ``tmp_bytes`` in /tmp, with the function's own headroom."""
    return max(EPHEMERAL_DEFAULT, storage_for(tmp_bytes + TMP_HEADROOM))


def usable(storage: int) -> int:
    """What an EphemeralStorage of ``storage`` bytes holds once its file system took its part."""
    return int(storage * TMP_USABLE)


def storage_for(needed: int) -> int:
    """The smallest EphemeralStorage, in 64 MiB steps, whose usable part holds ``needed`` bytes."""
    size = _round_up_mib(-(-needed * 100 // int(TMP_USABLE * 100)))
    while usable(size) < needed:  # the division's rounding
        size += 64 * MIB
    return size


def _round_up_mib(size: int, step: int = 64 * MIB) -> int:
    return -(-size // step) * step
