"""Engine layer: a run whose only trainable part is a Linear head on cached features.

Instead of epochs of the optimizer, the head is solved (``head_fit``): the L2
penalty is chosen on validation loss, then L-BFGS iterates to convergence. Each
iteration is one pass over the features and is reported as an epoch, so the curves
show the fit converging, and the best iteration by validation loss is kept exactly
as the best epoch of any run is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from ..events import BatchEnd, Event, Log, as_stage_progress
from ..head_fit import (
    MAX_ITERATIONS,
    PENALTIES,
    LinearHeadSolver,
    Problem,
    SolvableHead,
    choose_penalty,
    load_into,
)
from .run import EpochTally, Run, class_weights

if TYPE_CHECKING:
    from .trainer import Trainer

SOLVER_PATIENCE = 20
"""Iterations without a better validation loss before the fit stops (unless the
recipe sets its own early-stopping patience)."""


def fit_head(trainer: Trainer, run: Run, head: SolvableHead) -> Iterator[Event]:
    recipe = trainer.recipe
    weights = class_weights(run.report.train_counts) if recipe.class_balanced else None
    problem = _problem(run, head, recipe.label_smoothing, weights)
    assert run.data.val_features is not None
    val_features, val_labels = run.data.val_features.gathered()
    val_features = head.inputs(val_features)
    yield Log(
        "Fitting the head to its optimum on standardised cached features "
        "(L-BFGS; the recipe's epochs and learning rate apply when more than the head trains)."
    )
    choosing = choose_penalty(problem, val_features, val_labels, trainer.cancel_token)
    penalty = yield from as_stage_progress(choosing, "Choosing the head's regularisation")
    if trainer.cancel_token.is_set():
        return
    yield Log(f"Head: L2 penalty {penalty:g}, the lowest validation loss of {len(PENALTIES)}.")
    solver = LinearHeadSolver(problem, penalty, None)
    patience = recipe.early_stopping_patience or SOLVER_PATIENCE
    started = time.perf_counter()
    for iteration in solver.solve(trainer.cancel_token):
        load_into(head.linear, *solver.folded())
        loss = solver.fit_loss()
        yield BatchEnd(iteration, MAX_ITERATIONS, 1, 1, loss, solver.step_size(), "iteration")
        tally = EpochTally(
            loss, solver.accuracy(), time.perf_counter() - started, solver.step_size()
        )
        ended = yield from trainer.end_epoch(
            run, iteration, MAX_ITERATIONS, tally, patience, checkpoint=False, unit="iteration"
        )
        if ended:
            return
        started = time.perf_counter()


def _problem(
    run: Run, head: SolvableHead, label_smoothing: float, weights: torch.Tensor | None
) -> Problem:
    """Every cached view of every training picture, as one set of rows, as the head's
    Linear layer sees them."""
    assert run.data.train_features is not None
    gathered = [table.gathered() for table in run.data.train_features]
    features = head.inputs(torch.cat([x for x, _ in gathered]))
    labels = torch.cat([y for _, y in gathered])
    return Problem(features, labels, len(run.class_names), label_smoothing, weights)
