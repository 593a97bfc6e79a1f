"""Engine layer: the end of a run: what happened, the best model restored, its
calibration, and the ``FitEnd`` that closes the event stream."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import torch

from ..calibration import calibrate
from ..events import Event, FitEnd, Log
from .result import TrainingResult
from .run import Run

if TYPE_CHECKING:
    from .trainer import Trainer


def finish_run(trainer: Trainer, run: Run) -> Generator[Event, None, TrainingResult]:
    """Say what went missing or was stopped, evaluate a model no epoch finished, put
    the best model back on the CPU, calibrate its confidence, and end the stream."""
    if trainer.unreadable:
        yield Log(
            f"{len(trainer.unreadable)} picture(s) could not be read during the run "
            "(changed or removed after the dataset was checked).",
            "warning",
        )
    cancelled = trainer.cancel_token.is_set()
    if cancelled:
        yield Log("Stopped by the user; keeping the best model so far.", "warning")
    state = run.state
    evaluation = state.best.evaluation
    if state.best.state is None and run.report.val and not trainer.abort_token.is_set():
        # Stopped before any epoch ended: the model as it is, evaluated once.
        evaluation = yield from trainer.evaluate(run, trainer.abort_token, "Evaluating the model")
        evaluation = None if trainer.abort_token.is_set() else evaluation
    model = run.model
    model.to("cpu")
    model.to(memory_format=torch.contiguous_format)
    state.restore_best(model)
    model.eval()
    stopped_early = run.stopped_early
    result = TrainingResult(
        model=model,
        spec=run.spec,
        head_path=run.head_path,
        class_names=run.class_names,
        preprocessing=run.spec.preprocessing,
        recipe=trainer.recipe,
        history=state.history,
        best_epoch=state.best.epoch,
        evaluation=evaluation,
        cancelled=cancelled,
        stopped_early=stopped_early,
        calibration=calibrate(evaluation.predictions if evaluation else None),
    )
    if result.calibration.ece_before is not None:
        yield Log(f"Confidence calibrated: {result.calibration.summary()}.")
    has_final = evaluation is not None and evaluation.images > 0
    yield FitEnd(
        unit=state.history[-1].unit if state.history else "epoch",
        cancelled=cancelled,
        stopped_early=stopped_early,
        epochs_completed=len(state.history),
        best_epoch=state.best.epoch,
        val_acc=evaluation.accuracy if evaluation and has_final else None,
        val_loss=evaluation.loss if evaluation and has_final else None,
    )
    return result
