"""Engine layer: the export formats, and exporting a model to one of them, checked.

Each format is a writer and a loader (its own module); ``Exporter.export`` writes the
artifact under a temporary name, loads it back with its own runtime, has the
``checker`` compare it with the PyTorch model on real pictures, and only then moves
it into place. A format that fails to convert or to pass its check leaves nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import ExportError
from .checker import (
    INT8_AGREEMENT,
    ExportFigures,
    Reference,
    Requirement,
    Runtime,
    check_artifact,
    reference_of,
    torch_runtime,
)
from .common import LoadedModel, conversion_errors, save_export_file
from .executorch_pte import load_pte, write_pte
from .onnx_float import load_onnx, write_onnx
from .onnx_int8 import write_onnx_int8
from .pictures import PictureSource
from .pt2 import load_pt2, write_pt2
from .torchscript import load_torchscript, write_torchscript

Writer = Callable[[LoadedModel, Path, PictureSource], None]


@dataclass(frozen=True)
class ExportFormat:
    name: str  # what the CLI's --format and model.json's "exports" call it
    label: str  # what messages call it
    file_name: str  # its file inside a model folder
    write: Writer
    load: Callable[[Path], Runtime]
    requirement: Requirement = field(default_factory=Requirement)
    note: str = ""  # said beside the label in the window

    @property
    def title(self) -> str:
        return f"{self.label} ({self.note})" if self.note else self.label


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("pt2", "pt2", "model.pt2", write_pt2, load_pt2, note="torch.export"),
        ExportFormat("onnx", "ONNX", "model.onnx", write_onnx, load_onnx),
        ExportFormat(
            "onnx-int8",
            "ONNX int8",
            "model.int8.onnx",
            write_onnx_int8,
            load_onnx,
            Requirement(agreement=INT8_AGREEMENT, probability_tolerance=None),
        ),
        ExportFormat(
            "torchscript",
            "TorchScript",
            "model.torchscript.pt",
            write_torchscript,
            load_torchscript,
            note="deprecated",
        ),
        ExportFormat("executorch", "ExecuTorch", "model.pte", write_pte, load_pte, note="XNNPACK"),
    )
}
OPTIONAL_FORMATS = ("executorch",)  # offered where its package is installed
EXPORT_FORMATS = tuple(name for name in FORMATS if name not in OPTIONAL_FORMATS)
FORMAT_FILES = {name: f.file_name for name, f in FORMATS.items()}
ONNX_FORMATS = ("onnx", "onnx-int8")
PYTORCH = "pytorch"  # the figures of the model itself, for comparison


def available_formats() -> tuple[str, ...]:
    """Every format this installation can write: the optional ones whose package is
    installed too (looked up, not imported)."""
    optional = tuple(name for name in OPTIONAL_FORMATS if importlib.util.find_spec(name))
    return EXPORT_FORMATS + optional


def export_format(name: str) -> ExportFormat:
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(FORMATS)
        raise ExportError(f"Unknown export format {name!r}; use one of {known}.") from None


class Exporter:
    """Exports one model to any number of formats, checked on the same pictures."""

    def __init__(self, loaded: LoadedModel, pictures: PictureSource) -> None:
        self.loaded = loaded
        self.pictures = pictures

    @cached_property
    def reference(self) -> Reference:
        return reference_of(self.loaded.model, self.pictures.check_pictures)

    def pytorch_figures(self, weights: Path) -> ExportFigures:
        """The model's own row of the table (its agreement is 100 % by definition)."""
        runtime = torch_runtime(self.loaded.model.eval())
        return check_artifact(
            PYTORCH, "PyTorch", weights, weights.name, runtime, self.reference, Requirement()
        )

    def export(
        self, name: str, destination: Path, overwrite: bool = False, shown_as: str = ""
    ) -> ExportFigures:
        """Write ``destination`` in format ``name`` if it passes its check; the figures
        name the file ``shown_as`` (default: the destination's path)."""
        spec = export_format(name)
        figures: list[ExportFigures] = []

        def write(path: Path) -> None:
            with conversion_errors(spec.label):
                spec.write(self.loaded, path, self.pictures)
                runtime = spec.load(path)
            reference = self.reference
            shown = shown_as or str(destination)
            figures.append(
                check_artifact(name, spec.label, path, shown, runtime, reference, spec.requirement)
            )

        save_export_file(destination, write, overwrite)
        return figures[0]
