"""The generated corpus of bad inputs: recipes, arguments, zips, JSON files and environments.

Every case is certainly invalid and must be refused with its documented exit
code (2 for all of these: a recipe, an argument, a file or an environment
the user can fix), before any work starts. The generators cross a small
base of valid inputs with kinds of damage, so a new recipe key, option or
file field is covered by adding it to a table here, not by writing cases.

The base inputs are valid: ``test_corpus.py`` checks that each runs to the
point where it would start working (and fails there, on the dead index or
the recording endpoint), so a case's refusal is due to its damage alone.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile

from .harness import Case, Dir, Fifo, Link

STEM = "demo-python3.11-x86_64"
MARKUP = ("[/]", "[bold red]x[/]", ":x:", "\x1b[31mred\x1b[0m")

# -- the valid base ------------------------------------------------------------------
BASE_RECIPE = {
    "name": "demo",
    "description": "a demo",
    "license": "MIT",
    "runtime": "python3.11",
    "architectures": ["x86_64"],
    "requirements": ["six==1.17.0"],
    "layer_name": "demo",
    "reserve": "10MiB",
    "bytecode": "none",
    "compression": 6,
    "base_image": "",
    "runtime_image": "",
    "strip": {"profile": "standard", "remove": ["six/tests/**"], "keep": [], "drop": [], "docstrings": "keep"},
    "include": {"model_loader": False},
    "pack": {"mode": "none", "compression": "zstd", "level": 19, "unpack_dir": "/tmp/layers"},
    "smoke": {"imports": ["six"], "code": "import six"},
}


def toml(data: dict) -> str:
    """TOML text for the recipe's shapes (scalars, arrays, one level of tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(v)
    top = [f"{json.dumps(k)} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [f"\n[{json.dumps(k)}]\n" + "\n".join(f"{json.dumps(k2)} = {value(v2)}" for k2, v2 in v.items())
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


def layer_zip(members: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted((members or {"python/six.py": b"x = 1\n"}).items()):
            archive.writestr(name, data)
    return buffer.getvalue()


GOOD_ZIP = layer_zip()


def report_for(zip_bytes: bytes) -> dict:
    digest = hashlib.sha256(zip_bytes).digest()
    return {
        "recipe": "demo", "layer_name": "demo", "runtime": "python3.11", "architecture": "x86_64",
        "lock_digest": "0" * 64, "builder_version": "0.1.0", "versions": {"six": "1.17.0"}, "license": "",
        "zip": {"sha256": digest.hex(), "code_sha256": base64.b64encode(digest).decode(),
                "zipped_bytes": len(zip_bytes), "unzipped_bytes": 6},
        "budget": {"unzipped_bytes": 6, "unzipped_budget": 1000, "zipped_bytes": len(zip_bytes),
                   "direct_upload_limit": 50 << 20, "fits": True},
        "sizes": {"installed_bytes": 6}, "verification": {"verified": True, "how": "test", "elf_files": 0},
        "bytecode": {"mode": "none"},
    }


GOOD_LOCK = {"recipe": "demo", "runtime": "python3.11", "architecture": "x86_64",
             "wheels": [{"name": "six", "version": "1.17.0", "filename": "six-1.17.0-py2.py3-none-any.whl",
                         "sha256": "0" * 64, "origin": "index", "source_sha256": ""}]}

def _committed_lock() -> dict:
    from builder.lockfile import requirements_digest
    from builder.recipe import parse_recipe

    digest = requirements_digest(parse_recipe(json.loads(json.dumps(BASE_RECIPE))))
    return {"recipe": "demo", "runtime": "python3.11", "requirements_digest": digest, "targets": {"x86_64": GOOD_LOCK}}


GOOD_MANIFEST = {"format": 1, "recipe": "demo", "layers": {"demo-python311-x86_64": {
    "architecture": "x86_64", "regions": {"us-east-1": {
        "arn": "arn:aws:lambda:us-east-1:123456789012:layer:demo-python311-x86_64:3", "version": 3,
        "sha256": "0" * 64, "code_sha256": base64.b64encode(b"\0" * 32).decode(), "lock_digest": "0" * 64,
        "published_at": "2026-11-30T00:00:00+00:00", "runtimes": ["python3.11"], "identity": "",
        "ssm": ["/layers/demo-python311-x86_64/x86_64/3", "/layers/demo-python311-x86_64/x86_64/latest"]}}}}}


COMMITTED_LOCK = _committed_lock()


def workspace(recipe_text: str | bytes | object | None = None) -> dict:
    """The files of a valid project: a recipe, a built zip with its report, a manifest, a requirements file."""
    files = {
        "recipes/demo.toml": toml(BASE_RECIPE) if recipe_text is None else recipe_text,
        f"dist/demo/{STEM}.zip": GOOD_ZIP,
        f"dist/demo/{STEM}.report.json": json.dumps(report_for(GOOD_ZIP)),
        "good.zip": GOOD_ZIP,
        "other.zip": layer_zip({"python/six.py": b"x = 2\n"}),
        "published/demo.json": json.dumps(GOOD_MANIFEST),
        "requirements.txt": "six==1.17.0\n",
        "lock.json": json.dumps(GOOD_LOCK),
    }
    files["good.report.json"] = json.dumps(report_for(GOOD_ZIP))
    return files


# What each command does with valid inputs; a case replaces one part of it. `expect_base` is what the
# base run ends with here: 3 where the dead index stops a build, 7/1 where the recording endpoint answers.
RECIPE_COMMANDS = {
    "recipes": ("recipes",),
    "build": ("build", "demo", "--backend", "pip"),
    "lock": ("lock", "demo"),
    "rebuild": ("rebuild", "demo", "--jobs", "1"),
    "plan": ("plan", "--layer", "demo"),
    "schedule": ("schedule", "github", "--output", "out/workflow.yml"),
}

# -- recipes -----------------------------------------------------------------------
WRONG_TYPES = {
    "str": [1, 1.5, True, ["x"], {"a": "b"}],
    "int": ["6", True, 1.5, [6], {"a": 1}],
    "bool": ["yes", 1, 0, "true", [True]],
    "list": ["x86_64", 1, True, {"a": "b"}, [1], [True], [["x"]], [{"a": "b"}]],
    "table": ["standard", 1, True, ["x"]],
    "size": [1.5, True, ["10MiB"], {"a": 1}],  # an integer is a size in bytes
}
KEY_TYPES = {
    "name": "str", "description": "str", "license": "str", "runtime": "str", "architectures": "list",
    "requirements": "list", "layer_name": "str", "reserve": "size", "bytecode": "str", "compression": "int",
    "base_image": "str", "runtime_image": "str", "strip": "table", "include": "table", "smoke": "table",
    "strip.profile": "str", "strip.remove": "list", "strip.keep": "list", "strip.drop": "list",
    "strip.docstrings": "str", "include.model_loader": "bool", "pack": "table", "pack.mode": "str",
    "pack.compression": "str", "pack.level": "int", "pack.unpack_dir": "str", "smoke.imports": "list", "smoke.code": "str",
}
# Values of the right type that the key's rules refuse.
BAD_VALUES = {
    "name": ["", "Demo", "de mo", "../demo", "a" * 300, "démo", "demo\n", *MARKUP],
    "description": ["x" * 5000],
    "license": ["x" * 600],
    "runtime": ["python2.7", "python3.99", "nodejs20.x", "", "python3.11 ", *MARKUP],
    "architectures": [[], ["x86_64", "x86_64"], ["sparc"], ["X86_64"], ["arm64", "arm64"], [""]],
    "requirements": [[], ["six==1.0", "six==2.0"], ["not a requirement!"], ["six @ https://example.com/six.whl"],
                     ["six==1.0 --index-url http://x"], ["-e ."], [""], ["six[/]"], ["six==1.0 --hash=md5:00"],
                     ["\x1b[31msix"]],
    "layer_name": ["", "a b", "x" * 200, "demo:1", *MARKUP],
    "reserve": ["-1MB", "1" + "0" * 400 + "MB", "5XB", "５MB", "1e999MB", "nan", "-5", "", "250MiB", "1TB" * 3,
                "10 MiB MiB"],
    "bytecode": ["yes", "", "ONLY", "alongside "],
    "compression": [-1, 10, 10 ** 30, -(10 ** 30)],
    "strip.profile": ["", "aggressive", "Standard"],
    "strip.drop": [[""], ["bad name!"], ["six", "six"], ["-six"], ["a" * 200], ["[/]"], ["six\n"]],
    "strip.docstrings": ["", "remove", "empty "],
    "pack.mode": ["", "zip", "TMP"],
    "pack.compression": ["", "xz", "zstd "],
    "pack.level": [0, -1, 23, 10 ** 30],
    "pack.unpack_dir": ["", "/var/task", "tmp/layers", "/tmp", "/tmp/../etc", "/tmp/a b", "/tmp/layers\n",
                        "/tmp/" + "a" * 200, *MARKUP],
    "smoke.imports": [[], ["numpy; import os"], ["six\n"], ["1abc"], ["a..b"], [""], ["six", "six"],
                      [f"m{i}" for i in range(101)], ["os.path/"], [":x:"], ["\x1b[2J"]],
    "smoke.code": ["def (", "x = \x00", "if True:\nreturn", "x" * 100_001, "\x1b[31m("],
}
UNKNOWN_KEYS = ["nmae", "runtimes", "architecture", "requirement", "layername", "extra", "[/]", ":x:",
                "strip.profil", "strip.removes", "strip.dropped", "smoke.import", "smoke.codes",
                "include.model_loder", "include.extra", "compresion", "byte_code", "pack.levle", "packed"]


def _set(data: dict, key: str, value) -> dict:
    out = json.loads(json.dumps(data))
    section, _, leaf = key.rpartition(".")
    (out[section] if section else out)[leaf] = value
    return out


def _recipe_variants():
    """(label, recipe file content) for every recipe that must be refused at load."""
    for key, kind in KEY_TYPES.items():
        for index, value in enumerate(WRONG_TYPES[kind]):
            yield f"type-{key}-{index}", toml(_set(BASE_RECIPE, key, value))
    for key, values in BAD_VALUES.items():
        for index, value in enumerate(values):
            yield f"value-{key}-{index}", toml(_set(BASE_RECIPE, key, value))
    for key in UNKNOWN_KEYS:
        yield f"unknown-{key}", toml(_set(BASE_RECIPE, key, "x"))
    for key in ("name", "runtime", "requirements", "smoke"):
        data = json.loads(json.dumps(BASE_RECIPE))
        del data[key]
        yield f"missing-{key}", toml(data)
    yield "rule-docstrings-without-only", toml(_set(_set(BASE_RECIPE, "strip.docstrings", "empty"),
                                                  "bytecode", "alongside"))
    yield "rule-arm64-on-python3.6", toml(_set(_set(BASE_RECIPE, "runtime", "python3.6"), "architectures",
                                               ["arm64"]))
    yield "rule-name-not-stem", toml(_set(BASE_RECIPE, "name", "other"))
    yield "rule-reserve-all", toml(_set(BASE_RECIPE, "reserve", "250MB"))
    yield "rule-pack-without-bytecode", toml(_set(_set(BASE_RECIPE, "pack.mode", "tmp"), "pack.compression", "gzip"))
    yield "rule-pack-zstd-without-decoder", toml(_set(_set(BASE_RECIPE, "pack.mode", "tmp"), "bytecode", "only"))
    text = toml(BASE_RECIPE)
    yield "toml-empty", ""
    yield "toml-truncated", text[: len(text) // 2] + '"unterminated'
    yield "toml-duplicate-key", text + 'name = "demo"\n'
    yield "toml-binary", bytes(range(256)) * 4
    yield "toml-latin1", text.encode() + b"# caf\xe9\n"
    yield "toml-bom-garbage", b"\xff\xfe" + text.encode("utf-16-le")
    yield "toml-nul", text + "\x00\n"
    yield "toml-deep-array", text.replace('"description" = "a demo"', '"description" = ' + "[" * 500 + "]" * 500)
    yield "toml-deep-table", text + "[" + ".".join(["a"] * 60) + "]\nx = 1\n"
    yield "toml-deep-inline", text + "z = " + "{a = " * 200 + "1" + "}" * 200 + "\n"
    yield "toml-huge", text + "# " + "x" * (2 << 20) + "\n"
    yield "toml-many-keys", text + "".join(f"k{i} = {i}\n" for i in range(5000))
    yield "toml-control-key", text + '"\x1b[2J" = 1\n'
    yield "drop-not-in-lock", (toml(_set(BASE_RECIPE, "strip.drop", ["tensorbord"])), "lock")
    yield "drop-not-in-committed-lock", (toml(_set(BASE_RECIPE, "strip.drop", ["tensorbord"])), "committed")
    yield "kind-directory", Dir()
    yield "kind-fifo", Fifo()
    yield "kind-dev-zero", Link("/dev/zero")
    yield "kind-dangling", Link("/nonexistent/recipe.toml")
    yield "kind-loop", Link("demo.toml")


def recipe_cases() -> list[Case]:
    """Each bad recipe through `recipes` and `build`, and through one of the other commands that load it, in turn."""
    cases = []
    others = ("lock", "rebuild", "plan", "schedule")
    for number, (label, content) in enumerate(_recipe_variants()):
        if label.startswith("drop-"):
            # A strip.drop name the stack lacks is found against its lock, before resolving.
            text, which = content
            files = workspace(text)
            argv = ("build", "demo", "--backend", "pip")
            if which == "lock":
                argv += ("--lock", "lock.json")
            else:
                files["recipes/demo.lock"] = json.dumps(COMMITTED_LOCK)
            cases.append(Case(f"recipe-{label}-build", "recipes", argv, files, invalid_recipe=True))
            continue
        files = workspace(content)
        for command in ("recipes", "build", others[number % len(others)]):
            argv = RECIPE_COMMANDS[command]
            # `layers recipes` lists the bad one as an "invalid" row; the others refuse it before resolving.
            # Link and FIFO kinds are not listed by `recipes` as files, so only the direct commands take them.
            stdout_has = "invalid" if command == "recipes" and not label.startswith("kind-") else None
            if command == "recipes" and label.startswith("kind-") and label != "kind-directory":
                continue
            cases.append(Case(f"recipe-{label}-{command}", "recipes", argv, files, invalid_recipe=True,
                              stdout_has=stdout_has))
    return cases


# -- arguments ------------------------------------------------------------------------
PATHS = {"fifo": Fifo(), "dir": Dir()}


def _arg_cases(command: str, base: tuple[str, ...], option: str | None, values, *, aws: bool = False,
               watch=()) -> list[Case]:
    cases = []
    for index, value in enumerate(values):
        if option is None:  # the value replaces the first positional argument
            argv = (base[0], value, *base[2:])
        else:
            argv = (*base, option, value)
        files = {**workspace(), "a-fifo": Fifo(), "a-dir": Dir(), "a-file.txt": "text"}
        cases.append(Case(f"arg-{command}-{(option or 'arg').lstrip('-')}-{index}", "arguments", argv, files,
                          aws=aws, watch=tuple(watch)))
    return cases


BAD_PATH_INPUTS = ["missing.zip", "a-dir", "a-fifo", "/dev/zero", "/dev/null", "a-file.txt", "", *MARKUP,
                   "x" * 5000, "../../../../etc/passwd"]
BAD_REGIONS = ["", ",", " , ", "moon-1", "US-EAST-1", "us-east-1;rm", "us-east-1 eu-west-1", *MARKUP,
               "x" * 300, "us-east-1,moon-1"]
BAD_SIZES = ["-1", "1e999MB", "1" + "0" * 400, "5XB", "５MB", "", "nan", "inf", *MARKUP, "1TB" * 2]
BAD_NAMES = ["", "Demo", "a" * 300, "../demo", "de mo", *MARKUP, "nosuch", "-", "/"]
BAD_ARCH = ["", "sparc", "X86_64", "x86_64,arm64", *MARKUP, "aarch64"]
BAD_SSM_PREFIXES = ["", "/", "layers", "/aws/x", "/SSM", "/a b", "/a//b", "/layers/", "/" + "x" * 65, "/a" * 9,
                    "/x\n", *MARKUP]


def argument_cases() -> list[Case]:
    b = RECIPE_COMMANDS
    cases = []
    cases += _arg_cases("build", b["build"], None, BAD_NAMES)
    cases += _arg_cases("build", b["build"], "--arch", BAD_ARCH)
    cases += _arg_cases("build", ("build", "demo"), "--backend", ["", "podman", "[/]", ":x:", "PIP"])
    cases += _arg_cases("build", b["build"], "--lock", ["missing.json", "a-dir", "a-fifo", "/dev/zero", "a-file.txt",
                                                         "good.zip", *MARKUP])
    cases += _arg_cases("build", b["build"], "--compare-to", BAD_PATH_INPUTS)
    cases += _arg_cases("build", b["build"], "--out", ["a-file.txt", "/dev/null", "a-fifo", "/dev/full",
                                                       "good.zip", "/proc/version"],
                        watch=("/dev/null", "/dev/full"))
    cases += _arg_cases("build", b["build"], "--recipes", ["a-file.txt", "missing-dir", "a-fifo", "/dev/null"])
    cases += _arg_cases("build", b["build"], "--image-nosuch", ["x"])
    cases += _arg_cases("diff", ("diff", "good.zip", "other.zip"), None, BAD_PATH_INPUTS)
    cases += _arg_cases("diff2", ("diff", "good.zip"), None, [])
    cases += [Case(f"arg-diff-second-{i}", "arguments", ("diff", "good.zip", v), workspace() | {"a-fifo": Fifo(),
               "a-dir": Dir(), "a-file.txt": "text"}) for i, v in enumerate(BAD_PATH_INPUTS)]
    cases += _arg_cases("report", ("report", "good.zip"), None, BAD_PATH_INPUTS)
    cases += _arg_cases("check", ("check", "good.zip", "--runtime", "python3.11"), None, BAD_PATH_INPUTS)
    cases += _arg_cases("check", ("check", "good.zip"), "--runtime", ["", "python2.7", "[/]", "python3.99"])
    cases += _arg_cases("check", ("check", "good.zip", "--runtime", "python3.11"), "--arch", BAD_ARCH)
    cases += _arg_cases("recipes", ("recipes",), "--recipes", ["a-file.txt", "missing-dir", "a-fifo", "/dev/null",
                                                                *MARKUP])
    cases += _arg_cases("init", ("init", "new", "-r", "requirements.txt", "--guess"), None, BAD_NAMES[:-3])
    cases += _arg_cases("init", ("init", "new", "--guess"), "-r", ["missing.txt", "a-dir", "a-fifo", "/dev/zero",
                                                                    "good.zip", *MARKUP])
    cases += _arg_cases("init", ("init", "new", "-r", "requirements.txt", "--guess"), "--runtime",
                        ["", "python2.7", "python3.99", *MARKUP])
    cases += _arg_cases("init", ("init", "new", "-r", "requirements.txt", "--guess"), "--arch", BAD_ARCH)
    cases += _arg_cases("init", ("init", "new", "-r", "requirements.txt", "--guess"), "--recipes",
                        ["a-file.txt", "/dev/null"])
    publish = ("publish", "good.zip", "--dry-run", "--regions", "us-east-1")
    cases += _arg_cases("publish", ("publish", "good.zip", "--dry-run"), "--regions", BAD_REGIONS, aws=True)
    cases += _arg_cases("publish", publish, "--principal", ["*", "", "12345", "1234567890123", "abcdefghijkl",
                                                            "123456789012,*", *MARKUP, "arn:aws:iam::*:root"], aws=True)
    cases += _arg_cases("publish", publish, "--org-id", ["", "o-", "x", "*", *MARKUP, "o-" + "a" * 40], aws=True)
    cases += _arg_cases("publish", publish, "--runtimes", ["", ",", "python2.7", "nodejs20.x", *MARKUP], aws=True)
    cases += _arg_cases("publish", publish, "--arch", BAD_ARCH, aws=True)
    cases += _arg_cases("publish", publish, "--bucket-template", ["{account.x}-{region}", "{", "}", "{0}", "{nosuch}",
                                                                  "", "UPPER-{region}", "a" * 100 + "{region}",
                                                                  "{account}", *MARKUP, "{region!r}",
                                                                  "{region:>999999999}"], aws=True)
    cases += _arg_cases("publish", ("publish", "--dry-run", "--regions", "us-east-1"), None,
                        ["missing.zip", "a-dir.zip", "Demo", "", *MARKUP, "../x.zip", "/dev/zero"], aws=True)
    cases += _arg_cases("publish", publish, "--manifests", ["a-file.txt", "/dev/null", "a-fifo"], aws=True)
    cases += [Case("arg-publish-regions-and-all", "arguments", (*publish, "--all-regions"), workspace(), aws=True)]
    cases += _arg_cases("publish", publish, "--ssm-prefix", BAD_SSM_PREFIXES, aws=True)
    cases += [Case("arg-publish-ssm-prefix-and-no-ssm", "arguments", (*publish, "--no-ssm", "--ssm-prefix", "/x"),
                   workspace(), aws=True)]
    cases += _arg_cases("arns", ("arns", "demo"), None, BAD_NAMES[:-2])
    cases += _arg_cases("arns", ("arns", "demo"), "--format", ["", "yaml", "[/]", ":x:", "JSON"])
    cases += _arg_cases("arns", ("arns", "demo"), "--region", ["", "moon-1", *MARKUP, "x" * 300])
    cases += _arg_cases("arns", ("arns", "demo"), "--manifests", ["a-file.txt", "missing-dir", "/dev/null"])
    # -- layers arns: IaC snippets (--pin/--latest, --ssm-prefix), the index (--all), --output --
    cases += _arg_cases("arns", ("arns", "demo", "--latest", "--format", "sam"), "--ssm-prefix", BAD_SSM_PREFIXES)
    bad_outputs = ["/dev/full", "/dev/null", "a-dir", "a-fifo", "a-file.txt/x.out"]
    cases += _arg_cases("arns", ("arns", "demo", "--format", "cloudformation"), "--output", bad_outputs,
                        watch=("/dev/full", "/dev/null"))
    cases += _arg_cases("arns-all", ("arns", "--all", "--format", "html"), "--output", bad_outputs,
                        watch=("/dev/full", "/dev/null"))
    cases += _arg_cases("arns-all", ("arns", "--all"), "--manifests", ["a-file.txt", "missing-dir", "/dev/null",
                                                                      "a-fifo", "a-dir"])
    cases += _arg_cases("arns-all", ("arns", "--all"), "--format", ["csv", "sam", "cdk", "", "[/]", "HTML"])
    cases += [Case(f"arg-arns-{label}", "arguments", argv, workspace()) for label, argv in {
        "pin-and-latest": ("arns", "demo", "--format", "sam", "--pin", "--latest"),
        "all-and-recipe": ("arns", "demo", "--all"),
        "no-recipe": ("arns",),
        "all-latest": ("arns", "--all", "--latest", "--format", "json"),
        "ssm-prefix-without-latest": ("arns", "demo", "--format", "sam", "--ssm-prefix", "/layers"),
        "latest-html": ("arns", "demo", "--latest", "--format", "html"),
        "output-table": ("arns", "demo", "--output", "out.txt"),
        "latest-other-prefix": ("arns", "demo", "--format", "sam", "--latest", "--ssm-prefix", "/team"),
    }.items()]
    prune = ("prune", "demo", "--dry-run")
    cases += _arg_cases("prune", prune, "--keep", ["-1", "-100", "x", "", "1.5", "99999999999999999999", "[/]"],
                        aws=True)
    cases += _arg_cases("prune", prune, "--regions", BAD_REGIONS, aws=True)
    cases += _arg_cases("prune", prune, "--older-than", ["", "30", "0d", "-1d", "1.5d", "30D", "30 d", "30m", "1y",
                                                         "３0d", "99999999999999999999d", "3651d", *MARKUP], aws=True)
    cases += _arg_cases("prune", prune, "--ssm-prefix", BAD_SSM_PREFIXES, aws=True)
    cases += _arg_cases("prune", ("prune", "--dry-run"), None, BAD_NAMES[:-2], aws=True)
    cases += _arg_cases("plan", ("plan",), "--function-size", BAD_SIZES)
    cases += _arg_cases("plan", ("plan",), "--ephemeral", [*BAD_SIZES, "100MB", "20GB", "10241MB"])
    cases += _arg_cases("plan", ("plan",), "--layer", ["nosuch", "x=", "=5MB", "x=-1", "x=1e999MB", "a-dir",
                                                       "missing.zip", "a-fifo", *MARKUP, "x=５MB"])
    cases += _arg_cases("plan", ("plan",), "--model", ["missing.bin", "a-dir", "x=-1", "=5MB", "s3://", "s3:///k",
                                                       "s3://b", *MARKUP, "m=1e999MB"])
    cases += _arg_cases("plan", ("plan", "--layer", "x=1MB"), "--arch", BAD_ARCH)
    cases += [Case("arg-plan-six-layers", "arguments",
                   ("plan", *[a for i in range(6) for a in ("--layer", f"l{i}=1MB")]), workspace())]
    cases += _arg_cases("lock", ("lock", "demo"), None, BAD_NAMES)
    cases += _arg_cases("rebuild", b["rebuild"], None, BAD_NAMES[:-3])
    cases += _arg_cases("rebuild", b["rebuild"], "--arch", BAD_ARCH)
    cases += _arg_cases("rebuild", ("rebuild", "demo"), "--jobs", ["-1", "x", "", "1.5", "99999999999999999999"])
    cases += _arg_cases("rebuild", ("rebuild", "demo", "--publish"), "--regions", BAD_REGIONS, aws=True)
    cases += _arg_cases("rebuild", ("rebuild", "demo", "--publish", "--regions", "us-east-1"), "--ssm-prefix",
                        BAD_SSM_PREFIXES, aws=True)
    cases += [Case("arg-rebuild-ssm-without-publish", "arguments", ("rebuild", "demo", "--no-ssm"), workspace()),
              Case("arg-rebuild-ssm-prefix-without-publish", "arguments", ("rebuild", "demo", "--ssm-prefix", "/x"),
                   workspace())]
    cases += _arg_cases("rebuild", ("rebuild", "demo"), "--out", ["a-file.txt", "/dev/null"], watch=("/dev/null",))
    cases += [Case("arg-rebuild-all-and-names", "arguments", ("rebuild", "demo", "--all"), workspace()),
              Case("arg-rebuild-nothing", "arguments", ("rebuild",), workspace()),
              Case("arg-rebuild-regions-without-publish", "arguments", ("rebuild", "demo", "--regions", "us-east-1"),
                   workspace()),
              Case("arg-rebuild-publish-without-regions", "arguments", ("rebuild", "demo", "--publish"), workspace())]
    schedule = b["schedule"]
    cases += _arg_cases("schedule", schedule, "--cron", ["", "* * * *", "* * * * * *", "61 * * * *", "x y z w v",
                                                         '"* * * * *"', "* * * * *\nevil: 1", *MARKUP,
                                                         "*/0 * * * *", "a" * 300])
    cases += _arg_cases("schedule", schedule, "--role-secret", ["", "X }}\n  evil: ${{ github.token", "1ABC",
                                                                "GITHUB_TOKEN", "A-B", "a b", *MARKUP, "A" * 300])
    cases += _arg_cases("schedule", ("schedule", "github"), "--output", ["/dev/full", "/dev/null", "a-dir", "a-fifo",
                                                                         "a-file.txt/x.yml"],
                        watch=("/dev/full", "/dev/null"))
    cases += _arg_cases("schedule", schedule, "--regions", BAD_REGIONS)
    for command in ("build", "diff", "report", "check", "publish", "arns", "prune", "plan", "lock", "rebuild",
                    "recipes", "init", "doctor"):
        cases.append(Case(f"arg-{command}-unknown-option", "arguments", (command, "--nosuch-[/]"), workspace()))
    cases += [Case("arg-unknown-command", "arguments", ("nosuch",), workspace()),
              Case("arg-markup-command", "arguments", ("[/]",), workspace()),
              Case("arg-no-args-build", "arguments", ("build",), workspace())]
    return cases


# -- zips ----------------------------------------------------------------------------
def _raw_zip(name: bytes, data: bytes = b"x", *, flags: int = 0, method: int = 0, crc: int | None = None,
             external: int = 0, size: int | None = None) -> bytes:
    """A one-member zip written byte by byte, for the damage zipfile will not write."""
    import struct
    import zlib

    crc = zlib.crc32(data) if crc is None else crc
    size = len(data) if size is None else size
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x21, crc, len(data), size, len(name), 0)
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, flags, method, 0, 0x21, crc, len(data), size,
                          len(name), 0, 0, 0, 0, external, 0)
    body = local + name + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central) + len(name), len(body), 0)
    return body + central + name + end


