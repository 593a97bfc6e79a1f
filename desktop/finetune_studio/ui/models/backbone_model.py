"""UI layer: the backbone registry grouped by family, for a searchable picker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel

if TYPE_CHECKING:
    from ...engine.backbones import BackboneInfo

NAME_ROLE = Qt.ItemDataRole.UserRole + 1
WEIGHTS_LABELS = {
    "bundled": "bundled",
    "cached": "cached",
    "download": "download",
    "none": "none",
}
WEIGHTS_TOOLTIPS = {
    "bundled": "Weights ship with Finetune Studio: works offline.",
    "cached": "Weights were downloaded before and are in torch's cache.",
    "download": "Weights are downloaded on first use.",
    "none": "No pretrained weights: trains from scratch.",
}


def _row(info: BackboneInfo) -> list[QStandardItem]:
    top1 = f"{info.imagenet_top1:.1f}%" if info.imagenet_top1 is not None else "–"
    weights = WEIGHTS_LABELS.get(info.weights, info.weights)
    if info.weights == "download" and info.weights_size_mb:
        weights += f" ({info.weights_size_mb:.0f} MB)"
    cells = [info.name, f"{info.num_params / 1e6:.1f}M", top1, weights]
    items = [QStandardItem(text) for text in cells]
    for item in items:
        item.setEditable(False)
        item.setData(info.name, NAME_ROLE)
    items[0].setToolTip(f"{info.name}: {info.family}, input {info.input_size} px")
    items[3].setToolTip(WEIGHTS_TOOLTIPS.get(info.weights, ""))
    return items


def build_backbone_model(
    infos: Sequence[BackboneInfo], parent: QObject | None = None
) -> QStandardItemModel:
    """Families as top-level rows (default first), backbones below them."""
    model = QStandardItemModel(parent)
    model.setHorizontalHeaderLabels(["Backbone", "Params", "Top-1", "Weights"])
    families: dict[str, QStandardItem] = {}
    for info in sorted(infos, key=lambda i: (not i.default, i.family, i.num_params)):
        family = families.get(info.family)
        if family is None:
            family = QStandardItem(info.family)
            family.setEditable(False)
            family.setSelectable(False)
            families[info.family] = family
            blanks = [QStandardItem("") for _ in range(3)]
            for blank in blanks:
                blank.setEditable(False)
                blank.setSelectable(False)
            model.appendRow([family, *blanks])
        family.appendRow(_row(info))
    return model


class BackboneFilter(QSortFilterProxyModel):
    """Case-insensitive search on names and families, keeping matching families open."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(0)
