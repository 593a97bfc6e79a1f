"""UI layer: the ``finetune-studio`` entry point.

A placeholder window until the desktop window lands (issue 3), so the installed
entry point is real; ``finetune-studio-cli`` does the work meanwhile.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

from .. import __version__


def create_window() -> QMainWindow:
    window = QMainWindow()
    window.setWindowTitle(f"Finetune Studio {__version__}")
    label = QLabel(
        "The Finetune Studio window is being built.\n"
        "Meanwhile, finetune-studio-cli trains, predicts and exports."
    )
    label.setMargin(24)
    window.setCentralWidget(label)
    return window


def main(argv: Sequence[str] | None = None) -> int:
    app = QApplication.instance() or QApplication(list(argv or sys.argv))
    window = create_window()
    window.show()
    return int(app.exec())
