"""The Export box's formats, and the table of what each export measured."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import start_training

from finetune_studio.engine.export import FORMATS, available_formats
from finetune_studio.ui.widgets.export_table import (
    EXPORT_CHOICES,
    OPTIONAL_CHOICES,
    ExportTable,
    format_checkboxes,
)


def rows(table: ExportTable) -> list[list[str]]:
    model = table.model
    return [
        [model.index(r, c).data() for c in range(model.columnCount())]
        for r in range(model.rowCount())
    ]


def test_the_window_offers_every_engine_format_by_its_title(qtbot) -> None:
    titles = tuple((name, spec.title) for name, spec in FORMATS.items())
    assert titles == EXPORT_CHOICES + OPTIONAL_CHOICES
    assert dict(EXPORT_CHOICES)["torchscript"] == "TorchScript (deprecated)"
    assert tuple(format_checkboxes()) == available_formats()


def test_the_table_shows_model_json_figures_the_model_first(qtbot, tmp_path: Path) -> None:
    figures = {"file": "model.onnx", "agreement": 1.0, "accuracy": 0.875, "pictures": 40}
    exports = {
        "onnx": {**figures, "size_bytes": 13_400_000, "latency_ms_b1": 4.25},
        "pytorch": {
            **figures,
            "file": "model.safetensors",
            "size_bytes": 13_300_000,
            "latency_ms_b1": 9.5,
        },
    }
    (tmp_path / "model.json").write_text(json.dumps({"exports": exports}))
    table = ExportTable()
    qtbot.addWidget(table)
    assert table.isHidden()

    table.show_folder(tmp_path)

    assert not table.isHidden()
    assert rows(table) == [
        ["PyTorch (the model)", "100.0%", "87.5%", "13.30 MB", "9.50 ms"],
        ["ONNX", "100.0%", "87.5%", "13.40 MB", "4.25 ms"],
    ]
    assert "40 validation pictures" in table.caption.text()
    table.show_folder(tmp_path / "gone")
    assert table.isHidden() and table.model.rowCount() == 0


def test_an_export_from_the_window_shows_its_figures(qtbot, window, colour_dataset, tmp_path):
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        start_training(qtbot, window, colour_dataset, epochs=1)
    panel = window.results_panel
    assert panel.export_table.isHidden()
    panel.format_boxes["pt2"].setChecked(True)

    with qtbot.waitSignal(panel.exported, timeout=60_000):
        panel.export_to(tmp_path / "exported")

    assert (tmp_path / "exported" / "model.pt2").is_file()
    assert [row[:2] for row in rows(panel.export_table)] == [
        ["PyTorch (the model)", "100.0%"],
        ["pt2 (torch.export)", "100.0%"],
    ]
    assert not panel.export_table.isHidden()
