"""Letters drawn with Pillow's own font: a small task far from ImageNet's photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def make_letter_dataset(root: Path, letters: str = "ABCDEF", per_class: int = 20) -> Path:
    """Grey 64x64 letters of random size, place and tilt on noise, one folder each."""
    rng = np.random.default_rng(0)
    for letter in letters:
        folder = root / letter
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            size = int(rng.integers(28, 48))
            canvas = Image.new("L", (64, 64), int(rng.integers(0, 60)))
            position = (int(rng.integers(0, 64 - size * 3 // 4)), int(rng.integers(-4, 64 - size)))
            ImageDraw.Draw(canvas).text(
                position,
                letter,
                fill=int(rng.integers(180, 256)),
                font=ImageFont.load_default(size),
            )
            canvas = canvas.rotate(float(rng.uniform(-25, 25)), fillcolor=0)
            noisy = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 20, (64, 64))
            picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).convert("RGB")
            picture.save(folder / f"{index:03d}.png")
    return root
