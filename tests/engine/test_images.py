"""Opening pictures: orientation, colour modes, large JPEGs, the bomb limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from finetune_studio.engine.images import ImageProblem, inspect_image, load_rgb


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored landscape 60x20 with a "rotate 90 degrees" tag: upright it is portrait.
    image = Image.new("RGB", (60, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", exif=exif)

    assert load_rgb(tmp_path / "rotated.jpg").size == (20, 60)


def test_every_colour_mode_becomes_rgb(tmp_path: Path) -> None:
    pictures = {
        "grey.png": Image.new("L", (32, 32), 128),
        "palette.gif": Image.new("P", (32, 32), 3),
        "cmyk.jpg": Image.new("CMYK", (32, 32), (0, 255, 255, 0)),
        "deep.png": Image.fromarray(np.full((32, 32), 65535, dtype=np.uint16)),
    }
    for name, image in pictures.items():
        image.save(tmp_path / name)

    for name in pictures:
        loaded = load_rgb(tmp_path / name)
        assert loaded.mode == "RGB", name
    # 16-bit white stays white instead of clipping to a wrong value.
    assert load_rgb(tmp_path / "deep.png").getpixel((0, 0)) == (255, 255, 255)
    # CMYK with no cyan... is red.
    red, green, blue = load_rgb(tmp_path / "cmyk.jpg").getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    image.save(tmp_path / "clear.png")
    assert load_rgb(tmp_path / "clear.png").getpixel((3, 3)) == (255, 255, 255)


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    Image.new("RGB", (4000, 3000), (90, 90, 90)).save(tmp_path / "big.jpg")

    small = load_rgb(tmp_path / "big.jpg", min_side=256)

    assert min(small.size) >= 256
    assert small.size == (500, 375)  # 1/8 scale: no full 12-megapixel decode
    assert load_rgb(tmp_path / "big.jpg").size == (4000, 3000)


def test_decompression_bomb_limit_stays_on() -> None:
    import finetune_studio.engine.images  # noqa: F401

    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS <= 200_000_000


def saved(path: Path, format: str) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    picture = Image.fromarray(pixels)
    (picture.convert("P") if format == "GIF" else picture).save(path, format)
    return path.read_bytes()


def reason(path: Path) -> str:
    with pytest.raises(ImageProblem) as raised:
        inspect_image(path)
    return str(raised.value)


@pytest.mark.parametrize("format", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_a_file_cut_short_is_truncated_in_every_format(tmp_path: Path, format: str) -> None:
    # WebP's decoder says "could not create decoder object" of a short file: the
    # reason comes from the file's structure, not from the words of the message.
    path = tmp_path / f"picture.{format.lower()}"
    whole = saved(path, format)
    path.write_bytes(whole[: len(whole) // 2])
    assert reason(path) == "truncated"


@pytest.mark.parametrize("format", ["GIF", "PNG"])
def test_a_whole_file_with_damaged_data_is_corrupt_not_truncated(
    tmp_path: Path, format: str
) -> None:
    # Pillow calls damaged GIF data a "broken data stream"; the file is all there.
    path = tmp_path / f"picture.{format.lower()}"
    damaged = bytearray(saved(path, format))
    middle = len(damaged) // 2
    damaged[middle : middle + 40] = bytes(b ^ 0x5A for b in damaged[middle : middle + 40])
    path.write_bytes(bytes(damaged))
    assert reason(path).startswith("corrupt (")
