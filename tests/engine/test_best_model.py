"""The model a user gets is the model whose numbers they were shown.

For every kind of run, the exported model scores on the validation pictures exactly
the best validation accuracy that metrics.jsonl and model.json report; a resumed
run keeps that promise too, and refuses a dataset whose classes changed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from finetune_studio.engine.errors import UserFacingError
from finetune_studio.engine.events import EpochEnd, Log
from finetune_studio.engine.export import load_model_folder, save_model_folder
from finetune_studio.engine.freezing import FreezePlan, GradualUnfreeze, apply_freeze_plan
from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.predict import Predictor
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import ResumeMismatchError, Trainer
from support.runs import drain
from support.tiny import TINY, TinyNet, pretrained_tiny_state


def exported_accuracy(folder: Path, dataset: Path, recipe: Recipe) -> float:
    """The exported model's accuracy on the run's validation pictures, measured the
    way a user would: load the folder, predict each picture, compare with its class."""
    loaded = load_model_folder(folder)
    report = inspect_dataset(dataset, recipe.val_fraction, recipe.seed)
    predictor = Predictor(loaded.model, loaded.class_names, loaded.preprocessing)
    predictions = predictor.predict([sample.path for sample in report.val], top_k=1)
    truth = [report.classes[sample.label] for sample in report.val]
    correct = sum(p.top[0][0] == name for p, name in zip(predictions, truth))
    return correct / len(truth)


def reported(folder: Path) -> tuple[float, float]:
    """(best epoch's val_acc in metrics.jsonl, val_acc in model.json), after checking
    that both files also agree on the best model's validation loss."""
    meta = json.loads((folder / "model.json").read_text())
    epochs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    best = next(e for e in epochs if e["epoch"] == meta["metrics"]["best_epoch"])
    assert best["val_loss"] == meta["metrics"]["val_loss"]
    return best["val_acc"], meta["metrics"]["val_acc"]


RUNS = {
    "head-only": {"freeze": FreezePlan("head")},
    "head-only, solved": {"freeze": FreezePlan("head"), "head_fit": "optimum"},
    "head solved, bias frozen": {
        "freeze": FreezePlan("head").with_override("fc.bias", False),
        "head_fit": "optimum",
    },
    "partial": {"freeze": FreezePlan("last:1")},
    "full": {"freeze": FreezePlan("none"), "lr": 0.02},
    # The backbone's learning rate is far too high: the epochs after the unfreeze get
    # worse, so the best epoch is one of the head-only ones.
    "gradual, best before the unfreeze": {
        "freeze": FreezePlan("none"),
        "gradual_unfreeze": GradualUnfreeze(3),
        "lr_multipliers": {"features": 3000.0},
        "lr": 0.05,
    },
    "gradual": {"freeze": FreezePlan("last:1"), "gradual_unfreeze": GradualUnfreeze(1)},
}


@pytest.mark.parametrize("changes", RUNS.values(), ids=RUNS.keys())
def test_the_exported_model_scores_exactly_the_reported_best_accuracy(
    tiny_recipe: Recipe, colour_dataset: Path, tmp_path: Path, changes: dict[str, object]
) -> None:
    recipe = tiny_recipe.replace(epochs=4, mixed_precision=False, **changes)
    events, result = drain(Trainer(recipe).events())
    folder = save_model_folder(result, tmp_path / "model")

    in_metrics, in_model_json = reported(folder)
    assert exported_accuracy(folder, colour_dataset, recipe) == in_metrics == in_model_json
    best = [e for e in events if isinstance(e, EpochEnd) and e.is_best][-1]
    assert result.best_epoch == best.epoch
    if "lr_multipliers" in changes:  # the regression: best epoch 3's head on epoch 4's body
        assert result.best_epoch is not None and result.best_epoch <= 3
        assert in_metrics > 0.5


def test_a_resumed_gradual_run_exports_the_reported_best_model(
    tiny_recipe: Recipe, colour_dataset: Path, tmp_path: Path
) -> None:
    changes = RUNS["gradual, best before the unfreeze"]
    recipe = tiny_recipe.replace(epochs=5, mixed_precision=False, **changes)
    checkpoint = tmp_path / "run.checkpoint.pt"
    first = Trainer(recipe, checkpoint_path=checkpoint)
    for event in first.events():
        if isinstance(event, EpochEnd) and event.epoch == 4:
            first.cancel()  # stopped in the unfrozen phase, best epoch in the head phase
    _, result = drain(Trainer(recipe, checkpoint_path=checkpoint, resume=True).events())
    folder = save_model_folder(result, tmp_path / "model")

    in_metrics, in_model_json = reported(folder)
    assert exported_accuracy(folder, colour_dataset, recipe) == in_metrics == in_model_json
    assert len(result.history) == 5 and result.best_epoch is not None
    assert result.best_epoch <= 3 and in_metrics > 0.5


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda root: (root / "red").rename(root / "crimson"), ["red", "crimson"]),
        (lambda root: shutil.copytree(root / "red", root / "yellow"), ["yellow"]),
    ],
    ids=["renamed class", "added class"],
)
def test_resuming_after_the_classes_changed_is_refused_naming_the_change(
    tiny_recipe: Recipe, colour_dataset: Path, tmp_path: Path, change, named: list[str]
) -> None:
    checkpoint = tmp_path / "run.checkpoint.pt"
    first = Trainer(tiny_recipe.replace(epochs=3), checkpoint_path=checkpoint)
    for event in first.events():
        if isinstance(event, EpochEnd):
            first.cancel()
    change(colour_dataset)

    resumed = Trainer(tiny_recipe.replace(epochs=3), checkpoint_path=checkpoint, resume=True)
    with pytest.raises(ResumeMismatchError) as refused:
        list(resumed.events())

    assert isinstance(refused.value, UserFacingError)
    assert all(name in str(refused.value) for name in named)
    assert checkpoint.is_file()  # nothing lost: restoring the folder makes it resumable


