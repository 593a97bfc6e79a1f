"""Issue 12, "Compare backbones": each backbone's linear-probe accuracy and spread,
latency and size measured on the user's pictures; the default set read from the
registry; features left in the cache for the chosen backbone's head-only run."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune_studio.engine.backbones import get_spec, register_backbone, unregister_backbone
from finetune_studio.engine.compare import (
    BackboneCompared,
    BackboneComparison,
    Comparison,
    fold_accuracies,
    offline_backbones,
    stratified_sample,
)
from finetune_studio.engine.errors import RecipeError, UserFacingError
from finetune_studio.engine.events import Log, StageProgress
from finetune_studio.engine.feature_store import FeatureStore
from finetune_studio.engine.inspection import Sample
from finetune_studio.engine.latency import TIMING_AGAIN
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.review.out_of_fold import assign_folds
from finetune_studio.engine.training import Trainer
from finetune_studio.engine.weights import cached_file_for
from support.runs import drain
from support.tiny import TINY, TinyNet, tiny_spec

BLIND = "tiny_blind"
UNREACHABLE = "tiny_unreachable"
PUBLIC_KEYS = {
    "backbone",
    "accuracy",
    "accuracy_std",
    "latency_ms_b1",
    "latency_ms_b32",
    "params",
    "size_mb",
}


class BlindNet(TinyNet):
    """The tiny network, shown a grey picture whatever it is given: features that
    tell no class from another."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.zeros_like(x))


def closed_port_url() -> str:
    """An address that refuses connections, as a download without a network fails."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/tiny-unreachable-0123abcd.pth"


@pytest.fixture
def extra_backbones() -> Iterator[None]:
    register_backbone(tiny_spec(BLIND, build=BlindNet))
    register_backbone(tiny_spec(UNREACHABLE, weights_url=closed_port_url()))
    yield
    unregister_backbone(BLIND)
    unregister_backbone(UNREACHABLE)


def recipe_for(dataset: Path) -> Recipe:
    return Recipe(dataset=str(dataset), backbone=TINY, workers=0, device="cpu", batch_size=8)


def compare(
    recipe: Recipe, names: list[str], per_class: int = 8, **options: object
) -> tuple[list[object], Comparison | None]:
    options.setdefault("feature_store", None)
    comparison = BackboneComparison(
        recipe,
        names,
        per_class,
        timing_budget_s=0.0,
        **options,  # type: ignore[arg-type]
    )
    return drain(comparison.events())


def test_a_backbone_that_sees_the_classes_scores_above_one_that_does_not(
    colour_dataset: Path, extra_backbones: None
) -> None:
    events, comparison = compare(recipe_for(colour_dataset), [TINY, BLIND])
    assert comparison is not None
    seeing, blind = comparison.scores
    assert (seeing.backbone, blind.backbone) == (TINY, BLIND)  # in the order asked
    assert seeing.accuracy >= 0.9
    assert blind.accuracy <= 0.5  # three classes: a third is chance
    assert comparison.best() == seeing
    for score in comparison.scores:
        assert 0.0 <= score.accuracy_std <= 0.5
        assert score.latency_ms_b1 > 0 and score.latency_ms_b32 > 0
        assert score.params == get_spec(score.backbone).num_params
        assert set(score.to_dict()) == PUBLIC_KEYS
    assert comparison.pictures == 3 * 8 and comparison.folds == 5
    shown = [e.score for e in events if isinstance(e, BackboneCompared)]
    # each as soon as it is measured; then both timed again in turns, keeping the fastest
    assert [s.accuracy for s in shown] == [s.accuracy for s in comparison.scores]
    for first, final in zip(shown, comparison.scores, strict=True):
        assert final.latency_ms_b1 <= first.latency_ms_b1
        assert final.latency_ms_b32 <= first.latency_ms_b32
    assert any(isinstance(e, StageProgress) and e.stage == TIMING_AGAIN for e in events)


def test_the_spread_is_the_standard_deviation_of_the_fold_accuracies() -> None:
    """Over the folds that did not choose the head's penalty (the first did)."""
    labels = torch.tensor([0, 1] * 10)
    fold_of = assign_folds(labels, 5, seed=0)
    probabilities = np.eye(2)[labels.numpy()]
    wrong = (fold_of != 0).nonzero().view(-1)[:2].numpy()  # in scored folds
    probabilities[wrong] = probabilities[wrong, ::-1]
    probabilities[(fold_of == 0).numpy()] = probabilities[(fold_of == 0).numpy(), ::-1]

    accuracies = fold_accuracies(probabilities, labels, folds=5, seed=0)

    assert len(accuracies) == 4  # fold 0, all wrong here, is not scored
    assert sum(accuracies) / 4 == pytest.approx((16 - 2) / 16)  # 4 pictures a fold
    assert min(accuracies) < 1.0 == max(accuracies)


