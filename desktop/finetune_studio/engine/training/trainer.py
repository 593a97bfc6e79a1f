"""Engine layer: fine-tune a backbone as a stream of events.

``Trainer(recipe).events()`` is a generator of ``events`` objects whose return value
is the ``TrainingResult``; the CLI prints the events, the window's worker thread
forwards them, tests collect them. It checks the cancel token between batches, so
a stop takes effect within one batch, and it always ends with ``FitEnd`` and the
best model so far. ``abort()`` also cuts short the work after a stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..backbones import build_model, get_spec
from ..devices import describe_device
from ..evaluation import Evaluation, evaluation_steps
from ..events import BatchEnd, EpochEnd, Event, FitEnd, Log, StageProgress, as_stage_progress
from ..feature_store import FeatureStore
from ..freezing import hold_frozen_modules
from ..head_fit import SolvableHead, solvable_head
from ..images import inspect_image
from ..inspection import DatasetReport, ProgressCallback, inspect_dataset
from ..loading import Batch, PictureKeeper
from ..parameters import ParameterTree
from ..recipe import Recipe
from .callbacks import CheckpointWriter, EarlyStopping
from .checkpoint import load_checkpoint
from .data import DataPreparation
from .distributed import (
    ONE_PROCESS,
    Processes,
    gather_evaluation,
    main_decides,
    require_same_split,
    stop_together,
    sum_over_processes,
    sync_buffers,
    wrap_for_training,
)
from .ending import finish_run
from .head import fit_head
from .phases import (
    apply_phase,
    build_optimization,
    current_lr,
    phase_of,
    plan_phases,
)
from .result import TrainingResult
from .run import (
    EpochTally,
    Run,
    TrainingListener,
    class_weights,
    compute_set_up,
)
from .state import RunState
from .stepper import Stepper

DECODE_BUDGET_BYTES = 2 * 2**30
"""Decoded pictures kept in memory for a run (about 8,000 pictures at 256x341)."""


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        dataset: DatasetReport | None = None,
        scan_progress: ProgressCallback | None = None,
        cpu_threads: int | None = None,
        decode_budget_bytes: int = DECODE_BUDGET_BYTES,
        feature_store: FeatureStore | Literal["default"] | None = "default",
        checkpoint_path: Path | None = None,
        resume: bool = False,
        processes: Processes = ONE_PROCESS,
    ) -> None:
        """``cpu_threads`` caps torch's intra-op threads (process-wide); the window
        leaves a core to its event loop this way. With ``checkpoint_path`` the run is
        saved after every epoch; ``resume`` continues from that checkpoint. Under
        torchrun, ``processes`` places this process among the run's (``join``); only
        the first writes the checkpoint."""
        self.recipe = recipe
        self.processes = processes
        self.cpu_threads = cpu_threads
        self.decode_budget_bytes = decode_budget_bytes
        self.feature_store = FeatureStore() if feature_store == "default" else feature_store
        self.checkpoint_path = checkpoint_path
        self.checkpoints = (
            CheckpointWriter(checkpoint_path, recipe)
            if checkpoint_path is not None and processes.is_main
            else None
        )
        self.resume = resume
        self._dataset = dataset
        self._scan_progress = scan_progress
        self.cancel_token = threading.Event()  # stop after this batch, keep the best
        self.abort_token = threading.Event()  # also skip the work that follows a stop
        self.model: nn.Module | None = None  # the live model; only the run's thread uses it
        self.unreadable: set[str] = set()  # pictures that failed to load during the run

    def cancel(self) -> None:
        """Thread-safe: the run stops after the batch in progress, keeping the best."""
        self.cancel_token.set()

    def abort(self) -> None:
        """Thread-safe: stop as soon as possible, including a final evaluation."""
        self.abort_token.set()
        self.cancel_token.set()

    def run(self, listener: TrainingListener) -> TrainingResult | None:
        """Drive ``events`` and report each to ``listener``; errors go to ``failed``."""
        dispatch: dict[type, Callable[[object], None]] = {
            BatchEnd: listener.batch_ended,  # type: ignore[dict-item]
            EpochEnd: listener.epoch_ended,  # type: ignore[dict-item]
            StageProgress: listener.stage_progressed,  # type: ignore[dict-item]
            Log: listener.log,  # type: ignore[dict-item]
            FitEnd: listener.finished,  # type: ignore[dict-item]
        }
        events = self.events()
        try:
            while True:
                event = next(events)
                dispatch[type(event)](event)
        except StopIteration as finished:
            result: TrainingResult = finished.value
            return result
        except Exception as error:  # the boundary: the listener decides how to show it
            listener.failed(error)
            return None

    def events(self) -> Generator[Event, None, TrainingResult]:
        run = yield from self.set_up()
        head = self.head_to_solve(run)
        if head is not None:
            yield from fit_head(self, run, head)
        else:
            yield from self._train_epochs(run)
        return (yield from finish_run(self, run))

    def _train_epochs(self, run: Run) -> Iterator[Event]:
        for epoch in range(run.state.epochs_done + 1, self.recipe.epochs + 1):
            if self._agreed_stop(run):
                return
            yield from self._enter_phase(run, epoch)
            tally = yield from self._train_epoch(run, epoch)
            if tally is None:
                return  # a partial epoch is neither evaluated nor reported
            if (yield from self.end_epoch(run, epoch, self.recipe.epochs, tally)):
                return

    def head_to_solve(self, run: Run) -> SolvableHead | None:
        """The head to solve for, when the run trains it alone on cached features and
        the recipe asks for its optimum (``head_fit``)."""
        if self.recipe.head_fit != "optimum" or run.data.train_features is None:
            return None
        return solvable_head(run.data.forward)

    # --- set-up ------------------------------------------------------------------------------
    def set_up(self) -> Generator[Event, None, Run]:
        """Build the run as its first epoch trains it: the freeze plan (or the first
        phase), BatchNorm held where frozen, the data (cached features or pictures),
        the stepper and the optimizer with its multiplier groups. The learning-rate
        finder ramps this same run (``engine/lr_find.py``)."""
        recipe = self.recipe
        device, amp_dtype = compute_set_up(recipe, self.cpu_threads)
        if self.processes.active:
            device = self.processes.device_for(device)
        channels_last = device.type in ("cpu", "cuda")  # faster convolutions there
        # A run that checks its own pictures keeps them decoded for the model.
        kept = None if self._dataset else PictureKeeper(
            get_spec(recipe.backbone).preprocessing, self.decode_budget_bytes
        )  # fmt: skip
        preparation = DataPreparation(
            recipe, device, channels_last, amp_dtype, self.cancel_token,
            self.feature_store, self.decode_budget_bytes, self.unreadable, kept,
            self.processes,
        )  # fmt: skip
        preparation.warm_up()
        yield Log(f"Device: {describe_device(device)}")
        report = yield from self._dataset_report(kept)
        saved = self._load_checkpoint()
        classes = report.classes
        state = RunState.from_checkpoint(saved, classes) if saved else RunState(classes)

        built = build_model(recipe.backbone, len(report.classes), recipe.weights)
        model, spec, head_path = built.model, built.spec, built.head_path
        self.model = model
        phases = plan_phases(recipe)
        phase = phase_of(phases, max(state.epochs_done, 1))
        apply_phase(model, head_path, recipe, phase)
        state.note_trainable(model)
        tree = ParameterTree(model)
        yield Log(str(tree.summary()))

        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        hold_frozen_modules(model)
        if amp_dtype is not None:
            yield Log(f"Mixed precision: {str(amp_dtype).removeprefix('torch.')}.")
        data = yield from preparation.prepare(model, head_path, spec, report)
        weights = class_weights(report.train_counts).to(device) if recipe.class_balanced else None
        criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=recipe.label_smoothing)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        stepper = Stepper(self._stepped(data.forward), criterion, scaler, device, amp_dtype, state)
        optimization = build_optimization(model, recipe, phase, data.steps_per_epoch)
        run = Run(
            model, spec, head_path, report, tree, device, amp_dtype, data,
            stepper, scaler, state, phases, phase, optimization,
        )  # fmt: skip
        if saved:
            run.resume_from(saved)
            done = state.epochs_done
            yield Log(f"Resumed after epoch {done} of {recipe.epochs}. {tree.summary()}")
        return run

    def _dataset_report(self, kept: PictureKeeper | None) -> Generator[Event, None, DatasetReport]:
        recipe = self.recipe
        report = self._dataset or inspect_dataset(
            recipe.dataset,
            recipe.val_fraction,
            recipe.seed,
            self._scan_progress,
            check_picture=kept or inspect_image,
        )
        report.require_trainable()
        require_same_split(self.processes, report)
        for warning in report.warnings:
            yield Log(warning, "warning")
        if report.skipped:
            yield Log(f"Skipped {len(report.skipped)} unusable files.", "warning")
        yield Log(
            f"{len(report.classes)} classes, {len(report.train)} training and "
            f"{len(report.val)} validation pictures ({report.split_source} split)."
        )
        return report

    def _load_checkpoint(self) -> dict[str, object] | None:
        if not (self.resume and self.checkpoint_path):
            return None
        return load_checkpoint(self.checkpoint_path, self.recipe.to_dict())

    def _stepped(self, forward: nn.Module) -> nn.Module:
        """What the optimizer steps through: under torchrun, the whole network wrapped
        so its gradients are averaged over the processes. A head trained on cached
        features needs no wrapper: every process has all the features and steps the
        same way."""
        if forward is not self.model:
            return forward
        return wrap_for_training(self.processes, forward)

    def _whole_network_run(self, run: Run) -> bool:
        """True when the processes step together (DDP), so every decision between
        steps must be agreed."""
        return self.processes.active and run.data.train_features is None

    # --- epochs ------------------------------------------------------------------------------
    def _enter_phase(self, run: Run, epoch: int) -> Iterator[Event]:
        phase = phase_of(run.phases, epoch)
        if phase == run.phase:
            return
        run.phase = phase
        apply_phase(run.model, run.head_path, self.recipe, phase)
        run.state.note_trainable(run.model)
        run.optimization = build_optimization(
            run.model, self.recipe, phase, run.data.steps_per_epoch
        )
        run.stepper.forward = self._stepped(run.data.forward)  # DDP registers what trains
        yield Log(f"Epoch {epoch}: unfroze the planned layers. {run.tree.summary()}")

    def _train_epoch(self, run: Run, epoch: int) -> Generator[Event, None, EpochTally | None]:
        """Train one epoch; returns its tally, or None if cancelled."""
        started = time.perf_counter()
        run.model.train()
        hold_frozen_modules(run.model)
        optimizer, scheduler = run.optimization
        loss_sum, correct, seen = 0.0, 0.0, 0.0
        steps = run.data.steps_per_epoch
        batch: Batch
        for index, batch in enumerate(run.data.train_loader(epoch), start=1):
            if self._agreed_stop(run, batch):
                return None
            stepped = yield from self.train_batch(run, optimizer, batch)
            if stepped is None:
                continue
            batch_loss, batch_correct, batch_size = stepped
            scheduler.step()
            loss_sum += batch_loss * batch_size
            correct += batch_correct
            seen += batch_size
            yield BatchEnd(
                epoch, self.recipe.epochs, index, steps, batch_loss, current_lr(optimizer)
            )
        if self._agreed_stop(run):
            return None
        if self._whole_network_run(run):  # the epoch of every process, not just this one's
            loss_sum, correct, seen = sum_over_processes(self.processes, loss_sum, correct, seen)
        return EpochTally(
            loss_sum / max(seen, 1),
            correct / max(seen, 1),
            time.perf_counter() - started,
            current_lr(optimizer),
        )

    def _agreed_stop(self, run: Run, batch: Batch | None = None) -> bool:
        """True to stop. Processes stepping together stop together, and skip together
        a ``batch`` that one of them could not load."""
        if not self._whole_network_run(run):
            return self.cancel_token.is_set()
        return stop_together(self.processes, self.cancel_token, batch)

    def train_batch(
        self, run: Run, optimizer: torch.optim.Optimizer, batch: Batch
    ) -> Generator[Event, None, tuple[float, int, int] | None]:
        """One optimizer step on a loader's batch: its mean loss, correct predictions
        and size; None when none of its pictures loaded."""
        yield from self._note_failures(batch)
        if batch.images is None or batch.labels is None:
            return None
        inputs = batch.images.to(run.device, non_blocking=True)
        if run.data.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        labels = batch.labels.to(run.device, non_blocking=True)
        loss, correct = yield from run.stepper.step(optimizer, inputs, labels)
        return loss, correct, len(labels)

    def _note_failures(self, batch: Batch) -> Iterator[Event]:
        for failure in batch.failures:
            if failure.path not in self.unreadable:
                self.unreadable.add(failure.path)
                yield Log(f"Skipped {failure.path}: {failure.reason}", "warning")

    def end_epoch(
        self,
        run: Run,
        epoch: int,
        epochs: int,
        tally: EpochTally,
        patience: int | None = None,
        checkpoint: bool = True,
        unit: str = "epoch",
    ) -> Generator[Event, None, bool]:
        """Validate, keep the best, checkpoint, report; True when the run should end.
        ``patience`` replaces the recipe's early-stopping patience."""
        started = time.perf_counter()
        if self._whole_network_run(run):
            sync_buffers(self.processes, run.model)
        val = yield from self.evaluate(run, self.cancel_token, stage=None)
        if self._agreed_stop(run):
            return True
        has_val = val.images > 0
        monitored = val.loss if has_val else tally.loss
        is_best = run.state.record(run.model, epoch, monitored, val if has_val else None)
        event = EpochEnd(
            epoch=epoch,
            epochs=epochs,
            train_loss=tally.loss,
            train_acc=tally.accuracy,
            val_loss=val.loss if has_val else None,
            val_acc=val.accuracy if has_val else None,
            lr=tally.lr,
            seconds=tally.seconds + time.perf_counter() - started,
            is_best=is_best,
            unit=unit,
        )
        run.state.history.append(event)
        if checkpoint and self.checkpoints is not None:
            self.checkpoints.save(
                run.state, run.model, run.optimization, run.scaler, run.data.generators()
            )
        yield event
        if patience is None:
            patience = self.recipe.early_stopping_patience
        early_stop = EarlyStopping(patience).should_stop(run.state)
        stops = early_stop is not None
        if self._whole_network_run(run):
            stops = main_decides(self.processes, stops)  # rank 0's evaluation decides
        if stops:
            run.stopped_early = True
            if early_stop is not None:
                yield early_stop
            return True
        return False

    def evaluate(
        self, run: Run, cancel: threading.Event, stage: str | None
    ) -> Generator[Event, None, Evaluation]:
        """Validation loss, accuracy and confusion; progress events when ``stage`` is set."""
        steps = evaluation_steps(
            run.data.forward, run.data.val, run.device, len(run.class_names),
            None, run.data.channels_last, cancel, run.amp_dtype, run.data.val_paths,
        )  # fmt: skip
        evaluation = yield from as_stage_progress(steps, stage)
        if not run.data.val_shared:
            return evaluation
        classes = len(run.class_names)
        return gather_evaluation(self.processes, evaluation, run.data.val_paths, classes)

    # --- the end -----------------------------------------------------------------------------


def fit(
    recipe: Recipe, cancel: threading.Event | None = None
) -> Generator[Event, None, TrainingResult]:
    """Run a recipe as a generator of events (see ``Trainer``)."""
    trainer = Trainer(recipe)
    if cancel is not None:
        trainer.cancel_token = cancel
    return trainer.events()
