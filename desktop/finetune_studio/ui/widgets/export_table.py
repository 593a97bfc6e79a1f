"""UI layer: the Export box's format choices, and the table of what each export measured.

After an export, every format's agreement with the PyTorch model, accuracy, file size
and latency at batch 1 (``engine.export.checker``) are read back from the model
folder's ``model.json`` and shown in the Results step, the model's own row first.
The format names are spelled out here, not imported, so that building the window
does not load torch (``main_window.load_engine`` does that in a worker); a test
keeps them equal to the engine's.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableView,
    QWidget,
)

from ..models.table_models import RowsModel

# (engine format name, what the window calls it): engine.export.formats.FORMATS' titles.
EXPORT_CHOICES = (
    ("pt2", "pt2 (torch.export)"),
    ("onnx", "ONNX"),
    ("onnx-int8", "ONNX int8"),
    ("torchscript", "TorchScript (deprecated)"),
)
# Offered where their package is installed (engine.export.formats.OPTIONAL_FORMATS).
OPTIONAL_CHOICES = (("executorch", "ExecuTorch (XNNPACK)"),)
TITLES = {"pytorch": "PyTorch (the model)", **dict(EXPORT_CHOICES + OPTIONAL_CHOICES)}
COLUMNS = ("Format", "Agreement", "Accuracy", "Size", "Latency (batch 1)")
ROW_HEIGHT_SLACK = 0


def format_checkboxes() -> dict[str, QCheckBox]:
    """One unticked box per format this installation can write, by engine name, in the
    order the engine lists them."""
    installed = [(name, title) for name, title in OPTIONAL_CHOICES if find_spec(name)]
    boxes = {name: QCheckBox(title) for name, title in (*EXPORT_CHOICES, *installed)}
    boxes["torchscript"].setToolTip(
        "TorchScript is deprecated in PyTorch (torch.jit warns since 2.10); "
        "pt2 (torch.export) is its successor."
    )
    boxes["onnx-int8"].setToolTip(
        "ONNX quantised to 8 bits, calibrated on a sample of the training pictures; "
        "it needs the dataset to still be where it was."
    )
    if "executorch" in boxes:
        boxes["executorch"].setToolTip(
            "An ExecuTorch program (.pte) for phones and small devices, one picture at a time."
        )
    return boxes


class FiguresModel(RowsModel):
    """The table's rows: figures as text (``ExportFigures.cells``), right-aligned."""

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> object:
        if role == Qt.ItemDataRole.TextAlignmentRole and index.isValid() and index.column():
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return super().data(index, role)


class ExportTable(QWidget):
    """The figures of a model folder's exports; hidden until there are some."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = FiguresModel(COLUMNS, self)
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().hide()
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # As wide as its columns, the caption beside it: the step has little height.
        self.view.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        layout.addWidget(self.caption, stretch=1)
        self.clear()

    def clear(self) -> None:
        """No figures (a new model has none yet); engine-free, so it runs before torch."""
        self.model.set_rows([])
        self.setVisible(False)

    def show_folder(self, folder: str | Path) -> None:
        """The figures ``model.json`` records; a folder that cannot be read shows none."""
        try:
            meta = json.loads((Path(folder) / "model.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        self.show_figures(meta if isinstance(meta, dict) else {})

    def show_figures(self, metadata: dict[str, object]) -> None:
        from ...engine.export import recorded_exports

        rows = recorded_exports(metadata)
        if not rows:
            self.clear()
            return
        self.model.set_rows(
            [(TITLES.get(row.format, row.format), *row.cells()[1:]) for row in rows],
            tooltips=[f"{row.file}: {row.size_bytes:,} bytes" for row in rows],
        )
        last = rows[-1]
        self.caption.setText(
            f"Each export was loaded back by its own runtime and compared with the PyTorch "
            f"model on {last.pictures} {last.pictures_from} pictures: agreement is how "
            "often it gave the model's answer, accuracy how often the right one. Latency "
            "is the median time for one picture on this computer."
        )
        self.setVisible(True)
        self._fit_height()

    def _fit_height(self) -> None:
        """Tall enough for every row, no taller: the table shares the step's height."""
        view = self.view
        height = view.horizontalHeader().height() + ROW_HEIGHT_SLACK
        height += sum(view.rowHeight(row) for row in range(self.model.rowCount()))
        view.setFixedHeight(height + 2 * view.frameWidth())
