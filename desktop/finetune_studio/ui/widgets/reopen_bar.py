"""UI layer: the strip that offers, at launch, to reopen the last project or dataset.

A strip rather than a dialog: the window is usable at once, and someone starting
something new simply ignores it (or dismisses it).
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from .banner import dismiss_button

KINDS = ("project", "dataset")


class ReopenBar(QFrame):
    reopen_requested = Signal(str, str)  # kind ("project" or "dataset"), path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind, self.path = "", ""
        self.setStyleSheet(
            "ReopenBar { background: #e7f1fd; color: #123c69; border: 1px solid #a9c9f5; "
            "border-radius: 6px; }"
        )
        self.label = QLabel()
        self.reopen_button = QPushButton("Reopen")
        self.dismiss_button = dismiss_button("Start something new instead")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, stretch=1)
        layout.addWidget(self.reopen_button)
        layout.addWidget(self.dismiss_button)
        self.reopen_button.clicked.connect(self._on_reopen_button_clicked)
        self.dismiss_button.clicked.connect(self.hide)
        self.hide()

    def offer(self, kind: str, path: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        self.kind, self.path = kind, path
        name = Path(path).name or path
        self.label.setText(f"Last time you worked on the {kind} <b>{html.escape(name)}</b>.")
        self.label.setToolTip(path)
        self.reopen_button.setText(f"Reopen {name}")
        self.show()

    @Slot()
    def _on_reopen_button_clicked(self) -> None:
        self.hide()
        self.reopen_requested.emit(self.kind, self.path)