def test_an_unticked_batchnorm_row_stays_frozen_even_with_train_batchnorm() -> None:
    model = TinyNet(3)
    plan = FreezePlan("head").with_override("features.0.1", False)

    apply_freeze_plan(model, "fc", plan, train_batchnorm=True)

    assert not any(p.requires_grad for p in model.features[0][1].parameters())
    assert all(p.requires_grad for p in model.features[2][1].parameters())  # the default
    frozen_block = FreezePlan("none").with_override("features.2", False)
    apply_freeze_plan(model, "fc", frozen_block, train_batchnorm=True)
    assert not any(p.requires_grad for p in model.features[2].parameters())


def test_stopping_before_the_first_epoch_ends_still_reports_the_model_it_returns(
    tiny_recipe: Recipe, colour_dataset: Path, tmp_path: Path
) -> None:
    from finetune_studio.engine.events import BatchEnd, FitEnd, StageProgress

    recipe = tiny_recipe.replace(freeze=FreezePlan("none"), mixed_precision=False, batch_size=4)
    trainer = Trainer(recipe)
    stream = trainer.events()
    events: list[object] = []
    for event in stream:
        events.append(event)
        if isinstance(event, BatchEnd) and event.batch == 2:
            trainer.cancel()
    end = events[-1]
    assert isinstance(end, FitEnd) and end.cancelled and end.epochs_completed == 0
    assert any(isinstance(e, StageProgress) and e.stage == "Evaluating the model" for e in events)
    assert end.val_acc is not None


def test_abort_skips_the_evaluation_that_follows_a_stop(tiny_recipe: Recipe) -> None:
    from finetune_studio.engine.events import BatchEnd, FitEnd, StageProgress

    trainer = Trainer(tiny_recipe.replace(freeze=FreezePlan("none"), batch_size=4))
    events: list[object] = []
    for event in trainer.events():
        events.append(event)
        if isinstance(event, BatchEnd) and event.batch == 2:
            trainer.abort()  # what closing the window does
    assert not any(
        isinstance(e, StageProgress) and e.stage == "Evaluating the model" for e in events
    )
    end = events[-1]
    assert isinstance(end, FitEnd) and end.cancelled and end.val_acc is None


