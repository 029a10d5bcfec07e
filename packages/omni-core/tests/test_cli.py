"""The omni command, run as a real subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from PIL import Image


def omni(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("omni")
    assert executable, "the omni console script is not installed"
    return subprocess.run(
        [executable, *args], capture_output=True, text=True, cwd=cwd, env=os.environ.copy(), check=False
    )


def test_generate_writes_pngs_of_the_requested_size(tmp_path: Path, tiny_model: Path) -> None:
    result = omni(
        "generate",
        "a red circle",
        "--model",
        str(tiny_model),
        "--executor",
        "inproc",
        "--size",
        "64x32",
        "--steps",
        "2",
        "--seed",
        "3",
        "-n",
        "2",
        "-o",
        "out/pic.png",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for index in range(2):
        with Image.open(tmp_path / "out" / f"pic-{index}.png") as image:
            assert image.size == (64, 32)
    assert "seed 3" in result.stdout
    assert "2/2" in result.stderr  # the step progress bar reached the end


def test_generate_with_the_built_in_default_model(tmp_path: Path) -> None:
    result = omni(
        "generate", "anything", "--executor", "inproc", "--steps", "2", "--seed", "1", "--quiet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (64, 64)


def test_generate_reports_bad_input_by_field(tmp_path: Path, tiny_model: Path) -> None:
    result = omni(
        "generate", "x", "--model", str(tiny_model), "--executor", "inproc", "--size", "60x64", cwd=tmp_path
    )
    assert result.returncode != 0
    assert "Invalid value for --size: must be a positive multiple of 8, got 60" in result.stderr
    missing = omni("generate", "x", "--model", str(tmp_path / "nope"), "--executor", "inproc", cwd=tmp_path)
    assert missing.returncode != 0
    assert str(tmp_path / "nope") in missing.stderr


def test_executors_lists_installed_and_missing(tmp_path: Path) -> None:
    result = omni("executors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "installed" in lines["inproc"]
    if "missing" in lines["http"]:
        assert "pip install omni-executor-http" in lines["http"]


def test_generate_rejects_bad_values_before_loading_any_model(tmp_path: Path) -> None:
    for args, flag in (
        (("--size", "65x64"), "--size"),
        (("--steps", "0"), "--steps"),
        (("-n", "0"), "-n"),
        (("--size", "\u00b2x\u00b2"), "--size"),
    ):
        result = omni("generate", "7", *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"Invalid value for {flag}" in result.stderr
        assert "loading model" not in result.stderr  # refused before the model (seconds) loads
    capped = omni("generate", "7", "--size", "4096x4096", cwd=tmp_path)
    assert "max_image_pixels" in capped.stderr  # the message names what raises the cap


def test_the_digits_model_warns_once_when_a_prompt_names_no_digit(tmp_path: Path) -> None:
    cat = omni(
        "generate",
        "a cat",
        "-n",
        "3",
        "--model",
        "digits-v1",
        "--executor",
        "inproc",
        "--quiet",
        cwd=tmp_path,
    )
    assert cat.returncode == 0, cat.stderr
    assert cat.stderr.count("draws only the digits 0-9") == 1, cat.stderr
    assert "'a cat'" in cat.stderr


def test_preview_dir_gets_the_previews_as_they_come(tmp_path: Path) -> None:
    done = omni(
        "generate",
        "a handwritten 3",
        "-o",
        "ring.png",
        "--steps",
        "8",
        "--seed",
        "1",
        "--preview-dir",
        "previews",
        "--executor",
        "inproc",
        "--quiet",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    written = sorted(path.name for path in (tmp_path / "previews").iterdir())
    assert written == ["preview-1.png", "preview-2.png", "preview-3.png"]
    from PIL import Image

    final = Image.open(tmp_path / "ring.png")
    assert all(Image.open(tmp_path / "previews" / name).size == final.size for name in written)
    one = ("--previews", "1", "--preview-dir", "one")
    fewer = omni("generate", "a handwritten 5", *one, "--executor", "inproc", "--quiet", cwd=tmp_path)
    assert fewer.returncode == 0, fewer.stderr
    assert [path.name for path in (tmp_path / "one").iterdir()] == ["preview-1.png"]
