"""Engine layer: a small, varied picture dataset drawn by our own code.

For a first run with no data and no network, for screenshots, and for tests:
shapes and textures in random colours, sizes, positions and rotations, on noisy
gradient backgrounds, so a pretrained backbone has real work to do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .errors import DatasetError

SAMPLE_CLASSES = ("circle", "square", "triangle", "star", "stripes", "dots")
MARKER = ".finetune-studio-sample"

Drawer = Callable[[ImageDraw.ImageDraw, np.random.Generator, int, tuple[int, int, int]], None]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _polygon(
    cx: float, cy: float, radius: float, corners: int, rotation: float, inner: float | None = None
) -> list[tuple[float, float]]:
    points = []
    steps = corners * (2 if inner else 1)
    for i in range(steps):
        r = radius if inner is None or i % 2 == 0 else radius * inner
        angle = rotation + 2 * math.pi * i / steps
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _centre(rng: np.random.Generator, size: int, radius: float) -> tuple[float, float]:
    low, high = radius, size - radius
    return float(rng.uniform(low, high)), float(rng.uniform(low, high))


def _shape(corners: int, inner: float | None = None) -> Drawer:
    def draw(
        canvas: ImageDraw.ImageDraw,
        rng: np.random.Generator,
        size: int,
        colour: tuple[int, int, int],
    ) -> None:
        radius = size * float(rng.uniform(0.18, 0.38))
        cx, cy = _centre(rng, size, radius)
        if corners == 0:
            canvas.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
        else:
            rotation = float(rng.uniform(0, 2 * math.pi))
            canvas.polygon(_polygon(cx, cy, radius, corners, rotation, inner), fill=colour)

    return draw


def _stripes(
    canvas: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, colour: tuple[int, int, int]
) -> None:
    width = int(rng.integers(4, 12))
    angle = float(rng.uniform(0, math.pi))
    dx, dy = math.cos(angle), math.sin(angle)
    for offset in range(-2 * size, 2 * size, 2 * width):
        cx, cy = size / 2 + offset * -dy, size / 2 + offset * dx
        canvas.line(
            (cx - 2 * size * dx, cy - 2 * size * dy, cx + 2 * size * dx, cy + 2 * size * dy),
            fill=colour,
            width=width,
        )


def _dots(
    canvas: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, colour: tuple[int, int, int]
) -> None:
    radius = float(rng.uniform(3, 7))
    for _ in range(int(rng.integers(15, 40))):
        cx, cy = _centre(rng, size, radius)
        canvas.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)


DRAWERS: dict[str, Drawer] = {
    "circle": _shape(0),
    "square": _shape(4),
    "triangle": _shape(3),
    "star": _shape(5, inner=0.45),
    "stripes": _stripes,
    "dots": _dots,
}


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A noisy two-colour gradient in a random direction."""
    start, end = np.array(_colour(rng), float), np.array(_colour(rng), float)
    angle = float(rng.uniform(0, 2 * math.pi))
    ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    ramp = ((xs - 0.5) * math.cos(angle) + (ys - 0.5) * math.sin(angle)) / math.sqrt(2) + 0.5
    pixels = start + (end - start) * ramp[..., None] + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def draw_picture(kind: str, rng: np.random.Generator, size: int = 160) -> Image.Image:
    image = _background(rng, size)
    DRAWERS[kind](ImageDraw.Draw(image), rng, size, _colour(rng))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
    return image


def generate_sample_dataset(
    folder: str | Path,
    per_class: int = 60,
    size: int = 160,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``per_class`` JPEGs per class into ``folder`` (new, empty, or an earlier
    sample, which is then reused as it is). Never touches other files."""
    folder = Path(folder).expanduser()
    if (folder / MARKER).exists():
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise DatasetError(f"{folder} is not empty; choose a new folder for the sample dataset.")
    rng = np.random.default_rng(seed)
    total = per_class * len(SAMPLE_CLASSES)
    done = 0
    for kind in SAMPLE_CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw_picture(kind, rng, size).save(
                folder / kind / f"{kind}_{index:03d}.jpg", quality=90
            )
            done += 1
            if progress:
                progress(done, total)
    (folder / MARKER).write_text("Generated by Finetune Studio.\n", encoding="utf-8")
    return folder