def test_the_default_set_is_every_backbone_whose_weights_need_no_network(
    extra_backbones: None,
) -> None:
    resnet = cached_file_for(str(get_spec("resnet18").weights_url))
    resnet.parent.mkdir(parents=True, exist_ok=True)
    assert "resnet18" not in offline_backbones()
    resnet.write_bytes(b"")  # now in torch's (isolated) cache: no network needed
    names = offline_backbones()
    assert {"efficientnet_lite0", TINY, BLIND, "resnet18"} <= set(names)
    assert UNREACHABLE not in names and "resnet50" not in names


def test_the_sample_takes_each_class_up_to_the_cap() -> None:
    samples = [Sample(f"a{i}.png", 0) for i in range(30)] + [
        Sample(f"b{i}.png", 1) for i in range(4)
    ]
    chosen = stratified_sample(samples, per_class=10, seed=0)
    assert Counter(s.label for s in chosen) == {0: 10, 1: 4}
    assert chosen == stratified_sample(samples, per_class=10, seed=0)  # repeatable
    assert chosen != stratified_sample(samples, per_class=10, seed=1)


def test_the_chosen_backbones_head_only_run_finds_the_sampled_features_in_the_cache(
    tiny_recipe: Recipe, tmp_path: Path
) -> None:
    store = FeatureStore(tmp_path / "cache")
    _, comparison = compare(tiny_recipe, [TINY], per_class=5, feature_store=store)
    assert comparison is not None and comparison.pictures == 15

    events, _ = drain(Trainer(tiny_recipe, feature_store=store).events())
    logs = [e.message for e in events if isinstance(e, Log)]
    assert "Computing features: 15 of 36 from the cache." in logs


def test_a_backbone_whose_weights_cannot_be_had_is_skipped_and_the_others_count(
    colour_dataset: Path, extra_backbones: None
) -> None:
    events, comparison = compare(recipe_for(colour_dataset), [UNREACHABLE, TINY])
    assert comparison is not None
    assert [s.backbone for s in comparison.scores] == [TINY]
    assert [name for name, _ in comparison.skipped] == [UNREACHABLE]
    assert "Could not download" in comparison.skipped[0][1]
    assert any(isinstance(e, Log) and e.level == "warning" for e in events)


def test_a_cancelled_comparison_returns_nothing(colour_dataset: Path) -> None:
    comparison = BackboneComparison(recipe_for(colour_dataset), [TINY])
    events = comparison.events()
    next(events)
    comparison.cancel()
    assert drain(events)[1] is None


def test_bad_choices_are_refused_before_any_work_in_words(colour_dataset: Path) -> None:
    recipe = recipe_for(colour_dataset)
    with pytest.raises(RecipeError, match="at least 2"):
        BackboneComparison(recipe, [TINY], per_class=1)
    with pytest.raises(UserFacingError, match="Did you mean resnet18"):
        next(BackboneComparison(recipe, ["resnet_18"]).events())
    with pytest.raises(RecipeError, match="name at least one"):
        BackboneComparison(recipe, [])
