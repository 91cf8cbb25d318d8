"""The ``layers`` command as users run it: exit codes, one-line errors, no partial output."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, VALID_RECIPE
from tests.unit.test_recipe import BAD_RECIPES

pytestmark = pytest.mark.functional
LAYERS = [sys.executable, "-m", "builder"]


def layers(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LAYERS, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200",
                               "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("what,text,words", BAD_RECIPES, ids=[b[0] for b in BAD_RECIPES])
def test_bad_recipe_exits_2_with_one_line_and_no_dist(tmp_path, what, text, words):
    path = tmp_path / "demo.toml"
    path.write_text(text.format(name="demo") if "{name}" in text else text)
    result = layers("build", str(path), "--backend", "pip", "--out", str(tmp_path / "dist"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert not (tmp_path / "dist").exists()


def test_unknown_recipe_name_suggests(tmp_path):
    result = layers("build", "tf81", "--recipes", str(ROOT / "recipes"), "--out", str(tmp_path / "dist"), cwd=tmp_path)
    assert result.returncode == 2 and "did you mean 'tf18'" in result.stderr
    assert not (tmp_path / "dist").exists()


def test_unknown_arch_and_backend(tmp_path):
    (tmp_path / "demo.toml").write_text(VALID_RECIPE.format(name="demo"))
    bad_arch = layers("build", str(tmp_path / "demo.toml"), "--arch", "sparc", cwd=tmp_path)
    bad_backend = layers("build", str(tmp_path / "demo.toml"), "--backend", "podman", cwd=tmp_path)
    assert bad_arch.returncode == 2 and "unknown architecture" in bad_arch.stderr
    assert bad_backend.returncode == 2 and "unknown backend" in bad_backend.stderr
    assert not (tmp_path / "dist").exists()


def test_recipes_lists_the_shipped_ones(tmp_path):
    result = layers("recipes", "--recipes", str(ROOT / "recipes"), cwd=tmp_path)
    assert result.returncode == 0
    for name in ("tf18", "onnx312", "np311"):
        assert name in result.stdout


def test_init_writes_a_recipe_that_builds_would_accept(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# inference\nPillow==12.2.0\nscikit-learn>=1.5  # model\n")
    result = layers("init", "infer", "-r", str(requirements), "--runtime", "python3.12", "--guess",
                    "--recipes", str(tmp_path / "recipes"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from builder.recipe import load_recipe

    recipe = load_recipe(tmp_path / "recipes" / "infer.toml")
    assert recipe.runtime == "python3.12" and recipe.smoke.imports == ("PIL.Image", "sklearn")
    again = layers("init", "infer", "-r", str(requirements), "--recipes", str(tmp_path / "recipes"), cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr


def test_init_refuses_pip_options_and_bad_runtime(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("--index-url https://example.invalid/simple\nsix\n")
    result = layers("init", "x", "-r", str(requirements), "--recipes", str(tmp_path / "recipes"), cwd=tmp_path)
    assert result.returncode == 2 and "--index-url" in result.stderr
    requirements.write_text("six\n")
    result = layers("init", "x", "-r", str(requirements), "--runtime", "python3.99",
                    "--recipes", str(tmp_path / "recipes"), cwd=tmp_path)
    assert result.returncode == 2 and "python3.99" in result.stderr
    assert not (tmp_path / "recipes" / "x.toml").exists()


def test_auto_backend_says_why_it_falls_back_to_pip(tmp_path):
    # No engine at this address: auto must say so in one line, then build with pip.
    (tmp_path / "demo.toml").write_text(VALID_RECIPE.format(name="demo"))
    result = layers("build", str(tmp_path / "demo.toml"), "--out", str(tmp_path / "dist"), "--no-import-timing",
                    cwd=tmp_path, env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert result.returncode == 0, result.stderr
    notices = [l for l in result.stderr.splitlines()
               if l.startswith("notice: using the pip backend for python3.11-x86_64: ")]
    assert len(notices) == 1 and "no Docker engine answers" in notices[0], result.stderr
    assert (tmp_path / "dist/demo/demo-python3.11-x86_64.zip").is_file()


def test_docker_backend_without_an_engine_says_what_to_do(tmp_path):
    (tmp_path / "demo.toml").write_text(VALID_RECIPE.format(name="demo"))
    result = layers("build", str(tmp_path / "demo.toml"), "--backend", "docker", "--out", str(tmp_path / "dist"),
                    cwd=tmp_path, env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert result.returncode == 6
    assert "error: no Docker engine answers" in result.stderr
    assert "hint: start Docker, or use --backend pip" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "dist").exists()


def test_diff_of_two_builds_lists_differences_with_reasons(tmp_path):
    import zipfile

    for name, extra in (("a", {}), ("b", {"python/extra.py": b""})):
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as archive:
            archive.writestr("python/six.py", b"x")
            for path, data in extra.items():
                archive.writestr(path, data)
    same = layers("diff", str(tmp_path / "a.zip"), str(tmp_path / "a.zip"), cwd=tmp_path)
    assert same.returncode == 0 and "same files" in same.stdout
    differs = layers("diff", str(tmp_path / "a.zip"), str(tmp_path / "b.zip"), "--json", cwd=tmp_path)
    assert differs.returncode == 1
    assert '"only in second"' in differs.stdout and "python/extra.py" in differs.stdout
    missing = layers("diff", str(tmp_path / "a.zip"), str(tmp_path / "nope.zip"), cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


ODD = "[/] [red]x[/red] :x: [bold]"


@pytest.mark.parametrize("args", [
    ["build", ODD],                                                     # a recipe name
    ["build", "demo.toml", "--lock", ODD],                              # a path
    ["publish", "x.zip", "--regions", ODD],                             # an option value
    ["check", ODD, "--runtime", "python3.11"],                          # a zip path
    ["report", ODD],
])
def test_what_the_user_wrote_is_printed_as_written_never_as_markup(tmp_path, args):
    (tmp_path / "demo.toml").write_text(VALID_RECIPE.format(name="demo"))
    result = layers(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert ODD in result.stderr, result.stderr  # brackets kept, no emoji for :x:, no style eaten


def test_control_characters_are_shown_not_sent_to_the_terminal(tmp_path):
    result = layers("build", "demo\x1b[31mred\x07", cwd=tmp_path)
    assert result.returncode == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "demo\\x1b[31mred\\x07" in result.stderr
