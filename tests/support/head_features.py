"""The cached features a head-only run trains on, through the engine's own preparation
(for comparing the engine's head with probes fitted independently)."""

from __future__ import annotations

import threading

import torch

from finetune_studio.engine.backbones import build_model
from finetune_studio.engine.devices import autocast_dtype, resolve_device
from finetune_studio.engine.feature_store import FeatureStore
from finetune_studio.engine.freezing import apply_preset, hold_frozen_modules
from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training.data import DataPreparation
from support.runs import drain

Split = tuple[torch.Tensor, torch.Tensor]  # features, labels


def head_features(recipe: Recipe, store: FeatureStore | None = None) -> tuple[Split, Split, int]:
    """(training, validation, number of classes), in the run's own precision."""
    report = inspect_dataset(recipe.dataset, recipe.val_fraction, recipe.seed)
    built = build_model(recipe.backbone, len(report.classes), recipe.weights)
    apply_preset(built.model, built.head_path, "head")
    built.model.train()
    hold_frozen_modules(built.model)
    device = resolve_device(recipe.device)
    precision = autocast_dtype(device, recipe.mixed_precision)
    preparation = DataPreparation(
        recipe, device, False, precision, threading.Event(), store, 2**30, set()
    )
    _, data = drain(preparation.prepare(built.model, built.head_path, built.spec, report))
    assert data.train_features is not None and data.val_features is not None
    return data.train_features[0].gathered(), data.val_features.gathered(), len(report.classes)
