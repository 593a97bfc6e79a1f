"""Engine layer: a model folder's other formats, and their figures in ``model.json``.

Formats are exported either while a model folder is being written (the window's
Export, ``train --export``) or later into an existing folder (the CLI's ``export``).
Either way ``model.json`` records each format's figures under ``"exports"``, with the
PyTorch model's own row (``"pytorch"``) for comparison; an existing folder's
``model.json`` is replaced atomically, so a failed export leaves it as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..atomic import write_file_atomically
from .checker import ExportFigures
from .common import METADATA_FILE, WEIGHTS_FILE, LoadedModel, os_errors_as_export_errors
from .formats import ONNX_FORMATS, PYTORCH, Exporter, export_format
from .pictures import PictureSource
from .standalone import write_predict_script

EXPORTS_KEY = "exports"
Progress = Callable[[int, int], None]


def export_all(
    folder: Path,
    loaded: LoadedModel,
    pictures: PictureSource,
    formats: Iterable[str],
    progress: Progress | None = None,
) -> list[ExportFigures]:
    """Each of ``formats`` into ``folder`` under its usual name, checked; the PyTorch
    model's figures first. Stops at the first format that fails."""
    names = [export_format(name).name for name in formats]
    exporter = Exporter(loaded, pictures)
    total = len(names) + 1
    if progress:
        progress(0, total)
    rows = [exporter.pytorch_figures(folder / WEIGHTS_FILE)]
    for done, name in enumerate(names, 2):
        if progress:
            progress(done - 1, total)
        file_name = export_format(name).file_name
        rows.append(exporter.export(name, folder / file_name, shown_as=file_name))
    if progress:
        progress(total, total)
    after_onnx_export(folder, names)
    return rows


def after_onnx_export(folder: Path, names: Iterable[str]) -> None:
    """An ONNX export gets the standalone ``predict_onnx.py`` beside it."""
    if set(names) & set(ONNX_FORMATS):
        with os_errors_as_export_errors(folder):
            write_predict_script(folder)


def exports_record(rows: Iterable[ExportFigures]) -> dict[str, dict[str, object]]:
    return {row.format: row.to_dict() for row in rows}


def export_model(
    loaded: LoadedModel, name: str, destination: Path, overwrite: bool = False
) -> ExportFigures:
    """One format at ``destination``, checked on the validation pictures of the model's
    recipe (its dataset split again); nothing is recorded anywhere."""
    exporter = Exporter(loaded, PictureSource.of_model(loaded))
    return exporter.export(name, Path(destination), overwrite)


def export_onnx(loaded: LoadedModel, destination: Path, overwrite: bool = False) -> ExportFigures:
    return export_model(loaded, "onnx", destination, overwrite)


def export_torchscript(
    loaded: LoadedModel, destination: Path, overwrite: bool = False
) -> ExportFigures:
    return export_model(loaded, "torchscript", destination, overwrite)


def export_into_folder(
    folder: Path,
    loaded: LoadedModel,
    name: str,
    destination: Path | None = None,
    overwrite: bool = False,
) -> list[ExportFigures]:
    """Export an existing model folder's model (the CLI's ``export``): the PyTorch row
    and the new format's. Written into the folder (the default), the figures are added
    to its ``model.json``; written elsewhere, they are only returned."""
    spec = export_format(name)
    destination = (destination or folder / spec.file_name).expanduser().absolute()
    inside = destination.parent == folder.expanduser().absolute()
    exporter = Exporter(loaded, PictureSource.of_folder(folder, loaded))
    shown_as = destination.name if inside else str(destination)
    row = exporter.export(name, destination, overwrite, shown_as)
    rows = [exporter.pytorch_figures(folder / WEIGHTS_FILE), row]
    if inside:
        record_exports(folder / METADATA_FILE, rows)
        after_onnx_export(folder, [name])
    return rows


def record_exports(metadata_file: Path, rows: Iterable[ExportFigures]) -> None:
    """Add (or replace) these formats' figures in ``model.json``, atomically."""
    meta: dict[str, Any] = json.loads(metadata_file.read_text(encoding="utf-8"))
    meta[EXPORTS_KEY] = {**meta.get(EXPORTS_KEY, {}), **exports_record(rows)}
    text = json.dumps(meta, indent=2) + "\n"
    with os_errors_as_export_errors(metadata_file):
        write_file_atomically(metadata_file, lambda path: path.write_text(text, encoding="utf-8"))


def recorded_exports(metadata: dict[str, Any]) -> list[ExportFigures]:
    """The figures a ``model.json`` holds, PyTorch first; rows that do not parse (an
    older or hand-edited file) are left out."""
    rows: list[ExportFigures] = []
    for name, row in (metadata.get(EXPORTS_KEY) or {}).items():
        try:
            rows.append(ExportFigures(format=name, **row))
        except TypeError:
            continue
    return sorted(rows, key=lambda row: row.format != PYTORCH)
