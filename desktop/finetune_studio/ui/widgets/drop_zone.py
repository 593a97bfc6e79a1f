"""UI layer: the Data step's big "drop a folder here" target, lit while a drag is over it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QDragMoveEvent, QPalette, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..resources import action_icon

IDLE_STYLE = "#dropZone { border: 2px dashed palette(mid); border-radius: 10px; }"
HINT = "for example birds/robin/*.jpg, birds/wren/*.jpg, ..."


class DropZone(QFrame):
    """The big "drop a folder here" target; the whole window accepts drops too.

    The window receives the drags (it accepts drops anywhere, see main_window.py);
    the zone watches them through an event filter on its window and lights up while
    one that carries files or folders is over it.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dropZone")
        self.setStyleSheet(IDLE_STYLE)
        self.setMinimumHeight(120)
        self.highlighted = False
        self._watched: QWidget | None = None
        self._dragged_folder = False  # the drag over the window holds a folder
        self._droppable = False  # ... or at least a local file
        layout = QVBoxLayout(self)
        title = QLabel("Drop a folder of class subfolders here")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint = hint = QLabel(HINT)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setEnabled(False)
        self.open_button = QPushButton("Open folder…")
        self.sample_button = QPushButton("Try a sample dataset")
        self.sample_button.setToolTip(
            "Draw 360 pictures of shapes and textures in 6 classes and load them"
        )
        self.recent = QComboBox()
        self.recent.setMinimumWidth(260)
        self.recent.setPlaceholderText("Recent folders")
        self.open_button.setIcon(action_icon("open-folder"))
        self.sample_button.setIcon(action_icon("sample"))
        buttons = QHBoxLayout()
        buttons.addStretch()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.sample_button)
        buttons.addWidget(self.recent)
        buttons.addStretch()
        layout.addStretch()
        layout.addWidget(title)
        layout.addWidget(hint)
        layout.addLayout(buttons)
        layout.addStretch()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        window = self.window()
        if window is not self._watched and window is not self:
            if self._watched is not None:
                self._watched.removeEventFilter(self)
            window.installEventFilter(self)
            self._watched = window

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Follow the window's drags; never consume them (the window handles drops)."""
        kind = event.type()
        if isinstance(event, QDragMoveEvent) and kind in (
            QEvent.Type.DragEnter,
            QEvent.Type.DragMove,
        ):
            if kind == QEvent.Type.DragEnter:
                paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
                self._dragged_folder = any(path.is_dir() for path in paths)
                self._droppable = bool(paths)
            point = self.mapFrom(self.window(), event.position().toPoint())
            over = self.rect().contains(point) and self.isEnabled() and self.isVisible()
            self.set_highlighted(over and self._droppable)
        elif kind in (QEvent.Type.DragLeave, QEvent.Type.Drop):
            self.set_highlighted(False)
        return False

    def set_highlighted(self, on: bool) -> None:
        """Light up as the place to let go, and say what letting go will do."""
        if on == self.highlighted:
            return
        self.highlighted = on
        self.hint.setEnabled(on)  # greyed as an example; in full colour as an answer
        if on:
            colour = self.palette().color(QPalette.ColorRole.Highlight)
            r, g, b = colour.red(), colour.green(), colour.blue()
            self.setStyleSheet(
                f"#dropZone {{ border: 2px solid rgb({r}, {g}, {b}); border-radius: 10px; "
                f"background: rgba({r}, {g}, {b}, 40); }}"
            )
            self.hint.setText(
                "Release to check this folder"
                if self._dragged_folder
                else "That is a file: drop the folder that holds the class subfolders"
            )
        else:
            self.setStyleSheet(IDLE_STYLE)
            self.hint.setText(HINT)
