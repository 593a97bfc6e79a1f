"""UI layer: the ``finetune-studio`` entry point.

A placeholder window until the desktop window lands (issue 3); it already shows
which engine capabilities are installed, so the entry point is real.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    from .. import __version__

    app = QApplication.instance() or QApplication(list(argv or sys.argv))
    window = QMainWindow()
    window.setWindowTitle(f"Finetune Studio {__version__}")
    label = QLabel(
        "The Finetune Studio window is being built.\n"
        "Meanwhile, finetune-studio-cli trains, predicts and exports."
    )
    label.setMargin(24)
    window.setCentralWidget(label)
    window.show()
    return int(app.exec())
