"""Layer zips made by someone else: damaged, hostile or huge ones are refused by report, diff, check and publish.

Every command here gets a bounded time; a hang fails the test. Each damaged
zip is made from a good one by changing the bytes a real attacker (or a
broken tool) would.
"""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.functional.test_bad_files import STEM, _report

pytestmark = pytest.mark.functional
LAYERS = [sys.executable, "-m", "builder"]


def layers(*args, cwd: Path, memory: int | None = None) -> subprocess.CompletedProcess:
    def limit():  # address space: a reader that inflates a whole member dies here
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    return subprocess.run([*LAYERS, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200",
                                                 "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                                                 "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})


def _with_report(zip_path: Path) -> Path:
    zip_path.with_name(zip_path.name[:-4] + ".report.json").write_text(json.dumps(_report(zip_path)))
    return zip_path


def _zip(tmp_path: Path, name: str, members: dict[str, bytes], **info) -> Path:
    path = tmp_path / name / "dist" / "demo" / f"{STEM}.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            entry = zipfile.ZipInfo(member)
            for key, value in info.items():
                setattr(entry, key, value)
            archive.writestr(entry, data)
    return path


def _patched(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    assert data.count(old) >= 1
    path.write_bytes(data.replace(old, new))
    return path


def _header_field(path: Path, offsets: tuple[int, int], value: int) -> Path:
    data = bytearray(path.read_bytes())
    for signature, offset in zip((b"PK\x03\x04", b"PK\x01\x02"), offsets):
        at = data.find(signature)
        data[at + offset:at + offset + 2] = value.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def _hostile(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    cases = {}
    bad_crc = _zip(tmp_path, "crc", {"python/a.so": b"\x7fELF" + b"A" * 100})
    cases["bad CRC"] = (_patched(bad_crc, b"A" * 100, b"B" * 100), "cannot be read")
    # The flag bits and the compression method, set in the local header and the central directory.
    encrypted = _header_field(_zip(tmp_path, "enc", {"python/a.py": b"x"}), (6, 8), 0x1)
    cases["encrypted"] = (encrypted, "encrypted")
    deflate64 = _header_field(_zip(tmp_path, "d64", {"python/a.py": b"x = 1\n"}), (8, 10), 9)
    cases["deflate64"] = (deflate64, "compression method 9")
    not_utf8 = _zip(tmp_path, "utf8", {"python/\u00e9.py": b"x"})
    cases["name not UTF-8 despite the flag"] = (_patched(not_utf8, "\u00e9".encode(), b"\xff\xfe"), "cannot read")
    cases["device entry"] = (_zip(tmp_path, "dev", {"python/dev": b""}, external_attr=(stat.S_IFCHR | 0o644) << 16),
                             "device, FIFO or socket")
    cases["dot-dot"] = (_zip(tmp_path, "dotdot", {"python/../../etc/x": b"x"}), "outside /opt")
    cases["absolute"] = (_zip(tmp_path, "abs", {"/etc/x": b"x"}), "outside /opt")
    return cases


def test_hostile_zips_are_refused_by_every_reader(tmp_path):
    good = _zip(tmp_path, "good", {"python/a.py": b"x = 1\n"})
    for what, (path, words) in _hostile(tmp_path).items():
        _with_report(path)
        for command in (["report", str(path)], ["diff", str(good), str(path)],
                        ["check", str(path), "--runtime", "python3.11"],
                        ["publish", str(path), "--regions", "us-east-1", "--dry-run"]):
            result = layers(*command, cwd=tmp_path)
            assert "Traceback" not in result.stderr, (what, command, result.stderr)
            if what == "bad CRC" and command[0] in ("report", "diff"):
                # A CRC shows only when the member is read through; report and diff read no ELF content.
                assert result.returncode in (0, 1, 2), (what, command, result.stderr)  # diff: 1 = they differ
                continue
            assert result.returncode == 2, (what, command, result.stderr)
            assert words in result.stderr, (what, command, result.stderr)


def test_diff_never_reads_a_whole_member(tmp_path):
    """Two zips of about 1 MB each whose member inflates to 1 GiB: diff must stay in a small address space."""
    zips = []
    for name, fill in (("one", b"\0"), ("two", b"\1")):
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            with archive.open("python/weights.bin", "w", force_zip64=True) as member:
                block = fill * (1 << 20)
                for _ in range(1024):
                    member.write(block)
        zips.append(path)
    result = layers("diff", *map(str, zips), "--json", cwd=tmp_path, memory=768 << 20)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    (difference,) = json.loads(result.stdout)["differences"]
    assert difference["path"] == "python/weights.bin" and difference["kind"] == "content"


def test_fifos_and_devices_as_inputs_never_hang(tmp_path):
    fifo = tmp_path / "in.zip"
    os.mkfifo(fifo)
    good = _zip(tmp_path, "good", {"python/a.py": b"x"})
    for command in (["report", str(fifo)], ["diff", str(fifo), str(good)], ["diff", "/dev/zero", str(good)],
                    ["check", "/dev/zero", "--runtime", "python3.11"], ["check", str(fifo), "--runtime", "python3.11"],
                    ["publish", str(fifo), "--regions", "us-east-1"]):
        result = layers(*command, cwd=tmp_path)  # a hang fails with subprocess.TimeoutExpired
        assert result.returncode == 2, (command, result.stderr)
        assert "Traceback" not in result.stderr
