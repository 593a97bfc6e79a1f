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
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from .backbones import BackboneSpec, build_model, get_spec
from .checkpoints import (
    history_from_plain,
    history_to_plain,
    load_checkpoint,
    random_states,
    restore_random_states,
    save_checkpoint,
)
from .inspection import DatasetReport, ProgressCallback, Sample, inspect_dataset
from .loading import Batch, ImageDataset, decode_pictures, default_workers, make_loader
from .devices import autocast, autocast_dtype, describe_device, resolve_device
from .errors import DatasetError, UserFacingError, WeightsError
from .evaluation import Evaluation, evaluate
from .events import BatchEnd, EpochEnd, Event, FitEnd, Log, StageProgress
from .feature_store import FeatureStore, file_key, weights_identity
from .features import (
    Extracted,
    FeatureSplit,
    cache_blocker,
    extract_features,
    feature_batches,
    find_feature_split,
)
from .freezing import apply_freeze_plan, apply_preset, hold_frozen_modules, set_trainable
from .optim import make_optimizer, make_scheduler
from .parameters import ParameterTree
from .preprocessing import Preprocessing, eval_transform, train_transform
from .recipe import Recipe

DECODE_BUDGET_BYTES = 2 * 2**30
"""Decoded pictures kept in memory for a run (about 8,000 pictures at 256x341)."""


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
    def stage_progressed(self, event: StageProgress) -> None: ...
    def log(self, event: Log) -> None: ...
    def finished(self, event: FitEnd) -> None: ...
    def failed(self, error: BaseException) -> None: ...


@dataclass
class _RunData:
    """What the epochs train and validate on: pictures through the whole model, or
    cached features through the head block (one loader per cached view)."""

    train: list[DataLoader[object]]
    val: DataLoader[object]
    forward: nn.Module
    channels_last: bool


