"""Learning-rate multipliers: the nearest setting wins (issue 15, item 8).

A parameter trains at the multiplier of the nearest node on its path that has one,
whatever order the settings were made in, so a layer's own multiplier survives one
set later on the block around it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from finetune_studio.engine.backbones import build_model
from finetune_studio.engine.freezing import FreezePlan, apply_freeze_plan
from finetune_studio.engine.optim import make_optimizer
from finetune_studio.engine.parameters import multiplier_for, multiplier_origin, with_multiplier
from finetune_studio.engine.recipe import Recipe
from support.tiny import TINY

LR = 0.01


def trained_model() -> nn.Module:
    built = build_model(TINY, 3)
    apply_freeze_plan(built.model, built.head_path, FreezePlan("none"))
    return built.model


def learning_rates(model: nn.Module, multipliers: dict[str, float]) -> dict[str, float]:
    """Each trained parameter's learning rate in the optimizer the engine builds."""
    optimizer = make_optimizer(model, "adamw", LR, 0.0, multipliers)
    return {name: group["lr"] for group in optimizer.param_groups for name in group["names"]}


def test_a_parent_set_after_its_child_keeps_the_childs_learning_rate() -> None:
    multipliers = with_multiplier({}, "features.5.0", 0.5)  # the child first
    multipliers = with_multiplier(multipliers, "features", 0.1)  # then its block

    lrs = learning_rates(trained_model(), multipliers)

    assert lrs["features.5.0.weight"] == pytest.approx(LR * 0.5)
    assert lrs["features.5.1.weight"] == pytest.approx(LR * 0.1)  # a sibling: the block's
    assert lrs["features.0.0.weight"] == pytest.approx(LR * 0.1)
    assert lrs["fc.weight"] == pytest.approx(LR)  # outside the block: untouched


def test_the_order_of_the_settings_does_not_matter() -> None:
    child_first = with_multiplier(with_multiplier({}, "features.5", 2.0), "features", 0.1)
    parent_first = with_multiplier(with_multiplier({}, "features", 0.1), "features.5", 2.0)

    model = trained_model()
    assert learning_rates(model, child_first) == learning_rates(model, parent_first)


def test_a_childs_own_1_is_an_override_not_a_default() -> None:
    multipliers = with_multiplier({"features": 0.1}, "features.4", 1.0)

    lrs = learning_rates(trained_model(), multipliers)

    assert lrs["features.4.0.weight"] == pytest.approx(LR)
    assert lrs["features.2.0.weight"] == pytest.approx(LR * 0.1)


def test_removing_a_childs_setting_makes_it_inherit_its_parents_again() -> None:
    multipliers = {"features": 0.1, "features.5.0": 0.5}

    cleared = with_multiplier(multipliers, "features.5.0", None)

    assert cleared == {"features": 0.1}
    assert learning_rates(trained_model(), cleared)["features.5.0.weight"] == pytest.approx(
        LR * 0.1
    )


def test_the_origin_names_the_nearest_node_with_a_setting() -> None:
    multipliers = {"": 2.0, "features": 0.1, "features.5.0": 0.5, "features.5.0.weight": 3.0}

    assert multiplier_origin("features.5.0.weight", multipliers) == "features.5.0.weight"
    assert multiplier_origin("features.5.0", multipliers) == "features.5.0"
    assert multiplier_origin("features.5.1.bias", multipliers) == "features"
    assert multiplier_origin("fc.weight", multipliers) == ""  # the whole model's
    assert multiplier_origin("fc.weight", {"features": 0.1}) is None
    assert multiplier_for("fc.weight", {"features": 0.1}) == 1.0


def test_a_path_prefix_that_is_not_an_ancestor_does_not_apply() -> None:
    """``features.1`` is not an ancestor of ``features.10``: paths match by name."""
    assert multiplier_origin("features.10.weight", {"features.1": 0.5}) is None


def test_a_zero_child_in_a_training_block_stays_fixed_while_its_siblings_train() -> None:
    multipliers = {"features": 0.1, "features.5": 0.0}

    lrs = learning_rates(trained_model(), multipliers)

    assert not any(name.startswith("features.5.") for name in lrs)
    assert lrs["features.4.0.weight"] == pytest.approx(LR * 0.1)


def test_a_saved_recipes_multipliers_keep_their_meaning(tmp_path: Path) -> None:
    """Recipes store ``lr_multipliers`` as path -> multiplier: the key names and the
    nearest-wins reading are the contract an older project relies on."""
    path = tmp_path / "project.json"
    Recipe(dataset=str(tmp_path), backbone=TINY).save(path)
    data = json.loads(path.read_text())
    data["lr_multipliers"] = {"features": 0.1, "features.5.0": 0.5}
    path.write_text(json.dumps(data))

    recipe = Recipe.load(path)
    lrs = learning_rates(trained_model(), recipe.lr_multipliers)

    assert recipe.lr_multipliers == {"features": 0.1, "features.5.0": 0.5}
    assert lrs["features.5.0.weight"] == pytest.approx(LR * 0.5)
    assert lrs["features.2.0.weight"] == pytest.approx(LR * 0.1)


def test_the_plans_own_settings_are_the_overridden_rows() -> None:
    plan = FreezePlan("head").with_override("features.5", True).with_override("features.5.1", False)
    assert plan.overridden_paths() == {"features.5", "features.5.1"}
    # A later setting on the block replaces the ones inside it, as a click on a parent
    # check box sets every layer below it.
    assert plan.with_override("features", True).overridden_paths() == {"features"}
