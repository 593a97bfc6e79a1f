"""UI layer: an inline message strip for errors and warnings.

Inline rather than modal: the user reads what went wrong and what to do without a
dialog in the way, and a bug's traceback is one click away.

Each message is tied to its cause, a *source* ("folder", "run", ...): showing a
message replaces that source's previous one, and the code that re-evaluates the
cause clears its source when the cause is gone, without touching messages about
other causes that still apply. Messages from several sources stack, one row each.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

DEFAULT_SOURCE = ""  # messages given without a source; ``clear()`` removes them too

_STYLES = {
    "error": "background: #fde7e9; color: #8a1c25; border: 1px solid #f1aeb5;",
    "warning": "background: #fff4ce; color: #5c4400; border: 1px solid #f0d58c;",
    "info": "background: #e7f1fd; color: #123c69; border: 1px solid #a9c9f5;",
}
_SEVERITY = {"info": 0, "warning": 1, "error": 2}
_ICONS = {
    "error": QMessageBox.Icon.Critical,
    "warning": QMessageBox.Icon.Warning,
    "info": QMessageBox.Icon.Information,
}


def dismiss_button(tooltip: str) -> QPushButton:
    """The small flat ✕ at the end of a message row."""
    button = QPushButton("✕")
    button.setFlat(True)
    button.setFixedWidth(28)
    button.setToolTip(tooltip)
    return button


@dataclass(frozen=True)
class Message:
    level: str
    text: str
    details: str = ""


class _Row(QFrame):
    """One message: its words, Details… when there is a traceback, and ✕."""

    def __init__(self, message: Message, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message = message
        self.setObjectName("bannerRow")
        self.setStyleSheet(f"#bannerRow {{ {_STYLES[message.level]} border-radius: 6px; }}")
        self.label = QLabel(message.text)
        self.label.setWordWrap(True)
        self.details_button = QPushButton("Details…")
        self.details_button.setVisible(bool(message.details))
        self.details_button.clicked.connect(self._on_details_button_clicked)
        self.close_button = dismiss_button("Hide this message")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, stretch=1)
        layout.addWidget(self.details_button)
        layout.addWidget(self.close_button)

    @Slot()
    def _on_details_button_clicked(self) -> None:
        box = QMessageBox(_ICONS[self.message.level], "Details", self.message.text, parent=self)
        box.setDetailedText(self.message.details)
        box.open()


class Banner(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: dict[str, _Row] = {}  # by source, in the order first shown
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self.hide()

    # --- what is shown ---------------------------------------------------------------------
    def _shown(self) -> list[Message]:
        parent = self.parentWidget()
        visible = self.isVisibleTo(parent) if parent is not None else not self.isHidden()
        return [row.message for row in self._rows.values()] if visible else []

    def _main(self) -> Message | None:
        """The most severe message, the latest among equals (``level``, ``details``)."""
        shown = self._shown()
        return max(reversed(shown), key=lambda m: _SEVERITY[m.level]) if shown else None

    @property
    def text(self) -> str:
        """Every message shown, one per line ("" when the banner is hidden)."""
        return "\n".join(message.text for message in self._shown())

    @property
    def level(self) -> str:
        main = self._main()
        return main.level if main is not None else ""

    @property
    def details(self) -> str:
        main = self._main()
        return main.details if main is not None else ""

    def message(self, source: str = DEFAULT_SOURCE) -> Message | None:
        """The message standing for ``source``, if any."""
        row = self._rows.get(source)
        return row.message if row is not None else None

    # --- showing and clearing --------------------------------------------------------------
    def show_message(
        self, level: str, text: str, details: str = "", source: str = DEFAULT_SOURCE
    ) -> None:
        """Show ``text`` as the message of ``source``, replacing its previous one in
        place (rows do not jump about as a cause is re-evaluated)."""
        row = _Row(Message(level, text, details), self)
        row.close_button.clicked.connect(self._on_row_close_clicked)
        previous = self._rows.get(source)
        if previous is None:
            self._layout.addWidget(row)
        else:
            self._layout.insertWidget(self._layout.indexOf(previous), row)
            self._discard(previous)
        self._rows[source] = row  # an existing key keeps its place in the order
        self.show()

    def show_error(self, text: str, details: str = "", source: str = DEFAULT_SOURCE) -> None:
        self.show_message("error", text, details, source)

    def show_warning(self, text: str, source: str = DEFAULT_SOURCE) -> None:
        self.show_message("warning", text, source=source)

    def show_info(self, text: str, source: str = DEFAULT_SOURCE) -> None:
        self.show_message("info", text, source=source)

    def clear(self, source: str | None = None) -> None:
        """Remove the message of ``source`` (its cause is gone), or every message."""
        for key in list(self._rows) if source is None else [source]:
            self._remove(key)
        if not self._rows:
            self.hide()

    def _remove(self, source: str) -> None:
        row = self._rows.pop(source, None)
        if row is not None:
            self._discard(row)

    def _discard(self, row: _Row) -> None:
        self._layout.removeWidget(row)
        row.hide()
        row.deleteLater()

    @Slot()
    def _on_row_close_clicked(self) -> None:
        """The user dismissed one message; the others stay."""
        for source, row in self._rows.items():
            if row.close_button is self.sender():
                self.clear(source)
                return
