"""A stand-in for Lambda's python3.11 runtime image, built from the test base image (no registry here).

Lambda's runtime image holds far fewer system libraries than the build image
or any Debian. The stand-in is ``layers-test-base:bookworm`` cut down to what
``builder/lambda_os.toml`` lists for Amazon Linux 2 on x86_64 (``present``);
for arm64, ``layers-test-base:bookworm-arm64`` cut down to the arm64 table
(whose loader is ld-linux-aarch64.so.1), the same way (``STAND_INS``):

1. The base image's file system is exported (``docker create`` + export) to a
   tar file on this machine; nothing is extracted, so modes, owners and
   device nodes stay as they were.
2. The C toolchain goes (gcc, cc, ld, as, objdump...): Lambda's runtime image
   has none, and ``ctypes.util.find_library`` behaves differently with one.
   ldconfig stays, as on Lambda.
3. Every shared library (``*.so*``) at the top of a system library directory
   (the multiarch ones, /usr/lib64, ld.so.conf's) goes, unless the table lists
   its name, or a program or library that stays needs it (DT_NEEDED, read with
   pyelftools): the interpreter, its lib-dynload modules, coreutils...
4. Those needed libraries the table does not list are the image's private
   copies, as Lambda's Python carries its own (/var/lang/lib, statically
   linked expat): each is renamed to a name of the same length with its stem in
   capitals (``libexpat.so.1`` -> ``libEXPAT.so.1``), and the DT_NEEDED,
   DT_SONAME and version-need strings that name it are rewritten in place (same
   length, so no ELF layout changes). Debian's python3.11 itself links
   libexpat.so.1: without the rename, an extension needing libexpat.so.1 would
   find the interpreter's copy already loaded and pass where Lambda fails.
5. The result is built into an image ``FROM scratch`` for the stand-in's
   platform (ADD unpacks it; ``docker import`` would record the engine's own
   machine, whatever the file system's), with a Dockerfile that runs
   ldconfig (so /etc/ld.so.cache lists only what is left) and sets Lambda's
   environment, working directory and an entrypoint that, like Lambda's,
   refuses to run without a handler name.

The image is tagged ``layers-test-runtime:python3.11`` (arm64:
``layers-test-runtime:python3.11-arm64``) with a label holding a hash of the
table, this file, the architecture and the base image's ID, and reused while
the label matches. ``python -m tests.support.runtime_image [--arch arm64]``
builds it (what ``.ci/test-runtime-image.sh`` runs). The arm64 one is made on
an x86_64 engine as any arm64 container runs there: under QEMU (binfmt_misc),
which its ldconfig step and its check need.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from builder.backends.container import LABEL, Container
from builder.backends.images import docker_platform
from builder.runtimes import get_runtime, system_libraries

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "layers-test-base:bookworm"
TAG = "layers-test-runtime:python3.11"
HASH_LABEL = "lambda-layer-builder.stand-in-hash"
RUNTIME = "python3.11"
ARCH = "x86_64"
PYTHON = "usr/bin/python3.11"
LIB_DYNLOAD = "usr/lib/python3.11/lib-dynload"


@dataclass(frozen=True)
class StandIn:
    """One architecture's stand-in: its base image, its tag, and Debian's directory names for that machine."""

    arch: str      # Lambda's name: x86_64, arm64
    base: str
    tag: str
    triplet: str   # Debian's multiarch directory: x86_64-linux-gnu, aarch64-linux-gnu

    @property
    def platform(self) -> str:
        return docker_platform(self.arch)

    @property
    def system_dirs(self) -> tuple[str, ...]:
        """ld.so's own directories on Debian, and Lambda's (/lib64, /usr/lib64); ld.so.conf adds more."""
        return (f"lib/{self.triplet}", f"usr/lib/{self.triplet}", "lib64", "usr/lib64", "lib", "usr/lib",
                "usr/local/lib")

    @property
    def toolchain_prefixes(self) -> tuple[str, ...]:
        return (*TOOLCHAIN_PREFIXES, f"{self.triplet}-")

    @property
    def toolchain_trees(self) -> tuple[str, ...]:
        return ("usr/lib/gcc/", "usr/libexec/gcc/", f"usr/lib/{self.triplet}/bfd-plugins/",
                f"usr/lib/{self.triplet}/ldscripts/", f"usr/lib/{self.triplet}/gprofng/")


STAND_INS = {
    "x86_64": StandIn("x86_64", BASE_IMAGE, TAG, "x86_64-linux-gnu"),
    "arm64": StandIn("arm64", "layers-test-base:bookworm-arm64", "layers-test-runtime:python3.11-arm64",
                     "aarch64-linux-gnu"),
}
SHARED_LIBRARY = re.compile(r"\.so(\.[0-9][^/]*)?$")
# gcc and binutils, by name in /usr/bin; also everything under these directories.
TOOLCHAIN = frozenset("""
    addr2line ar as c++ c++filt c89 c89-gcc c99 c99-gcc cc cpp dwp elfedit g++ gcc gcov gcov-dump gcov-tool gold
    gprof gprofng ld ld.bfd ld.gold lto-dump nm objcopy objdump ranlib readelf size strings strip
