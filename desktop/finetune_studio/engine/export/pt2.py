"""Engine layer: the ``pt2`` export, ``torch.export``'s program with any batch size.

``torch.export.load`` gives it back without the model's source code. The class names,
preprocessing and calibration travel inside the archive as extra files
(``class_names.json``, ``preprocessing.json``, ``calibration.json``).

``torch.export.load`` unpickles parts of the archive, so, like TorchScript, a .pt2 is
for files one trusts; the model folder (safetensors and JSON) is the format to share.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checker import Runtime, torch_runtime
from .common import LoadedModel, dynamic_batch, example_batch, self_description
from .pictures import PictureSource

EXTRA_FILES = ("class_names.json", "preprocessing.json", "calibration.json")


def write_pt2(loaded: LoadedModel, path: Path, pictures: PictureSource) -> None:
    model = loaded.model.eval()
    program = torch.export.export(
        model, (example_batch(loaded.preprocessing),), dynamic_shapes=dynamic_batch(model)
    )
    extra_files = {f"{key}.json": text for key, text in self_description(loaded).items()}
    # A file object: given a path, torch.export warns unless the name ends in .pt2,
    # and the atomic writer's temporary name does not.
    with open(path, "wb") as file:
        torch.export.save(program, file, extra_files=extra_files)


def read_pt2(path: Path) -> tuple[torch.export.ExportedProgram, dict[str, str]]:
    """The program and its extra files (``EXTRA_FILES``, empty where missing)."""
    extra_files: dict[str, str] = dict.fromkeys(EXTRA_FILES, "")
    with open(path, "rb") as file:
        program = torch.export.load(file, extra_files=extra_files)
    return program, extra_files


def load_pt2(path: Path) -> Runtime:
    program, _ = read_pt2(path)
    return torch_runtime(program.module())
