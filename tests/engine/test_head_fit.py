"""A head trained alone on cached features reaches what its features allow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional

from finetune_studio.engine.events import BatchEnd, EpochEnd, FitEnd, Log, StageProgress
from finetune_studio.engine.head_fit import LinearHeadSolver, Problem, Standardiser
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer
from support.glyphs import make_letter_dataset
from support.head_features import head_features
from support.runs import drain
from support.tiny import TINY


@pytest.fixture(scope="module")
def letters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six classes of drawn letters: far from ImageNet, as the digits in the issue."""
    return make_letter_dataset(tmp_path_factory.mktemp("letters") / "data", per_class=20)


def reference_probe(result_features: Problem, val: tuple[torch.Tensor, torch.Tensor]) -> float:
    """An independent probe: Adam on standardised features for many steps, with the
    best validation accuracy over a range of penalties (an optimistic reference)."""
    standardise = Standardiser.of(result_features.features)
    x, val_x = standardise(result_features.features), standardise(val[0])
    best = 0.0
    for penalty in (0.0, 1e-3, 1e-2, 1e-1):
        linear = torch.nn.Linear(x.shape[1], result_features.num_classes)
        optimizer = torch.optim.Adam(linear.parameters(), lr=0.01)
        for _ in range(1500):
            optimizer.zero_grad()
            loss = functional.cross_entropy(linear(x), result_features.labels)
            (loss + 0.5 * penalty * linear.weight.square().sum()).backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = float((linear(val_x).argmax(1) == val[1]).float().mean())
        best = max(best, accuracy)
    return best


def features_of(recipe: Recipe) -> tuple[Problem, tuple[torch.Tensor, torch.Tensor]]:
    (x, y), val, classes = head_features(recipe)
    return Problem(x, y, classes), val


@pytest.mark.slow
def test_the_default_head_reaches_an_independently_tuned_probe(letters: Path) -> None:
    # The real bundled backbone: its features are what the head must make the most of.
    recipe = Recipe(dataset=str(letters), workers=0, label_smoothing=0, device="cpu")
    events, result = drain(Trainer(recipe).events())
    by_epochs = drain(Trainer(recipe.replace(head_fit="epochs")).events())[1]

    assert result.evaluation is not None and by_epochs.evaluation is not None
    probe = reference_probe(*features_of(recipe))
    assert result.evaluation.accuracy >= probe - 0.02
    assert result.evaluation.accuracy >= by_epochs.evaluation.accuracy + 0.1  # underfit
    # The curve shows the fit converging: one epoch per iteration, the loss falling.
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert len(epochs) >= 3 and epochs[-1].train_loss < epochs[0].train_loss
    assert any(isinstance(e, StageProgress) and "regularisation" in e.stage for e in events)


def test_the_folded_head_computes_what_was_fitted() -> None:
    torch.manual_seed(0)
    features = torch.randn(200, 16) * torch.linspace(0.01, 100, 16) + 5
    labels = (features @ torch.randn(16, 3)).argmax(1)  # linearly separable
    solver = LinearHeadSolver(Problem(features, labels, 3), 1e-3, None)
    for _ in solver.solve():
        pass

    weight, bias = solver.folded()
    fitted_logits = solver.inputs @ solver.weight.detach().T + solver.bias.detach()
    torch.testing.assert_close(features @ weight.T + bias, fitted_logits, rtol=1e-4, atol=1e-3)
    assert solver.accuracy() > 0.9


def test_class_balance_smoothing_and_augmented_copies_still_shape_the_fit(
    colour_dataset: Path,
) -> None:
    recipe = Recipe(
        dataset=str(colour_dataset),
        backbone=TINY,
        workers=0,
        augmentation="light",
        cached_views=3,
        class_balanced=True,
        label_smoothing=0.2,
    )
    events, result = drain(Trainer(recipe).events())

    logs = [e.message for e in events if isinstance(e, Log)]
    assert any("3 view(s)" in m for m in logs)
    assert sum(isinstance(e, StageProgress) and "augmented" in e.stage for e in events) > 0
    assert result.evaluation is not None and result.evaluation.accuracy == 1.0


def test_stopping_during_the_fit_keeps_the_best_iteration(colour_dataset: Path) -> None:
    trainer = Trainer(Recipe(dataset=str(colour_dataset), backbone=TINY, workers=0))
    events: list[object] = []
    stream = trainer.events()
    for event in stream:
        events.append(event)
        if isinstance(event, BatchEnd) and event.epoch == 2:
            trainer.cancel()
    end = events[-1]
    assert isinstance(end, FitEnd) and end.cancelled and end.best_epoch is not None
    assert end.epochs_completed <= 2
    reported = [e for e in events if isinstance(e, EpochEnd)]
    best = next(e for e in reported if e.epoch == end.best_epoch)
    assert end.val_loss == best.val_loss  # the kept head is the best iteration's


def solved(problem: Problem) -> torch.Tensor:
    solver = LinearHeadSolver(problem, 1e-3, None)
    for _ in solver.solve():
        pass
    weight, bias = solver.folded()
    return torch.softmax(problem.features @ weight.T + bias, 1)


def test_label_smoothing_and_class_weights_shape_the_solved_head() -> None:
    torch.manual_seed(0)
    features = torch.cat([torch.randn(90, 4) + 1.5, torch.randn(10, 4) - 1.5])
    labels = torch.cat([torch.zeros(90, dtype=torch.long), torch.ones(10, dtype=torch.long)])
    plain = solved(Problem(features, labels, 2))

    smoothed = solved(Problem(features, labels, 2, label_smoothing=0.4))
    assert smoothed.max(1).values.mean() < plain.max(1).values.mean() - 0.05  # less sure

    balanced = solved(Problem(features, labels, 2, class_weights=torch.tensor([10 / 90, 1.0])))
    rare = labels == 1
    assert balanced[rare, 1].mean() > plain[rare, 1].mean()  # the rare class weighs more


def test_augmented_copies_without_augmentation_compute_each_picture_once(
    colour_dataset: Path,
) -> None:
    recipe = Recipe(
        dataset=str(colour_dataset), backbone=TINY, workers=0, augmentation="none", cached_views=4
    )
    events, _ = drain(Trainer(recipe).events())

    assert not any(isinstance(e, StageProgress) and "augmented" in e.stage for e in events)
    assert any(isinstance(e, Log) and "(1 view(s) per picture)" in e.message for e in events)
