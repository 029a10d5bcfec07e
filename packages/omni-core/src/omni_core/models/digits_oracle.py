"""The test oracle for the digits model: a classifier trained on the same data.

A support-vector classifier on scikit-learn's 8x8 digits, trained on the
training split the diffusion model saw and scored on the held-out split.
Generated images are reduced to 8x8 (area average) and 0-16 levels, the
data's own form, before classification. Needs scikit-learn (``[train]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from omni_core.images import ImageArray
from omni_core.models.train_digits import digits_split


@lru_cache(maxsize=1)
def oracle() -> tuple[Any, float]:
    """(classifier, held-out accuracy)."""
    from sklearn.svm import SVC

    x_train, x_test, y_train, y_test = digits_split()
    classifier = SVC(gamma=0.001, C=10.0)
    classifier.fit(np.asarray(x_train).reshape(len(y_train), -1), y_train)
    accuracy = float(classifier.score(np.asarray(x_test).reshape(len(y_test), -1), y_test))
    return classifier, accuracy


def to_digit_features(image: ImageArray) -> np.ndarray[Any, Any]:
    gray = Image.fromarray(image).convert("L").resize((8, 8), Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.float64).reshape(-1) / 255.0 * 16.0


def classify(images: Sequence[ImageArray]) -> list[int]:
    classifier, _ = oracle()
    features = np.stack([to_digit_features(image) for image in images])
    return [int(label) for label in classifier.predict(features)]
