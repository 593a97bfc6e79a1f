"""The window's question "will this run train the head on cached features?" gets the
answer the trainer acts on (the Train step's augmentation note depends on it)."""

from __future__ import annotations

import pytest

from finetune_studio.engine.backbones import build_model
from finetune_studio.engine.cache_decision import (
    cached_view_count,
    preview_trains_cached_head,
    recipe_cache_blocker,
)
from finetune_studio.engine.events import Log
from finetune_studio.engine.freezing import FreezePlan, GradualUnfreeze, apply_freeze_plan
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer


def preview_says_cached(recipe: Recipe) -> bool:
    """What the window decides from its preview network (built as the model step does)."""
    built = build_model(recipe.backbone, 3, recipe.weights)
    apply_freeze_plan(built.model, built.head_path, recipe.freeze, recipe.train_batchnorm)
    return preview_trains_cached_head(
        built.model,
        built.head_path,
        feature_cache=recipe.feature_cache,
        gradual=recipe.gradual_unfreeze is not None,
    )


def run_says_cached(recipe: Recipe) -> bool:
    """What the trainer decides, read from its log; it is stopped right after."""
    events = Trainer(recipe).events()
    try:
        for event in events:
            if isinstance(event, Log) and "Training the head on cached" in event.message:
                return True
            if isinstance(event, Log) and "Running the whole network" in event.message:
                return False
    finally:
        events.close()
    raise AssertionError("the run never said how it trains")


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"freeze": FreezePlan("last:1")},
        {"freeze": FreezePlan("head", (("features.5", True),))},
        {"gradual_unfreeze": GradualUnfreeze(1, ())},
        {"feature_cache": False},
        {"train_batchnorm": True},
    ],
    ids=["head", "last block", "a ticked layer", "gradual", "cache off", "batchnorm"],
)
def test_the_preview_and_the_run_agree(tiny_recipe: Recipe, changes: dict[str, object]) -> None:
    recipe = tiny_recipe.replace(epochs=2, **changes)
    assert preview_says_cached(recipe) == run_says_cached(recipe)


def test_stochastic_depth_in_frozen_blocks_does_not_stop_the_cache() -> None:
    # torchvision's EfficientNet drops residual branches at random in train mode; a run
    # holds frozen blocks in eval mode, so the head alone still trains on cached features.
    built = build_model("efficientnet_b0", 3, weights="none")
    apply_freeze_plan(built.model, built.head_path, FreezePlan("head"))
    assert preview_trains_cached_head(built.model, built.head_path)


def test_the_recipe_switches_are_named() -> None:
    built = build_model("resnet18", 3, weights="none")
    apply_freeze_plan(built.model, built.head_path, FreezePlan("head"))
    built.model.train()
    recipe = Recipe(dataset="unused", backbone="resnet18")
    assert recipe_cache_blocker(recipe, built.model, built.head_path) is None
    off = recipe.replace(feature_cache=False)
    assert recipe_cache_blocker(off, built.model, built.head_path) == (
        "the feature cache is turned off"
    )


def test_views_need_augmentation() -> None:
    assert cached_view_count("none", 5) == 1
    assert cached_view_count("light", 5) == 5
    assert cached_view_count("light", 0) == 1
