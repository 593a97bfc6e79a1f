#!/usr/bin/env python3
"""Classify pictures with a model exported by Finetune Studio, without the app.

Needs only numpy, pillow and onnxruntime (``pip install numpy pillow onnxruntime``)::

    python predict_onnx.py [--model FILE] PATH... [--threshold P] [--top-k K] [--json]

PATH is a picture or a folder (every picture below it, sorted). The model is the
``model.onnx`` beside this script unless ``--model`` names another. Its class names,
preprocessing and calibration come from the ONNX file's own metadata, or from the
``model.json`` beside it. Probabilities are calibrated (``softmax(logits / T)``); a
picture whose top probability is below the threshold is answered "unknown". ``--json``
prints what ``finetune-studio-cli predict --json`` prints.

This file is written by every ONNX export of Finetune Studio (its source is
``finetune_studio/engine/export/scripts/predict_onnx.py``). Each step here repeats
what the app does to a picture (``engine/images.py``: ``load_rgb``, ``to_rgb``,
``load_for_model``; ``engine/preprocessing.py``: ``eval_transform``), with Pillow and
numpy in place of torchvision, so its answers are the app's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

try:
    import numpy as np
    import onnxruntime
    from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError
except ImportError as missing:  # say what to install instead of a traceback
    sys.exit(f"predict_onnx.py needs numpy, pillow and onnxruntime ({missing}).")

EXIT_OK, EXIT_BAD_INPUT = 0, 2
UNKNOWN = "unknown"
BATCH_SIZE = 16
MIN_SIDE = 16  # engine/images.py: smaller pictures are refused
# The ONNX metadata_props keys the export writes (JSON values), and model.json's keys.
PREFIX = "finetune_studio."
KEYS = ("class_names", "preprocessing", "calibration")
# Pillow's filter numbers for torchvision's interpolation names (its pil_modes_mapping).
FILTERS = {"nearest": 0, "nearest-exact": 0, "bilinear": 2, "bicubic": 3, "box": 4}
FILTERS |= {"hamming": 5, "lanczos": 1}
UNSUPPORTED = {".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".cr2": "Canon RAW"}
UNSUPPORTED |= {".cr3": "Canon RAW", ".nef": "Nikon RAW", ".arw": "Sony RAW", ".dng": "DNG RAW"}
UNSUPPORTED |= {".raf": "Fujifilm RAW", ".orf": "Olympus RAW", ".rw2": "Panasonic RAW"}
UNSUPPORTED |= {".psd": "Photoshop", ".svg": "SVG"}


class PictureProblem(Exception):
    """A picture that cannot be used; ``str()`` is the app's reason for it."""


# -- the model ------------------------------------------------------------------------


