"""Engine layer: "How much should I train?", measured within a time budget.

One pass of the frozen network over a stratified sample keeps, per picture, the
head's features and the activations where ``last:1`` and ``last:2`` begin. Then:

- the head alone is solved on the features, as a head-only run does;
- ``last:1`` and ``last:2`` train for the recipe's epochs on the activations (only
  their blocks run, which is what makes them affordable);
- everything trains on the sample's pictures, when the budget allows.

Each plan's time on the whole dataset is estimated from the same measurements: the
pass's seconds per picture, and one timed training step of the plan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import fx, nn

from ..backbones import BuiltModel, build_model
from ..cache_decision import cached_view_count
from ..devices import autocast
from ..errors import DatasetError
from ..events import Event, Log, StageProgress, as_stage_progress
from ..features import find_feature_split
from ..freezing import FreezePlan, apply_freeze_plan, block_units
from ..head_fit import LinearHeadSolver, Problem, choose_penalty, solvable_head
from ..inspection import DatasetReport, Sample, inspect_dataset
from ..loading import ImageDataset, default_workers, make_loader
from ..prefix import BlockGraph, CutError
from ..preprocessing import eval_transform
from ..recipe import Recipe
from ..training.run import class_weights, compute_set_up
from .plans import Advice, PlanEstimate, recommend
from .sampling import interleaved
from .trials import STORE_DTYPE, Activations, Batches, Trial, stack_rows

DEFAULT_BUDGET_S = 120.0
NO_VALIDATION = (
    "The advisor compares plans on validation pictures: set a validation fraction above 0."
)
PASS_SHARE = 0.4  # of the budget, at most, for the pass over the sample
ACTIVATION_BYTES = 1 << 30  # kept activations, at most
CUT_PLANS = (1, 2)  # last:N plans tried on kept activations
EVAL_STEP_RATIO = 1 / 3  # an evaluation forward pass costs about a third of a step
TIMED_PICTURES = 8  # the batch one training step of a plan is timed on


@dataclass
class SamplePass:
    """What the pass over the sample kept; rows in the order of ``values``."""

    train: list[torch.Tensor]
    val: list[torch.Tensor]
    train_labels: torch.Tensor
    val_labels: torch.Tensor
    samples: list[tuple[Sample, bool]]
    loading: float  # seconds per picture waiting for decoded pictures
    frozen: float  # seconds per picture through the frozen network (no gradients)

    @property
    def seconds_per_picture(self) -> float:
        """Evaluating one picture: loading it and running the network."""
        return self.loading + self.frozen


def _storable(value: torch.Tensor) -> torch.Tensor:
    """On the CPU in half the memory, unless half precision would overflow it."""
    value = value.detach().to("cpu")
    if value.is_floating_point() and value.abs().max() < torch.finfo(STORE_DTYPE).max:
        return value.to(STORE_DTYPE)
    return value.float()


class _PassClock:
    """Per batch, the time spent waiting for pictures and computing. The first batch
    is left out of the averages when there are others: it also starts the loader."""

    def __init__(self) -> None:
        self.mark = time.perf_counter()
        self.batches: list[tuple[float, float, int]] = []  # (loading, computing, pictures)
        self._loading = 0.0

    def loaded(self) -> None:
        now = time.perf_counter()
        self._loading, self.mark = now - self.mark, now

    def computed(self, pictures: int) -> None:
        now = time.perf_counter()
        self.batches.append((self._loading, now - self.mark, pictures))
        self.mark = now

    def _typical(self) -> list[tuple[float, float, int]]:
        return self.batches[1:] if len(self.batches) > 1 else self.batches

    def loading_per_picture(self) -> float:
        batches = self._typical()
        return sum(b[0] for b in batches) / max(sum(b[2] for b in batches), 1)

    def compute_per_picture(self) -> float:
        batches = self._typical()
        return sum(b[1] for b in batches) / max(sum(b[2] for b in batches), 1)


class Advisor:
    def __init__(
        self,
        recipe: Recipe,
        dataset: DatasetReport | None = None,
        budget_s: float = DEFAULT_BUDGET_S,
        cpu_threads: int | None = None,
    ) -> None:
        self.recipe, self.dataset, self.budget_s = recipe, dataset, budget_s
        self.cpu_threads = cpu_threads
        self.cancel_token = threading.Event()
        self._started = 0.0

    def cancel(self) -> None:
        self.cancel_token.set()

    def _left(self) -> float:
        return self.budget_s - (time.perf_counter() - self._started)

    def events(self) -> Generator[Event, None, Advice | None]:
        """Progress and log events; returns the advice, or None when cancelled."""
        recipe = self.recipe
        device, amp_dtype = compute_set_up(recipe, self.cpu_threads)
        report = self.dataset or inspect_dataset(recipe.dataset, recipe.val_fraction, recipe.seed)
        report.require_trainable()
        if not report.val:
            raise DatasetError(NO_VALIDATION)
        built = build_model(
            recipe.backbone, len(report.classes), recipe.weights, cancel=self.cancel_token
        )
        if self.cancel_token.is_set():
            return None
        built.model.to(device)
        if device.type in ("cpu", "cuda"):  # faster convolutions there, as in a run
            built.model.to(memory_format=torch.channels_last)
        self._started = time.perf_counter()  # the budget is for measuring, not building
        measure = _Measurement(self, built, report, device, amp_dtype)
        return (yield from measure.run())


class _Measurement:
    """One advisor run's live objects."""

    def __init__(
        self,
        advisor: Advisor,
        built: BuiltModel,
        report: DatasetReport,
        device: torch.device,
        amp_dtype: torch.dtype | None,
    ) -> None:
        self.advisor, self.recipe = advisor, advisor.recipe
        self.model, self.head_path = built.model, built.head_path
        self.spec, self.report = built.spec, report
        self.device, self.amp_dtype = device, amp_dtype
        self.cancel = advisor.cancel_token
        self.graph = BlockGraph(self.model, self.head_path)
        self.pristine = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.head_split = find_feature_split(self.model, self.head_path)
        blocks = len(block_units(self.model, self.head_path))
        self.cuts = tuple(n for n in CUT_PLANS if n < blocks)
        self.values: list[fx.Node] = [self.graph.input_of(self.head_split.capture_path)]
        for cut in self.cuts:
            self.values += [v for v in self.graph.frontier(cut) if v not in self.values]
        weights = class_weights(report.train_counts) if self.recipe.class_balanced else None
        self.class_weights = None if weights is None else weights.to(device)

    def run(self) -> Generator[Event, None, Advice | None]:
        kept = yield from self._pass()
        if kept is None:
            return None
        yield Log(
            f"Measuring on {len(kept.train_labels)} training and {len(kept.val_labels)} "
            f"validation pictures ({kept.seconds_per_picture * 1000:.0f} ms per picture "
            "through the frozen network)."
        )
        plans = [(yield from self._head_plan(kept))]
        for cut in self.cuts:
            plans.append((yield from self._cut_plan(kept, cut)))
        plans.append((yield from self._everything_plan(kept)))
        if self.cancel.is_set():
            return None
        estimates = tuple(plans)
        return Advice(
            backbone=self.spec.name,
            recommended_freeze=recommend(estimates, len(kept.val_labels)),
            plans=estimates,
            sample_train=len(kept.train_labels),
            sample_val=len(kept.val_labels),
            seconds=time.perf_counter() - self.advisor._started,
        )

    # --- the pass over the sample --------------------------------------------------------
    def _pass(self) -> Generator[Event, None, SamplePass | None]:
        order = interleaved(self.report.train, self.report.val, self.recipe.seed)
        pre = self.spec.preprocessing
        dataset = ImageDataset([s for s, _ in order], eval_transform(pre), pre)
        workers = default_workers() if self.recipe.workers is None else self.recipe.workers
        loader = make_loader(dataset, self.recipe.batch_size, False, workers, self.recipe.seed)
        capture = self.graph.capture(self.values).eval()
        rows: list[list[torch.Tensor]] = []
        labels: list[torch.Tensor] = []
        taken: list[tuple[Sample, bool]] = []
        pass_budget = PASS_SHARE * self.advisor.budget_s
        clock = _PassClock()
        kept_bytes = 0
        for batch in loader:
            if self.cancel.is_set():
                return None
            if batch.images is None or batch.labels is None:
                continue
            clock.loaded()
            with torch.inference_mode(), autocast(self.device, self.amp_dtype):
                values = capture(self._on_device(batch.images))
            stored = [_storable(v) for v in values]
            clock.computed(len(batch.labels))
            rows.append(stored)
            labels.append(batch.labels)
            taken += [order[i] for i in batch.indices]
            kept_bytes += sum(v.numel() * v.element_size() for v in stored)
            yield StageProgress("Measuring the frozen network on a sample", len(taken), len(order))
            spent = time.perf_counter() - self.advisor._started
            if spent > pass_budget or kept_bytes > ACTIVATION_BYTES:
                break
        if not rows:
            raise DatasetError("No picture of the sample could be read: see the Data step.")
        columns = stack_rows(rows)
        is_val = torch.tensor([v for _, v in taken], dtype=torch.bool)
        all_labels = torch.cat(labels)
        if bool(is_val.all()) or not bool(is_val.any()):
            raise DatasetError(
                "The sample needs both training and validation pictures that can be read; "
                "add pictures or give the advisor more time."
            )
        return SamplePass(
            train=[c[~is_val] for c in columns],
            val=[c[is_val] for c in columns],
            train_labels=all_labels[~is_val],
            val_labels=all_labels[is_val],
            samples=taken,
            loading=clock.loading_per_picture(),
            frozen=clock.compute_per_picture(),
        )

    def _on_device(self, pictures: torch.Tensor) -> torch.Tensor:
        pictures = pictures.to(self.device)
        if self.device.type in ("cpu", "cuda"):
            pictures = pictures.contiguous(memory_format=torch.channels_last)
        return pictures

    # --- plans ---------------------------------------------------------------------------
    def _head_plan(self, kept: SamplePass) -> Generator[Event, None, PlanEstimate]:
        self._prepare("head")
        head_block = self.head_split.head_block(self.model)
        head = solvable_head(head_block) if self.recipe.head_fit == "optimum" else None
        started = time.perf_counter()
        if head is None:
            accuracy, note, _ = yield from self._trial("head", head_block, kept, [0])
        else:
            features = head.inputs(kept.train[0].float())
            problem = Problem(
                features,
                kept.train_labels,
                len(self.report.classes),
                self.recipe.label_smoothing,
                None if self.class_weights is None else self.class_weights.cpu(),
            )
            val_features = head.inputs(kept.val[0].float())
            choosing = choose_penalty(problem, val_features, kept.val_labels, self.cancel)
            penalty = yield from as_stage_progress(choosing, "Fitting the head")
            solver = LinearHeadSolver(problem, penalty, None)
            for _ in solver.solve(self.cancel):
                pass
            weight, bias = solver.folded()
            predicted = (val_features @ weight.T + bias).argmax(1)
            accuracy = float((predicted == kept.val_labels).float().mean())
            note = "solved to its optimum"
        fit_seconds = time.perf_counter() - started
        return PlanEstimate("head", accuracy, self._head_seconds(kept, fit_seconds), note)

    def _head_seconds(self, kept: SamplePass, fit_seconds: float) -> float:
        """A head-only run on the whole dataset: one pass over the pictures per cached
        view, then the fit; without the cache, the network runs every epoch."""
        recipe, n_train, n_val = self.recipe, len(self.report.train), len(self.report.val)
        scale = n_train / max(len(kept.train_labels), 1)
        if not recipe.feature_cache or recipe.gradual_unfreeze is not None:
            per_epoch = (n_train + n_val) * kept.seconds_per_picture
            return recipe.epochs * per_epoch + fit_seconds * scale
        views = cached_view_count(recipe.augmentation, recipe.cached_views)
        passes = n_train * views + n_val
        return passes * kept.seconds_per_picture + fit_seconds * scale * views

    def _cut_plan(self, kept: SamplePass, blocks: int) -> Generator[Event, None, PlanEstimate]:
        freeze = f"last:{blocks}"
        self._prepare(freeze)
        try:
            self.graph.cut_before_last(blocks)  # refuses a trainable parameter before it
        except CutError:  # "Train BatchNorm" trains layers before the cut
            accuracy, step = None, kept.frozen / EVAL_STEP_RATIO
            note = "not measured: layers before these blocks train too (Train BatchNorm)"
        else:
            frontier = self.graph.frontier(blocks)
            rest = self.graph.rest(frontier)
            columns = [self.values.index(v) for v in frontier]
            accuracy, note, step = yield from self._trial(freeze, rest, kept, columns)
        per_epoch = (
            len(self.report.train) * (kept.seconds_per_picture + step)
            + len(self.report.val) * kept.seconds_per_picture
        )  # the frozen blocks still run on every augmented picture
        return PlanEstimate(freeze, accuracy, self.recipe.epochs * per_epoch, note)

    def _everything_plan(self, kept: SamplePass) -> Generator[Event, None, PlanEstimate]:
        self._prepare("none")
        accuracy, note, step = yield from self._trial("none", self.model, kept, None)
        per_epoch = (
            len(self.report.train) * (kept.loading + step)
            + len(self.report.val) * kept.seconds_per_picture
        )
        return PlanEstimate("none", accuracy, self.recipe.epochs * per_epoch, note)

    def _prepare(self, freeze: str) -> None:
        """The pretrained network with a fresh head, frozen as the plan says."""
        self.model.load_state_dict(self.pristine)
        apply_freeze_plan(
            self.model, self.head_path, FreezePlan(freeze), self.recipe.train_batchnorm
        )

    # --- trials --------------------------------------------------------------------------
    def _trial(
        self,
        freeze: str,
        network: nn.Module,
        kept: SamplePass,
        columns: Sequence[int] | None,
    ) -> Generator[Event, None, tuple[float | None, str, float]]:
        """Train ``network`` as far as the budget allows; returns the best validation
        accuracy (None when not measured), how it was measured, and the seconds per
        picture of a training step."""
        trial = Trial(
            network, self.recipe, self.device, self.amp_dtype, self.class_weights, self.cancel
        )
        train, val = self._batches(kept, columns)
        if self.cancel.is_set():
            return None, "not measured: stopped", kept.frozen / EVAL_STEP_RATIO
        if self.advisor._left() > 0:
            inputs, labels = next(iter(train(False)))
            few = min(len(labels), TIMED_PICTURES)  # a small batch: timing costs little
            step = trial.time_step(tuple(i[:few] for i in inputs), labels[:few])
        else:  # out of time: a training step costs about three forward passes
            step = kept.frozen / EVAL_STEP_RATIO
        n_train, n_val = len(kept.train_labels), len(kept.val_labels)
        if columns is None:  # pictures: decoded again every epoch, like the pass did
            per_epoch = n_train * (step + kept.loading) + n_val * kept.seconds_per_picture
        else:
            per_epoch = (n_train + EVAL_STEP_RATIO * n_val) * step
        left = self.advisor._left() / self._trials_left(freeze)
        epochs = min(self.recipe.epochs, int(left / per_epoch)) if per_epoch > 0 else 0
        if self.advisor._left() <= 0:
            return None, "not measured: the time to measure was spent", step
        if epochs < 1:
            return None, f"not measured: one epoch on the sample needs {per_epoch:.0f} s", step
        steps = max(1, -(-n_train // self.recipe.batch_size))
        deadline = self.advisor._started + self.advisor.budget_s  # never past the budget
        work = trial.run(train, val, epochs, steps, deadline)
        outcome = yield from as_stage_progress(work, f"Trying {freeze}")
        if outcome is None:
            return None, "not measured: stopped before an epoch ended", step
        shortened = "" if outcome.epochs == self.recipe.epochs else f" (of {self.recipe.epochs})"
        note = f"{outcome.epochs} epochs{shortened} on the sample"
        return outcome.accuracy, note, step

    def _trials_left(self, freeze: str) -> int:
        order = [f"last:{n}" for n in self.cuts] + ["none"]
        return len(order) - order.index(freeze) if freeze in order else len(order) + 1

    def _batches(self, kept: SamplePass, columns: Sequence[int] | None) -> tuple[Batches, Batches]:
        size, seed, device = self.recipe.batch_size, self.recipe.seed, self.device
        if columns is not None:
            train = Activations([kept.train[c] for c in columns], kept.train_labels)
            val = Activations([kept.val[c] for c in columns], kept.val_labels)
            return train.batches(size, seed, device), val.batches(size, seed, device)
        return self._picture_batches(kept, False), self._picture_batches(kept, True)

    def _picture_batches(self, kept: SamplePass, validation: bool) -> Batches:
        pre = self.spec.preprocessing
        samples = [s for s, is_val in kept.samples if is_val == validation]
        dataset = ImageDataset(samples, eval_transform(pre), pre)
        recipe, device, on_device = self.recipe, self.device, self._on_device

        def batches(shuffle: bool) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
            loader = make_loader(dataset, recipe.batch_size, shuffle, 0, recipe.seed)
            for batch in loader:
                if batch.images is not None and batch.labels is not None:
                    yield (on_device(batch.images),), batch.labels.to(device)

        return batches
