"""Render the application icon from icons/finetune-studio.svg into every size and
format the platforms want: PNGs (16-512 px), a Windows .ico and a macOS .icns.

    python packaging/build_icons.py

Qt renders the SVG (the same renderer the app uses); Pillow writes .ico and .icns.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parents[1] / "icons"
NAME = "finetune-studio"
SIZES = (16, 32, 48, 64, 128, 256, 512)


def render(svg: Path, size: int) -> Image.Image:
    renderer = QSvgRenderer(str(svg))
    image = QImage(size, size, QImage.Format.Format_RGBA8888)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = bytes(image.constBits())[: size * size * 4]
    return Image.frombytes("RGBA", (size, size), data)


def main() -> int:
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    svg = ICONS / f"{NAME}.svg"
    images = {size: render(svg, size) for size in SIZES}
    for size, image in images.items():
        image.save(ICONS / f"{NAME}-{size}.png")
    images[256].save(ICONS / f"{NAME}.ico", sizes=[(s, s) for s in SIZES if s <= 256])
    images[512].save(ICONS / f"{NAME}.icns")
    print(f"Wrote {len(SIZES)} PNGs, {NAME}.ico and {NAME}.icns to {ICONS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
