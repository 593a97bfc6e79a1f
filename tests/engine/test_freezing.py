"""The parameter tree, freeze presets and overrides, BatchNorm policy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from finetune_studio.engine.backbones import build_model
from finetune_studio.engine.freezing import (
    FreezePlan,
    apply_freeze_plan,
    block_units,
    hold_frozen_modules,
)
from finetune_studio.engine.parameters import ParameterTree, TrainState
from support.tiny import TINY


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_head_preset_trains_only_the_new_head() -> None:
    built = build_model(TINY, 3)
    apply_freeze_plan(built.model, built.head_path, FreezePlan("head"))
    assert trainable_names(built.model) == {"fc.weight", "fc.bias"}
    assert str(ParameterTree(built.model).summary()).startswith("Trainable: 75 of ")


def test_last_n_preset_trains_the_last_blocks_and_the_head() -> None:
    built = build_model("resnet18", 3, weights="none")
    apply_freeze_plan(built.model, built.head_path, FreezePlan("last:2"))
    blocks = {name.split(".")[0] for name in trainable_names(built.model)}
    assert blocks == {"layer3", "layer4", "fc"}


def test_none_preset_trains_everything() -> None:
    built = build_model(TINY, 3)
    apply_freeze_plan(built.model, built.head_path, FreezePlan("none"))
    summary = ParameterTree(built.model).summary()
    assert summary.trainable == summary.total


def test_blocks_follow_each_family_structure() -> None:
    vit = build_model("vit_b_16", 2, weights="none")
    units = block_units(vit.model, vit.head_path)
    assert len(units) == 12 and units[-1] == ("encoder.layers.encoder_layer_11", "encoder.ln")
    lite = build_model("efficientnet_lite0", 2, weights="none")
    assert [u[0] for u in block_units(lite.model, lite.head_path)] == [
        f"features.{i}" for i in range(9)
    ]
    vgg = build_model("vgg11", 2, weights="none")
    assert block_units(vgg.model, vgg.head_path)[-2:] == [("classifier.0",), ("classifier.3",)]


def test_overrides_apply_in_order_and_replace_ones_below() -> None:
    built = build_model(TINY, 3)
    plan = (
        FreezePlan("head")
        .with_override("features.5", True)
        .with_override("features.5.0.weight", False)
    )
    plan = plan.with_override("features.4", True)
    apply_freeze_plan(built.model, built.head_path, plan)
    assert trainable_names(built.model) == {
        "fc.weight",
        "fc.bias",
        "features.4.0.weight",
        "features.4.1.weight",
        "features.4.1.bias",
        "features.5.1.weight",
        "features.5.1.bias",
    }
    assert FreezePlan.from_dict(plan.to_dict()) == plan
    # Setting a node supersedes the overrides recorded below it.
    assert FreezePlan("head").with_override("features.5.0", True).with_override(
        "features", False
    ).overrides == (("features", False),)


def test_node_state_is_derived_from_its_leaves() -> None:
    built = build_model(TINY, 3)
    tree = ParameterTree(built.model)
    tree.set_trainable("", False)
    tree.set_trainable("features.0.0.weight", True)

    assert tree["features.0.0.weight"].state() is TrainState.TRAINABLE
    assert tree["features.0.0"].state() is TrainState.TRAINABLE
    assert tree["features.0"].state() is TrainState.PARTIAL
    assert tree["features"].state() is TrainState.PARTIAL
    assert tree.root.state() is TrainState.PARTIAL
    assert tree["features.1"].state() is TrainState.EMPTY  # MaxPool2d
    assert tree["fc"].state() is TrainState.FROZEN
    assert tree["features.0.0"].direct_parameter_shapes() == {"weight": (8, 3, 3, 3)}
    assert tree["features"].trainable_count() == 8 * 3 * 3 * 3
    tree.set_trainable("features", True)
    assert tree["features"].state() is TrainState.TRAINABLE
    assert built.model.features[4][1].weight.requires_grad


def test_frozen_batchnorm_is_held_in_eval_mode() -> None:
    built = build_model(TINY, 3)
    plan = FreezePlan("head").with_override("features.5", True)
    apply_freeze_plan(built.model, built.head_path, plan)
    built.model.train()
    held = hold_frozen_modules(built.model)

    batchnorms = [m for m in built.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert held == 3  # features.0, .2 and .4
    assert [bn.training for bn in batchnorms] == [False, False, False, True]


def test_train_batchnorm_option_trains_every_batchnorm() -> None:
    built = build_model(TINY, 3)
    apply_freeze_plan(built.model, built.head_path, FreezePlan("head"), train_batchnorm=True)
    built.model.train()
    hold_frozen_modules(built.model)
    assert all(m.training for m in built.model.modules() if isinstance(m, nn.BatchNorm2d))
    assert "features.0.1.weight" in trainable_names(built.model)
    assert "features.0.0.weight" not in trainable_names(built.model)
    before = built.model.features[0][1].running_mean.clone()
    built.model(torch.randn(4, 3, 32, 32))
    assert not torch.equal(before, built.model.features[0][1].running_mean)


def test_stochastic_depth_in_frozen_blocks_stays_off() -> None:
    built = build_model("efficientnet_b0", 3, weights="none")
    apply_freeze_plan(built.model, built.head_path, FreezePlan("head"))
    built.model.train()
    hold_frozen_modules(built.model)

    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        first, second = built.model.features(images), built.model.features(images)
    assert torch.equal(first, second)  # no branch dropped at random
    assert built.model.classifier[0].training  # the head's own dropout still works


def test_timm_efficientnet_freezes_by_its_stages() -> None:
    """timm's EfficientNet has conv_stem, bn1, blocks, conv_head, bn2 at its root: the
    norm layers must not make the root look like three blocks, or "last 2" would train
    almost everything."""
    pytest.importorskip("timm")
    built = build_model("timm/test_efficientnet.r160_in1k", 3, weights="none")
    apply_freeze_plan(built.model, built.head_path, FreezePlan("last:2"))
    trained = trainable_names(built.model)
    heads = ("blocks.4.", "conv_head", "bn2", "classifier")
    assert trained and all(name.startswith(heads) for name in trained)
