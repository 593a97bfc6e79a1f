"""Engine layer: a trained model as a self-describing folder.

A model folder holds ``model.safetensors`` and ``model.json`` (class names in index
order, preprocessing, backbone, recipe, metrics, library versions). The loader
rebuilds the network through the backbone registry and loads it with
``strict=True``. Folders are written under a temporary name and renamed into place,
so a failed export leaves nothing half-written and the previous export intact.
With the run's validation pictures, the folder also keeps ``predictions.csv``: what
the model made of each of them (``review.records``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import stat
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors.torch import load_file, save_file

from ... import __version__
from ..atomic import write_folder_atomically
from ..backbones import TIMM_PREFIX, build_model
from ..calibration import Calibration
from ..errors import ExportError, UserFacingError
from ..preprocessing import Preprocessing
from ..review.records import PREDICTIONS_FILE, records_to_csv
from ..training import TrainingResult
from .common import METADATA_FILE, WEIGHTS_FILE, LoadedModel, os_errors_as_export_errors
from .formats import export_format
from .model_exports import EXPORTS_KEY, Progress, export_all, exports_record
from .pictures import PictureSource

MODEL_FORMAT = "finetune-studio-model"
MODEL_FORMAT_VERSION = 1


def library_versions(backbone: str = "") -> dict[str, str]:
    """The versions that built the model: timm's too when the backbone is timm's, since
    its modules decide how the weights load."""
    versions = {
        "finetune_studio": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }
    if backbone.startswith(TIMM_PREFIX):
        import timm

        versions["timm"] = timm.__version__
    return versions


def _is_model_folder(path: Path) -> bool:
    try:
        meta = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == MODEL_FORMAT


def check_destination(destination: Path, overwrite: bool) -> None:
    if not destination.exists():
        return
    if not destination.is_dir():
        raise ExportError(f"{destination} is a file; choose a folder name for the export.")
    if not any(destination.iterdir()):
        return
    if not _is_model_folder(destination):
        raise ExportError(
            f"{destination} already holds files that are not a Finetune Studio export; "
            "choose an empty or new folder."
        )
    if not overwrite:
        raise ExportError(
            f"An export already exists at {destination}. Choose another folder, "
            "or allow overwriting (--overwrite)."
        )


def save_export_folder(
    destination: Path, write: Callable[[Path], None], overwrite: bool = False
) -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling folder, then move it into place
    (``atomic.write_folder_atomically``), refusing to replace what is not ours to replace.

    The writers create every file themselves, so files and folder get the user's usual
    permissions (0666/0777 less the umask) without anyone touching the process's umask.
    """
    destination = destination.expanduser().absolute()
    check_destination(destination, overwrite)
    with os_errors_as_export_errors(destination):
        return write_folder_atomically(destination, write)


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``model.safetensors`` with the user's usual file permissions.

    safetensors (0.8) writes through its own temporary file, created 0600, which would
    leave an export that other users of a shared folder cannot read. The file is first
    created here the ordinary way (0666 less the umask); that mode is put back on the
    written file, so nobody has to read or change the process-wide umask.
    """
    path.touch()
    mode = stat.S_IMODE(path.stat().st_mode)
    save_file(state, str(path), metadata={"format": MODEL_FORMAT})
    with contextlib.suppress(OSError):  # some filesystems (FAT, SMB) refuse chmod
        os.chmod(path, mode)


def model_metadata(result: TrainingResult) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "backbone": result.spec.name,
        "head": result.head_path,
        "num_classes": len(result.class_names),
        "class_names": list(result.class_names),
        "preprocessing": result.preprocessing.to_dict(),
        "recipe": result.recipe.to_dict(),
        "metrics": result.metrics(),
        "calibration": result.calibration.to_dict(),
        "history": [epoch.to_metrics() for epoch in result.history],
        "versions": library_versions(result.spec.name),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save_model_folder(
    result: TrainingResult,
    destination: str | Path,
    overwrite: bool = False,
    formats: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> Path:
    """Write the model folder atomically: ``model.safetensors``, ``model.json``,
    ``metrics.jsonl``, ``predictions.csv``, and any of ``formats``, each checked on the
    validation pictures, with their figures in ``model.json``."""
    for name in formats:
        export_format(name)  # an unknown name fails before anything is written

    def write(folder: Path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
        save_weights(state, folder / WEIGHTS_FILE)
        metrics = "".join(json.dumps(epoch.to_metrics()) + "\n" for epoch in result.history)
        (folder / "metrics.jsonl").write_text(metrics, encoding="utf-8")
        predictions = result.evaluation.predictions if result.evaluation else None
        if predictions is not None and len(predictions):
            table = records_to_csv(predictions.records(), result.class_names)
            (folder / PREDICTIONS_FILE).write_text(table, encoding="utf-8")
        metadata = model_metadata(result)
        if formats:
            loaded = LoadedModel(
                result.model.eval(),
                result.class_names,
                result.preprocessing,
                metadata,
                result.calibration,
            )
            pictures = PictureSource.of_result(loaded, result)
            rows = export_all(folder, loaded, pictures, formats, progress)
            metadata[EXPORTS_KEY] = exports_record(rows)
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")

    return save_export_folder(Path(destination), write, overwrite)


def load_model_folder(folder: str | Path) -> LoadedModel:
    """Rebuild a model from its folder alone; no code is executed from the files."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{folder} is not a model folder (no {METADATA_FILE}).") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"Cannot read {folder / METADATA_FILE}: {exc}.") from exc
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ExportError(f"{folder / METADATA_FILE} is not a Finetune Studio model description.")
    if meta.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise ExportError(f"{folder} was written by a newer Finetune Studio; please update.")
    try:
        built = build_model(meta["backbone"], int(meta["num_classes"]), weights="none")
        state = load_file(str(folder / WEIGHTS_FILE), device="cpu")
        built.model.load_state_dict(state, strict=True)
    except UserFacingError:
        raise
    except FileNotFoundError:
        raise ExportError(f"{folder} has no {WEIGHTS_FILE}.") from None
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        raise ExportError(f"The model in {folder} could not be loaded: {exc}") from exc
    return LoadedModel(
        built.model.eval(),
        tuple(meta["class_names"]),
        Preprocessing.from_dict(meta["preprocessing"]),
        meta,
        Calibration.from_dict(meta.get("calibration")),
    )
