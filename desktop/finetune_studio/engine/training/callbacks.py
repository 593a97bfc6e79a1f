"""Engine layer: what happens after each finished epoch besides training.

Small, separate decisions: write a resumable checkpoint, and stop early when the
monitored loss has not improved for ``patience`` epochs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..events import Log
from ..recipe import Recipe
from .checkpoint import random_states, save_checkpoint
from .phases import Optimization
from .state import RunState


class CheckpointWriter:
    """Saves the whole run after every epoch, so ``--resume`` continues exactly."""

    def __init__(self, path: Path, recipe: Recipe) -> None:
        self.path, self.recipe = path, recipe

    def save(
        self,
        state: RunState,
        model: nn.Module,
        optimization: Optimization,
        scaler: torch.amp.GradScaler,
        generators: list[torch.Generator],
    ) -> None:
        optimizer, scheduler = optimization
        save_checkpoint(
            self.path,
            {
                "recipe": self.recipe.to_dict(),
                **state.to_checkpoint(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "random": random_states(generators),
            },
        )


class EarlyStopping:
    def __init__(self, patience: int) -> None:
        self.patience = patience  # 0: never stop early

    def should_stop(self, state: RunState) -> Log | None:
        if self.patience and state.epochs_without_gain >= self.patience:
            epochs = "1 epoch" if self.patience == 1 else f"{self.patience} epochs"
            return Log(f"Early stop: no better validation loss for {epochs}.")
        return None
