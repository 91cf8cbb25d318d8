import os

import pytest

from builder.errors import RecipeError
from builder.recipe import UNZIPPED_LIMIT, load_recipe, parse_pin, parse_size
from tests.conftest import VALID_RECIPE

# (what is wrong, recipe text, words the one-line message must contain)
BAD_RECIPES = [
    ("unknown key", VALID_RECIPE + 'requirement = ["x"]\n', ["requirement", "unknown key"]),
    ("unknown nested key", VALID_RECIPE + "[strip]\nremoves = []\n", ["strip.removes", "unknown key"]),
    ("wrong type", VALID_RECIPE.replace('runtime = "python3.11"', 'runtime = "python3.11"\narchitectures = "x86_64"'),
     ["architectures"]),
    ("unknown runtime", VALID_RECIPE.replace("python3.11", "python3.5"), ["runtime", "python3.5"]),
    ("arm64 on python3.6", VALID_RECIPE.replace('runtime = "python3.11"',
                                                 'runtime = "python3.6"\narchitectures = ["arm64"]'),
     ["architectures", "python3.6", "arm64"]),
    ("unknown architecture", VALID_RECIPE.replace('runtime = "python3.11"',
                                                   'runtime = "python3.11"\narchitectures = ["ppc64le"]'),
     ["architectures"]),
    ("bad requirement", VALID_RECIPE.replace('"six==1.17.0"', '"==1.0"'), ["requirements", "==1.0"]),
    ("no requirements", VALID_RECIPE.replace('["six==1.17.0"]', "[]"), ["requirements"]),
    ("duplicate requirement", VALID_RECIPE.replace('["six==1.17.0"]', '["six==1.17.0", "Six"]'),
     ["requirements", "twice"]),
    ("bad bytecode mode", 'bytecode = "sometimes"\n' + VALID_RECIPE, ["bytecode", "none", "alongside", "only"]),
    ("bad size", 'reserve = "5 parsecs"\n' + VALID_RECIPE, ["reserve"]),
    ("reserve over the limit", f"reserve = {UNZIPPED_LIMIT}\n" + VALID_RECIPE, ["reserve"]),
    ("unknown strip profile", VALID_RECIPE + '[strip]\nprofile = "extreme"\n', ["strip.profile"]),
    ("no smoke imports", VALID_RECIPE.replace('imports = ["six"]', "imports = []"), ["smoke.imports"]),
    ("not TOML", VALID_RECIPE + "this is = = not toml\n", ["not valid TOML"]),
    ("name differs from file", VALID_RECIPE.replace('name = "{name}"', 'name = "other"'), ["name", "other"]),
    ("bad layer name", 'layer_name = "has spaces"\n' + VALID_RECIPE, ["layer_name"]),
    # Refused at load, not minutes later after resolving (each was accepted before).
    ("array nested 500 deep", VALID_RECIPE + "x = " + "[" * 500 + "]" * 500 + "\n", ["nested"]),
    ("table nested 600 deep", "[" + ".".join(["a"] * 600) + "]\n" + VALID_RECIPE, ["nested"]),
    ("a size of 401 digits", 'reserve = "1' + "0" * 400 + 'MB"\n' + VALID_RECIPE, ["reserve"]),
    ("full-width digits", 'reserve = "\uff15MB"\n' + VALID_RECIPE, ["reserve"]),
    ("compression as a boolean", "compression = true\n" + VALID_RECIPE, ["compression", "integer"]),
    ("compression as a string", 'compression = "6"\n' + VALID_RECIPE, ["compression", "integer"]),
    ("model_loader as a string", VALID_RECIPE + '[include]\nmodel_loader = "yes"\n', ["include.model_loader"]),
    ("duplicate architectures", VALID_RECIPE.replace('runtime = "python3.11"',
                                                     'runtime = "python3.11"\narchitectures = ["x86_64", "x86_64"]'),
     ["architectures", "twice"]),
    ("empty strip.drop name", VALID_RECIPE + '[strip]\ndrop = [""]\n', ["strip.drop", "distribution name"]),
    ("a statement as a smoke import", VALID_RECIPE.replace('imports = ["six"]', 'imports = ["six; import os"]'),
     ["smoke.imports", "module name"]),
    ("smoke code that is not Python", VALID_RECIPE.replace('code = "assert six.PY3 if False else True"',
                                                           'code = "def ("'), ["smoke.code", "not valid Python"]),
    ("a 100,000-character description", 'description = "' + "x" * 100_000 + '"\n' + VALID_RECIPE, ["description"]),
]


