"""Redraw the README's pictures with the built-in default model (shapes-v1).

Writes ``seven.png`` (README command 1's prompt, at the seed the README names)
and ``shapes.png`` (a grid of prompts, each under its picture) next to this
file, through the public engine API and the in-process executor, so what the
README shows is what a user gets.

Run: ``.venv/bin/python docs/images/make_images.py``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest

HERE = Path(__file__).parent
SEVEN_PROMPT = "a big yellow 7 on a blue background"
SEVEN_SEED = 2
GRID_PROMPTS = [
    "a red circle on a blue background",
    "a big yellow 7",
    "a small green triangle at the top left",
    "a purple heart on yellow",
    "an orange star on a black background",
    "a white ring on green",
    "a large blue letter A",
    "a small red cross at the bottom right",
    "a black square on an orange background",
    "the digit 3 in purple on white",
    "a green Q on a red background",
    "a yellow heart on the left",
]
SCALE = 2  # each 64x64 picture shown at 128x128, pixels kept sharp (nearest neighbour)
COLUMNS = 4
LABEL_HEIGHT = 30


def draw(prompts: list[str], seed: int) -> list[Image.Image]:
    config = OmniDiffusionConfig(model_name_or_path=None, executor_class="inproc")
    with DiffusionEngine(config) as engine:
        requests = [OmniDiffusionRequest(prompt=text, height=64, width=64, seed=seed) for text in prompts]
        outputs = engine.step(requests)
    return [Image.fromarray(output.raise_for_error().output[0]) for output in outputs]


def grid(prompts: list[str], pictures: list[Image.Image]) -> Image.Image:
    side = 64 * SCALE
    cell_width = side + 60
    rows = (len(pictures) + COLUMNS - 1) // COLUMNS
    sheet = Image.new("RGB", (COLUMNS * cell_width, rows * (side + LABEL_HEIGHT)), "white")
    pen = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    for index, (text, picture) in enumerate(zip(prompts, pictures, strict=True)):
        left = (index % COLUMNS) * cell_width
        top = (index // COLUMNS) * (side + LABEL_HEIGHT)
        sheet.paste(picture.resize((side, side), Image.Resampling.NEAREST), (left + 30, top))
        for line, words in enumerate(_two_lines(text)):
            width = pen.textlength(words, font=font)
            where = (left + (cell_width - width) / 2, top + side + 2 + 13 * line)
            pen.text(where, words, fill="black", font=font)
    return sheet


def _two_lines(text: str) -> list[str]:
    words = text.split()
    half = (len(words) + 1) // 2
    return [" ".join(words[:half]), " ".join(words[half:])] if len(text) > 26 else [text]


def main() -> None:
    (seven,) = draw([SEVEN_PROMPT], SEVEN_SEED)
    seven.resize((64 * SCALE, 64 * SCALE), Image.Resampling.NEAREST).save(HERE / "seven.png")
    grid(GRID_PROMPTS, draw(GRID_PROMPTS, 0)).save(HERE / "shapes.png")
    print(f"wrote {HERE / 'seven.png'} and {HERE / 'shapes.png'}")


if __name__ == "__main__":
    main()
