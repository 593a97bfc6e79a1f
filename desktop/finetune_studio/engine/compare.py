"""Engine layer: "Compare backbones", measured on the user's own pictures.

For each backbone of a chosen set (by default every one whose weights are at hand
without a network), on a stratified sample of the dataset (a cap per class keeps it
quick):

- a linear probe's k-fold accuracy and its spread across folds: the head a head-only
  run solves (``head_fit.LinearHeadSolver``), cross-validated as the suspects search
  does (``review.out_of_fold``) on the pretrained network's head features;
- the latency per picture of the whole network on this device, at batch 1 and 32;
- the parameter count and the size of its weights file.

Features go through the feature store under the key a head-only run of the same
backbone, weights and preprocessing uses (``DataPreparation``): the chosen backbone's
run finds the sampled pictures there and starts training at once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .advice.sampling import classes_taking_turns
from .backbones import BackboneSpec, backbone_infos, build_model, get_spec
from .blocking_steps import with_progress
from .errors import DatasetError, RecipeError, WeightsError
from .events import Event, Log, StageProgress, Value
from .feature_store import FeatureStore
from .features import find_feature_split
from .head_fit import solvable_head
from .inspection import DatasetReport, Sample, inspect_dataset
from .latency import TIMING_BUDGET_S, latencies_ms, time_in_turns
from .recipe import Recipe
from .review.out_of_fold import DEFAULT_FOLDS, assign_folds, out_of_fold_probabilities
from .training.data import DataPreparation
from .training.run import compute_set_up

DEFAULT_PER_CLASS = 50
MIN_PER_CLASS = 2  # one picture per class leaves a fold's classes unseen in training
OFFLINE_WEIGHTS = ("bundled", "cached")  # ``BackboneSpec.weights_status()`` values
# Networks kept in memory to be timed again in turns (``latency.time_in_turns``), up to
# this many parameters in all (4 GB in float32); the others keep their first timing.
MAX_KEPT_PARAMETERS = 1_000_000_000


@dataclass(frozen=True)
class BackboneScore:
    """One backbone's figures. ``accuracy`` is the mean over folds, ``accuracy_std``
    their standard deviation; latencies are milliseconds per picture, float32, fastest run."""

    backbone: str
    accuracy: float
    accuracy_std: float
    latency_ms_b1: float
    latency_ms_b32: float
    params: int
    size_mb: float | None  # the weights file; None when unknown

    def to_dict(self) -> dict[str, Any]:
        """The public form (``compare --json``)."""
        return {
            "backbone": self.backbone,
            "accuracy": round(self.accuracy, 6),
            "accuracy_std": round(self.accuracy_std, 6),
            "latency_ms_b1": round(self.latency_ms_b1, 3),
            "latency_ms_b32": round(self.latency_ms_b32, 3),
            "params": self.params,
            "size_mb": None if self.size_mb is None else round(self.size_mb, 2),
        }


@dataclass(frozen=True)
class BackboneCompared:
    """Event: one more backbone measured (``done`` of ``total``), so a view can show
    it before the others finish."""

    score: BackboneScore
    done: int
    total: int


@dataclass(frozen=True)
class Comparison:
    scores: tuple[BackboneScore, ...]  # in the order asked
    skipped: tuple[tuple[str, str], ...]  # (backbone, why) for those not measured
    pictures: int  # sampled pictures that loaded
    per_class: int
    folds: int
    device: str
    threads: int  # torch's CPU threads while timing
    seconds: float

    def best(self) -> BackboneScore | None:
        """The most accurate; the faster at batch 1 between equals."""
        return min(self.scores, key=lambda s: (-s.accuracy, s.latency_ms_b1), default=None)

    def summary(self) -> str:
        """How it was measured, in a sentence (and what was not)."""
        device = self.device.upper()
        plural = "" if self.threads == 1 else "s"
        threads = f" ({self.threads} thread{plural})" if device == "CPU" else ""
        text = (
            f"{len(self.scores)} backbone(s) on {self.pictures} of your pictures, "
            f"{self.folds}-fold linear probe; latency on this {device}{threads}, float32; "
            f"measured in {self.seconds:.0f} s."
        )
        not_compared = "; ".join(f"{name} ({why})" for name, why in self.skipped)
        return f"{text} Not compared: {not_compared}" if not_compared else text


CompareEvent = Event | BackboneCompared


def offline_backbones() -> list[str]:
    """Every registered backbone whose pretrained weights need no network: bundled
    with a package or already in the cache. Read from the registry, so backbones
    added to it join without a change here."""
    infos = backbone_infos(include_timm=True)  # timm's: those in the Hugging Face cache
    return [info.name for info in infos if info.weights in OFFLINE_WEIGHTS]


def stratified_sample(samples: Sequence[Sample], per_class: int, seed: int) -> list[Sample]:
    """At most ``per_class`` pictures of each class, drawn in a seeded order."""
    taken: Counter[int] = Counter()
    chosen: list[Sample] = []
    for sample in classes_taking_turns(samples, seed):
        if taken[sample.label] < per_class:
            taken[sample.label] += 1
            chosen.append(sample)
    return chosen


def fold_accuracies(
    probabilities: np.ndarray, labels: torch.Tensor, folds: int, seed: int
) -> list[float]:
    """Each fold's accuracy, from the out-of-fold probabilities (the folds drawn as
    ``out_of_fold_probabilities`` drew them), but the first's: the head's penalty was
    chosen on that fold's pictures, and scoring them too would flatter the probe.
    Empty folds are left out."""
    fold_of = assign_folds(labels, folds, seed).numpy()
    right = probabilities.argmax(1) == labels.numpy()
    present = [fold for fold in range(folds) if (fold_of == fold).any()]
    return [float(right[fold_of == fold].mean()) for fold in present[1:]]


def weights_size_mb(spec: BackboneSpec) -> float | None:
    """The weights file's size on disk (MB of 10^6 bytes, as torchvision states it);
    the registry's figure when there is no file here yet."""
    bundled = spec.bundled_weights_file() if spec.bundled_weights_file else None
    for path in (bundled, spec.cached_weights_path()):
        if path is not None and path.is_file():
            return path.stat().st_size / 1e6
    return spec.weights_size_mb