""".split())
# (and the machine's triplet, "x86_64-linux-gnu-": StandIn.toolchain_prefixes)
TOOLCHAIN_PREFIXES = ("gcc-", "g++-", "cpp-", "gcov-", "lto-dump-", "gp-")
ENTRYPOINT_SCRIPT = """#!/bin/sh
# Stand-in for the Lambda image's /lambda-entrypoint.sh, which takes a handler name and starts the
# runtime interface emulator. This one only refuses, so a test that forgets to replace it fails.
echo "entrypoint requires the handler name to be the first argument" >&2
exit 142
"""
DOCKERFILE = """\
FROM scratch
ADD root.tar /
RUN ["/sbin/ldconfig"]
ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin \\
    LD_LIBRARY_PATH={ld_library_path} \\
    LAMBDA_TASK_ROOT=/var/task \\
    LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
LABEL {label}={digest}
"""


class StandInError(RuntimeError):
    """The stand-in image could not be made (a test-support failure, not a builder one)."""


def fingerprint(base_id: str, arch: str = ARCH) -> str:
    digest = hashlib.sha256()
    for part in ((ROOT / "builder" / "lambda_os.toml").read_bytes(), Path(__file__).read_bytes(), base_id.encode(),
                 arch.encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def ensure_stand_in_runtime_image(client, *, base: str | None = None, tag: str | None = None, arch: str = ARCH,
                                  log=lambda line: None) -> str:
    """The stand-in's tag for ``arch``, built first where it is missing or out of date."""
    import docker.errors

    flavour = STAND_INS[arch]
    base, tag = base or flavour.base, tag or flavour.tag
    base_id = client.images.get(base).id
    digest = fingerprint(base_id, arch)
    try:
        previous = client.images.get(tag)
    except docker.errors.ImageNotFound:
        previous = None
    if previous is not None and previous.labels.get(HASH_LABEL) == digest:
        return tag
    build_stand_in(client, base, tag, digest, log=log, flavour=flavour)
    if previous is not None:
        try:
            client.images.remove(previous.id)  # out of date, and untagged by the build: 450 MB of nothing
        except docker.errors.APIError:
            pass  # a container still uses it
    return tag


