"""Engine layer: whether a run trains the head on cached features, and on how many views.

A head-only run computes each picture's features once and trains the head on them,
so its pictures are not augmented unless augmented copies (``cached_views``) are
cached too. The trainer's data preparation decides this; the window asks the same
questions about its preview network to say so beside the Augmentation setting.
"""

from __future__ import annotations

from torch import nn

from .features import cache_blocker, find_feature_split
from .freezing import hold_frozen_modules
from .recipe import Recipe


def feature_cache_blocker(
    model: nn.Module, head_path: str, *, feature_cache: bool = True, gradual: bool = False
) -> str | None:
    """Why the run would run the whole network every epoch, in words; None when it
    trains the head alone on cached features.

    Call with the model in its training state (``model.train()``, then
    ``hold_frozen_modules``), as the trainer prepares its data.
    """
    if not feature_cache:
        return "the feature cache is turned off"
    if gradual:
        return "gradual unfreezing trains more than the head"
    return cache_blocker(model, find_feature_split(model, head_path))


def recipe_cache_blocker(recipe: Recipe, model: nn.Module, head_path: str) -> str | None:
    """``feature_cache_blocker`` with the recipe's own switches."""
    return feature_cache_blocker(
        model,
        head_path,
        feature_cache=recipe.feature_cache,
        gradual=recipe.gradual_unfreeze is not None,
    )


def cached_view_count(augmentation: str, cached_views: int) -> int:
    """Views of each picture a cached run computes. Without augmentation every extra
    view would be the same picture again, so there is one."""
    return 1 if augmentation == "none" else max(1, cached_views)


def preview_trains_cached_head(
    model: nn.Module, head_path: str, *, feature_cache: bool = True, gradual: bool = False
) -> bool:
    """Whether a run with the freeze plan applied to this preview network would train
    the head on cached features. Sets the preview's train/eval modes as a run sets
    them (stochastic depth in a frozen block is then off, as it is in the run)."""
    model.train()
    hold_frozen_modules(model)
    blocker = feature_cache_blocker(model, head_path, feature_cache=feature_cache, gradual=gradual)
    return blocker is None
