"""The README's Python API snippet, run exactly as a user would paste it.

Pasted unchanged into ``snippet.py`` and run as ``python snippet.py``, piped
into ``python -``, and as ``python -c`` (like a notebook cell, its main module
has no file): none has an ``if __name__ == "__main__":`` guard, so this fails
if worker processes re-import the user's main module.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_section(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"# --8<-- \[start:{name}\]\n(.*?)# --8<-- \[end:{name}\]", text, re.S)
    assert found, f"README.md has no {name!r} snippet section"
    return found.group(1)


@pytest.mark.parametrize("how", ["file", "stdin", "-c"])
def test_readme_python_snippet_runs_unchanged(tmp_path: Path, how: str) -> None:
    snippet = readme_section("python-api")
    assert "if __name__" not in snippet  # the point: no guard
    script = tmp_path / "snippet.py"
    script.write_text(snippet)
    if how == "file":
        command, stdin = [sys.executable, str(script)], None
    elif how == "stdin":
        command, stdin = [sys.executable, "-"], snippet
    else:
        command, stdin = [sys.executable, "-c", snippet], None
    done = subprocess.run(
        command, input=stdin, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "(64, 64, 3) (64, 64, 3)"


def test_readme_says_how_to_run_the_snippet_and_that_command_runs_it(tmp_path: Path) -> None:
    """The line the README gives for running ``snippet.py``, run as a shell command in a folder
    whose ``.venv`` is an environment with omni installed (as command 1 leaves one)."""
    commands = readme_section("commands")
    assert "python3 -m venv .venv" in commands.splitlines()[1]  # command 1 makes the .venv it names
    run_line = readme_section("python-api-run").strip()
    assert run_line.startswith(".venv/bin/python snippet.py")
    (tmp_path / "snippet.py").write_text(readme_section("python-api"))
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    done = subprocess.run(
        ["bash", "-c", run_line], cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "(64, 64, 3) (64, 64, 3)"


@pytest.mark.parametrize("where", ["folder", "elsewhere"])
def test_the_snippet_pasted_into_a_file_runs_with_a_python_that_has_no_omni(
    tmp_path: Path, where: str
) -> None:
    """``python3 snippet.py`` with the base interpreter (no omni: the system ``python3`` of a user)
    in the folder where command 1 left its ``.venv``: the snippet reruns itself there. Run from
    another folder, the .venv beside the file is found."""
    folder = tmp_path / "clone"
    folder.mkdir()
    (folder / "snippet.py").write_text(readme_section("python-api"))
    (folder / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    bare = Path(sys.base_prefix) / "bin" / "python3"
    check = subprocess.run([str(bare), "-I", "-c", "import omni_core"], capture_output=True, check=False)
    assert check.returncode != 0, "the base interpreter has omni installed: this test needs one without"
    cwd = folder if where == "folder" else tmp_path
    script = "snippet.py" if where == "folder" else "clone/snippet.py"
    done = subprocess.run(
        [str(bare), "-I", script], cwd=cwd, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "(64, 64, 3) (64, 64, 3)"


def test_the_snippet_says_what_to_do_where_there_is_no_environment(tmp_path: Path) -> None:
    (tmp_path / "snippet.py").write_text(readme_section("python-api"))
    bare = Path(sys.base_prefix) / "bin" / "python3"
    done = subprocess.run(
        [str(bare), "-I", "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "has no omni: run README command 1" in done.stderr


def test_the_readme_pictures_redraw_from_the_built_in_model(tmp_path: Path) -> None:
    """``docs/images/draw_readme_images.py`` (named in docs/architecture.md) redraws them: command
    1's prompt read back by the shapes oracle, and the grid at its size."""
    pytest.importorskip("sklearn", reason="the shapes oracle needs scikit-learn (omni-core[train])")
    from PIL import Image

    from omni_core.models.shapes_oracle import read
    from omni_core.models.shapes_vocabulary import parse_prompt

    script = ROOT / "docs" / "images" / "draw_readme_images.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    command_1 = re.search(r'omni generate "([^"]+)" -o seven\.png', readme_section("commands"))
    assert command_1
    asked = parse_prompt(command_1.group(1))
    with Image.open(tmp_path / "seven.png") as seven, Image.open(tmp_path / "shapes.png") as grid:
        assert seven.size == (256, 256)
        assert grid.size == (6 * 64 * 3, 2 * 64 * 3)
        native = seven.convert("RGB").resize((64, 64), Image.Resampling.NEAREST)
    assert asked is not None
    assert all(read(np.asarray(native)).matches(asked).values())