def changing_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of what training can change (trainable parameters and all buffers); the
    frozen weights need no copy, which matters for large backbones."""
    state = {
        name: p.detach().to("cpu", copy=True)
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    state.update({name: b.detach().to("cpu", copy=True) for name, b in model.named_buffers()})
    return state


class _Extractor:
    """Features for a dataset: from the disk store where present, computed otherwise
    (and then stored), with progress and skipped-picture events."""

    def __init__(
        self,
        trainer: Trainer,
        model: nn.Module,
        split: FeatureSplit,
        device: torch.device,
        channels_last: bool,
        workers: int,
        pin: bool,
    ) -> None:
        self.trainer, self.model, self.split = trainer, model, split
        self.device, self.channels_last, self.workers, self.pin = (
            device,
            channels_last,
            workers,
            pin,
        )

    def __call__(
        self, dataset: ImageDataset, stage: str, store_key: str | None
    ) -> Generator[Event, None, tuple[torch.Tensor, torch.Tensor, list[int]]]:
        """Features and labels of the pictures that loaded, and their dataset indices."""
        store = self.trainer.feature_store if store_key else None
        keys = [file_key(s.path) for s in dataset.samples]
        stored = store.load(store_key, keys) if store and store_key else {}
        missing = [i for i, key in enumerate(keys) if key is None or key not in stored]
        computed: dict[int, torch.Tensor] = {}
        if missing:
            computed = yield from self._compute(dataset, missing, stage)
        if stored:
            yield Log(f"{stage}: {len(stored)} of {len(keys)} from the cache.")
        if store and store_key and computed and not self.trainer.cancel_token.is_set():
            store.save(
                store_key,
                {k: computed[i] for i, k in enumerate(keys) if k is not None and i in computed},
            )
        rows = [i for i, key in enumerate(keys) if i in computed or key in stored]
        if not rows:
            return torch.empty(0), torch.empty(0, dtype=torch.long), []
        features = torch.stack(
            [computed[i] if i in computed else stored[str(keys[i])] for i in rows]
        )
        labels = torch.tensor([dataset.samples[i].label for i in rows], dtype=torch.long)
        return features, labels, rows

    def _compute(
        self, dataset: ImageDataset, indices: list[int], stage: str
    ) -> Generator[Event, None, dict[int, torch.Tensor]]:
        subset = ImageDataset(
            [dataset.samples[i] for i in indices], dataset.transform, dataset.preprocessing
        )
        recipe = self.trainer.recipe
        loader = make_loader(subset, recipe.batch_size, False, self.workers, recipe.seed, self.pin)
        work = extract_features(
            self.model,
            self.split,
            loader,
            self.device,
            self.channels_last,
            self.trainer.cancel_token,
            self.trainer._amp_dtype,
        )
        while True:
            try:
                done, total = next(work)
            except StopIteration as finished:
                extracted: Extracted = finished.value
                break
            yield StageProgress(stage, done, total)
        for failure in extracted.failures:
            self.trainer.unreadable.add(failure.path)
            yield Log(f"Skipped {failure.path}: {failure.reason}", "warning")
        return {indices[i]: feature for i, feature in extracted.features.items()}


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
        decode_budget_bytes: int = DECODE_BUDGET_BYTES,
        feature_store: FeatureStore | Literal["default"] | None = "default",
        checkpoint_path: Path | None = None,
        resume: bool = False,
    ) -> None:
        """``cpu_threads`` caps torch's intra-op threads (process-wide); the window
        leaves a core to its event loop this way."""
        self.recipe = recipe
        self.cpu_threads = cpu_threads
        self.decode_budget_bytes = decode_budget_bytes
        self.feature_store = FeatureStore() if feature_store == "default" else feature_store
        self.checkpoint_path = checkpoint_path  # written after every epoch when set
        self.resume = resume
        self._dataset = dataset
        self._scan_progress = scan_progress
        self.cancel_token = threading.Event()
        self.result: TrainingResult | None = None
        self.model: nn.Module | None = None  # the live model; only the run's thread uses it
        self._amp_dtype: torch.dtype | None = None
        self.accumulation = 1  # slices per batch; doubles when memory runs out
        self.unreadable: set[str] = set()  # pictures that failed to load during the run

    def cancel(self) -> None:
        """Thread-safe: the run stops after the batch in progress."""
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
        model.train()
        hold_frozen_modules(model)

        amp_dtype = autocast_dtype(device, recipe.mixed_precision)
        self._amp_dtype = amp_dtype
        if amp_dtype is not None:
            yield Log(f"Mixed precision: {str(amp_dtype).removeprefix('torch.')}.")
        data = yield from self._prepare_data(model, head_path, spec, report, device, channels_last)
        weights = class_weights(report.train_counts).to(device) if recipe.class_balanced else None
        criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=recipe.label_smoothing)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

        steps = len(data.train[0])
        first_phase_epochs = (phase_two_epoch - 1) if phase_two_epoch else recipe.epochs
        optimizer, scheduler = self._optimizer_and_schedule(model, steps * first_phase_epochs)

        history: list[EpochEnd] = []
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch: int | None = None
        best_val = math.inf
        epochs_without_gain = 0
        stopped_early = False
        loaders = [*data.train, data.val]
        generators = [loader.generator for loader in loaders if loader.generator is not None]

        start_epoch = 1
        if self.resume and self.checkpoint_path is not None:
            saved = load_checkpoint(self.checkpoint_path, recipe.to_dict())
            done = int(saved["epoch"])
            if phase_two_epoch is not None and done >= phase_two_epoch:
                self._apply_full_plan(model, head_path)  # unfrozen before it stopped
                optimizer, scheduler = self._optimizer_and_schedule(
                    model, steps * (recipe.epochs - phase_two_epoch + 1)
                )
            model.load_state_dict(saved["model"], strict=False)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            scaler.load_state_dict(saved["scaler"])
            restore_random_states(saved["random"], generators)
            history = history_from_plain(saved["history"])
            best_state, best_epoch = saved["best_state"], saved["best_epoch"]
            best_val, epochs_without_gain = saved["best_val"], saved["epochs_without_gain"]
            self.accumulation = int(saved["accumulation"])
            start_epoch = done + 1
            yield Log(f"Resumed after epoch {done} of {recipe.epochs}. {tree.summary()}")

        for epoch in range(start_epoch, recipe.epochs + 1):
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
            loader = data.train[(epoch - 1) % len(data.train)]
            for index, batch in enumerate(loader, start=1):
                if cancel.is_set():
                    break
                for failure in batch.failures:
                    if failure.path not in self.unreadable:
                        self.unreadable.add(failure.path)
                        yield Log(f"Skipped {failure.path}: {failure.reason}", "warning")
                if batch.images is None or batch.labels is None:
                    continue
                inputs = batch.images.to(device, non_blocking=True)
                if data.channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                labels = batch.labels.to(device, non_blocking=True)
                while True:
                    try:
                        batch_loss, batch_correct = self._step(
                            data.forward,
                            inputs,
                            labels,
                            criterion,
                            optimizer,
                            scaler,
                            device,
                            amp_dtype,
                        )
                        break
                    except torch.OutOfMemoryError:
                        yield self._shrink_steps(optimizer, device, len(labels))
                scheduler.step()
                loss_sum += batch_loss * len(labels)
                correct += batch_correct
                seen += len(labels)
                yield BatchEnd(epoch, recipe.epochs, index, steps, batch_loss, self._lr(optimizer))
            if cancel.is_set():
                break  # a partial epoch is neither evaluated nor reported
            val = evaluate(
                data.forward,
                data.val,
                device,
                len(classes),
                None,
                data.channels_last,
                cancel,
                amp_dtype,
            )
            if cancel.is_set():
                break
            has_val = val.images > 0
            monitored = val.loss if has_val else loss_sum / max(seen, 1)
            is_best = monitored < best_val
            if is_best:
                best_val, best_epoch, epochs_without_gain = monitored, epoch, 0
                best_state = changing_state(model)
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
            if self.checkpoint_path is not None:
                save_checkpoint(
                    self.checkpoint_path,
                    {
                        "recipe": recipe.to_dict(),
                        "epoch": epoch,
                        "model": changing_state(model),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "random": random_states(generators),
                        "history": history_to_plain(history),
                        "best_state": best_state,
                        "best_epoch": best_epoch,
                        "best_val": best_val,
                        "epochs_without_gain": epochs_without_gain,
                        "accumulation": self.accumulation,
                    },
                )
            yield event
            patience = recipe.early_stopping_patience
            if patience and epochs_without_gain >= patience:
                stopped_early = True
                yield Log(f"Early stop: no better validation loss for {patience} epochs.")
                break

        if self.unreadable:
            yield Log(
                f"{len(self.unreadable)} picture(s) could not be read during the run "
                "(changed or removed after the dataset was checked).",
                "warning",
            )
        cancelled = cancel.is_set()
        if cancelled:
            yield Log("Stopped by the user; keeping the best model so far.", "warning")
        model.to("cpu")
        model.to(memory_format=torch.contiguous_format)
        if best_state is not None:
            model.load_state_dict(best_state, strict=False)
        model.eval()
        final = (
            evaluate(
                data.forward,
                data.val,
                torch.device("cpu"),
                len(classes),
                amp_dtype=autocast_dtype(torch.device("cpu"), recipe.mixed_precision),
            )
            if report.val
            else None
        )
        self.result = TrainingResult(
            model=model,
            spec=spec,
            head_path=head_path,
            class_names=classes,
            preprocessing=spec.preprocessing,
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

    def _prepare_data(
        self,
        model: nn.Module,
        head_path: str,
        spec: BackboneSpec,
        report: DatasetReport,
        device: torch.device,
        channels_last: bool,
    ) -> Generator[Event, None, _RunData]:
        """Cached features when the run allows it, else decoded pictures."""
        recipe = self.recipe
        pre = spec.preprocessing
        split = find_feature_split(model, head_path)
        if not recipe.feature_cache:
            blocker: str | None = "the feature cache is turned off"
        elif recipe.gradual_unfreeze is not None:
            blocker = "gradual unfreezing trains more than the head"
        else:
            blocker = cache_blocker(model, split)
        workers = default_workers() if recipe.workers is None else recipe.workers
        pin = device.type == "cuda"
        if blocker is None:
            return (
                yield from self._feature_data(
                    model, split, spec, report, device, channels_last, workers, pin
                )
            )
        yield Log(f"Running the whole network every epoch: {blocker}.")
        decoded_train = yield from self._decode(report.train, pre, "Decoding pictures")
        decoded_val = yield from self._decode(report.val, pre, "Decoding validation pictures")
        train_set = ImageDataset(
            report.train, train_transform(pre, recipe.augmentation), pre, decoded_train
        )
        val_set = ImageDataset(report.val, eval_transform(pre), pre, decoded_val)
        return _RunData(
            train=[make_loader(train_set, recipe.batch_size, True, workers, recipe.seed, pin)],
            val=make_loader(val_set, recipe.batch_size, False, workers, recipe.seed, pin),
            forward=model,
            channels_last=channels_last,
        )

    def _decode(
        self, samples: tuple[Sample, ...], pre: Preprocessing, stage: str
    ) -> Generator[Event, None, dict[int, Image.Image]]:
        """Decode every picture once (within the memory budget), reporting progress."""
        decoded: dict[int, Image.Image] = {}
        work = decode_pictures(samples, pre, self.decode_budget_bytes, decoded, self.cancel_token)
        for done, total in work:
            yield StageProgress(stage, done, total)
        return decoded

    def _feature_data(
        self,
        model: nn.Module,
        split: FeatureSplit,
        spec: BackboneSpec,
        report: DatasetReport,
        device: torch.device,
        channels_last: bool,
        workers: int,
        pin: bool,
    ) -> Generator[Event, None, _RunData]:
        recipe = self.recipe
        pre = spec.preprocessing
        views = max(1, recipe.cached_views)
        if recipe.augmentation != "none" and views == 1:
            yield Log(
                "Training the head on cached features of each picture, without "
                "augmentation (augmented copies, the recipe's cached_views, add it)."
            )
        else:
            yield Log(f"Training the head on cached features ({views} view(s) per picture).")
        extract = _Extractor(self, model, split, device, channels_last, workers, pin)
        store_key = (
            self.feature_store.model_key(
                backbone=spec.name,
                split=split.capture_path,
                preprocessing=pre.to_dict(),
                precision=str(self._amp_dtype),
                seed=recipe.seed,
                weights=weights_identity(recipe.weights, spec.weights_url or "bundled"),
            )
            if self.feature_store
            else None
        )
        # One pass over training and validation pictures: one loader start, not two.
        both = ImageDataset((*report.train, *report.val), eval_transform(pre), pre)
        features, labels, rows = yield from extract(both, "Computing features", store_key)
        is_train = torch.tensor([row < len(report.train) for row in rows], dtype=torch.bool)
        batches = recipe.batch_size
        train_views = [
            feature_batches(features[is_train], labels[is_train], batches, True, recipe.seed)
        ]
        val = feature_batches(features[~is_train], labels[~is_train], batches, False, recipe.seed)
        for view in range(1, views):
            augmented = ImageDataset(report.train, train_transform(pre, recipe.augmentation), pre)
            features, labels, _ = yield from extract(
                augmented, f"Computing augmented features (view {view + 1} of {views})", None
            )
            train_views.append(feature_batches(features, labels, batches, True, recipe.seed))
        return _RunData(train_views, val, split.head_block(model), channels_last=False)

    def _step(
        self,
        forward: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        device: torch.device,
        amp_dtype: torch.dtype | None,
    ) -> tuple[float, int]:
        """One optimizer step on a batch, in ``self.accumulation`` slices (one, unless
        memory ran out before). Returns the batch's mean loss and correct count."""
        optimizer.zero_grad(set_to_none=True)
        loss_total, correct = 0.0, 0
        for part, part_labels in zip(
            inputs.chunk(self.accumulation), labels.chunk(self.accumulation)
        ):
            with autocast(device, amp_dtype):
                logits = forward(part)
                loss = criterion(logits.float(), part_labels) * (len(part_labels) / len(labels))
            scaler.scale(loss).backward()
            loss_total += loss.item()
            correct += int((logits.argmax(1) == part_labels).sum())
        scaler.step(optimizer)
        scaler.update()
        return loss_total, correct

    def _shrink_steps(
        self, optimizer: torch.optim.Optimizer, device: torch.device, batch_size: int
    ) -> Log:
        """After running out of memory: free it, halve the pictures per step and double
        the accumulation, so the effective batch (and the results' scale) stays."""
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if math.ceil(batch_size / self.accumulation) <= 1:
            raise UserFacingError(
                "Out of memory even with one picture per step. Choose a smaller backbone, "
                "freeze more layers, or train on the CPU."
            )
        self.accumulation *= 2
        per_step = math.ceil(batch_size / self.accumulation)
        return Log(
            f"Out of {device.type.upper()} memory: continuing with {per_step} pictures "
            f"per step, {self.accumulation} steps per batch of {batch_size}.",
            "warning",
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
    def _lr(optimizer: torch.optim.Optimizer) -> float:
        """The learning rate of the group with the largest multiplier (usually the head)."""
        return float(max(group["lr"] for group in optimizer.param_groups))


def fit(recipe: Recipe, cancel: threading.Event | None = None) -> Iterator[Event]:
    """Run a recipe as a generator of events (see ``Trainer``)."""
    trainer = Trainer(recipe)
    if cancel is not None:
        trainer.cancel_token = cancel
    return trainer.events()