def _symlink_zip(target: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("python/link")
        info.external_attr = (0o120777 << 16)
        archive.writestr(info, target)
    return buffer.getvalue()


BAD_ZIPS = {
    "not-a-zip": b"hello",
    "empty-file": b"",
    "truncated": GOOD_ZIP[: len(GOOD_ZIP) // 2],
    "traversal": layer_zip({"../evil.py": b"x"}),
    "absolute": layer_zip({"/etc/evil.py": b"x"}),
    "deep-traversal": layer_zip({"python/../../evil.py": b"x"}),
    "symlink-out": _symlink_zip("../../../etc/passwd"),
    "symlink-abs": _symlink_zip("/etc/passwd"),
    "device": _raw_zip(b"python/dev", external=(0o020644 << 16)),
    "fifo-member": _raw_zip(b"python/fifo", external=(0o010644 << 16)),
    "encrypted": _raw_zip(b"python/x.py", flags=0x1),
    "deflate64": _raw_zip(b"python/x.py", method=9),
    "bad-crc": _raw_zip(b"python/x.py", b"hello", crc=1),
    "bad-utf8-name": _raw_zip(b"python/\xff\xfe.py", flags=0x800),
    "huge-declared": _raw_zip(b"python/x.py", b"x", size=1 << 30),
    "nul-name": _raw_zip(b"python/a\x00b.py"),
    "backslash-name": _raw_zip(b"python\\..\\..\\evil.py"),
    "symlink-chain-out": _symlink_zip("../" * 5),
}
# `plan` only measures a zip (from its central directory): it refuses what cannot be read as a layer zip at all.
PLAN_REFUSES = ("not-a-zip", "empty-file", "truncated", "traversal", "absolute", "deep-traversal", "symlink-out",
                "symlink-abs", "device", "fifo-member", "encrypted", "deflate64", "bad-utf8-name", "nul-name",
                "backslash-name", "zip-fifo", "zip-dir", "zip-dev-zero")


def zip_cases() -> list[Case]:
    cases = []
    specials = {"zip-fifo": Fifo(), "zip-dir": Dir(), "zip-dev-zero": Link("/dev/zero")}
    for label, content in {**BAD_ZIPS, **specials}.items():
        files = {**workspace(), "bad.zip": content}
        if isinstance(content, bytes):
            files["bad.report.json"] = json.dumps(report_for(content))
        for command, argv in {
            "report": ("report", "bad.zip"),
            "diff-first": ("diff", "bad.zip", "good.zip"),
            "diff-second": ("diff", "good.zip", "bad.zip"),
            "check": ("check", "bad.zip", "--runtime", "python3.11"),
            "publish": ("publish", "bad.zip", "--regions", "us-east-1", "--dry-run"),
            "compare-to": ("build", "demo", "--backend", "pip", "--compare-to", "bad.zip"),
            "plan": ("plan", "--layer", "bad.zip"),
        }.items():
            if command == "plan" and label not in PLAN_REFUSES:
                continue
            cases.append(Case(f"zip-{label}-{command}", "zips", argv, files, aws=command == "publish"))
    return cases


# -- JSON files: reports, locks, manifests ------------------------------------------------
def _paths(value, prefix=()):
    """Every key path of a JSON value (objects and lists), the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replace(value, path, new):
    value = json.loads(json.dumps(value))
    if not path:
        return new
    holder = value
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = new
    return value


def _delete(value, path):
    value = json.loads(json.dumps(value))
    holder = value
    for part in path[:-1]:
        holder = holder[part]
    del holder[path[-1]]
    return value


def _wrong(value) -> list:
    """Values of another JSON type than ``value``'s (and hostile strings for strings)."""
    kinds = {dict: [[], "x", 1], list: [{}, "x", 1], str: [1, None, [], {"a": 1}, "../../../etc/passwd", "[/]"],
             bool: ["true", 1, None], int: ["1", -1, 1.5, None, True, 10 ** 30], float: ["1", None]}
    return kinds.get(type(value), ["x", {}])


def _json_mutations(good: dict, optional: tuple = ()) -> list[tuple[str, object]]:
    """Every key path with values of the wrong type, and deleted (unless ``optional``); then whole-file damage."""
    out = []
    for path in _paths(good):
        if not path:
            continue
        current = good
        for part in path:
            current = current[part]
        for index, new in enumerate(_wrong(current)):
            mutated = _replace(good, path, new)
            if mutated != good:
                out.append((f"{'.'.join(map(str, path))}-{index}", json.dumps(mutated)))
        if path[-1] not in optional:
            out.append((f"{'.'.join(map(str, path))}-deleted", json.dumps(_delete(good, path))))
    out += [("deep", "[" * 5000 + "]" * 5000), ("not-json", "{nope"), ("not-utf8", b"\xff\xfe{}"), ("empty", ""),
            ("list", "[]"), ("string", '"x"'), ("huge", json.dumps({**good, "pad": "x" * (20 << 20)})),
            ("nan", json.dumps(good).replace("1", "NaN", 1)), ("big-int", "1" * 5000)]
    return out


def _report_is_not_checked(path: str) -> bool:
    # Fields the report reader does not use and need not refuse (kept for people, not for publishing).
    return path.split(".")[0] in ("license", "builder_version", "bytecode", "verification", "versions")


def file_cases() -> list[Case]:
    cases = []
    for label, content in _json_mutations(report_for(GOOD_ZIP)):
        if _report_is_not_checked(label.rsplit("-", 1)[0]):
            continue
        files = {**workspace(), "good.report.json": content}
        cases.append(Case(f"report-{label}-report", "files", ("report", "good.zip"), files))
        cases.append(Case(f"report-{label}-publish", "files",
                          ("publish", "good.zip", "--regions", "us-east-1", "--dry-run"), files, aws=True))
    for label, content in _json_mutations(GOOD_LOCK, optional=("origin", "source_sha256")):
        files = {**workspace(), "lock.json": content}
        cases.append(Case(f"lock-{label}", "files", ("build", "demo", "--backend", "pip", "--lock", "lock.json"),
                          files))
    for label, content in _json_mutations(GOOD_MANIFEST):
        if label.startswith(("format-", "layers.demo-python311-x86_64.regions.us-east-1.published_at",
                             "layers.demo-python311-x86_64.regions.us-east-1.identity",
                             "layers.demo-python311-x86_64.regions.us-east-1.runtimes")):
            continue  # informational fields
        if label.startswith("layers.demo-python311-x86_64.regions.us-east-1.ssm") and label.endswith("-deleted"):
            continue  # optional: manifests from before SSM parameters, or with one of the two names
        files = {**workspace(), "published/demo.json": content}
        cases.append(Case(f"manifest-{label}-arns", "files", ("arns", "demo"), files))
        cases.append(Case(f"manifest-{label}-prune", "files", ("prune", "demo", "--dry-run"), files, aws=True))
    for label, content in {"latin1": b"six==1.17.0\nnumpy # caf\xe9\n", "continued": "six==1.17.0 \\\n",
                           "option": "-e .\n", "index": "--index-url http://x\nsix\n", "url": "six @ http://x/s.whl\n",
                           "empty": "", "comments": "# nothing\n", "bad": "not a requirement!\n",
                           "huge": "six\n" * 400_000, "markup": "six[/]\n", "escape": "\x1b[31msix\n",
                           "duplicate": "six\nsix==1.0\n", "nul": "six\x00\n"}.items():
        cases.append(Case(f"requirements-{label}", "files", ("init", "new", "-r", "req.txt", "--guess"),
                          {**workspace(), "req.txt": content}))
    for label, content in {"fifo": Fifo(), "dir": Dir(), "dev-zero": Link("/dev/zero")}.items():
        cases.append(Case(f"requirements-{label}", "files", ("init", "new", "-r", "req.txt", "--guess"),
                          {**workspace(), "req.txt": content}))
        cases.append(Case(f"lock-{label}", "files", ("build", "demo", "--backend", "pip", "--lock", "lock.json"),
                          {**workspace(), "lock.json": content}))
        cases.append(Case(f"manifest-{label}-arns", "files", ("arns", "demo"),
                          {**workspace(), "published/demo.json": content}))
        cases.append(Case(f"report-{label}-report", "files", ("report", "good.zip"),
                          {**workspace(), "good.report.json": content}))
    return cases


# -- environment -------------------------------------------------------------------------
BAD_ENVIRONMENT = {
    "LAYERS_AWS_BASE_DELAY": ["-1", "nan", "inf", "x", "1e999", "", "[/]"],
    "LAYERS_AWS_MAX_ATTEMPTS": ["0", "-1", "x", "1e9", "99999999999999999999", "", "1.5"],
    "AWS_ENDPOINT_URL": ["not-a-url", "ftp://x", "http://", "[/]", "http://exa mple.com", "://x", "\x1b[2J"],
    "AWS_DEFAULT_REGION": ["bad region!", "[/]", "us-east-1\nx", "moon", "x" * 300],
    "AWS_REGION": ["bad region!"],
    "AWS_PROFILE": ["nosuch-profile"],
}


# Read only by the commands that publish (prune takes no lease).
PUBLISH_ENVIRONMENT = {
    "LAYERS_LEASE_SECONDS": ["0", "-1", "3601", "1.5", "", " 5", "x", "[/]", "99999999999999999999", "1e3"],
}


def environment_cases() -> list[Case]:
    cases = []
    commands = {
        "publish": ("publish", "good.zip", "--regions", "us-east-1", "--dry-run"),
        "prune": ("prune", "demo", "--dry-run"),
        "rebuild": ("rebuild", "demo", "--publish", "--regions", "us-east-1"),
    }
    for variable, values in BAD_ENVIRONMENT.items():
        for index, value in enumerate(values):
            for command, argv in commands.items():
                cases.append(Case(f"env-{variable}-{index}-{command}", "environment", argv, workspace(),
                                  env={variable: value}, aws=True))
    for variable, values in PUBLISH_ENVIRONMENT.items():
        for index, value in enumerate(values):
            for command in ("publish", "rebuild"):
                cases.append(Case(f"env-{variable}-{index}-{command}", "environment", commands[command], workspace(),
                                  env={variable: value}, aws=True))
    return cases


def all_cases() -> list[Case]:
    cases = recipe_cases() + argument_cases() + zip_cases() + file_cases() + environment_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return cases
