"""A messy real-world dataset folder: every bad case is reported, nothing crashes, and
training on the good pictures succeeds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from test_inspection import png_claiming_size

from finetune_studio.engine.events import FitEnd
from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer
from support.tiny import TINY

RNG = np.random.default_rng(0)


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    pixels = RNG.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def build_corpus(root: Path) -> dict[str, str | None]:
    """Files by name -> the reason they must be skipped for (None: must be used)."""
    good = root / "good café"
    other = root / "другой класс" / "deep" / "deeper" / "deepest"
    for folder in (good, other):
        folder.mkdir(parents=True)
    expected: dict[str, str | None] = {}

    def add(name: str, reason: str | None, folder: Path = good) -> Path:
        expected[name] = reason
        return folder / name

    (add("empty.jpg", "empty file")).write_bytes(b"")
    full = noise((120, 90))
    full.save(good / "whole.jpg")
    add("truncated.jpg", "truncated").write_bytes((good / "whole.jpg").read_bytes()[:900])
    (good / "whole.jpg").unlink()
    add("notes.jpg", "not an image").write_text("shopping list")
    add("README", "not an image").write_text("no extension, not a picture")
    noise((64, 64)).save(add("no_extension", None), format="PNG")
    noise((64, 64), "CMYK").save(add("cmyk.jpg", None))
    Image.fromarray(RNG.integers(0, 65535, (64, 64), dtype=np.uint16)).save(add("deep.png", None))
    noise((64, 64), "L").save(add("grey.png", None))
    noise((64, 64)).convert("P").save(add("palette.gif", None))
    frames = [noise((64, 64)).convert("P") for _ in range(3)]
    frames[0].save(add("animated.gif", None), save_all=True, append_images=frames[1:])
    noise((64, 64), "RGBA").save(add("alpha.png", None))
    noise((64, 64)).save(add("photo.webp", None))
    noise((64, 64)).save(add("scan.tiff", None))
    exif = Image.Exif()
    exif[0x0112] = 6
    noise((80, 40)).save(add("rotated.jpg", None), exif=exif)
    noise((1, 1)).save(add("dot.png", "too small (1x1); needs at least 16 px a side"))
    noise((4000, 8)).save(add("strip.png", "too small (4000x8); needs at least 16 px a side"))
    png_claiming_size(
        add("bomb.png", "too many pixels (possible decompression bomb)"), 30000, 30000
    )
    add("phone.heic", "unsupported format (HEIC)").write_bytes(b"\0\0\0\x18ftypheic")
    for i in range(6):
        noise((64, 64)).save(add(f"nested_{i}.jpg", None, other))
    noise((64, 64)).save(good / ".DS_Store", format="PNG")
    noise((64, 64)).save(good / "._resource.jpg")
    os.symlink(root, good / "loop")
    return expected


def test_every_bad_file_is_reported_and_the_rest_trains(tmp_path: Path) -> None:
    root = tmp_path / "messy"
    expected = build_corpus(root)

    report = inspect_dataset(root)

    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons == {name: reason for name, reason in expected.items() if reason}
    used = {Path(s.path).name for s in (*report.train, *report.val)}
    assert used == {name for name, reason in expected.items() if reason is None}
    # good/loop leads back to the root: no picture is taken in twice, under a second label.
    assert len(report.train) + len(report.val) == len(used)
    assert len(report.skipped) == len(reasons)
    assert report.classes == ("good café", "другой класс")

    recipe = Recipe(
        dataset=str(root), backbone=TINY, epochs=2, batch_size=4, workers=0, head_fit="epochs"
    )
    events = list(Trainer(recipe, dataset=report).events())
    assert isinstance(events[-1], FitEnd) and events[-1].epochs_completed == 2
