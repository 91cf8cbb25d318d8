"""Read what a layer's ELF files need, without running them.

Pure inspection with pyelftools (no subprocess), used for two checks here
(and by ``loadcheck``, which resolves every DT_NEEDED as Lambda's ld.so would
from ``rpath``, ``runpath`` and the per-library ``version_needs``):

* **glibc**: every Lambda runtime has a fixed glibc (2.17, 2.26 or 2.34), and
  a shared object that asks for a newer ``GLIBC_x.y`` symbol version fails to
  load there. The versions a file asks for are exactly the ``GLIBC_*`` entries
  of its version-needs table (``.gnu.version_r``), so that small table is all
  we read; the symbol tables are only walked for a file that fails, to name
  the symbols in the error.
* **load segments**: ``strip`` on a library that patchelf has grown (every
  auditwheel-repaired wheel) can write ``PT_LOAD`` segments that ld.so rejects
  ("ELF load command address/offset not page-aligned"). That is a property of
  the program headers alone, so ``load_segments_problem`` checks it the way
  ld.so does, without loading the file (which is impossible for aarch64 on an
  x86_64 host anyway).

Speed: a layer holds thousands of files, few of them ELF. ``elf_files`` opens
each file for its 4 magic bytes only, and ``read_elf`` parses headers and the
small dynamic and version sections, never the symbol or debug sections, so
huge libraries cost no more than small ones.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.dynamic import DynamicSection, DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from ..errors import VerifyError

ELF_MAGIC = b"\x7fELF"
# The names wheels, Lambda and uname use for the two machines we build for.
_MACHINES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}
# GLIBC_2.2.5 counts as (2, 2): runtimes and manylinux tags speak major.minor.
_GLIBC_RE = re.compile(r"^GLIBC_(\d+)\.(\d+)")
# The smallest page size of x86_64 and aarch64 kernels; ld.so maps PT_LOAD
# segments in whole pages, so offset and address must agree below it.
_PAGE = 0x1000
# Whatever a damaged file can make pyelftools raise while parsing it.
_PARSE_ERRORS = (ELFError, ConstructError, struct.error, ValueError, IndexError, KeyError, EOFError, OSError)
DAMAGED_HINT = ("if the layer does not need the file, drop it with a [strip] remove glob; else pin another release "
                "of the package that ships it")


def is_elf(path: Path) -> bool:
    """True if the file starts with the ELF magic (unreadable files are not ELF)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class ElfInfo:
    path: Path
    machine: str  # "x86_64", "aarch64", or pyelftools' e_machine name (e.g. "EM_386")
    elf_type: str  # "ET_DYN", "ET_EXEC", "ET_REL", ...
    soname: str | None
    needed: tuple[str, ...]
    search_paths: tuple[str, ...]  # DT_RPATH then DT_RUNPATH entries, as written ($ORIGIN unexpanded)
    glibc_versions: tuple[tuple[int, int], ...]  # every GLIBC_x.y required, sorted
    has_debug_info: bool  # .debug_* sections or a .symtab: stripping would help
    # The two kinds of search path apart: ld.so uses them at different points
    # (DT_RPATH before LD_LIBRARY_PATH and only without DT_RUNPATH, DT_RUNPATH after).
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    # Per .gnu.version_r entry: the library file named there and every version
    # name needed from it ("GLIBC_2.17", "GLIBCXX_3.4.26", ...), in file order.
    version_needs: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def versions_needed_from(self, soname: str) -> tuple[str, ...]:
        """The version names this file needs from the library ``soname`` (a DT_NEEDED name)."""
        return tuple(name for file, names in self.version_needs if file == soname for name in names)

    @property
    def max_glibc(self) -> tuple[int, int] | None:
        return self.glibc_versions[-1] if self.glibc_versions else None


