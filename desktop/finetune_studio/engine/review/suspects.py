"""Engine layer: the pictures most likely to carry a wrong label, each with the class
it more probably belongs to.

Every picture (training and validation alike) gets out-of-sample probabilities from
a k-fold linear head on what the head sees of it (``out_of_fold``); confident
learning (cleanlab, the reference implementation of Northcutt et al.'s method) then
flags, in each class, as many of its pictures as the class's estimated label noise
says are wrong, those the probabilities fit least, ranked by self-confidence (the
probability of the given class). The features are the pretrained network's,
computed once and kept in the feature store, so after a head-only run this takes
seconds. A recipe that fine-tunes deeper layers is not retrained per fold (that
would be k runs): the user is told that its suspects come from the pretrained
features.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..backbones import build_model
from ..errors import RecipeError
from ..events import Event, Log
from ..feature_store import FeatureStore
from ..features import find_feature_split
from ..freezing import apply_freeze_plan
from ..head_fit import solvable_head
from ..inspection import DatasetReport, inspect_dataset
from ..recipe import Recipe
from ..training.data import DataPreparation
from ..training.run import compute_set_up
from .out_of_fold import DEFAULT_FOLDS, out_of_fold_probabilities
from .records import Predictions

MAX_FOLDS = 20
FEATURES_NOTE = (
    "Your recipe trains more than the head; training it once per fold would take {folds} "
    "runs, so these suspects come from the pretrained network's features with a new "
    "head per fold."
)


@dataclass(frozen=True)
class Suspect:
    """A picture whose label is probably wrong. ``score`` is 1 minus the out-of-sample
    probability of the given class: higher is more suspicious."""

    path: str
    given: int
    suggested: int
    score: float

    def to_dict(self, class_names: Sequence[str]) -> dict[str, object]:
        """The public form ``{"path", "given", "suggested", "score"}`` (class names)."""
        return {
            "path": self.path,
            "given": class_names[self.given],
            "suggested": class_names[self.suggested],
            "score": round(self.score, 6),
        }


@dataclass(frozen=True)
class SuspectReport:
    suspects: tuple[Suspect, ...]  # most suspicious first
    class_names: tuple[str, ...]
    out_of_fold: Predictions  # every picture that loaded, training and validation
    folds: int
    note: str  # how the probabilities were made, for the user

    @property
    def pictures(self) -> int:
        return len(self.out_of_fold)


def rank_suspects(labels: np.ndarray, probabilities: np.ndarray) -> list[tuple[int, int, float]]:
    """(row, suggested class, score) of the rows confident learning flags, most
    suspicious first. The suggestion is the likeliest class other than the given one."""
    from cleanlab.filter import find_label_issues

    with warnings.catch_warnings():
        # cleanlab warns of classes with few pictures on stderr; the ranking still
        # holds, and the window has nowhere to show a library's warnings.
        warnings.simplefilter("ignore", UserWarning)
        flagged = find_label_issues(
            labels=labels,
            pred_probs=probabilities,
            # Per class, the pictures the class's estimated noise says are wrong. On the
            # digits with 5/10/20 % of labels flipped (tests/benchmarks/bench_suspects.py)
            # it found 98/94/96 % of them in the top 2x, where cleanlab's default
            # (prune_by_noise_rate) found 84/81/89 %, at a like precision.
            filter_by="prune_by_class",
            return_indices_ranked_by="self_confidence",
            n_jobs=1,  # no worker processes: the window's threads must not be forked
        )
    ranked: list[tuple[int, int, float]] = []
    for row in np.asarray(flagged, dtype=np.int64).tolist():
        others = probabilities[row].copy()
        others[labels[row]] = -1.0
        ranked.append((row, int(others.argmax()), float(1.0 - probabilities[row, labels[row]])))
    return ranked


class SuspectSearch:
    """``events()`` yields progress and log events and returns the ``SuspectReport``
    (None when cancelled); ``cancel()`` is thread-safe and takes effect between
    batches of pictures and between folds."""

    def __init__(
        self,
        recipe: Recipe,
        dataset: DatasetReport | None = None,
        folds: int = DEFAULT_FOLDS,
        cpu_threads: int | None = None,
        feature_store: FeatureStore | Literal["default"] | None = "default",
    ) -> None:
        if not 2 <= folds <= MAX_FOLDS:
            raise RecipeError(f"Folds must be between 2 and {MAX_FOLDS}, got {folds}.")
        self.recipe, self.dataset, self.folds = recipe, dataset, folds
        self.cpu_threads = cpu_threads
        self.feature_store = FeatureStore() if feature_store == "default" else feature_store
        self.cancel_token = threading.Event()

    def cancel(self) -> None:
        self.cancel_token.set()

    def events(self) -> Generator[Event, None, SuspectReport | None]:
        recipe, cancel = self.recipe, self.cancel_token
        device, amp_dtype = compute_set_up(recipe, self.cpu_threads)
        report = self.dataset or inspect_dataset(recipe.dataset, recipe.val_fraction, recipe.seed)
        report.require_trainable()
        built = build_model(recipe.backbone, len(report.classes), recipe.weights, cancel=cancel)
        if cancel.is_set():
            return None
        model, spec, head_path = built.model, built.spec, built.head_path
        note = (
            FEATURES_NOTE.format(folds=self.folds)
            if _trains_beyond_head(recipe, model, head_path)
            else ""
        )
        channels_last = device.type in ("cpu", "cuda")
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        preparation = DataPreparation(
            recipe, device, channels_last, amp_dtype, cancel, self.feature_store, 0, set()
        )
        samples = (*report.train, *report.val)
        features, labels, rows = yield from preparation.head_features(
            model, head_path, spec, samples, "Computing features"
        )
        if cancel.is_set():
            return None
        head = solvable_head(find_feature_split(model, head_path).head_block(model).cpu())
        inputs = head.inputs(features) if head is not None else features
        probabilities = yield from out_of_fold_probabilities(
            inputs, labels, len(report.classes), self.folds, recipe.seed, cancel
        )
        if probabilities is None:
            return None
        yield Log(f"Ranking {len(rows)} pictures by how well their labels fit.")
        given = labels.numpy()
        ranked = rank_suspects(given, probabilities)
        paths = tuple(os.path.abspath(samples[row].path) for row in rows)
        suspects = tuple(Suspect(paths[r], int(given[r]), s, score) for r, s, score in ranked)
        log_p = np.log(np.clip(probabilities, 1e-30, None))
        out_of_fold = Predictions.from_log_probabilities(paths, given, log_p)
        return SuspectReport(suspects, report.classes, out_of_fold, self.folds, note)


def _trains_beyond_head(recipe: Recipe, model: nn.Module, head_path: str) -> bool:
    """Whether the recipe trains anything but the head (its own plan, or later phases)."""
    if recipe.gradual_unfreeze is not None:
        return True
    apply_freeze_plan(model, head_path, recipe.freeze, recipe.train_batchnorm)
    head = {id(p) for p in model.get_submodule(head_path).parameters()}
    return any(p.requires_grad and id(p) not in head for p in model.parameters())
