"""The test oracle for the shapes model: what a generated image shows, read back into a scene.

Colors come from pixel statistics: the background is the palette color
nearest the median of the image's border, the foreground the palette color
nearest the median of the pixels that differ clearly from the background.
Those pixels form the subject's mask; its bounding box gives the size and
position, and a support-vector classifier, trained on masks the renderer
draws (every subject, size and position, with jitter), names the subject.
Needs scikit-learn (``[train]``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from omni_core.images import ImageArray
from omni_core.models.shapes_render import EXTENTS, MARGIN, SIZE, render
from omni_core.models.shapes_vocabulary import COLORS, POSITIONS, SIZES, SUBJECTS, Scene, random_scene

FEATURE_SIDE = 20
FOREGROUND_DISTANCE = 60.0
"""RGB distance from the background beyond which a pixel belongs to the subject (the palette's
closest pair, orange and yellow, are about 115 apart)."""
_PALETTE_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[name] for name in _PALETTE_NAMES], dtype=np.float64)


@dataclass(frozen=True)
class Reading:
    """What the oracle sees in one image."""

    subject: str | None
    color: str | None
    background: str
    size: str | None
    position: str | None

    def matches(self, scene: Scene) -> dict[str, bool]:
        return {
            "subject": self.subject == scene.subject,
            "color": self.color == scene.color,
            "background": self.background == scene.background,
            "size": self.size == scene.size,
            "position": self.position == scene.position,
        }


def nearest_color(rgb: np.ndarray[Any, Any]) -> str:
    return _PALETTE_NAMES[int(np.argmin(((_PALETTE - rgb) ** 2).sum(axis=1)))]


def _border(image: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.concatenate(
        [
            image[:2].reshape(-1, 3),
            image[-2:].reshape(-1, 3),
            image[:, :2].reshape(-1, 3),
            image[:, -2:].reshape(-1, 3),
        ]
    )


def foreground_mask(image: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], str]:
    """(boolean mask of subject pixels, background color name)."""
    pixels = image.astype(np.float64)
    background = nearest_color(np.median(_border(pixels), axis=0))
    distance = np.sqrt(((pixels - np.array(COLORS[background])) ** 2).sum(axis=2))
    return distance > FOREGROUND_DISTANCE, background


def mask_features(mask: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """The mask cropped to its bounding box, centred in a square (aspect kept), at 20x20."""
    rows, cols = np.nonzero(mask)
    if len(rows) < 4:
        return None
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    crop = mask[top:bottom, left:right]
    side = max(crop.shape)
    square = np.zeros((side, side), dtype=np.uint8)
    y, x = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[y : y + crop.shape[0], x : x + crop.shape[1]] = crop * 255
    small = Image.fromarray(square).resize((FEATURE_SIDE, FEATURE_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64).reshape(-1) / 255.0


def _rendered_masks(count_per_subject: int, seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = random.Random(seed)
    features, labels = [], []
    for label, subject in enumerate(SUBJECTS):
        for _ in range(count_per_subject):
            base = random_scene(rng)
            scene = Scene(subject, base.color, base.background, base.size, base.position)
            vector = mask_features(foreground_mask(render(scene, rng))[0])
            if vector is not None:
                features.append(vector)
                labels.append(label)
    return np.stack(features), np.array(labels)


@lru_cache(maxsize=1)
def oracle() -> tuple[Any, float]:
    """(subject classifier, its accuracy on freshly rendered held-out scenes)."""
    from sklearn.svm import SVC

    x_train, y_train = _rendered_masks(60, seed=1)
    x_test, y_test = _rendered_masks(15, seed=2)
    classifier = SVC(C=10.0, gamma="scale")
    classifier.fit(x_train, y_train)
    return classifier, float(classifier.score(x_test, y_test))


def _size_and_position(mask: np.ndarray[Any, Any]) -> tuple[str, str]:
    rows, cols = np.nonzero(mask)
    extent = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    size = min(SIZES, key=lambda name: abs(EXTENTS[name] - extent))
    cy, cx = (rows.min() + rows.max() + 1) / 2 - SIZE / 2, (cols.min() + cols.max() + 1) / 2 - SIZE / 2
    # Half the way to where the renderer puts an off-centre subject of that size.
    threshold = max(1.0, (SIZE / 2 - EXTENTS[size] / 2 - MARGIN) / 2)
    vertical = "top" if cy < -threshold else "bottom" if cy > threshold else ""
    horizontal = "left" if cx < -threshold else "right" if cx > threshold else ""
    position = f"{vertical} {horizontal}".strip() or "center"
    return size, position if position in POSITIONS else "center"


def read(image: ImageArray) -> Reading:
    """What ``image`` (H, W, 3 uint8, resized to 64x64 if needed) shows."""
    array = np.asarray(image)
    if array.shape[:2] != (SIZE, SIZE):
        array = np.asarray(Image.fromarray(array).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BOX))
    mask, background = foreground_mask(array[..., :3])
    vector = mask_features(mask)
    if vector is None:
        return Reading(None, None, background, None, None)
    classifier, _ = oracle()
    subject = SUBJECTS[int(classifier.predict(vector[None])[0])]
    color = nearest_color(np.median(array[..., :3][mask].astype(np.float64), axis=0))
    size, position = _size_and_position(mask)
    return Reading(subject, color, background, size, position)


def read_all(images: Sequence[ImageArray]) -> list[Reading]:
    return [read(image) for image in images]


def random_prompts(count: int, seed: int = 0) -> list[tuple[Scene, str]]:
    """``count`` scenes drawn at random from the vocabulary, each with one phrasing of it."""
    from omni_core.models.shapes_vocabulary import prompt_for

    rng = random.Random(seed)
    return [(scene, prompt_for(scene, rng)) for scene in (random_scene(rng) for _ in range(count))]


def score(scenes: Sequence[Scene], images: Sequence[ImageArray]) -> dict[str, float]:
    """The fraction of images whose subject, color, background, size and position match their scene."""
    readings = read_all(images)
    totals = dict.fromkeys(("subject", "color", "background", "size", "position"), 0)
    for scene, reading in zip(scenes, readings, strict=True):
        for name, ok in reading.matches(scene).items():
            totals[name] += ok
    return {name: total / len(scenes) for name, total in totals.items()}


def score_model(path: Any, count: int = 200, seed: int = 0) -> dict[str, float]:
    """:func:`score` over ``count`` random prompts drawn by the pipeline at ``path`` (seed i for prompt i)."""
    import torch

    from omni_core.models.shapes import ShapesPipeline

    pipeline = ShapesPipeline.from_pretrained(path)
    pipeline.set_progress_bar_config(disable=True)
    pairs = random_prompts(count, seed)
    images = []
    for index, (_, prompt) in enumerate(pairs):
        generator = torch.Generator().manual_seed(index)
        images.append(np.asarray(pipeline(prompt, generator=generator).images[0]))
    return {"prompts": float(count), **score([scene for scene, _ in pairs], images)}