def build_stand_in(client, base: str, tag: str, digest: str, *, log=lambda line: None,
                   flavour: StandIn = STAND_INS[ARCH]) -> CutReport:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="layers-stand-in-") as scratch:
        exported, cut = Path(scratch) / "base.tar", Path(scratch) / "cut.tar"
        holder = client.containers.create(base, ["true"], labels={LABEL: "1"}, platform=flavour.platform)
        try:
            with exported.open("wb") as out:
                for chunk in holder.export():
                    out.write(chunk)
        finally:
            holder.remove(force=True)
        report = cut_image(exported, cut, flavour)
        exported.unlink()
        log(f"stand-in: kept {len(report.kept)} library files (links and files), {len(report.private)} private "
            f"({', '.join(sorted(report.private.values()))}), deleted {len(report.deleted)} files")
        libraries = system_libraries(get_runtime(RUNTIME), flavour.arch)
        dockerfile = DOCKERFILE.format(label=HASH_LABEL, digest=digest,
                                       ld_library_path=":".join(libraries.ld_library_path)).encode()
        context = Path(scratch) / "context.tar"
        with tarfile.open(context, "w") as archive:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            archive.addfile(info, io.BytesIO(dockerfile))
            archive.add(cut, arcname="root.tar")
        cut.unlink()
        with context.open("rb") as stream:
            client.images.build(fileobj=stream, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False,
                                platform=flavour.platform)
    try:
        check_stand_in(client, tag, flavour.platform)
    except BaseException:
        client.images.remove(tag, force=True)  # a broken stand-in must not be reused by its label
        raise
    log(f"stand-in {tag}: built in {time.perf_counter() - started:.1f} s")
    return report


# Every lib-dynload module imports (each needs its private libraries), the toolchain is gone,
# and ldconfig's cache names no deleted library.
_CHECK = r"""
import importlib, os, shutil, subprocess, sys
names = sorted(f.split(".")[0] for f in os.listdir(sys.argv[1]) if f.endswith(".so"))
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed.append("%s: %s" % (name, exc))
tools = [t for t in ("gcc", "cc", "ld", "objdump") if shutil.which(t)]
cache = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
print("modules", len(names), "failed", failed, "tools", tools, "expat-in-cache", "libexpat.so.1 " in cache)
sys.exit(1 if failed or tools or "libexpat.so.1 " in cache else 0)
"""


def check_stand_in(client, tag: str, platform: str | None = None) -> None:
    with Container(tag, client=client, entrypoint=(), read_only=True, tmpfs={"/tmp": "rw,size=64m"},
                   user="993:990", network="none", platform=platform) as box:
        checked = box.call(["python3.11", "-I", "-c", _CHECK, "/" + LIB_DYNLOAD])
        refused = box.call(["/lambda-entrypoint.sh"])
    if not checked.ok:
        raise StandInError(f"the stand-in {tag} is broken: {checked.tail(5)}")
    if refused.returncode != 142:
        raise StandInError(f"the stand-in's entrypoint does not refuse to run: {refused.tail(3)}")


# -- the cut, on the exported tar ---------------------------------------------------------------


@dataclass
class CutReport:
    kept: set[str] = field(default_factory=set)            # member paths of libraries kept as they were
    private: dict[str, str] = field(default_factory=dict)  # soname -> its private name
    deleted: set[str] = field(default_factory=set)         # member paths
    patched: set[str] = field(default_factory=set)         # member paths rewritten in place


def private_name(soname: str) -> str:
    """``libexpat.so.1`` -> ``libEXPAT.so.1``: the same length (an in-place rewrite), still ``lib*`` (ldconfig)."""
    if not soname.startswith("lib") or ".so" not in soname:
        raise StandInError(f"cannot make a private name for {soname}")
    stem_end = soname.index(".so")
    stem = soname[3:stem_end]
    new = stem.upper() if stem.upper() != stem else stem.swapcase()
    if new == stem:
        raise StandInError(f"cannot make a private name for {soname}")
    return "lib" + new + soname[stem_end:]


def _norm(name: str) -> str:
    """A member name as a path relative to the image's root ("./usr/bin/" -> "usr/bin")."""
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/") if name != "." else ""