class Model:
    """The ONNX session and what the app stores beside the weights."""

    def __init__(self, path: Path) -> None:
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = _model_description(path, self.session.get_modelmeta().custom_metadata_map)
        self.class_names: list[str] = [str(name) for name in meta["class_names"]]
        pre = meta["preprocessing"]
        self.resize_size = int(pre["resize_size"])
        self.crop_size = int(pre["crop_size"])
        self.mean = np.asarray(pre["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(pre["std"], dtype=np.float32).reshape(3, 1, 1)
        self.filter = FILTERS[str(pre.get("interpolation", "bilinear"))]
        calibration = meta.get("calibration") or {}
        self.temperature = float(calibration.get("temperature", 1.0))
        self.threshold = float(calibration.get("threshold", 0.0))
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated, in float32 as the app computes them: ``softmax(logits / T)``."""
        logits = self.session.run(None, {self.input_name: batch})[0].astype(np.float32)
        scaled = logits / np.float32(self.temperature)
        exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
        out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
        return out


def _model_description(path: Path, properties: dict[str, str]) -> dict[str, Any]:
    """Class names, preprocessing and calibration: the ONNX file's own metadata, and
    the ``model.json`` beside the model for any key the file does not carry."""
    meta = {key: json.loads(properties[PREFIX + key]) for key in KEYS if PREFIX + key in properties}
    sidecar = path.with_name("model.json")
    if len(meta) < len(KEYS) and sidecar.is_file():
        folder = json.loads(sidecar.read_text(encoding="utf-8"))
        meta = {key: folder.get(key) for key in KEYS} | meta
    if not meta.get("class_names") or not meta.get("preprocessing"):
        raise ValueError("it names no classes or preprocessing, and no model.json is beside it")
    return meta


# -- finding pictures (engine/predict.py expand_paths, engine/scan.py walk_files) ------


def _picture_extensions() -> frozenset[str]:
    Image.init()
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset(readable | set(UNSUPPORTED) | {""})


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _walk(folder: Path) -> Iterator[Path]:
    """Non-hidden files below ``folder``, sorted, following links but never in circles."""
    seen: set[tuple[int, int]] = set()
    for current, dirs, files in os.walk(folder, followlinks=True):
        stat = os.stat(current)
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = [d for d in sorted(dirs) if not _hidden(d)]
        yield from (Path(current, name) for name in sorted(files) if not _hidden(name))


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders become the pictures below them, in a stable order."""
    extensions = _picture_extensions()
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [p for p in _walk(path) if p.suffix.lower() in extensions]
        else:
            found.append(path)
    return found


# -- reading a picture (engine/images.py) ----------------------------------------------


def _open(path: Path) -> Image.Image:
    if path.suffix.lower() in UNSUPPORTED:
        raise PictureProblem(f"unsupported format ({UNSUPPORTED[path.suffix.lower()]})")
    try:
        if os.path.getsize(path) == 0:
            raise PictureProblem("empty file")
        image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise PictureProblem("too many pixels (possible decompression bomb)") from exc
    except UnidentifiedImageError as exc:
        raise PictureProblem("not an image") from exc
    except FileNotFoundError as exc:
        raise PictureProblem("file disappeared") from exc
    except PermissionError as exc:
        raise PictureProblem("unreadable (permission denied)") from exc
    except OSError as exc:
        if exc.errno is None:  # Pillow's complaint about the content, not the disk's
            raise _content_problem(path, exc) from exc
        raise PictureProblem(f"unreadable ({os.strerror(exc.errno)})") from exc
    width, height = image.size
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        image.close()
        raise PictureProblem(f"too many pixels ({width}x{height})")
    if min(width, height) < MIN_SIDE:
        image.close()
        raise PictureProblem(f"too small ({width}x{height}); needs at least {MIN_SIDE} px a side")
    return image


def _decode(image: Image.Image, path: Path, min_side: int) -> Image.Image:
    """Decode, a large JPEG at the smallest 1/2, 1/4, 1/8 scale that keeps ``min_side``."""
    if image.format == "JPEG":
        image.draft("RGB", (min_side, min_side))
    layout = [tuple(tile) for tile in getattr(image, "tile", [])]
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise PictureProblem("too many pixels (possible decompression bomb)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise _content_problem(path, exc, image, layout) from exc
    return image


def _content_problem(
    path: Path, error: Exception, image: Image.Image | None = None, layout: Sequence[Any] = ()
) -> PictureProblem:
    """``truncated`` when the file ends before its own structure does, else ``corrupt``."""
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    truncated = bool(data) and _is_truncated(data, image, layout)
    return PictureProblem("truncated" if truncated else f"corrupt ({error})")


def _is_truncated(data: bytes, image: Image.Image | None, layout: Sequence[Any]) -> bool:
    kind = image.format if image is not None else _format_by_signature(data)
    if kind == "JPEG":
        return _jpeg_truncated(data)
    if kind == "PNG":
        return _png_truncated(data)
    if kind == "WEBP":
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    if kind == "GIF":
        return not data.endswith(b"\x3b")
    return image is not None and len(data) < _declared_end(image, layout)


def _format_by_signature(data: bytes) -> str | None:
    if data[8:12] == b"WEBP" and data.startswith(b"RIFF"):
        return "WEBP"
    signatures = {b"\xff\xd8": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF"}
    return next((kind for start, kind in signatures.items() if data.startswith(start)), None)


def _jpeg_truncated(data: bytes) -> bool:
    """Walk the markers to the first start of scan; a whole JPEG ends-of-image after it."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker == 0xD9:
            return False
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:
            return data.find(b"\xff\xd9", position + 2 + length) < 0
        position += 2 + length
    return True


def _png_truncated(data: bytes) -> bool:
    position = 8
    while position + 8 <= len(data):
        if data[position + 4 : position + 8] == b"IEND":
            return False
        position += 12 + int.from_bytes(data[position : position + 4], "big")
    return True


def _declared_end(image: Image.Image, layout: Sequence[Any]) -> int:
    """Where the pixel data ends by the header (TIFF strips or tiles, raw rows)."""
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        for offsets, counts in ((273, 279), (324, 325)):
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
    """Any mode to 8-bit RGB; 16-bit and integer pictures scaled, transparency on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
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


def load_rgb(path: Path, min_side: int) -> Image.Image:
    """Open, decode (reduced scale where allowed), orient upright, make RGB."""
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


def model_input(path: Path, model: Model) -> np.ndarray:
    """One picture as the network takes it (3 x crop x crop, float32, normalised).

    torchvision's Resize of a PIL picture is Pillow's own resize (antialiased), to a
    short side of ``resize_size`` and a long side of ``int(resize * long / short)``;
    CenterCrop starts at ``int(round((side - crop) / 2))`` and pads with black where
    the picture is smaller than the crop (Pillow's crop does the same).
    """
    image = load_rgb(path, model.resize_size)
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(model.resize_size * long / short)
    size = (model.resize_size, new_long) if width <= height else (new_long, model.resize_size)
    if size != image.size:
        image = image.resize(size, resample=model.filter)
    crop = model.crop_size
    left, top = (_crop_start(side, crop) for side in image.size)
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    out: np.ndarray = (pixels - model.mean) / model.std
    return out


def _crop_start(side: int, crop: int) -> int:
    if crop > side:
        return -((crop - side) // 2)
    return round((side - crop) / 2)  # half to even, as torchvision rounds


# -- predicting -----------------------------------------------------------------------


def predict(
    model: Model, paths: Sequence[Path], threshold: float, top_k: int = 3
) -> list[dict[str, Any]]:
    """One item per path, in order, as ``finetune-studio-cli predict --json`` gives it."""
    top_k = max(1, min(top_k, len(model.class_names)))
    results: dict[int, dict[str, Any]] = {}
    pending: list[tuple[int, str, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        probabilities = model.probabilities(np.stack([pixels for _, _, pixels in pending]))
        for (index, path, _), row in zip(pending, probabilities):
            order = np.argsort(-row, kind="stable")[:top_k]
            top = [{"class": model.class_names[i], "probability": float(row[i])} for i in order]
            best, confidence = top[0]["class"], top[0]["probability"]
            answer = UNKNOWN if confidence < threshold else best
            results[index] = {"path": path, "class": answer, "confidence": confidence, "top": top}
        pending.clear()

    for index, path in enumerate(paths):
        try:
            pending.append((index, str(path), model_input(path, model)))
        except PictureProblem as problem:
            results[index] = _failed(str(path), str(problem))
        except Exception as error:  # any other failure costs this picture, not the run
            results[index] = _failed(str(path), f"unreadable ({error})")
        if len(pending) >= BATCH_SIZE:
            flush()
    flush()
    return [results[i] for i in range(len(paths))]


def _failed(path: str, reason: str) -> dict[str, Any]:
    return {"path": path, "class": None, "confidence": None, "top": [], "error": reason}


# -- command line ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, as the app's CLI says it, and exit 2 (bad input)."""
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def probability(text: str) -> float:
    """``--threshold``: a number from 0 to 1 (NaN is none)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability from 0 to 1, not {text!r}")
    return value


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(
        prog="predict_onnx.py",
        description="Classify pictures with a Finetune Studio ONNX model.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="pictures or folders")
    parser.add_argument(
        "--model",
        type=Path,
        default=Path(__file__).resolve().with_name("model.onnx"),
        help="the ONNX file (default: model.onnx beside this script)",
    )
    parser.add_argument(
        "--threshold",
        type=probability,
        metavar="P",
        help="answer 'unknown' below this calibrated probability, 0 to 1 (default: the model's)",
    )
    parser.add_argument("--top-k", type=int, default=3, metavar="K")
    parser.add_argument("--json", action="store_true", help="print JSON, as the app's CLI does")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    if not args.model.is_file():
        print(f"predict_onnx.py: no model at {args.model}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        model = Model(args.model)
    except (ValueError, KeyError, TypeError) as error:
        print(f"predict_onnx.py: cannot use {args.model}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    paths = expand_paths(args.paths)
    if not paths:
        print("predict_onnx.py: No pictures found in the given paths.", file=sys.stderr)
        return EXIT_BAD_INPUT
    threshold = model.threshold if args.threshold is None else args.threshold
    items = predict(model, paths, threshold, args.top_k)
    if args.json:
        json.dump(items, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for item in items:
            if "error" in item:
                print(f"{item['path']}: skipped ({item['error']})")
                continue
            ranked = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in item["top"])
            print(f"{item['path']}: {item['class']}  ({ranked})")
    return EXIT_BAD_INPUT if all("error" in item for item in items) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