def read_elf(path: Path) -> ElfInfo:
    """Parse the headers, dynamic section and version needs of one ELF file.

    Raises VerifyError, naming the file and what is wrong, if it is not an
    ELF file or is damaged (truncated, tables pointing past the end).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            elf, problem = _open(f, size)
            if problem:
                raise VerifyError(f"{path}: {problem}", hint=DAMAGED_HINT)
            return _read(elf, path, size)
    except VerifyError:
        raise
    except _PARSE_ERRORS as exc:
        raise VerifyError(f"{path}: unreadable ELF file ({_describe(exc)})", hint=DAMAGED_HINT) from None


def _read(elf: ELFFile, path: Path, size: int) -> ElfInfo:
    soname = None
    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    glibc: set[tuple[int, int]] = set()
    version_needs: list[tuple[str, tuple[str, ...]]] = []
    has_debug = False
    dynamic_seen = False
    for section in elf.iter_sections():
        name = section.name
        if name == ".symtab" or name.startswith((".debug_", ".zdebug_")):
            has_debug = True
        if section["sh_type"] != "SHT_NOBITS" and section["sh_offset"] + section["sh_size"] > size:
            raise VerifyError(f"{path}: section {name or '?'} extends past the end of the file (truncated?)",
                              hint=DAMAGED_HINT)
        if isinstance(section, DynamicSection) and not dynamic_seen:
            dynamic_seen = True
            soname, needed, rpath, runpath = _dynamic(section)
        elif isinstance(section, GNUVerNeedSection):
            glibc.update(v for v, _ in _glibc_needs(section))
            version_needs += _version_needs(section)
    if not dynamic_seen:
        # Files without section headers (sstrip'ed) still have PT_DYNAMIC.
        for segment in elf.iter_segments():
            if isinstance(segment, DynamicSegment):
                soname, needed, rpath, runpath = _dynamic(segment)
                break
    return ElfInfo(
        path=path,
        machine=_machine(elf),
        elf_type=str(elf["e_type"]),
        soname=soname,
        needed=tuple(needed),
        search_paths=tuple(rpath + runpath),
        glibc_versions=tuple(sorted(glibc)),
        has_debug_info=has_debug,
        rpath=tuple(rpath),
        runpath=tuple(runpath),
        version_needs=tuple(version_needs),
    )


def _machine(elf: ELFFile) -> str:
    return _MACHINES.get(elf["e_machine"], str(elf["e_machine"]))


def _dynamic(dyn: DynamicSection | DynamicSegment) -> tuple[str | None, list[str], list[str], list[str]]:
    soname = None
    needed = []
    rpath, runpath = [], []
    for tag in dyn.iter_tags():
        if tag.entry.d_tag == "DT_NEEDED":
            needed.append(tag.needed)
        elif tag.entry.d_tag == "DT_SONAME":
            soname = tag.soname
        elif tag.entry.d_tag == "DT_RPATH":
            rpath += [p for p in tag.rpath.split(":") if p]
        elif tag.entry.d_tag == "DT_RUNPATH":
            runpath += [p for p in tag.runpath.split(":") if p]
    return soname, needed, rpath, runpath


def _version_needs(section: GNUVerNeedSection) -> list[tuple[str, tuple[str, ...]]]:
    return [(verneed.name, tuple(aux.name for aux in auxiliaries)) for verneed, auxiliaries in section.iter_versions()]


def _glibc_needs(section: GNUVerNeedSection) -> Iterator[tuple[tuple[int, int], object]]:
    """(version, vernaux entry) for every GLIBC_x.y the file requires."""
    for _verneed, auxiliaries in section.iter_versions():
        for aux in auxiliaries:
            match = _GLIBC_RE.match(aux.name)
            if match:
                yield (int(match[1]), int(match[2])), aux


def _open(f: BinaryIO, size: int) -> tuple[ELFFile | None, str | None]:
    """Parse the ELF header of an open file: (elf, None) if its tables are in
    the file, else (elf or None, why it cannot be read).

    The size checks come first so a truncated file gets a plain reason, not
    a parser error about a missing field.
    """
    ident = f.read(5)
    if ident[:4] != ELF_MAGIC:
        return None, "not an ELF file"
    header_size = {1: 52, 2: 64}.get(ident[4]) if len(ident) == 5 else 64
    if header_size is None:
        return None, "unknown ELF class (neither 32- nor 64-bit)"
    if size < header_size:
        return None, f"file is {size} bytes, shorter than an ELF header (truncated?)"
    f.seek(0)
    elf = ELFFile(f)
    return elf, _tables_problem(elf, size)


def _tables_problem(elf: ELFFile, size: int) -> str | None:
    """Why the header tables lie (partly) past the end of the file, or None."""
    phend = elf["e_phoff"] + elf.num_segments() * elf["e_phentsize"]
    if elf.num_segments() and phend > size:
        return f"program headers end at 0x{phend:x}, past the end of the file (truncated?)"
    shend = elf["e_shoff"] + elf.num_sections() * elf["e_shentsize"]
    if elf.num_sections() and shend > size:
        return f"section headers end at 0x{shend:x}, past the end of the file (truncated?)"
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_segments_problem(path: Path) -> str | None:
    """None if ld.so would accept the file's PT_LOAD segments, else a short reason.

    Checks what ld.so checks before mapping: every PT_LOAD's offset and
    address are congruent modulo its alignment (and the page size), the
    alignment is whole pages, the bytes lie inside the file, and the segments
    come in ascending address order.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            elf, problem = _open(f, size)
            return problem or _segments_problem(elf, size)
    except _PARSE_ERRORS as exc:
        return f"unreadable ELF file ({_describe(exc)})"


