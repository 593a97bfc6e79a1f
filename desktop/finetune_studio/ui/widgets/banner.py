"""UI layer: an inline message strip for errors and warnings.

Inline rather than modal: the user reads what went wrong and what to do without a
dialog in the way, and a bug's traceback is one click away.
"""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMessageBox, QPushButton, QWidget

_STYLES = {
    "error": "background: #fde7e9; color: #8a1c25; border: 1px solid #f1aeb5;",
    "warning": "background: #fff4ce; color: #5c4400; border: 1px solid #f0d58c;",
    "info": "background: #e7f1fd; color: #123c69; border: 1px solid #a9c9f5;",
}


class Banner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.level = ""
        self.details = ""
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.details_button = QPushButton("Details…")
        self.details_button.clicked.connect(self._on_details_button_clicked)
        close = QPushButton("✕")
        close.setFlat(True)
        close.setFixedWidth(28)
        close.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, stretch=1)
        layout.addWidget(self.details_button)
        layout.addWidget(close)
        self.hide()

    @property
    def text(self) -> str:
        parent = self.parentWidget()
        shown = self.isVisibleTo(parent) if parent is not None else not self.isHidden()
        return self.label.text() if shown else ""

    def show_message(self, level: str, text: str, details: str = "") -> None:
        self.level, self.details = level, details
        self.setStyleSheet(f"Banner {{ {_STYLES[level]} border-radius: 6px; }}")
        self.label.setText(text)
        self.details_button.setVisible(bool(details))
        self.show()

    def show_error(self, text: str, details: str = "") -> None:
        self.show_message("error", text, details)

    def show_warning(self, text: str) -> None:
        self.show_message("warning", text)

    def show_info(self, text: str) -> None:
        self.show_message("info", text)

    @Slot()
    def clear(self) -> None:
        self.level, self.details = "", ""
        self.label.clear()
        self.hide()

    @Slot()
    def _on_details_button_clicked(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Critical, "Details", self.label.text(), parent=self)
        box.setDetailedText(self.details)
        box.open()
