"""Engine layer: fine-tune a backbone as a stream of events.

``Trainer(recipe).events(cancel)`` is a generator of ``events`` objects; the CLI
prints them, the window's worker thread forwards them, tests collect them with
``list()``. It checks the cancel token between batches, so a stop takes effect
within one batch, and it always ends with ``FitEnd`` and a ``TrainingResult``
holding the best model so far.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from .backbones import BackboneSpec, build_model, get_spec
from .dataset import DatasetReport, ProgressCallback, inspect_dataset
from .datasets import Batch, ImageDataset, default_workers, make_loader
from .devices import autocast_dtype, describe_device, resolve_device
from .errors import DatasetError, WeightsError
from .evaluation import Evaluation, evaluate
from .events import BatchEnd, EpochEnd, Event, FitEnd, Log
from .freezing import apply_freeze_plan, apply_preset, hold_frozen_modules, set_trainable
from .optim import make_optimizer, make_scheduler
from .parameters import ParameterTree
from .preprocessing import Preprocessing, eval_transform, train_transform
from .recipe import Recipe


@dataclass
class TrainingResult:
    """The outcome of a run: the best model (on the CPU, in eval mode) and its numbers."""

    model: nn.Module
    spec: BackboneSpec
    head_path: str
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    recipe: Recipe
    history: list[EpochEnd] = field(default_factory=list)
    best_epoch: int | None = None
    evaluation: Evaluation | None = None
    cancelled: bool = False
    stopped_early: bool = False

    def metrics(self) -> dict[str, object]:
        final = self.evaluation
        return {
            "best_epoch": self.best_epoch,
            "epochs_completed": len(self.history),
            "val_acc": final.accuracy if final and final.images else None,
            "val_loss": final.loss if final and final.images else None,
            "per_class_val_acc": dict(zip(self.class_names, final.per_class_accuracy))
            if final
            else {},
            "confusion": final.confusion if final else None,
            "cancelled": self.cancelled,
            "stopped_early": self.stopped_early,
        }


class TrainingListener(Protocol):
    """What the trainer tells whoever drives it (the CLI, a Qt worker, a test)."""

    def batch_ended(self, event: BatchEnd) -> None: ...
    def epoch_ended(self, event: EpochEnd) -> None: ...
    def log(self, event: Log) -> None: ...
    def finished(self, event: FitEnd) -> None: ...
    def failed(self, error: BaseException) -> None: ...


def preflight(recipe: Recipe) -> None:
    """Cheap checks of a recipe's inputs, so a typo fails in a second, not after a scan."""
    get_spec(recipe.backbone)
    if recipe.weights not in ("default", "none") and not Path(recipe.weights).is_file():
        raise WeightsError(f"The weights file {recipe.weights} does not exist.")
    dataset = Path(recipe.dataset).expanduser()
    if not dataset.is_dir():
        what = "is not a folder" if dataset.exists() else "does not exist"
        raise DatasetError(f"The dataset folder {dataset} {what}.")
    resolve_device(recipe.device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def class_weights(counts: list[int]) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the classes that have pictures."""
    present = [c for c in counts if c > 0]
    total = sum(present)
    return torch.tensor(
        [total / (len(present) * c) if c else 0.0 for c in counts], dtype=torch.float32
    )


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        dataset: DatasetReport | None = None,
        scan_progress: ProgressCallback | None = None,
        cpu_threads: int | None = None,
    ) -> None:
        """``cpu_threads`` caps torch's intra-op threads (process-wide); the window
        leaves a core to its event loop this way."""
        self.recipe = recipe
        self.cpu_threads = cpu_threads
        self._dataset = dataset
        self._scan_progress = scan_progress
        self.cancel_token = threading.Event()
        self.result: TrainingResult | None = None
        self.model: nn.Module | None = None  # the live model; only the run's thread may use it

    def cancel(self) -> None:
        """Thread-safe: the run stops after the batch in progress."""
        self.cancel_token.set()

    def run(self, listener: TrainingListener) -> TrainingResult | None:
        """Drive ``events`` and report each to ``listener``; errors go to ``failed``."""
        dispatch: dict[type, Callable[[object], None]] = {
            BatchEnd: listener.batch_ended,  # type: ignore[dict-item]
            EpochEnd: listener.epoch_ended,  # type: ignore[dict-item]
            Log: listener.log,  # type: ignore[dict-item]
            FitEnd: listener.finished,  # type: ignore[dict-item]
        }
        try:
            for event in self.events():
                dispatch[type(event)](event)
        except Exception as error:  # the boundary: the listener decides how to show it
            listener.failed(error)
            return None
        return self.result

    def events(self) -> Iterator[Event]:
        recipe = self.recipe
        cancel = self.cancel_token
        preflight(recipe)
        if self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        seed_everything(recipe.seed)
        device = resolve_device(recipe.device)
        yield Log(f"Device: {describe_device(device)}")

        report = self._dataset or inspect_dataset(
            recipe.dataset, recipe.val_fraction, recipe.seed, self._scan_progress
        )
        report.require_trainable()
        for warning in report.warnings:
            yield Log(warning, "warning")
        if report.skipped:
            yield Log(f"Skipped {len(report.skipped)} unusable files.", "warning")
        classes = report.classes
        yield Log(
            f"{len(classes)} classes, {len(report.train)} training and "
            f"{len(report.val)} validation pictures ({report.split_source} split)."
        )

        built = build_model(recipe.backbone, len(classes), recipe.weights)
        model, head_path, spec = built.model, built.head_path, built.spec
        self.model = model
        pre = spec.preprocessing
        tree = ParameterTree(model)

        phase_two_epoch = None
        if recipe.gradual_unfreeze is not None:
            apply_preset(model, head_path, "head")
            phase_two_epoch = recipe.gradual_unfreeze.head_epochs + 1
        else:
            self._apply_full_plan(model, head_path)
        yield Log(str(tree.summary()))

        # Channels-last speeds up convolutions on CPUs and recent GPUs.
        channels_last = device.type in ("cpu", "cuda")
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)

        workers = default_workers() if recipe.workers is None else recipe.workers
        min_side = pre.resize_size
        train_loader = make_loader(
            ImageDataset(report.train, train_transform(pre, recipe.augmentation), min_side),
            recipe.batch_size,
            True,
            workers,
            recipe.seed,
            device.type == "cuda",
        )
        val_loader = make_loader(
            ImageDataset(report.val, eval_transform(pre), min_side),
            recipe.batch_size,
            False,
            workers,
            recipe.seed,
            device.type == "cuda",
        )
        weights = class_weights(report.train_counts).to(device) if recipe.class_balanced else None
        criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=recipe.label_smoothing)
        amp_dtype = autocast_dtype(device, recipe.mixed_precision)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        if amp_dtype is not None:
            yield Log(f"Mixed precision: {amp_dtype}.")

        steps = len(train_loader)
        first_phase_epochs = (phase_two_epoch - 1) if phase_two_epoch else recipe.epochs
        optimizer, scheduler = self._optimizer_and_schedule(model, steps * first_phase_epochs)

        history: list[EpochEnd] = []
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch: int | None = None
        best_val = math.inf
        epochs_without_gain = 0
        stopped_early = False
        skipped_during_training: set[str] = set()

        for epoch in range(1, recipe.epochs + 1):
            if cancel.is_set():
                break
            if epoch == phase_two_epoch:
                self._apply_full_plan(model, head_path)
                optimizer, scheduler = self._optimizer_and_schedule(
                    model, steps * (recipe.epochs - epoch + 1)
                )
                yield Log(f"Epoch {epoch}: unfroze the planned layers. {tree.summary()}")
            started = time.perf_counter()
            model.train()
            hold_frozen_modules(model)
            loss_sum, correct, seen = 0.0, 0, 0
            batch: Batch
            for index, batch in enumerate(train_loader, start=1):
                if cancel.is_set():
                    break
                for failure in batch.failures:
                    if failure.path not in skipped_during_training:
                        skipped_during_training.add(failure.path)
                        yield Log(f"Skipped {failure.path}: {failure.reason}", "warning")
                if batch.images is None or batch.labels is None:
                    continue
                images = batch.images.to(device, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                labels = batch.labels.to(device, non_blocking=True)
                with self._autocast(device, amp_dtype):
                    logits = model(images)
                    loss = criterion(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                batch_loss = loss.item()
                loss_sum += batch_loss * len(labels)
                correct += int((logits.argmax(1) == labels).sum())
                seen += len(labels)
                yield BatchEnd(epoch, recipe.epochs, index, steps, batch_loss, self._lr(optimizer))
            if cancel.is_set():
                break  # a partial epoch is neither evaluated nor reported
            val = evaluate(model, val_loader, device, len(classes), None, channels_last, cancel)
            if cancel.is_set():
                break
            has_val = val.images > 0
            monitored = val.loss if has_val else loss_sum / max(seen, 1)
            is_best = monitored < best_val
            if is_best:
                best_val, best_epoch, epochs_without_gain = monitored, epoch, 0
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
            else:
                epochs_without_gain += 1
            event = EpochEnd(
                epoch=epoch,
                epochs=recipe.epochs,
                train_loss=loss_sum / max(seen, 1),
                train_acc=correct / max(seen, 1),
                val_loss=val.loss if has_val else None,
                val_acc=val.accuracy if has_val else None,
                lr=self._lr(optimizer),
                seconds=time.perf_counter() - started,
                is_best=is_best,
            )
            history.append(event)
            yield event
            patience = recipe.early_stopping_patience
            if patience and epochs_without_gain >= patience:
                stopped_early = True
                yield Log(f"Early stop: no better validation loss for {patience} epochs.")
                break

        cancelled = cancel.is_set()
        if cancelled:
            yield Log("Stopped by the user; keeping the best model so far.", "warning")
        model.to("cpu")
        model.to(memory_format=torch.contiguous_format)
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        final = (
            evaluate(model, val_loader, torch.device("cpu"), len(classes)) if report.val else None
        )
        self.result = TrainingResult(
            model=model,
            spec=spec,
            head_path=head_path,
            class_names=classes,
            preprocessing=pre,
            recipe=recipe,
            history=history,
            best_epoch=best_epoch,
            evaluation=final,
            cancelled=cancelled,
            stopped_early=stopped_early,
        )
        has_final = final is not None and final.images > 0
        yield FitEnd(
            cancelled=cancelled,
            stopped_early=stopped_early,
            epochs_completed=len(history),
            best_epoch=best_epoch,
            val_acc=final.accuracy if has_final and final else None,
            val_loss=final.loss if has_final and final else None,
        )

    def _apply_full_plan(self, model: nn.Module, head_path: str) -> None:
        recipe = self.recipe
        apply_freeze_plan(model, head_path, recipe.freeze, recipe.train_batchnorm)
        if recipe.gradual_unfreeze is not None:
            for path in recipe.gradual_unfreeze.paths:
                set_trainable(model, path, True)

    def _optimizer_and_schedule(
        self, model: nn.Module, total_steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        recipe = self.recipe
        optimizer = make_optimizer(
            model, recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.lr_multipliers
        )
        warmup = int(total_steps * recipe.warmup_fraction)
        return optimizer, make_scheduler(optimizer, recipe.schedule, total_steps, warmup)

    @staticmethod
    def _autocast(
        device: torch.device, dtype: torch.dtype | None
    ) -> AbstractContextManager[object]:
        if dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    @staticmethod
    def _lr(optimizer: torch.optim.Optimizer) -> float:
        """The learning rate of the group with the largest multiplier (usually the head)."""
        return float(max(group["lr"] for group in optimizer.param_groups))


def fit(recipe: Recipe, cancel: threading.Event | None = None) -> Iterator[Event]:
    """Run a recipe as a generator of events (see ``Trainer``)."""
    trainer = Trainer(recipe)
    if cancel is not None:
        trainer.cancel_token = cancel
    return trainer.events()