class Tree:
    """The exported file system, read through the tar's index (member name -> TarInfo)."""

    def __init__(self, archive: tarfile.TarFile) -> None:
        self.archive = archive
        self.members = {_norm(member.name): member for member in archive.getmembers()}

    def resolve(self, path: str, depth: int = 0, through: list[str] | None = None) -> str | None:
        """The member a path reaches after following symlinks (in the image's root), or None.

        ``through`` collects the symlinks followed on the way.
        """
        if depth > 40:
            return None
        parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
        done: list[str] = []
        for index, part in enumerate(parts):
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/".join(done + [part])
            member = self.members.get(candidate)
            if member is None:
                return None
            if member.issym():
                if through is not None:
                    through.append(candidate)
                target = member.linkname
                base = target if target.startswith("/") else posixpath.join("/".join(done), target)
                rest = "/".join(parts[index + 1:])
                return self.resolve(posixpath.join(base, rest) if rest else base, depth + 1, through)
            done.append(part)
        return "/".join(done)

    def regular(self, path: str) -> str | None:
        """The regular file a path reaches (through symlinks and hard links), or None."""
        resolved = self.resolve(path)
        member = self.members.get(resolved) if resolved is not None else None
        if member is not None and member.islnk():
            resolved = _norm(member.linkname)
            member = self.members.get(resolved)
        return resolved if member is not None and member.isfile() else None

    def chain(self, path: str) -> set[str]:
        """``path``, the symlinks it goes through and the file it reaches: what keeping it takes."""
        through: list[str] = []
        resolved = self.resolve(path, through=through)
        return {path, *through, *([resolved] if resolved else [])}

    def is_elf(self, path: str) -> bool:
        member = self.members[path]
        if not member.isfile() or member.size < 64:
            return False
        with self.archive.extractfile(member) as stream:
            return stream.read(4) == b"\x7fELF"

    def read(self, member: tarfile.TarInfo) -> bytes:
        with self.archive.extractfile(member) as stream:
            return stream.read()


@dataclass
class Dynamic:
    needed: tuple[str, ...]
    soname: str | None
    search: tuple[str, ...]  # DT_RPATH/DT_RUNPATH entries


def read_dynamic(data: bytes) -> Dynamic | None:
    try:
        elf = ELFFile(io.BytesIO(data))
        needed, soname, search = [], None, []
        for segment in elf.iter_segments():
            if segment.header.p_type != "PT_DYNAMIC":
                continue
            for tag in segment.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif tag.entry.d_tag == "DT_SONAME":
                    soname = tag.soname
                elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                    search.extend((tag.rpath if tag.entry.d_tag == "DT_RPATH" else tag.runpath).split(":"))
        return Dynamic(tuple(needed), soname, tuple(search))
    except (ELFError, ValueError, KeyError, AssertionError):
        return None


def names_in_dynamic(data: bytes) -> set[str]:
    """Every library name the object's dynamic section and version needs mention."""
    elf = ELFFile(io.BytesIO(data))
    found = set()
    dynamic = read_dynamic(data)
    if dynamic:
        found.update(dynamic.needed)
        if dynamic.soname:
            found.add(dynamic.soname)
    section = elf.get_section_by_name(".gnu.version_r")
    if section is not None:
        for verneed, _ in section.iter_versions():
            found.add(verneed.name)
    return found


def rename_in_dynstr(data: bytes, renames: dict[str, str]) -> bytes:
    """Rewrite whole NUL-delimited strings of the dynamic string table (same lengths only)."""
    elf = ELFFile(io.BytesIO(data))
    strtab = strsz = None
    for segment in elf.iter_segments():
        if segment.header.p_type == "PT_DYNAMIC":
            for tag in segment.iter_tags():
                if tag.entry.d_tag == "DT_STRTAB":
                    strtab = tag.entry.d_val
                elif tag.entry.d_tag == "DT_STRSZ":
                    strsz = tag.entry.d_val
    if strtab is None or strsz is None:
        return data
    offset = next(elf.address_offsets(strtab, strsz), None)
    if offset is None:
        raise StandInError("the dynamic string table is not in the file")
    table = data[offset:offset + strsz]
    for old, new in renames.items():
        assert len(old) == len(new), (old, new)
        table = re.sub(rb"(?<=\0)" + re.escape(old.encode()) + rb"(?=\0)", new.encode(), table)
    out = data[:offset] + table + data[offset + strsz:]
    left = names_in_dynamic(out) & set(renames)
    if left:
        raise StandInError(f"could not rename {sorted(left)} in place")
    return out


