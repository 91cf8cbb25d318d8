"""``layers doctor``'s logic (``verify.doctor.diagnose``) on hand-made findings, and the reasons it gives.

``diagnose`` is pure: each test states what a machine has (``Facts``) and
reads what the doctor concludes per runtime and architecture. binfmt_misc
is read from a directory of the same shape the kernel shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.runtimes import all_runtimes
from builder.verify import interpreters
from builder.verify.doctor import Facts, diagnose
from builder.verify.interpreters import Interpreter, binfmt_problem, missing_reason, no_debian_python

RUNTIMES = list(all_runtimes().values())
BOOKWORM = Path("/var/cache/layers-test/arm64-bookworm")
TRIXIE = Path("/var/cache/layers-test/arm64-trixie")
TOOLS = {"qemu-aarch64-static": True, "debootstrap": True, "bwrap": True}


def native(version: str) -> Interpreter:
    return Interpreter(Path(f"/root/.pyenv/versions/{version}.9/bin/python{version}"), version, "x86_64")


def emulated(version: str, root: Path) -> Interpreter:
    return Interpreter(Path(f"/usr/bin/python{version}"), version, "aarch64", root=root)


def facts(*, arm: dict[str, Path] | None = None, host: tuple[str, ...] = ("3.6", "3.11", "3.12", "3.13"),
          sandbox: str | None = None, binfmt: str | None = None, roots: dict[Path, tuple[str, ...]] | None = None,
          from_env: bool = False, tools: dict[str, bool] | None = None) -> Facts:
    found: dict[tuple[str, str], Interpreter | None] = {}
    for runtime in RUNTIMES:
        found[(runtime.python, "x86_64")] = native(runtime.python) if runtime.python in host else None
        if "arm64" in runtime.architectures:
            root = (arm or {}).get(runtime.python)
            found[(runtime.python, "aarch64")] = emulated(runtime.python, root) if root else None
    return Facts(host_machine="x86_64", interpreters=found, sandbox=sandbox, binfmt={"aarch64": binfmt},
                 roots=roots if roots is not None else {}, roots_from_env=from_env, tools=tools or TOOLS)


def row(found: Facts, runtime: str, arch: str):
    (only,) = [r for r in diagnose(found, RUNTIMES) if (r.runtime, r.arch) == (runtime, arch)]
    return only


def test_one_row_per_runtime_and_architecture_in_the_tables_order():
    rows = diagnose(facts(), RUNTIMES)
    assert [(r.runtime, r.arch) for r in rows] == [(rt.name, a) for rt in RUNTIMES for a in rt.architectures]
    assert {"python3.6", "python3.14"} <= {r.runtime for r in rows}


def test_a_machine_with_both_roots_smoke_tests_311_and_313_arm64_under_emulation():
    found = facts(arm={"3.11": BOOKWORM, "3.13": TRIXIE}, roots={BOOKWORM: ("3.11",), TRIXIE: ("3.13",)})
    arm = row(found, "python3.11", "arm64")
    assert arm.smoke == "emulated" and arm.sandbox and arm.enable == ()
    assert arm.location == str(BOOKWORM)
    assert arm.summary == ("smoke test by python3.11 (aarch64, under emulation: QEMU user mode via binfmt) from "
                           f"{BOOKWORM}, in the sandbox of Lambda's libraries")
    assert row(found, "python3.13", "arm64").location == str(TRIXIE)
    x86 = row(found, "python3.11", "x86_64")
    assert x86.smoke == "native" and x86.sandbox and x86.enable == () and x86.location.endswith("python3.11")


def test_python312_arm64_says_no_debian_release_has_it_and_what_else_would_do():
    found = facts(arm={"3.11": BOOKWORM, "3.13": TRIXIE}, roots={BOOKWORM: ("3.11",), TRIXIE: ("3.13",)})
    arm = row(found, "python3.12", "arm64")
    assert arm.smoke == "none" and not arm.sandbox and arm.interpreter is None
    assert arm.summary == ("ELF checks only: no aarch64 python3.12 can be had here: Debian has 3.9 in bullseye, "
                           "3.11 in bookworm and 3.13 in trixie, and python3.12 in none of its releases")
    assert arm.enable == (("name an arm64 root of another system that holds python3.12 in LAYERS_ARM64_ROOTS, or "
                          "build on an arm64 machine, or with --backend docker"),)


def test_without_roots_it_gives_the_debootstrap_line_and_the_script():
    found = facts()
    (step,) = row(found, "python3.11", "arm64").enable
    assert step == ("make an arm64 root of Debian bookworm (a few minutes, as root): debootstrap --arch=arm64 "
                    "--variant=minbase --include=python3 bookworm /var/cache/layers-test/arm64-bookworm "
                    "http://deb.debian.org/debian (or run .ci/test-arm64-roots.sh, which makes both bookworm's and "
                    "trixie's)")
    assert row(found, "python3.11", "arm64").summary == "ELF checks only: no arm64 root holds python3.11"
    (sid,) = row(found, "python3.14", "arm64").enable  # not one the script makes: sid's python3.14 package
    assert "--include=python3.14 sid /var/cache/layers-test/arm64-sid" in sid and ".ci/" not in sid
    assert "bullseye /var/cache/layers-test/arm64-bullseye" in row(found, "python3.9", "arm64").enable[0]


def test_missing_emulator_and_registration_come_first_with_the_packages_to_install():
    found = facts(binfmt="binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc",
                  tools={**TOOLS, "qemu-aarch64-static": False, "debootstrap": False})
    arm = row(found, "python3.13", "arm64")
    assert arm.summary == ("ELF checks only: no aarch64 python3.13 can run here: binfmt_misc is not mounted at "
                           "/proc/sys/fs/binfmt_misc")
    assert arm.enable[0] == "apt-get install qemu-user-static debootstrap"
    assert arm.enable[1].startswith("register the emulator (as root): mount -t binfmt_misc binfmt_misc")
    assert "update-binfmts --enable qemu-aarch64" in arm.enable[1]
    assert "debootstrap --arch=arm64 --variant=minbase --include=python3 trixie" in arm.enable[2]


def test_roots_named_in_the_environment_must_include_the_new_one():
    found = facts(roots={Path("/srv/other-arm64"): ()}, from_env=True)
    assert row(found, "python3.11", "arm64").enable[-1] == (
        "add /var/cache/layers-test/arm64-bookworm to LAYERS_ARM64_ROOTS (it replaces the default roots)")


def test_a_root_whose_python_does_not_answer_is_to_be_made_again():
    arm = row(facts(roots={BOOKWORM: ("3.11",)}), "python3.11", "arm64")
    assert arm.smoke == "none"
    assert arm.summary == f"ELF checks only: python3.11 in {BOOKWORM} did not answer"
    assert arm.enable == ((f"python3.11 in {BOOKWORM} did not answer: remove the root and make it again "
                          "(.ci/test-arm64-roots.sh)"),)


def test_without_bwrap_the_smoke_test_sees_this_machines_libraries_and_says_how_to_fix_it():
    reason = "bwrap is not installed; Debian/Ubuntu: apt-get install bubblewrap"
    found = facts(sandbox=reason)
    x86 = row(found, "python3.11", "x86_64")
    assert x86.smoke == "native" and not x86.sandbox
    assert x86.summary.endswith("with this machine's libraries, not only Lambda's")
    assert x86.enable == (f"for the sandbox of Lambda's libraries: {reason}",)
    missing = row(found, "python3.14", "x86_64")
    assert missing.enable == ("install python3.14: pyenv install 3.14 (or point LAYERS_PYTHON_3_14 at one)",
                              f"then, for the sandbox of Lambda's libraries: {reason}")


def test_to_json_carries_every_field():
    data = row(facts(arm={"3.11": BOOKWORM}), "python3.11", "arm64").to_json()
    assert data == {"runtime": "python3.11", "architecture": "arm64", "python": "3.11", "smoke_test": "emulated",
                    "interpreter": f"python3.11 (aarch64, under emulation: QEMU user mode via binfmt) from {BOOKWORM}",
                    "location": str(BOOKWORM), "lambda_libraries_sandbox": True,
                    "summary": data["summary"], "enable": []}


def test_the_build_reports_reason_for_python312_arm64():
    assert missing_reason("3.12", "aarch64").startswith(no_debian_python("3.12"))
    assert no_debian_python("3.12") == ("no aarch64 python3.12 can be had here: Debian has 3.9 in bullseye, 3.11 in "
                                        "bookworm and 3.13 in trixie, and python3.12 in none of its releases")
    assert missing_reason("3.11", "x86_64").startswith("no python3.11 for x86_64 on this machine")


ENTRY = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: {flags}
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


@pytest.mark.parametrize("state,expected", [
    ("unmounted", "binfmt_misc is not mounted at"),
    ("no entry", "no binfmt handler for aarch64"),
    ("disabled", "the binfmt handler qemu-aarch64 is disabled"),
    ("no F", "lacks the F flag"),
    ("PF", None),
])
def test_binfmt_problem_reads_the_kernels_entry(tmp_path, monkeypatch, state, expected):
    monkeypatch.setattr(interpreters, "BINFMT_DIR", tmp_path)
    if state != "unmounted":
        (tmp_path / "register").write_text("")
    if state in ("disabled", "no F", "PF"):
        text = ENTRY.format(flags="P" if state == "no F" else "PF")
        (tmp_path / "qemu-aarch64").write_text(text.replace("enabled", "disabled") if state == "disabled" else text)
    problem = binfmt_problem("aarch64")
    assert problem is None if expected is None else expected in problem