def _segments_problem(elf: ELFFile, size: int) -> str | None:
    previous_end = None
    loads = 0
    for index, seg in enumerate(elf.iter_segments()):
        if seg["p_type"] != "PT_LOAD":
            continue
        loads += 1
        offset, vaddr, align = seg["p_offset"], seg["p_vaddr"], seg["p_align"]
        filesz, memsz = seg["p_filesz"], seg["p_memsz"]
        where = f"PT_LOAD {index}"
        if align > 1 and align % _PAGE:
            return f"{where}: alignment 0x{align:x} is not a multiple of the 0x{_PAGE:x} page size"
        modulus = align if align > 1 else _PAGE
        if offset % modulus != vaddr % modulus:
            return f"{where}: offset 0x{offset:x} and address 0x{vaddr:x} not congruent modulo 0x{modulus:x}"
        if offset + filesz > size:
            return f"{where}: bytes 0x{offset:x}-0x{offset + filesz:x} past the end of the file (0x{size:x})"
        if filesz > memsz:
            return f"{where}: file size 0x{filesz:x} larger than memory size 0x{memsz:x}"
        if previous_end is not None and vaddr < previous_end:
            return f"{where}: address 0x{vaddr:x} overlaps or precedes the previous PT_LOAD (ends 0x{previous_end:x})"
        previous_end = vaddr + memsz
    if loads == 0 and elf["e_type"] in ("ET_DYN", "ET_EXEC"):
        return "no PT_LOAD segment"
    return None


@dataclass(frozen=True)
class GlibcViolation:
    path: Path
    needs: tuple[int, int]
    allowed: tuple[int, int]
    symbols_versions: tuple[str, ...]  # "symbol@GLIBC_x.y" for each version above allowed

    def __str__(self) -> str:
        shown = ", ".join(self.symbols_versions[:5])
        more = f" and {len(self.symbols_versions) - 5} more" if len(self.symbols_versions) > 5 else ""
        return "%s needs glibc %d.%d, the runtime has %d.%d (%s%s)" % (
            self.path, *self.needs, *self.allowed, shown, more)


def glibc_violations(tree: Path, allowed: tuple[int, int]) -> list[GlibcViolation]:
    """Every ELF file under tree that requires a glibc newer than allowed, sorted by path.

    Raises VerifyError for a damaged ELF file (it would not load either).
    """
    out = []
    for path in elf_files(tree):
        info = read_elf(path)
        if info.max_glibc is not None and info.max_glibc > allowed:
            out.append(GlibcViolation(path, info.max_glibc, allowed, _symbols_above(path, allowed)))
    return out


def _symbols_above(path: Path, allowed: tuple[int, int]) -> tuple[str, ...]:
    """Name the imported symbols whose GLIBC version is above allowed.

    Only run for a failing file. Reads the .gnu.version array raw and looks up
    just the matching .dynsym entries, rather than parsing every symbol.
    Falls back to the bare version names if the tables are missing.
    """
    with open(path, "rb") as f:
        elf = ELFFile(f)
        too_new: dict[int, str] = {}  # versym index -> "GLIBC_x.y"
        for section in elf.iter_sections():
            if isinstance(section, GNUVerNeedSection):
                for version, aux in _glibc_needs(section):
                    if version > allowed:
                        too_new[aux["vna_other"]] = aux.name
        versym = elf.get_section_by_name(".gnu.version")
        dynsym = elf.get_section_by_name(".dynsym")
        if versym is None or dynsym is None:
            return tuple(sorted(set(too_new.values())))
        indexes = array("H", versym.data())
        if (sys.byteorder == "little") != elf.little_endian:
            indexes.byteswap()
        found = set()
        for i, value in enumerate(indexes):
            version = too_new.get(value & 0x7FFF)  # the top bit marks a hidden symbol
            if version is not None:
                found.add(f"{dynsym.get_symbol(i).name}@{version}")
        return tuple(sorted(found)) or tuple(sorted(set(too_new.values())))


def elf_files(tree: Path) -> list[Path]:
    """Every ELF regular file under tree, sorted; symlinks are skipped.

    Decided by the magic bytes, not the name: wheels ship ``.so``,
    ``.so.1.2`` and extension-less executables, and files named ``.so`` that
    are linker scripts or text.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            # lstat: a symlink is not S_ISREG; its target is listed on its own if in the tree.
            if stat.S_ISREG(st.st_mode) and st.st_size >= 4 and is_elf(Path(full)):
                found.append(Path(full))
    return sorted(found)
