"""Engine layer: the TorchScript export, kept for C++ and older mobile runtimes.

Legacy: ``torch.jit`` warns that it is deprecated since torch 2.10, and ``torch.export``
(the ``pt2`` format) is its successor. The class names, preprocessing and calibration
travel inside the file as extra files, as in .pt2.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .checker import Runtime, torch_runtime
from .common import LoadedModel, example_batch, self_description
from .pictures import PictureSource


def write_torchscript(loaded: LoadedModel, path: Path, pictures: PictureSource) -> None:
    extra_files = {f"{key}.json": text for key, text in self_description(loaded).items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation, said in the UI
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(loaded.model.eval(), example_batch(loaded.preprocessing))  # type: ignore[no-untyped-call]
        traced.save(str(path), _extra_files=extra_files)


def load_torchscript(path: Path) -> Runtime:
    """Our own file, just written: safe to load (TorchScript from elsewhere may not be)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    return torch_runtime(module)
