"""The Model step's backbone list: the offline Lite sizes, and timm's models under one row."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QModelIndex, Qt

from finetune_studio.engine.backbones import BackboneInfo, backbone_infos
from finetune_studio.ui.models.backbone_model import (
    NAME_ROLE,
    TIMM_GROUP,
    BackboneFilter,
    build_backbone_model,
)


def rows_under(model, parent: QModelIndex) -> dict[str, list[str]]:
    """Each child row's cells by name (column 0)."""
    return {
        model.index(row, 0, parent).data(): [
            model.index(row, column, parent).data() for column in range(model.columnCount())
        ]
        for row in range(model.rowCount(parent))
    }


def find(model, name: str) -> QModelIndex:
    matches = model.match(
        model.index(0, 0),
        NAME_ROLE,
        name,
        1,
        Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchRecursive,
    )
    return matches[0] if matches else QModelIndex()


def test_the_three_lite_sizes_are_listed_first_as_bundled(qapp) -> None:
    model = build_backbone_model(backbone_infos())

    family = model.index(0, 0)
    assert family.data() == "EfficientNet-Lite"
    lite = rows_under(model, family)
    assert [lite[f"efficientnet_lite{i}"][3] for i in range(3)] == ["bundled"] * 3
    assert lite["efficientnet_lite2"][1:3] == ["6.1M", "77.6%"]
    assert "works offline" in model.index(0, 3, family).data(Qt.ItemDataRole.ToolTipRole)


def test_timm_models_are_grouped_by_module_in_one_last_row_and_searchable(qapp) -> None:
    pytest.importorskip("timm")
    model = build_backbone_model(backbone_infos(include_timm=True))

    last = model.index(model.rowCount() - 1, 0)
    assert last.data() == TIMM_GROUP
    assert "resnet" in rows_under(model, last) and "vision_transformer" in rows_under(model, last)
    resnet18 = find(model, "timm/resnet18.a1_in1k")
    assert resnet18.parent().data() == "resnet" and resnet18.parent().parent() == last
    cells = rows_under(model, resnet18.parent())["timm/resnet18.a1_in1k"]
    assert cells[1:] == ["–", "–", "download"]  # not built to count; not on this computer

    search = BackboneFilter()
    search.setSourceModel(model)
    search.setFilterFixedString("resnet18.a1")
    assert find(search, "timm/resnet18.a1_in1k").isValid()
    assert not find(search, "timm/resnet50.a1_in1k").isValid()


def test_a_backbone_without_a_parameter_count_still_shows(qapp) -> None:
    info = BackboneInfo("timm/x.y", "timm: x", None, None, 224, "cached", None, False)
    model = build_backbone_model([info])
    index = find(model, "timm/x.y")
    assert rows_under(model, index.parent())["timm/x.y"] == ["timm/x.y", "–", "–", "cached"]


def test_a_timm_model_is_chosen_in_the_window_and_built_from_the_local_cache(
    qtbot, settings, tmp_path, monkeypatch
) -> None:
    pytest.importorskip("timm")
    from helpers import open_window

    from support.timm_hub import put_in_hub_cache, random_state

    name = "mobilenetv3_small_050.lamb_in1k"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://192.0.2.1:9")  # no download could succeed
    state = random_state(name, seed=4)
    put_in_hub_cache(tmp_path / "hub", name, state)
    window = open_window(qtbot, settings)
    panel = window.model_panel
    panel.set_backbones(backbone_infos(include_timm=True), preferred=panel.backbone)

    view = panel.backbone_view
    row = find(view.model(), f"timm/{name}")
    view.scrollTo(row)  # opens the timm row and the module's row above it
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(row).center())
    qtbot.waitUntil(lambda: panel.ready and panel.backbone == f"timm/{name}", timeout=60_000)

    built = panel.layers.built
    assert built.head_path == "classifier"
    assert torch.equal(built.model.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
    window.close()


def test_a_broken_timm_costs_its_own_models_not_the_window(monkeypatch, capsys) -> None:
    from finetune_studio.engine import timm_backbones
    from finetune_studio.ui.engine_start import backbones_to_list

    def broken() -> list[object]:
        raise RuntimeError("timm was built for another torch")

    monkeypatch.setattr(timm_backbones, "timm_backbone_infos", broken)
    names = [info.name for info in backbones_to_list()]
    assert "efficientnet_lite0" in names and not any(n.startswith("timm/") for n in names)
    assert "timm was built for another torch" in capsys.readouterr().err
