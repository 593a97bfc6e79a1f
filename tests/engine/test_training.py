"""Training runs as a stream of events, on the tiny backbone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from finetune_studio.engine.events import BatchEnd, EpochEnd, FitEnd, Log
from finetune_studio.engine.freezing import FreezePlan, GradualUnfreeze
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer, TrainingResult, class_weights, fit
from support.runs import drain
from support.tiny import pretrained_tiny_state


def run(recipe: Recipe) -> tuple[TrainingResult, list[object]]:
    events, result = drain(Trainer(recipe).events())
    return result, events


def test_a_run_streams_batches_and_epochs_and_ends_with_fit_end(tiny_recipe: Recipe) -> None:
    _, events = run(tiny_recipe)

    batches = [e for e in events if isinstance(e, BatchEnd)]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert isinstance(events[-1], FitEnd) and not events[-1].cancelled
    assert [e.epoch for e in epochs] == [1, 2]
    # 3 classes x 12 pictures, 20% held out: 27 training pictures in batches of 8.
    assert [(b.epoch, b.batch) for b in batches] == [(e, b) for e in (1, 2) for b in (1, 2, 3, 4)]
    assert all(b.batches == 4 and b.loss > 0 for b in batches)
    assert any(isinstance(e, Log) and e.message.startswith("Trainable:") for e in events)


def test_head_only_training_learns_and_leaves_frozen_weights_bit_identical(
    tiny_recipe: Recipe,
) -> None:
    result, _ = run(tiny_recipe.replace(epochs=8, lr=0.05))

    assert result.evaluation is not None
    assert result.evaluation.accuracy >= 0.85  # three colours, chance is 0.33
    pretrained = pretrained_tiny_state()
    after = result.model.state_dict()
    for name, tensor in pretrained.items():
        if not name.startswith("fc."):  # every frozen parameter *and* BN buffer
            assert torch.equal(after[name], tensor), name
    assert not torch.equal(after["fc.weight"][:3], pretrained["fc.weight"][:3])


def test_stop_from_another_thread_ends_within_one_batch(tiny_recipe: Recipe) -> None:
    trainer = Trainer(tiny_recipe.replace(epochs=50, batch_size=2))
    batches_after_cancel = 0
    last = None
    stream = trainer.events()
    for event in stream:
        if isinstance(event, BatchEnd):
            if trainer.cancel_token.is_set():
                batches_after_cancel += 1
            if event.epoch == 2 and event.batch == 3:
                threading.Thread(target=trainer.cancel).start()
                threading.Event().wait(0.05)  # the other thread has set the token by now
        last = event

    assert batches_after_cancel == 0
    assert isinstance(last, FitEnd) and last.cancelled and last.epochs_completed == 1
    assert last.best_epoch == 1


def test_the_same_seed_gives_the_same_run(tiny_recipe: Recipe) -> None:
    def losses(recipe: Recipe) -> list[float]:
        return [e.loss for e in fit(recipe) if isinstance(e, BatchEnd)]

    recipe = tiny_recipe.replace(augmentation="standard", freeze=FreezePlan("none"))
    assert losses(recipe) == losses(recipe)
    assert losses(recipe) != losses(recipe.replace(seed=1))


def test_early_stopping_ends_the_run_and_keeps_the_best_epoch(tiny_recipe: Recipe) -> None:
    # A learning rate this high makes validation loss worse after the first epoch.
    result, events = run(
        tiny_recipe.replace(epochs=20, lr=30.0, early_stopping_patience=2, schedule="constant")
    )
    end = events[-1]
    assert isinstance(end, FitEnd) and end.stopped_early
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert len(epochs) < 20
    best = min(epochs, key=lambda e: e.val_loss or 0)
    assert result.best_epoch == best.epoch
    assert result.evaluation is not None
    assert result.evaluation.loss == best.val_loss


def test_gradual_unfreezing_trains_the_head_first_then_the_plan(tiny_recipe: Recipe) -> None:
    seen: dict[int, bool] = {}
    recipe = tiny_recipe.replace(
        epochs=3, freeze=FreezePlan("last:1"), gradual_unfreeze=GradualUnfreeze(1)
    )
    trainer = Trainer(recipe)
    snapshot: dict[str, torch.Tensor] = {}
    stream = trainer.events()
    for event in stream:
        if isinstance(event, EpochEnd) and event.epoch == 1:
            model = trainer.model
            assert model is not None
            snapshot = {k: v.clone() for k, v in model.state_dict().items()}
            seen[1] = True
    assert seen
    _, result = drain(Trainer(recipe.replace(early_stopping_patience=0)).events())
    after = result.model.state_dict()
    pretrained = pretrained_tiny_state()
    # Epoch 1 (head only) left the last block untouched; later epochs trained it.
    assert torch.equal(snapshot["features.5.0.weight"].cpu(), pretrained["features.5.0.weight"])
    assert not torch.equal(after["features.5.0.weight"], pretrained["features.5.0.weight"])
    assert torch.equal(after["features.4.0.weight"], pretrained["features.4.0.weight"])
    logs = [e.message for e in Trainer(recipe).events() if isinstance(e, Log)]
    assert any("Epoch 2: unfroze" in message for message in logs)


def test_class_balanced_weights_favour_rare_classes() -> None:
    weights = class_weights([30, 10, 0])
    assert weights.tolist() == pytest.approx([40 / 60, 40 / 20, 0.0])


def test_a_picture_deleted_after_inspection_is_skipped_with_a_warning(
    tiny_recipe: Recipe,
    colour_dataset: Path,
) -> None:
    from finetune_studio.engine.inspection import inspect_dataset

    report = inspect_dataset(colour_dataset)
    gone = Path(report.train[0].path)
    gone.unlink()
    trainer = Trainer(tiny_recipe, dataset=report)
    events = list(trainer.events())

    warnings = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    assert sum(str(gone) in w and "file disappeared" in w for w in warnings) == 1
    assert "1 picture(s) could not be read during the run" in warnings[-1]
    assert isinstance(events[-1], FitEnd) and events[-1].epochs_completed == 2


def test_running_out_of_memory_halves_the_step_and_keeps_the_batch(
    tiny_recipe: Recipe,
) -> None:
    from finetune_studio.engine.backbones import register_backbone, unregister_backbone
    from support.tiny import TinyNet, tiny_spec

    class SmallMemoryNet(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > 2:  # as if the GPU held only two pictures at a time
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward(x)

    register_backbone(tiny_spec("tiny_small_memory", SmallMemoryNet))
    try:
        recipe = tiny_recipe.replace(
            backbone="tiny_small_memory", freeze=FreezePlan("none"), batch_size=8
        )
        trainer = Trainer(recipe)
        events = list(trainer.events())
    finally:
        unregister_backbone("tiny_small_memory")

    warnings = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    assert warnings == [
        "Out of CPU memory: continuing with 4 pictures per step, 2 steps per batch of 8.",
        "Out of CPU memory: continuing with 2 pictures per step, 4 steps per batch of 8.",
    ]
    batches = [e for e in events if isinstance(e, BatchEnd)]
    assert len(batches) == 2 * 4 and all(b.batches == 4 for b in batches)  # same batches
    assert isinstance(events[-1], FitEnd) and events[-1].epochs_completed == 2
