"""Render a :class:`~omni_core.models.shapes_vocabulary.Scene` with Pillow alone: the training data.

Drawn at four times the size and box-reduced to 64x64, so edges are
anti-aliased but sharp. Glyphs use Pillow's bundled scalable font
(``ImageFont.load_default(size)``), thickened with a stroke so a 64-pixel
image still shows them clearly; shapes are ``ImageDraw`` polygons. A little
jitter (:class:`Jitter`: position, scale) lets seeds differ; :func:`placement` is
where the subject goes, shared with the model, which places its templates there.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from omni_core.models.shapes_vocabulary import COLORS, SHAPES, Scene

SIZE = 64
"""The model's native size: no upscaling anywhere."""
SUPERSAMPLE = 4
EXTENTS = {"small": 22, "medium": 36, "large": 52}
"""The subject's height in pixels at 64x64, by size word."""
MARGIN = 3


@dataclass(frozen=True)
class Jitter:
    """How far one drawing strays from its scene's exact placement: what makes seeds differ.

    The trainer renders with random jitter and tells the model what it was; the
    pipeline draws it from the request's generator, so a seed picks the jitter.
    """

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0


JITTER_SCALE = 0.08
JITTER_SHIFT = 2.0


def random_jitter(rng: random.Random) -> Jitter:
    """Jitter drawn uniformly: scale within 8 %, centre within 2 pixels."""
    scale = rng.uniform(1 - JITTER_SCALE, 1 + JITTER_SCALE)
    return Jitter(scale, rng.uniform(-JITTER_SHIFT, JITTER_SHIFT), rng.uniform(-JITTER_SHIFT, JITTER_SHIFT))


def jitter_from_uniform(u: tuple[float, float, float]) -> Jitter:
    """:class:`Jitter` from three uniforms in [0, 1) (the pipeline's generator draws them)."""
    return Jitter(
        1 - JITTER_SCALE + 2 * JITTER_SCALE * u[0],
        JITTER_SHIFT * (2 * u[1] - 1),
        JITTER_SHIFT * (2 * u[2] - 1),
    )


def placement(scene: Scene, jitter: Jitter = Jitter()) -> tuple[float, float, float]:
    """(centre x, centre y, extent) of the subject in pixels: the one place geometry is decided.

    The renderer draws there, and the model is told it (its templates are placed there).
    """
    extent = EXTENTS[scene.size] * jitter.scale
    reach = SIZE / 2 - extent / 2 - MARGIN
    x = -reach if "left" in scene.position else reach if "right" in scene.position else 0.0
    y = -reach if "top" in scene.position else reach if "bottom" in scene.position else 0.0
    return SIZE / 2 + x + jitter.dx, SIZE / 2 + y + jitter.dy, extent


@lru_cache(maxsize=64)
def _font(size: int) -> Any:
    return ImageFont.load_default(size)


def _polygon(name: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if name == "triangle":
        return [
            (cx + r * math.cos(a), cy + 0.12 * r + r * math.sin(a))
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    if name == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + 0.06 * r + radius * math.sin(angle)))
        return points
    # heart: the classic parametric curve, scaled to fit a box of side 2r
    points = []
    for k in range(64):
        t = 2 * math.pi * k / 64
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        points.append((cx + r * x / 16.5, cy - r * (y + 2.5) / 15.0))
    return points


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, cx: float, cy: float, extent: float, fill: Any) -> None:
    r = extent / 2
    if name == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif name == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(1, round(r * 0.32)))
    elif name == "square":
        side = r * 0.86
        draw.rectangle((cx - side, cy - side, cx + side, cy + side), fill=fill)
    elif name == "cross":
        arm = r * 0.3
        draw.rectangle((cx - r, cy - arm, cx + r, cy + arm), fill=fill)
        draw.rectangle((cx - arm, cy - r, cx + arm, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(name, cx, cy, r), fill=fill)


def _draw_glyph(
    draw: ImageDraw.ImageDraw, glyph: str, cx: float, cy: float, extent: float, fill: Any
) -> None:
    stroke = max(1, round(extent * 0.05))
    font = _font(max(8, round(extent * 1.32)))
    left, top, right, bottom = draw.textbbox((0, 0), glyph, font=font, stroke_width=stroke)
    x = cx - (left + right) / 2
    y = cy - (top + bottom) / 2
    draw.text((x, y), glyph, font=font, fill=fill, stroke_width=stroke, stroke_fill=fill)


def render(
    scene: Scene, rng: random.Random | None = None, jitter: Jitter | None = None
) -> np.ndarray[Any, Any]:
    """``scene`` as a (64, 64, 3) uint8 array, with ``jitter`` (else jitter drawn from ``rng``, else none)."""
    if jitter is None:
        jitter = random_jitter(rng) if rng is not None else Jitter()
    cx, cy, extent = placement(scene, jitter)
    big = SIZE * SUPERSAMPLE
    image = Image.new("RGB", (big, big), COLORS[scene.background])
    draw = ImageDraw.Draw(image)
    args = (cx * SUPERSAMPLE, cy * SUPERSAMPLE, extent * SUPERSAMPLE, COLORS[scene.color])
    if scene.subject in SHAPES:
        _draw_shape(draw, scene.subject, *args)
    else:
        _draw_glyph(draw, scene.subject, *args)
    return np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BOX))