class BackboneComparison:
    """``events()`` yields progress, log and ``BackboneCompared`` events and returns
    the ``Comparison`` (None when cancelled); ``cancel()`` is thread-safe and takes
    effect between batches of pictures, folds and timed runs.

    ``recipe`` gives the dataset, split, seed, device, precision and batch size; each
    backbone is measured with its default (pretrained) weights."""

    def __init__(
        self,
        recipe: Recipe,
        backbones: Sequence[str] | None = None,
        per_class: int = DEFAULT_PER_CLASS,
        dataset: DatasetReport | None = None,
        folds: int = DEFAULT_FOLDS,
        cpu_threads: int | None = None,
        feature_store: FeatureStore | Literal["default"] | None = "default",
        timing_budget_s: float = TIMING_BUDGET_S,
    ) -> None:
        if per_class < MIN_PER_CLASS:
            raise RecipeError(
                f"Pictures per class must be at least {MIN_PER_CLASS}, got {per_class}."
            )
        names = list(dict.fromkeys(offline_backbones() if backbones is None else backbones))
        if not names:
            raise RecipeError(
                "No backbone to compare: name at least one."
                if backbones is not None
                else "No backbone to compare: none has its weights on this computer; "
                "name some (their weights will be downloaded)."
            )
        self.recipe, self.backbones, self.per_class = recipe, names, per_class
        self.dataset, self.folds, self.cpu_threads = dataset, folds, cpu_threads
        self.feature_store = FeatureStore() if feature_store == "default" else feature_store
        self.timing_budget_s = timing_budget_s
        self.cancel_token = threading.Event()

    def cancel(self) -> None:
        self.cancel_token.set()

    def events(self) -> Generator[CompareEvent, None, Comparison | None]:
        started = time.perf_counter()
        for name in self.backbones:  # here, not in __init__: a timm spec builds its network
            get_spec(name)  # an unknown name fails first, with the registry's suggestion
        recipe = self.recipe
        device, amp_dtype = compute_set_up(recipe, self.cpu_threads)
        report = self.dataset or inspect_dataset(recipe.dataset, recipe.val_fraction, recipe.seed)
        report.require_trainable()
        sample = stratified_sample((*report.train, *report.val), self.per_class, recipe.seed)
        yield Log(
            f"Comparing {len(self.backbones)} backbone(s) on {len(sample)} pictures "
            f"(at most {self.per_class} per class), {self.folds}-fold."
        )
        scores: list[BackboneScore] = []
        skipped: list[tuple[str, str]] = []
        kept: list[tuple[int, nn.Module, int]] = []  # (score's index, network, crop)
        loaded = 0
        for name in self.backbones:
            measuring = _Measuring(self, name, report, sample, device, amp_dtype)
            try:
                outcome = yield from measuring.run()
            except WeightsError as error:  # no network, say: the others still count
                if self.cancel_token.is_set():  # a download stopped by Cancel
                    return None
                skipped.append((name, str(error)))
                yield Log(f"{name} was not compared: {error}", "warning")
                continue
            if outcome is None:
                return None
            score, loaded, model = outcome
            if sum(scores[i].params for i, _, _ in kept) + score.params <= MAX_KEPT_PARAMETERS:
                kept.append((len(scores), model, get_spec(name).preprocessing.crop_size))
            scores.append(score)
            yield BackboneCompared(score, len(scores) + len(skipped), len(self.backbones))
        if len(kept) > 1:
            networks = [(model, crop) for _, model, crop in kept]
            first = [(scores[i].latency_ms_b1, scores[i].latency_ms_b32) for i, _, _ in kept]
            budget = self.timing_budget_s
            fastest = yield from time_in_turns(networks, first, device, self.cancel_token, budget)
            if fastest is None:
                return None
            for (index, _, _), (b1, b32) in zip(kept, fastest, strict=True):
                scores[index] = dataclasses.replace(
                    scores[index], latency_ms_b1=b1, latency_ms_b32=b32
                )
        return Comparison(
            scores=tuple(scores),
            skipped=tuple(skipped),
            pictures=loaded,
            per_class=self.per_class,
            folds=self.folds,
            device=device.type,
            threads=torch.get_num_threads(),
            seconds=time.perf_counter() - started,
        )


