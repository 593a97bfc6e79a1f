"""UI layer: the backbone registry grouped by family, for a searchable picker.

timm's models (``timm/<model>.<tag>``, family ``timm: <module>``), when the engine
lists them, go under one "timm" row, by module, after the built-in families: about
1,600 rows that the search box narrows down. The rows are plain data made in the
GUI thread from ``BackboneInfo``s the engine produced in its loading thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel

if TYPE_CHECKING:
    from ...engine.backbones import BackboneInfo

NAME_ROLE = Qt.ItemDataRole.UserRole + 1
TIMM_FAMILY_PREFIX = "timm: "
TIMM_GROUP = "timm (Hugging Face Hub)"
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
TIMM_TOOLTIPS = {
    "cached": "Weights are on this computer (the Hugging Face cache or torch's).",
    "download": "Weights are downloaded from the Hugging Face Hub on first use.",
}
NUM_COLUMNS = 4


def _is_timm(info: BackboneInfo) -> bool:
    return info.family.startswith(TIMM_FAMILY_PREFIX)


def _row(info: BackboneInfo) -> list[QStandardItem]:
    top1 = f"{info.imagenet_top1:.1f}%" if info.imagenet_top1 is not None else "–"
    params = f"{info.num_params / 1e6:.1f}M" if info.num_params is not None else "–"
    weights = WEIGHTS_LABELS.get(info.weights, info.weights)
    if info.weights == "download" and info.weights_size_mb:
        weights += f" ({info.weights_size_mb:.0f} MB)"
    cells = [info.name, params, top1, weights]
    items = [QStandardItem(text) for text in cells]
    for item in items:
        item.setEditable(False)
        item.setData(info.name, NAME_ROLE)
    items[0].setToolTip(f"{info.name}: {info.family}, input {info.input_size} px")
    tooltips = TIMM_TOOLTIPS if _is_timm(info) else WEIGHTS_TOOLTIPS
    items[3].setToolTip(tooltips.get(info.weights, ""))
    return items


def _group_row(title: str) -> list[QStandardItem]:
    """A family's row: a title that is not a backbone, so not selectable."""
    items = [QStandardItem(title), *(QStandardItem("") for _ in range(NUM_COLUMNS - 1))]
    for item in items:
        item.setEditable(False)
        item.setSelectable(False)
    return items


def _sort_key(info: BackboneInfo) -> tuple[bool, bool, str, int, str]:
    return (not info.default, _is_timm(info), info.family, info.num_params or 0, info.name)


def build_backbone_model(
    infos: Sequence[BackboneInfo], parent: QObject | None = None
) -> QStandardItemModel:
    """Families as top-level rows (default first), backbones below them; timm's
    families inside one last top-level row."""
    model = QStandardItemModel(parent)
    model.setHorizontalHeaderLabels(["Backbone", "Params", "Top-1", "Weights"])
    root = model.invisibleRootItem()
    families: dict[str, QStandardItem] = {}
    timm_group: QStandardItem | None = None
    for info in sorted(infos, key=_sort_key):
        family = families.get(info.family)
        if family is None:
            container = root
            title = info.family
            if _is_timm(info):
                if timm_group is None:
                    timm_row = _group_row(TIMM_GROUP)
                    root.appendRow(timm_row)
                    timm_group = timm_row[0]
                container = timm_group
                title = info.family.removeprefix(TIMM_FAMILY_PREFIX)
            row = _group_row(title)
            container.appendRow(row)
            family = families[info.family] = row[0]
        family.appendRow(_row(info))
    return model


class BackboneFilter(QSortFilterProxyModel):
    """Case-insensitive search on names and families, keeping matching families open."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(0)