@pytest.mark.parametrize("what,text,words", BAD_RECIPES, ids=[b[0] for b in BAD_RECIPES])
def test_bad_recipe_gives_one_line_naming_file_and_key(write_recipe, what, text, words):
    path = write_recipe(text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = caught.value.message
    assert str(path) in message
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    assert caught.value.exit_code == 2


def test_unknown_key_suggests_the_right_one(write_recipe):
    with pytest.raises(RecipeError) as caught:
        load_recipe(write_recipe(VALID_RECIPE + "[strip]\nremoves = []\n"))
    assert caught.value.hint == "did you mean 'remove'?"


def test_unknown_runtime_suggests_a_close_one(write_recipe):
    with pytest.raises(RecipeError) as caught:
        load_recipe(write_recipe(VALID_RECIPE.replace("python3.11", "python3.1")))
    assert "did you mean" in caught.value.hint


def test_defaults_come_from_data(write_recipe):
    recipe = load_recipe(write_recipe(VALID_RECIPE))
    assert recipe.architectures == ("x86_64",)
    assert recipe.bytecode == "none"
    assert recipe.strip.profile == "standard"
    assert recipe.layer_name == "demo"
    assert recipe.reserve == 5 * 2**20
    assert recipe.unzipped_budget == UNZIPPED_LIMIT - 5 * 2**20


def test_emptying_docstrings_needs_sourceless_bytecode(write_recipe):
    with pytest.raises(RecipeError) as caught:
        load_recipe(write_recipe(VALID_RECIPE + '[strip]\ndocstrings = "empty"\n'))
    assert "needs bytecode = 'only'" in caught.value.message and "bytecode" in caught.value.hint
    recipe = load_recipe(write_recipe('bytecode = "only"\n' + VALID_RECIPE + '[strip]\ndocstrings = "empty"\n'))
    assert recipe.strip.docstrings == "empty"
    assert load_recipe(write_recipe(VALID_RECIPE)).strip.docstrings == "keep"


def test_recipe_is_frozen(write_recipe):
    recipe = load_recipe(write_recipe(VALID_RECIPE))
    with pytest.raises(Exception):
        recipe.runtime = "python3.12"


def test_missing_recipe_suggests_a_close_name(recipes_dir):
    with pytest.raises(RecipeError) as caught:
        load_recipe("tf81", recipes_dir)
    assert "did you mean 'tf18'" in caught.value.hint


@pytest.mark.parametrize("name", ["tf18", "onnx312", "np311"])
def test_shipped_recipes_parse(recipes_dir, name):
    recipe = load_recipe(name, recipes_dir)
    assert recipe.name == name and recipe.smoke.imports


def test_pins_with_hashes():
    pin = parse_pin("Pillow==12.2.0 --hash=sha256:" + "a" * 64)
    assert pin.name == "pillow" and pin.hashes == ("sha256:" + "a" * 64,)
    assert pin.exact_version == "12.2.0"
    assert parse_pin("numpy==1.16.*").exact_version is None


@pytest.mark.parametrize("text,size", [("5MiB", 5 * 2**20), ("1024", 1024), (1024, 1024), ("1.5 GiB", 3 * 2**29),
                                       # Lambda's units: its 250 MB is 262,144,000 bytes, its 512 MB of /tmp is 512 MiB.
                                       ("250MB", UNZIPPED_LIMIT), ("512MB", 512 * 2**20), ("10GB", 10 * 2**30)])
def test_parse_size(text, size):
    assert parse_size(text) == size


def test_names_and_files_that_are_not_recipes_are_refused_before_the_file_system_is_asked(tmp_path):
    for name in ("x" * 300, "UPPER", ""):
        with pytest.raises(RecipeError, match="is not a recipe name"):
            load_recipe(name, tmp_path)
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(RecipeError, match="is a directory, not a recipe file"):
        load_recipe(tmp_path / "dir.toml")
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(RecipeError, match="is a FIFO"):  # refused, never opened (it would hang)
        load_recipe(fifo)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(binary)
