"""Engine layer: out-of-sample class probabilities for every picture, by k-fold
cross-validation of a linear head on fixed features.

Each picture's probabilities come from a head that never saw it, which is what
confident learning needs: a model that has fitted a wrong label cannot point it out.
The head is the one a head-only run solves (``head_fit.LinearHeadSolver``); its L2
penalty is chosen once, on the first fold, and kept for the others.
"""

from __future__ import annotations

import threading
from collections.abc import Generator

import numpy as np
import torch

from ..events import Event, StageProgress, as_stage_progress
from ..head_fit import LinearHeadSolver, Problem, choose_penalty

DEFAULT_FOLDS = 5
STAGE = "Cross-validating"


def assign_folds(labels: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """A fold for each picture, stratified: each class's pictures, shuffled, are dealt
    to the folds in turn (a class's first picture to a random fold, so small classes
    do not all start in fold 0)."""
    generator = torch.Generator().manual_seed(seed)
    assigned = torch.empty(len(labels), dtype=torch.long)
    for label in sorted(set(labels.tolist())):
        members = (labels == label).nonzero().view(-1)
        members = members[torch.randperm(len(members), generator=generator)]
        start = int(torch.randint(folds, (1,), generator=generator))
        assigned[members] = (torch.arange(len(members)) + start) % folds
    return assigned


def out_of_fold_probabilities(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    cancel: threading.Event | None = None,
) -> Generator[Event, None, np.ndarray | None]:
    """(pictures, classes) probabilities, each row from the head trained without that
    picture's fold, with progress events; None when cancelled."""
    fold_of = assign_folds(labels, folds, seed)
    probabilities = torch.zeros(len(labels), num_classes)
    penalty: float | None = None
    for fold in range(folds):
        held_out = fold_of == fold
        if not held_out.any():
            yield StageProgress(STAGE, fold + 1, folds)
            continue
        problem = Problem(features[~held_out], labels[~held_out], num_classes)
        if penalty is None:
            choosing = choose_penalty(problem, features[held_out], labels[held_out], cancel)
            penalty = yield from as_stage_progress(choosing, "Choosing the head's penalty")
        solver = LinearHeadSolver(problem, penalty, None)
        for _ in solver.solve(cancel):
            pass
        if cancel is not None and cancel.is_set():
            return None
        weight, bias = solver.folded()
        with torch.no_grad():
            logits = features[held_out] @ weight.T + bias
        probabilities[held_out] = torch.softmax(logits, dim=1)
        yield StageProgress(STAGE, fold + 1, folds)
    return probabilities.numpy()
