"""Engine layer: resumable checkpoints, written atomically after every epoch.

A checkpoint holds what a run can change (trained weights and buffers, optimizer,
schedule, loss scaler), where it stands (epoch, best so far, history, the class
names it learned; see ``state.RunState``), and every
random-number state that decides what comes next (torch, numpy, Python, each data
loader's generator), so a resumed run continues exactly as if it had not stopped.
The file holds only tensors and plain values and is read with
``torch.load(weights_only=True)``: nothing in it can run code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_file_atomically
from ..errors import UserFacingError

CHECKPOINT_VERSION = 2  # 2: class names, the best model's evaluation, trained parameters


def random_states(generators: list[torch.Generator]) -> dict[str, Any]:
    kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": position,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "python": random.getstate(),
        "loaders": [g.get_state() for g in generators],
    }


def restore_random_states(states: dict[str, Any], generators: list[torch.Generator]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy = states["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["gauss"],
        )
    )
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    for generator, state in zip(generators, states["loaders"], strict=True):
        generator.set_state(state)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint."""
    write_file_atomically(
        path, lambda temporary: torch.save({"version": CHECKPOINT_VERSION, **state}, temporary)
    )


def _without_dataset(recipe: object) -> object:
    """A recipe as a resume compares it: the dataset's folder may have moved, or be
    another node's copy under torchrun (the class names are compared separately)."""
    if not isinstance(recipe, dict):
        return recipe
    return {key: value for key, value in recipe.items() if key != "dataset"}


def load_checkpoint(path: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserFacingError(
            f"There is no checkpoint to resume from at {path}. A run that solves the head "
            "alone writes none: start it again (its features come from the cache)."
        ) from None
    except Exception as exc:  # unreadable or tampered with: refuse, never unpickle more
        raise UserFacingError(f"The checkpoint {path} cannot be read ({exc}).") from exc
    if state.get("version") != CHECKPOINT_VERSION:
        raise UserFacingError(f"The checkpoint {path} was written by another version.")
    if _without_dataset(state.get("recipe")) != _without_dataset(recipe):
        raise UserFacingError(
            f"The checkpoint {path} belongs to a different run (its recipe differs); "
            "start afresh or use the same options."
        )
    return state