def _is_toolchain(path: str, flavour: StandIn) -> bool:
    if path.startswith(flavour.toolchain_trees):
        return True
    directory, _, name = path.rpartition("/")
    if directory not in ("usr/bin", "usr/sbin"):
        return False
    return name in TOOLCHAIN or (name.startswith(flavour.toolchain_prefixes) and "python" not in name)


def _ld_so_conf_dirs(tree: Tree, path: str = "etc/ld.so.conf", depth: int = 0) -> list[str]:
    import fnmatch

    member = tree.regular(path)
    if member is None or depth > 5:
        return []
    dirs = []
    for line in tree.read(member).decode(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("include "):
            pattern = line.split(None, 1)[1].lstrip("/")
            for name in sorted(tree.members):
                if fnmatch.fnmatch(name, pattern):
                    dirs.extend(_ld_so_conf_dirs(tree, name, depth + 1))
        elif line:
            dirs.append(line.lstrip("/"))
    return dirs


def cut_image(source: Path, destination: Path, flavour: StandIn = STAND_INS[ARCH]) -> CutReport:
    """Write ``destination``: ``source`` (an exported file system) cut down as the module docstring says."""
    table = system_libraries(get_runtime(RUNTIME), flavour.arch)
    allowed = set(table.present)
    report = CutReport()
    with tarfile.open(source) as archive:
        tree = Tree(archive)
        system_dirs = []
        for directory in (*flavour.system_dirs, *_ld_so_conf_dirs(tree), *(d.lstrip("/") for d in table.ld_library_path)):
            resolved = tree.resolve(directory)
            if resolved is not None and resolved not in system_dirs and tree.members[resolved].isdir():
                system_dirs.append(resolved)
        toolchain = {name for name in tree.members if _is_toolchain(name, flavour)}
        # Libraries at the top of a system directory, by name (a soname link or a file).
        in_system_dir = {name for name in tree.members
                         if name.rpartition("/")[0] in system_dirs and SHARED_LIBRARY.search(name)}

        dynamic: dict[str, Dynamic | None] = {}

        def dynamic_of(path: str) -> Dynamic | None:
            if path not in dynamic:
                dynamic[path] = read_dynamic(tree.read(tree.members[path])) if tree.is_elf(path) else None
            return dynamic[path]

        def find(soname: str, origin: str, search: tuple[str, ...]) -> tuple[str, str] | None:
            """(the name the lookup found, the file behind it) for a DT_NEEDED entry."""
            dirs = [d.replace("$ORIGIN", "/" + origin.rpartition("/")[0]).replace("${ORIGIN}", "/" + origin.rpartition("/")[0])
                    for d in search] + system_dirs
            for directory in dirs:
                resolved_dir = tree.resolve(directory)
                if resolved_dir is None:
                    continue
                name = f"{resolved_dir}/{soname}"
                file = tree.regular(name)
                if file is not None:
                    return name, file
            return None

        # Roots: every ELF object that stays and is not a system-directory library, and the
        # system-directory libraries the table lists.
        roots = []
        for name, member in tree.members.items():
            if name in toolchain or name in in_system_dir or not (member.isfile() or member.islnk()):
                continue
            if member.isfile() and dynamic_of(name) is not None:
                roots.append(name)
        for name in sorted(in_system_dir):
            if name.rpartition("/")[2] in allowed and (target := tree.regular(name)) is not None:
                report.kept.update(tree.chain(name))
                roots.append(target)

        needs: dict[str, set[str]] = {}     # object path -> sonames it needs that are found in system dirs
        private_files: dict[str, str] = {}  # soname -> (looked-up link name, file)
        seen, queue = set(), list(roots)
        while queue:
            path = queue.pop()
            if path in seen:
                continue
            seen.add(path)
            info = dynamic_of(path)
            if info is None:
                continue
            for soname in info.needed:
                found = find(soname, path, info.search)
                if found is None:
                    continue
                link, file = found
                needs.setdefault(path, set()).add(soname)
                if link in in_system_dir:
                    if soname in allowed:
                        report.kept.update(tree.chain(link))
                    elif soname not in private_files:
                        private_files[soname] = file
                queue.append(file)

        report.private = {soname: private_name(soname) for soname in private_files}
        clash = set(report.private.values()) & {name.rpartition("/")[2] for name in tree.members}
        if clash:
            raise StandInError(f"private names already taken: {sorted(clash)}")
        renames = report.private
        # Objects whose strings name a private library: everything that needs one, and the libraries themselves.
        to_patch = {path for path, sonames in needs.items() if sonames & set(renames)} | set(private_files.values())

        report.kept &= in_system_dir  # chains pass through directory links ("lib" -> "usr/lib")
        deleted = toolchain | {name for name in in_system_dir if name not in report.kept}
        report.deleted = deleted
        written_private = {}
        for soname, file in private_files.items():
            directory = file.rpartition("/")[0]
            written_private[file] = f"{directory}/{renames[soname]}"

        with tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as out:
            for name, member in tree.members.items():
                if not name:
                    continue
                content = None
                if member.islnk():
                    target = _norm(member.linkname)
                    if name in deleted:
                        continue
                    if target in deleted or target in to_patch:
                        # The other name of this file is deleted or rewritten: this one becomes a copy.
                        data = tree.read(tree.members[target])
                        if target in to_patch:
                            data = rename_in_dynstr(data, renames)
                        member = _as_file(member, tree.members[target], len(data))
                        content = data
                if name in written_private:
                    data = rename_in_dynstr(tree.read(member), renames)
                    out.addfile(_as_file(member, member, len(data), name=written_private[name]), io.BytesIO(data))
                    report.patched.add(written_private[name])
                if name in deleted:
                    continue
                if content is None and member.isfile():
                    if name in to_patch:
                        content = rename_in_dynstr(tree.read(member), renames)
                        member = _as_file(member, member, len(content))
                        report.patched.add(name)
                    else:
                        with archive.extractfile(member) as stream:
                            out.addfile(member, stream)
                        continue
                out.addfile(member, io.BytesIO(content) if content is not None else None)
            for path, text, mode in (("lambda-entrypoint.sh", ENTRYPOINT_SCRIPT, 0o755),):
                data = text.encode()
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(data), mode
                out.addfile(info, io.BytesIO(data))
            for path in ("var/task", "var/runtime", "var/lang"):
                if path not in tree.members:
                    info = tarfile.TarInfo(path)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    out.addfile(info)
    return report


def _as_file(member: tarfile.TarInfo, like: tarfile.TarInfo, size: int, *, name: str | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name or member.name)
    info.type, info.size, info.mode = tarfile.REGTYPE, size, like.mode
    info.uid, info.gid, info.uname, info.gname, info.mtime = like.uid, like.gid, like.uname, like.gname, like.mtime
    return info


def main(argv: list[str]) -> int:
    import argparse

    from builder.backends.container import docker_client

    parser = argparse.ArgumentParser(prog="python -m tests.support.runtime_image")
    parser.add_argument("--arch", choices=sorted(STAND_INS), default=ARCH)
    arch = parser.parse_args(argv).arch
    client = docker_client()
    started = time.perf_counter()
    tag = ensure_stand_in_runtime_image(client, arch=arch, log=print)
    print(f"stand-in runtime image {tag}: ready ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
