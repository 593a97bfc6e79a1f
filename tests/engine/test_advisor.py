"""The advisor ("How much should I train?"): the cut that makes trials cheap, and its advice."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from finetune_studio.engine.advice import Advice, Advisor, PlanEstimate, recommend
from finetune_studio.engine.advice.sampling import interleaved
from finetune_studio.engine.backbones import build_model, register_backbone, unregister_backbone
from finetune_studio.engine.freezing import FreezePlan, apply_freeze_plan
from finetune_studio.engine.inspection import Sample
from finetune_studio.engine.prefix import BlockGraph, CutError
from finetune_studio.engine.recipe import Recipe
from support.runs import drain
from support.tiny import TINY, make_colour_dataset, pretrained_tiny_state, tiny_spec

DEAD_END = "tiny_dead_end"


@pytest.mark.parametrize(
    "backbone",
    [TINY, "resnet18", "mobilenet_v3_small", pytest.param("vit_b_16", marks=pytest.mark.slow)],
)
def test_a_cut_network_computes_what_the_whole_network_does(backbone: str) -> None:
    built = build_model(backbone, 4, "default" if backbone == TINY else "none")
    model = built.model.eval()
    size = 32 if backbone == TINY else 224
    pictures = torch.randn(2, 3, size, size)
    graph = BlockGraph(model, built.head_path)
    with torch.no_grad():
        expected = model(pictures)
        for blocks in (1, 2, len(graph.units)):
            apply_freeze_plan(model, built.head_path, FreezePlan(f"last:{blocks}"))
            cut = graph.cut_before_last(blocks)
            torch.testing.assert_close(cut.rest(*cut.frozen(pictures)), expected)


def test_training_the_rest_of_a_cut_trains_the_model_itself() -> None:
    built = build_model(TINY, 3)
    apply_freeze_plan(built.model, built.head_path, FreezePlan("last:1"))
    cut = BlockGraph(built.model, built.head_path).cut_before_last(1)
    before = built.model.fc.weight.detach().clone()
    activations = cut.frozen(torch.randn(4, 3, 32, 32))
    cut.rest(*activations).sum().backward()
    torch.optim.SGD([p for p in cut.rest.parameters() if p.requires_grad], lr=1.0).step()
    assert not torch.equal(built.model.fc.weight, before)


def test_a_cut_refuses_a_trainable_layer_before_it() -> None:
    built = build_model(TINY, 3)
    plan = FreezePlan("last:1").with_override("features.0", True)
    apply_freeze_plan(built.model, built.head_path, plan)
    with pytest.raises(CutError, match="trainable"):
        BlockGraph(built.model, built.head_path).cut_before_last(1)


def test_every_prefix_of_the_measuring_order_is_a_fair_sample() -> None:
    train = [Sample(f"t{c}{i}", c) for c in range(3) for i in range(40 if c == 0 else 20)]
    val = [Sample(f"v{c}{i}", c) for c in range(3) for i in range(10 if c == 0 else 5)]
    order = interleaved(train, val, seed=0)
    assert sorted(s.path for s, _ in order) == sorted(s.path for s in train + val)
    for length in (12, 30, 60):
        prefix = order[:length]
        classes = Counter(s.label for s, _ in prefix)
        assert max(classes.values()) - min(classes.values()) <= 2
        validation = sum(is_val for _, is_val in prefix)
        assert abs(validation / length - 0.2) <= 0.1


def test_the_quickest_plan_within_a_point_of_the_best_is_recommended() -> None:
    plans = (
        PlanEstimate("head", 0.90, 10),
        PlanEstimate("last:1", 0.945, 100),
        PlanEstimate("last:2", 0.95, 200),
        PlanEstimate("none", None, 900),
    )
    assert recommend(plans, validation_pictures=2000) == "last:1"
    assert recommend((PlanEstimate("head", 0.99, 10), *plans[1:]), 2000) == "head"
    # On 18 validation pictures one picture is 5.6 points: 0.90 is as good as 0.95.
    assert recommend(plans, validation_pictures=18) == "head"


def _recipe(data: Path, backbone: str = TINY) -> Recipe:
    return Recipe(
        dataset=str(data), backbone=backbone, batch_size=16, workers=0, device="cpu",
        epochs=8, lr=0.01,
    )  # fmt: skip


def _advise(recipe: Recipe, budget_s: float = 60.0) -> Advice:
    advice = drain(Advisor(recipe, budget_s=budget_s).events())[1]
    assert advice is not None
    return advice


def test_on_easy_pictures_the_head_alone_is_recommended(tmp_path: Path) -> None:
    data = make_colour_dataset(tmp_path / "colours", per_class=30)
    advice = _advise(_recipe(data))
    assert [p.freeze for p in advice.plans] == ["head", "last:1", "last:2", "none"]
    head = advice.plan("head")
    assert head is not None and head.estimated_accuracy == pytest.approx(1.0)
    assert advice.recommended_freeze == "head"
    assert (advice.sample_train, advice.sample_val) == (72, 18)  # the whole dataset
    assert all(p.estimated_seconds > 0 for p in advice.plans)


def _dead_end_state() -> dict[str, torch.Tensor]:
    """The tiny network whose last block outputs a constant: its features are useless
    to a head, but the block can learn to be useful again."""
    state = pretrained_tiny_state()
    state["features.5.1.weight"] = torch.zeros_like(state["features.5.1.weight"])
    state["features.5.1.bias"] = torch.full_like(state["features.5.1.bias"], 0.1)  # ReLU passes
    return state


@pytest.fixture
def dead_end_backbone():
    register_backbone(dataclasses.replace(tiny_spec(DEAD_END), bundled_weights=_dead_end_state))
    yield DEAD_END
    unregister_backbone(DEAD_END)


def test_when_the_features_fall_short_unfreezing_is_recommended(
    tmp_path: Path, dead_end_backbone: str
) -> None:
    data = make_colour_dataset(tmp_path / "colours", per_class=30)
    advice = _advise(_recipe(data, dead_end_backbone))
    head, last1 = advice.plan("head"), advice.plan("last:1")
    assert head is not None and last1 is not None
    assert head.estimated_accuracy is not None and head.estimated_accuracy < 0.5
    assert last1.estimated_accuracy is not None and last1.estimated_accuracy > 0.9
    assert advice.recommended_freeze in ("last:1", "last:2")


def test_plans_longer_than_the_budget_say_how_far_they_got_and_are_timed_in_full(
    tmp_path: Path,
) -> None:
    data = make_colour_dataset(tmp_path / "colours", per_class=30)
    short = _advise(_recipe(data).replace(epochs=10), budget_s=20.0)
    long = _advise(_recipe(data).replace(epochs=10_000), budget_s=5.0)
    for plan in long.plans[1:]:
        assert plan.estimated_accuracy is None or "(of 10000)" in plan.note, plan
        assert plan.note.startswith("not measured") or "(of 10000)" in plan.note, plan
    short_none, long_none = short.plan("none"), long.plan("none")
    assert short_none is not None and long_none is not None
    # 1,000 times the epochs; timed for only the epochs it ran, the long plan would
    # come out below the short one. The two are measured apart on a shared machine,
    # where their time per epoch has differed up to 30-fold (a full suite beside
    # other work), hence the wide margin.
    assert long_none.estimated_seconds > 20 * short_none.estimated_seconds


def test_training_batchnorm_everywhere_still_gives_advice(tmp_path: Path) -> None:
    data = make_colour_dataset(tmp_path / "colours", per_class=10)
    advice = _advise(_recipe(data).replace(train_batchnorm=True), budget_s=20.0)
    last1 = advice.plan("last:1")
    assert last1 is not None and last1.estimated_accuracy is None
    assert "Train BatchNorm" in last1.note
    assert advice.recommended_freeze in ("head", "none")


def test_advice_json_has_the_documented_keys(tmp_path: Path) -> None:
    data = make_colour_dataset(tmp_path / "colours", per_class=10)
    document = json.loads(json.dumps(_advise(_recipe(data), 20.0).to_dict()))
    assert {"recommended_freeze", "plans"} <= set(document)
    for plan in document["plans"]:
        assert {"freeze", "estimated_accuracy", "estimated_seconds"} <= set(plan)
    assert document["recommended_freeze"] in [p["freeze"] for p in document["plans"]]


def test_cancelling_returns_no_advice(tmp_path: Path) -> None:
    data = make_colour_dataset(tmp_path / "colours", per_class=10)
    advisor = Advisor(_recipe(data), budget_s=20.0)
    events = advisor.events()
    next(events)
    advisor.cancel()
    assert drain(events)[1] is None
