"""Engine layer: what every export format shares.

A loaded model (``LoadedModel``), the atomic writing of one export file that turns
disk errors and converter failures into ``ExportError`` in the user's words, and the
parity check of a reloaded artifact against the PyTorch model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import write_file_atomically
from ..calibration import Calibration
from ..errors import ExportError, UserFacingError
from ..preprocessing import Preprocessing

PARITY_TOLERANCE = 1e-4


@dataclass
class LoadedModel:
    model: nn.Module
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    metadata: dict[str, Any]
    calibration: Calibration = field(default_factory=Calibration)  # identity if never fitted


@contextmanager
def os_errors_as_export_errors(destination: Path) -> Iterator[None]:
    try:
        yield
    except PermissionError as exc:
        raise ExportError(f"Cannot write to {destination}: permission denied.") from exc
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ExportError(f"Could not write the export to {destination}: {reason}.") from exc


@contextmanager
def conversion_errors(format_name: str) -> Iterator[None]:
    """A converter that cannot handle a model (or is incomplete in this installation)
    fails with its own words; our checks and disk errors pass through unchanged."""
    try:
        yield
    except (UserFacingError, OSError):
        raise
    except Exception as exc:
        raise ExportError(
            f"Converting the model to {format_name} failed ({type(exc).__name__}: {exc}). "
            f"Export again without {format_name}."
        ) from exc


def sample_batch(preprocessing: Preprocessing, images: torch.Tensor | None = None) -> torch.Tensor:
    """Inputs for parity checks: the given pictures, or fixed synthetic ones."""
    if images is not None and len(images):
        return images
    generator = torch.Generator().manual_seed(0)
    size = preprocessing.crop_size
    return torch.randn(4, 3, size, size, generator=generator)


def check_parity(reference: torch.Tensor, candidate: np.ndarray | torch.Tensor, what: str) -> float:
    """Same top-1 and softmax probabilities within ``PARITY_TOLERANCE``, or ``ExportError``."""
    candidate = torch.as_tensor(np.asarray(candidate))
    ref_probs = torch.softmax(reference.float(), 1)
    cand_probs = torch.softmax(candidate.float(), 1)
    difference = float((ref_probs - cand_probs).abs().max())
    if not torch.equal(ref_probs.argmax(1), cand_probs.argmax(1)) or difference > PARITY_TOLERANCE:
        raise ExportError(
            f"The {what} export does not match the PyTorch model (max probability "
            f"difference {difference:.2e}); it was not kept."
        )
    return difference


def save_export_file(destination: Path, write: Callable[[Path], None], overwrite: bool) -> None:
    """Write one export file atomically (``atomic.write_file_atomically``); an existing
    file is replaced only when ``overwrite`` is asked."""
    destination = destination.expanduser().absolute()
    if destination.exists() and not overwrite:
        raise ExportError(
            f"{destination} already exists; choose another name or allow overwriting."
        )
    with os_errors_as_export_errors(destination):
        write_file_atomically(destination, write)
