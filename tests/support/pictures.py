"""Datasets for tests, built from real photographs shipped by scikit-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_CLASSES = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}


def photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def random_view(image: Image.Image, rng: np.random.Generator, size: int = 160) -> Image.Image:
    """A random crop (60-100% of the short side), maybe mirrored, with a brightness change."""
    width, height = image.size
    side = int(min(width, height) * rng.uniform(0.6, 1.0))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    view = image.crop((left, top, left + side, top + side)).resize((size, size))
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(view, dtype=np.float32) * rng.uniform(0.75, 1.25)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_photo_dataset(
    root: Path,
    per_class: int = 10,
    size: int = 160,
    seed: int = 0,
    classes: dict[str, str] | None = None,
) -> Path:
    """One subfolder per class, ``per_class`` JPEG views of a real photo in each."""
    rng = np.random.default_rng(seed)
    for class_name, photo_name in (classes or PHOTO_CLASSES).items():
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        source = photo(photo_name)
        for i in range(per_class):
            random_view(source, rng, size).save(folder / f"{class_name}_{i:03d}.jpg", quality=90)
    return root
