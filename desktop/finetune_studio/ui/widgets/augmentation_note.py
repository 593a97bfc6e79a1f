"""UI layer: the note beside the Augmentation setting when pictures will not be augmented.

When only the head trains, a run computes each picture's features once and trains
the head on them (``engine/cache_decision.py``), so the chosen augmentation never
reaches a picture unless augmented copies are cached too. The note says so in plain
words and offers the two ways to get augmentation, one click each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from .layer_editor import LayerEditor

SUGGESTED_COPIES = 4

TEXT = "Only the head trains, on features computed once, so pictures are not augmented."


class AugmentationNote(QFrame):
    copies_requested = Signal(int)  # augmented copies to use
    more_than_head_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("augmentationNote")
        self.setStyleSheet(
            "#augmentationNote { background: #e7f1fd; color: #123c69; "
            "border: 1px solid #a9c9f5; border-radius: 6px; }"
        )
        self.label = QLabel(TEXT)
        self.label.setWordWrap(True)
        self.copies_button = QPushButton(f"Use {SUGGESTED_COPIES} augmented copies")
        self.copies_button.setToolTip(
            f"Also compute features of {SUGGESTED_COPIES} augmented versions of each "
            f"picture: each copy adds one pass over the training pictures before the "
            "first epoch."
        )
        self.more_button = QPushButton("Train the last block too")
        self.more_button.setToolTip(
            "Train the network's last block as well as the head (step 2): every epoch "
            "then sees freshly augmented pictures, at the cost of slower epochs."
        )
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.copies_button)
        buttons.addWidget(self.more_button)
        buttons.addStretch()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(self.label)
        layout.addLayout(buttons)
        self.copies_button.clicked.connect(self._on_copies_button_clicked)
        self.more_button.clicked.connect(self.more_than_head_requested)
        self.hide()

    @Slot()
    def _on_copies_button_clicked(self) -> None:
        self.copies_requested.emit(SUGGESTED_COPIES)

    @property
    def text(self) -> str:
        """The note's words as shown, "" while it is hidden."""
        parent = self.parentWidget()
        shown = self.isVisibleTo(parent) if parent is not None else not self.isHidden()
        return self.label.text() if shown else ""


def trains_cached_head(layers: LayerEditor, feature_cache: bool = True) -> bool | None:
    """Whether a run with the Model step's choices would train only the head on cached
    features, decided by the engine as the trainer decides it; None while no preview
    network is shown (the engine is then not loaded, or a network is being built)."""
    built = layers.built
    if built is None:
        return None
    from ...engine.cache_decision import preview_trains_cached_head

    return preview_trains_cached_head(
        built.model,
        built.head_path,
        feature_cache=feature_cache,
        gradual=layers.gradual.isChecked(),
    )
