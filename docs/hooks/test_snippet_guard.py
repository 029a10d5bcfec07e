"""The snippet guard, on a real ``mkdocs build --strict`` of a small site (run by ``nox -s docs``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HOOK = Path(__file__).with_name("snippet_guard.py")
FENCE = "`" * 3


def build(tmp_path: Path, page: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(page)
    (tmp_path / "snippet.py").write_text("# --8<-- [start:part]\nprint('included')\n# --8<-- [end:part]\n")
    shutil.copy(HOOK, tmp_path / "snippet_guard.py")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nhooks:\n  - snippet_guard.py\nmarkdown_extensions:\n"
        "  - pymdownx.superfences\n  - pymdownx.snippets:\n      base_path: ['.']\n      check_paths: true\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_snippet_marker_left_as_text_fails_the_build(tmp_path: Path) -> None:
    pulled_apart = "--8" + " < " + "--"  # what ruff made of the marker (built here, not written)
    mangled = f'# t\n\n{FENCE}python\n{pulled_apart}"snippet.py:part"\n{FENCE}\n'
    result = build(tmp_path, mangled)
    assert result.returncode != 0
    assert "snippet marker was not replaced" in result.stderr + result.stdout


def test_a_real_snippet_is_included_and_builds(tmp_path: Path) -> None:
    result = build(tmp_path, f'# t\n\n{FENCE}python\n--8<-- "snippet.py:part"\n{FENCE}\n')
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "site" / "index.html").read_text()
    assert "included" in html


@pytest.mark.parametrize("page", ["index.md", "choosing-an-executor.md", "writing-an-executor.md"])
def test_the_sites_pages_hold_no_mangled_marker(page: str) -> None:
    from snippet_guard import SNIPPET_MARKER  # docs/hooks is on sys.path under pytest's rootdir import

    source = (Path(__file__).parents[1] / page).read_text()
    for line in source.splitlines():
        if SNIPPET_MARKER.search(line):
            assert line.startswith('--8<-- "'), f"{page}: {line!r}"
