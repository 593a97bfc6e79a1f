"""Recipes: one JSON description of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_studio.engine.errors import RecipeError
from finetune_studio.engine.freezing import FreezePlan, GradualUnfreeze
from finetune_studio.engine.recipe import Recipe


def test_a_recipe_survives_a_round_trip_through_json(tmp_path: Path) -> None:
    recipe = Recipe(
        dataset="/data/birds",
        backbone="resnet50",
        freeze=FreezePlan("last:2").with_override("layer3.0", False),
        lr_multipliers={"layer4": 0.1},
        gradual_unfreeze=GradualUnfreeze(2, ("layer2",)),
        epochs=8,
        optimizer="sgd",
        schedule="onecycle",
        class_balanced=True,
    )
    recipe.save(tmp_path / "r.json")

    assert Recipe.load(tmp_path / "r.json") == recipe
    assert json.loads((tmp_path / "r.json").read_text())["freeze"]["preset"] == "last:2"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"lr": -1.0}, "learning rate must be positive"),
        ({"optimizer": "adam2"}, "optimizer must be one of"),
        ({"weight_decay": -0.1}, "weight decay must not be negative"),
        ({"gradual_unfreeze": GradualUnfreeze(5)}, "head epochs < epochs"),
    ],
)
def test_invalid_values_are_refused_with_a_reason(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"dataset": "d", "epochs": 3, **changes}  # the case stays intact
    with pytest.raises(RecipeError, match=message):
        Recipe(**fields)


def test_bad_recipe_files_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "unknown.json").write_text(json.dumps({"dataset": "d", "colour": "red"}))
    with pytest.raises(RecipeError, match="not valid JSON"):
        Recipe.load(tmp_path / "broken.json")
    with pytest.raises(RecipeError, match="Unknown recipe fields: colour"):
        Recipe.load(tmp_path / "unknown.json")
    with pytest.raises(RecipeError, match="Unknown freeze preset 'last:x'"):
        Recipe.from_dict({"dataset": "d", "freeze": "last:x"})
    with pytest.raises(RecipeError, match="does not exist"):
        Recipe.load(tmp_path / "missing.json")
