"""Engine layer: a trained model as a self-describing folder, and its other formats.

``folder`` writes and loads the model folder; each format has its own module, and
``common`` holds what they share. Everything callers used from the former
``engine/export.py`` is importable from here.
"""

from __future__ import annotations

from .common import (
    PARITY_TOLERANCE,
    LoadedModel,
    check_parity,
    sample_batch,
    save_export_file,
)
from .folder import (
    EXPORT_FORMATS,
    FORMAT_FILES,
    METADATA_FILE,
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    WEIGHTS_FILE,
    check_destination,
    library_versions,
    load_model_folder,
    model_metadata,
    save_export_folder,
    save_model_folder,
    save_weights,
)
from .onnx_float import export_onnx
from .torchscript import export_torchscript

__all__ = [
    "EXPORT_FORMATS",
    "FORMAT_FILES",
    "METADATA_FILE",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "PARITY_TOLERANCE",
    "WEIGHTS_FILE",
    "LoadedModel",
    "check_destination",
    "check_parity",
    "export_onnx",
    "export_torchscript",
    "library_versions",
    "load_model_folder",
    "model_metadata",
    "sample_batch",
    "save_export_file",
    "save_export_folder",
    "save_model_folder",
    "save_weights",
]
