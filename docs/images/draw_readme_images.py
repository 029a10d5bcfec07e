"""Redraw the README's pictures with the built-in default model: ``python docs/images/draw_readme_images.py``.

``--out DIR`` writes them elsewhere (the README test does, to check they can be redrawn).

``seven.png`` is what README command 1 writes (its prompt, seed 2), and ``shapes.png`` a grid of
prompts; both are shown at 4x and 3x, each pixel a block (nearest-neighbour), so the 64x64
images are seen as they are rather than smoothed by the browser.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest

HERE = Path(__file__).parent
COMMAND_1_PROMPT = "a big yellow 7 on a blue background"
GRID = [
    "a red circle on a blue background",
    "a small green triangle at the top left",
    "a purple heart",
    "the letter Q in orange on black",
    "a white star on purple",
    "a blue ring at the bottom right",
    "a black cross on a yellow background",
    "a small red A on the right",
    "8",
    "a huge green square",
    "draw a blue B on a white background",
    "an orange 3 at the top, black background",
]


def enlarged(image: np.ndarray, factor: int) -> Image.Image:
    picture = Image.fromarray(image)
    return picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description="Redraw the README's pictures.")
    parser.add_argument("--out", type=Path, default=HERE)
    out = parser.parse_args().out
    with DiffusionEngine(OmniDiffusionConfig(executor_class="inproc")) as engine:
        seven = engine.generate(COMMAND_1_PROMPT, seed=2).raise_for_error().output[0]
        outputs = engine.step([OmniDiffusionRequest(p, seed=i) for i, p in enumerate(GRID)])
    enlarged(seven, 4).save(out / "seven.png")
    tiles = [o.raise_for_error().output[0] for o in outputs]
    rows = [np.concatenate(tiles[i : i + 6], axis=1) for i in range(0, len(tiles), 6)]
    enlarged(np.concatenate(rows, axis=0), 3).save(out / "shapes.png")


if __name__ == "__main__":
    main()
