"""Engine layer: open one picture safely and turn it into RGB.

Every path into the network goes through ``load_rgb``: EXIF orientation applied,
any mode (greyscale, palette, RGBA, CMYK, 16-bit) made RGB, Pillow's
decompression-bomb limit left on, and large JPEGs decoded at reduced scale
(draft mode) when the model needs far fewer pixels than the file has.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

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


Layout = Sequence[tuple[Any, ...]]
"""Pillow's tiles before decoding: (codec, extents, offset, args) each."""


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
        if exc.errno is None:  # Pillow's complaint about the content, not the disk's
            raise _content_problem(path, exc) from exc
        raise ImageProblem(f"unreadable ({os.strerror(exc.errno)})") from exc
    width, height = image.size
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        image.close()
        raise ImageProblem(f"too many pixels ({width}x{height})")
    if min(width, height) < MIN_SIDE:
        image.close()
        raise ImageProblem(f"too small ({width}x{height}); needs at least {MIN_SIDE} px a side")
    return image


def _decode(image: Image.Image, path: Path, min_side: int | None) -> Image.Image:
    """Decode pixel data, at reduced JPEG scale when ``min_side`` allows it.

    A failure is ``truncated`` when the file ends before its own structure does (see
    ``is_truncated``), otherwise ``corrupt``: decided from the file, not from the
    wording of Pillow's message, which differs between formats and versions.
    """
    if min_side is not None and image.format == "JPEG":
        # draft() picks the smallest 1/2, 1/4, 1/8 scale that keeps both sides >= the request.
        image.draft("RGB", (min_side, min_side))
    # Where the header says the pixel data lies; load() clears it.
    layout: Layout = [tuple(tile) for tile in getattr(image, "tile", [])]
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageProblem("too many pixels (possible decompression bomb)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise _content_problem(path, exc, image, layout) from exc
    return image


def _content_problem(
    path: Path, error: Exception, image: Image.Image | None = None, layout: Layout = ()
) -> ImageProblem:
    if is_truncated(path, image, layout):
        return ImageProblem("truncated")
    return ImageProblem(f"corrupt ({error})")


def is_truncated(path: Path, image: Image.Image | None = None, layout: Layout = ()) -> bool:
    """Whether the file stops before its structure ends: JPEG without its end-of-image
    marker after the image data, PNG without IEND, GIF without its trailer, WebP
    shorter than its RIFF header says, other formats (given the opened ``image``)
    shorter than the pixel data their header declares. Read only after a failure."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    kind = image.format if image is not None else _format_by_signature(data)
    checks = {"JPEG": _jpeg_truncated, "PNG": _png_truncated, "WEBP": _riff_truncated}
    if kind in checks:
        return checks[kind](data)
    if kind == "GIF":
        return not data.endswith(b"\x3b")  # the trailer byte ends every whole GIF
    return image is not None and len(data) < _declared_end(image, layout)


def _format_by_signature(data: bytes) -> str | None:
    """The format by its first bytes, for a file Pillow could not even open."""
    if data[8:12] == b"WEBP" and data.startswith(b"RIFF"):
        return "WEBP"
    signatures = {b"\xff\xd8": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF"}
    return next((kind for start, kind in signatures.items() if data.startswith(start)), None)


def _jpeg_truncated(data: bytes) -> bool:
    """Walk the marker segments to the first start of scan; a whole JPEG has an
    end-of-image marker after it (0xFFD9 cannot occur inside entropy-coded data)."""
    position = 2  # after the start-of-image marker
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False  # not a marker: damaged, not short
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:
            return False
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:  # start of scan: the image data follows
            return data.find(b"\xff\xd9", position + 2 + length) < 0
        position += 2 + length
    return True


def _png_truncated(data: bytes) -> bool:
    """Walk the chunks (length, type, data, CRC); a whole PNG reaches IEND."""
    position = 8  # after the signature
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        if data[position + 4 : position + 8] == b"IEND":
            return False
        position += 12 + length
    return True


def _riff_truncated(data: bytes) -> bool:
    """A RIFF file (WebP) states its own size after the tag."""
    return len(data) < 8 + int.from_bytes(data[4:8], "little")


def _declared_end(image: Image.Image, layout: Layout) -> int:
    """Where the pixel data ends by the header: TIFF strips or tiles (offset + byte
    count), uncompressed data (offset + rows x row length); else where it starts."""
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        for offsets, counts in ((273, 279), (324, 325)):  # strips, tiles
            if offsets in tags and counts in tags:
                return max(int(o) + int(c) for o, c in zip(tags[offsets], tags[counts]))
    end = 0
    for codec, extents, start, args, *_ in layout:
        if codec != "raw" or extents is None:
            end = max(end, start + 1)
            continue
        width, height = extents[2] - extents[0], extents[3] - extents[1]
        stride = args[1] if isinstance(args, tuple) and len(args) > 1 else 0
        end = max(end, start + (abs(stride) or _row_bytes(image.mode, width)) * height)
    return end


def _row_bytes(mode: str, width: int) -> int:
    if mode == "1":
        return (width + 7) // 8
    item = ImageMode.getmode(mode)
    return width * len(item.bands) * int(item.typestr[-1])


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
        decoded = _decode(image, path, min_side)
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
        _decode(image, path, MIN_SIDE * 8)
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
