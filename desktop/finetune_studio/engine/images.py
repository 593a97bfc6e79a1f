"""Engine layer: open one picture safely and turn it into RGB.

Every path into the network goes through ``load_rgb``: EXIF orientation applied,
any mode (greyscale, palette, RGBA, CMYK, 16-bit) made RGB, Pillow's
decompression-bomb limit left on, and large JPEGs decoded at reduced scale
(draft mode) when the model needs far fewer pixels than the file has.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 16
"""Pictures smaller than this on either side carry too little to learn from."""

_UNSUPPORTED_EXTENSIONS = {
    ".heic": "HEIC",
    ".heif": "HEIF",
    ".avif": "AVIF",
    ".cr2": "Canon RAW",
    ".cr3": "Canon RAW",
    ".nef": "Nikon RAW",
    ".arw": "Sony RAW",
    ".dng": "DNG RAW",
    ".raf": "Fujifilm RAW",
    ".orf": "Olympus RAW",
    ".rw2": "Panasonic RAW",
    ".psd": "Photoshop",
    ".svg": "SVG",
}


def _pillow_image_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


IMAGE_EXTENSIONS = _pillow_image_extensions()


def unsupported_format(path: Path) -> str | None:
    """The name of a known picture format we cannot read, or None."""
    return _UNSUPPORTED_EXTENSIONS.get(path.suffix.lower())


def is_candidate_image(path: Path) -> bool:
    """Files worth opening: known picture extensions, and files with no extension at all."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix in _UNSUPPORTED_EXTENSIONS or suffix == ""


class ImageProblem(Exception):
    """A picture that cannot be used; ``str()`` is the plain reason shown to the user."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str


def _open(path: Path) -> Image.Image:
    name = unsupported_format(path)
    if name is not None:
        raise ImageProblem(f"unsupported format ({name})")
    try:
        if os.path.getsize(path) == 0:
            raise ImageProblem("empty file")
        image = Image.open(path)
    except ImageProblem:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageProblem("too many pixels (possible decompression bomb)") from exc
    except UnidentifiedImageError as exc:
        raise ImageProblem("not an image") from exc
    except FileNotFoundError as exc:
        raise ImageProblem("file disappeared") from exc
    except PermissionError as exc:
        raise ImageProblem("unreadable (permission denied)") from exc
    except OSError as exc:
        raise ImageProblem(f"unreadable ({os.strerror(exc.errno or errno.EIO)})") from exc
    width, height = image.size
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        image.close()
        raise ImageProblem(f"too many pixels ({width}x{height})")
    if min(width, height) < MIN_SIDE:
        image.close()
        raise ImageProblem(f"too small ({width}x{height}); needs at least {MIN_SIDE} px a side")
    return image


def _decode(image: Image.Image, min_side: int | None) -> Image.Image:
    """Decode pixel data, at reduced JPEG scale when ``min_side`` allows it."""
    if min_side is not None and image.format == "JPEG":
        # draft() picks the smallest 1/2, 1/4, 1/8 scale that keeps both sides >= the request.
        image.draft("RGB", (min_side, min_side))
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageProblem("too many pixels (possible decompression bomb)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        message = str(exc).lower()
        if "truncated" in message or "broken" in message or "premature" in message:
            raise ImageProblem("truncated") from exc
        raise ImageProblem(f"corrupt ({exc})") from exc
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # Pillow's own I -> L conversion clips instead of scaling: scale to 0..255 ourselves.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        scaled = np.clip(array / peak * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | Path, min_side: int | None = None) -> Image.Image:
    """Open, decode, orient upright and convert a picture to RGB.

    ``min_side`` is the smallest short side the caller needs; large JPEGs are then
    decoded at a reduced scale (never below it). Raises ``ImageProblem``.
    """
    path = Path(path)
    with _open(path) as image:
        if getattr(image, "is_animated", False):
            image.seek(0)
        decoded = _decode(image, min_side)
        try:
            upright = ImageOps.exif_transpose(decoded)
        except Exception:  # a malformed EXIF block must not cost the picture itself
            upright = decoded
        rgb = to_rgb(upright)
        if rgb is image:
            rgb = image.copy()
    return rgb


def inspect_image(path: str | Path) -> ImageInfo:
    """Check that a picture decodes completely; raises ``ImageProblem`` with the reason."""
    path = Path(path)
    with _open(path) as image:
        info = ImageInfo(image.width, image.height, image.format or "?")
        _decode(image, MIN_SIDE * 8)
    return info


def load_for_model(
    path: str | Path, short_side: int, interpolation: str = "bilinear"
) -> Image.Image:
    """A picture as the model's preprocessing first sees it: decoded at reduced scale
    where possible, then resized so its short side is ``short_side`` (never enlarged).

    Done the same way with or without the decoded-picture cache, so caching cannot
    change a result. Raises ``ImageProblem``.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    image = load_rgb(path, short_side)
    if min(image.size) > short_side:
        resized: Image.Image = F.resize(
            image, [short_side], InterpolationMode(interpolation), antialias=True
        )
        return resized
    return image