def test_the_cli_refuses_a_resume_with_changed_classes_with_exit_2(
    tiny_recipe: Recipe,
    colour_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from finetune_studio.cli import checkpoint_path_for, main

    recipe_file = tmp_path / "recipe.json"
    tiny_recipe.replace(epochs=3).save(recipe_file)
    out = tmp_path / "model"
    first = Trainer(Recipe.load(recipe_file), checkpoint_path=checkpoint_path_for(out))
    for event in first.events():
        if isinstance(event, EpochEnd):
            first.cancel()  # as if Ctrl-C stopped it after epoch 1
    (colour_dataset / "green").rename(colour_dataset / "lime")

    code = main(["train", "--recipe", str(recipe_file), "--out", str(out), "--resume"])

    error = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "classes changed" in error and "green" in error and "lime" in error


def test_a_weights_file_changed_in_place_recomputes_features(
    tiny_recipe: Recipe, tmp_path: Path
) -> None:
    """cp -p or rsync -t onto the same file keeps its size and mtime: the features
    must still come from the new weights, not the cache of the old ones."""
    import os

    from safetensors.torch import save_file

    from finetune_studio.engine.events import Log
    from finetune_studio.engine.feature_store import FeatureStore
    from support.tiny import pretrained_tiny_state

    weights = tmp_path / "weights.safetensors"

    def write(scale: float) -> None:
        save_file({k: v.float() * scale for k, v in pretrained_tiny_state().items()}, str(weights))

    def cached_lines() -> list[str]:
        events, _ = drain(Trainer(recipe, feature_store=store).events())
        return [e.message for e in events if isinstance(e, Log) and "from the cache" in e.message]

    store = FeatureStore(tmp_path / "cache")
    recipe = tiny_recipe.replace(weights=str(weights))
    write(1.0)
    before = os.stat(weights)
    assert cached_lines() == []
    assert cached_lines() != []  # unchanged: from the cache
    write(1.5)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(weights).st_size == before.st_size

    assert cached_lines() == []


class TinyVggHead(nn.Module):
    """The tiny network with a VGG-style classifier: Linear, ReLU, Dropout, Linear. The
    cached features are the ReLU's input, so the head block starts with it."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.body = TinyNet()
        self.classifier = nn.Sequential(
            nn.Linear(24, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.body
        return self.classifier(torch.flatten(body.pool(body.features(x)), 1))


def vgg_style_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(4321)
    model = TinyVggHead()
    model.body.load_state_dict(pretrained_tiny_state())
    return model.state_dict()


def test_a_head_solved_behind_an_activation_is_solved_for_what_it_sees(
    tiny_recipe: Recipe, colour_dataset: Path, tmp_path: Path
) -> None:
    from finetune_studio.engine.backbones import register_backbone, unregister_backbone
    from support.tiny import tiny_spec

    spec = dataclasses.replace(
        tiny_spec("tiny_vgg_head"), build=TinyVggHead, bundled_weights=vgg_style_state
    )
    register_backbone(spec)
    try:
        recipe = tiny_recipe.replace(backbone="tiny_vgg_head", head_fit="optimum")
        events, result = drain(Trainer(recipe).events())
    finally:
        unregister_backbone("tiny_vgg_head")

    assert any(isinstance(e, Log) and "to its optimum" in e.message for e in events)
    assert result.evaluation is not None and result.evaluation.accuracy == 1.0
    best = [e for e in events if isinstance(e, EpochEnd) and e.is_best][-1]
    assert best.train_acc == 1.0


def test_a_head_parameter_the_user_froze_stays_as_it_was(tiny_recipe: Recipe) -> None:
    from finetune_studio.engine.backbones import build_model
    from finetune_studio.engine.training import seed_everything

    plan = FreezePlan("head").with_override("fc.bias", False)
    recipe = tiny_recipe.replace(freeze=plan, head_fit="optimum")
    _, result = drain(Trainer(recipe).events())

    seed_everything(recipe.seed)
    initial = build_model(TINY, 3, "default").model.state_dict()
    assert torch.equal(result.model.state_dict()["fc.bias"], initial["fc.bias"])
    assert not torch.equal(result.model.state_dict()["fc.weight"], initial["fc.weight"])