class _Measuring:
    """One backbone's measurement."""

    def __init__(
        self,
        comparison: BackboneComparison,
        name: str,
        report: DatasetReport,
        sample: list[Sample],
        device: torch.device,
        amp_dtype: torch.dtype | None,
    ) -> None:
        self.comparison, self.name, self.report, self.sample = comparison, name, report, sample
        self.device, self.amp_dtype = device, amp_dtype
        self.recipe = comparison.recipe.replace(backbone=name, weights="default")
        self.cancel = comparison.cancel_token

    def run(
        self,
    ) -> Generator[CompareEvent, None, tuple[BackboneScore, int, nn.Module] | None]:
        """The score, the pictures that loaded and the network (to be timed again);
        None when cancelled."""
        name, cancel = self.name, self.cancel
        spec = get_spec(name)
        if spec.weights_status() == "download":
            yield Log(f"Downloading the weights of {name}…")
        classes = len(self.report.classes)
        built = yield from with_progress(
            lambda progress: build_model(name, classes, "default", progress, cancel),
            f"{name}: downloading its weights",
        )
        if cancel.is_set():
            return None
        model = built.model.to(self.device)
        channels_last = self.device.type in ("cpu", "cuda")
        if channels_last:
            model.to(memory_format=torch.channels_last)
        preparation = DataPreparation(
            self.recipe,
            self.device,
            channels_last,
            self.amp_dtype,
            cancel,
            self.comparison.feature_store,
            0,
            set(),
        )
        features, labels, rows = yield from preparation.head_features(
            model, built.head_path, spec, self.sample, f"{name}: computing features"
        )
        if cancel.is_set():
            return None
        if len(rows) < self.comparison.folds:
            raise DatasetError(
                f"Only {len(rows)} of the sampled pictures could be read: too few to "
                "compare. See the Data step."
            )
        accuracy = yield from self._probe(model, built.head_path, features, labels)
        if accuracy is None:
            return None
        latencies = yield from self._latencies(model, spec)
        if latencies is None:
            return None
        score = BackboneScore(
            backbone=name,
            accuracy=float(np.mean(accuracy)),
            accuracy_std=float(np.std(accuracy)),
            latency_ms_b1=latencies[0],
            latency_ms_b32=latencies[1],
            params=spec.num_params,
            size_mb=weights_size_mb(spec),
        )
        yield Log(
            f"{name}: {score.accuracy:.1%} ± {score.accuracy_std:.1%}, "
            f"{score.latency_ms_b1:.1f} ms per picture alone, "
            f"{score.latency_ms_b32:.1f} ms in batches of 32."
        )
        return score, len(rows), model

    def _probe(
        self, model: nn.Module, head_path: str, features: torch.Tensor, labels: torch.Tensor
    ) -> Generator[CompareEvent, None, list[float] | None]:
        """Each fold's accuracy of the linear head, solved as a head-only run solves it."""
        head = solvable_head(find_feature_split(model, head_path).head_block(model).cpu())
        inputs = head.inputs(features) if head is not None else features
        folds, seed = self.comparison.folds, self.recipe.seed
        work = out_of_fold_probabilities(
            inputs.float(), labels, len(self.report.classes), folds, seed, self.cancel
        )
        probabilities = yield from _named_stages(work, self.name)
        if probabilities is None:
            return None
        return fold_accuracies(probabilities, labels, folds, seed)

    def _latencies(
        self, model: nn.Module, spec: BackboneSpec
    ) -> Generator[CompareEvent, None, tuple[float, ...] | None]:
        model.to(self.device)  # the probe moved the head to the CPU
        stage = f"{self.name}: timing"
        yield StageProgress(stage, 0, 1)
        crop, budget = spec.preprocessing.crop_size, self.comparison.timing_budget_s
        measured = latencies_ms(model, crop, self.device, self.cancel, budget)
        yield StageProgress(stage, 1, 1)
        return measured


def _named_stages(
    work: Generator[Event, None, Value], name: str
) -> Generator[CompareEvent, None, Value]:
    """``work``'s events, its stages named after the backbone ("resnet18: cross-validating")."""
    while True:
        try:
            event = next(work)
        except StopIteration as finished:
            value: Value = finished.value
            return value
        if isinstance(event, StageProgress):
            event = StageProgress(
                f"{name}: {event.stage[:1].lower()}{event.stage[1:]}", event.done, event.total
            )
        yield event
