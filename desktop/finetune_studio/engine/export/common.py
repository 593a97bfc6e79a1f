"""Engine layer: what every export format shares.

A loaded model (``LoadedModel``), the description every artifact carries in its own
metadata (``self_description``), the dynamic batch dimension, and the atomic writing
of one export file that turns disk errors and converter failures into ``ExportError``
in the user's words.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import write_file_atomically
from ..calibration import Calibration
from ..errors import ExportError, UserFacingError
from ..preprocessing import Preprocessing

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
PARITY_TOLERANCE = 1e-4
MAX_BATCH = 4096


@dataclass
class LoadedModel:
    model: nn.Module
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    metadata: dict[str, Any]
    calibration: Calibration = field(default_factory=Calibration)  # identity if never fitted


def self_description(loaded: LoadedModel) -> dict[str, str]:
    """What an artifact needs to be used without its model folder, as JSON texts: ONNX
    keeps them as ``finetune_studio.<key>`` metadata, .pt2 as ``<key>.json`` files."""
    return {
        "class_names": json.dumps(list(loaded.class_names)),
        "preprocessing": json.dumps(loaded.preprocessing.to_dict()),
        "calibration": json.dumps(loaded.calibration.to_dict()),
    }


def dynamic_batch(model: nn.Module) -> dict[str, dict[int, torch.export.Dim]]:
    """``dynamic_shapes`` for torch.export and the dynamo ONNX exporter: any batch size
    for the forward's first argument, whatever it is called."""
    argument = next(iter(inspect.signature(model.forward).parameters))
    return {argument: {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}


def example_batch(preprocessing: Preprocessing) -> torch.Tensor:
    """Two fixed pictures to trace with: a batch of 1 would fix the batch size."""
    return sample_batch(preprocessing)[:2]


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


def sample_batch(preprocessing: Preprocessing) -> torch.Tensor:
    """Four fixed synthetic pictures: inputs to trace with, and to check with when no
    real picture can be read."""
    generator = torch.Generator().manual_seed(0)
    size = preprocessing.crop_size
    return torch.randn(4, 3, size, size, generator=generator)


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
