"""Engine layer: a trained model as a self-describing folder, and its other formats.

``folder`` writes and loads the model folder; each format has its own module (``pt2``,
``onnx_float``, ``onnx_int8``, ``torchscript``, ``executorch_pte``), registered in
``formats``; the
``checker`` compares every artifact with the PyTorch model on real pictures
(``pictures``) and measures it; ``model_exports`` records the figures in
``model.json``; ``common`` holds what they share.
"""

from __future__ import annotations

from .checker import ExportCheckFailed, ExportFigures
from .common import (
    METADATA_FILE,
    PARITY_TOLERANCE,
    WEIGHTS_FILE,
    LoadedModel,
    sample_batch,
    save_export_file,
    self_description,
)
from .folder import (
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    check_destination,
    library_versions,
    load_model_folder,
    model_metadata,
    save_export_folder,
    save_model_folder,
    save_weights,
)
from .formats import (
    EXPORT_FORMATS,
    FORMAT_FILES,
    FORMATS,
    PYTORCH,
    Exporter,
    ExportFormat,
    available_formats,
    export_format,
)
from .model_exports import (
    export_into_folder,
    export_model,
    export_onnx,
    export_torchscript,
    recorded_exports,
)
from .pictures import PictureSource

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "FORMAT_FILES",
    "METADATA_FILE",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "PARITY_TOLERANCE",
    "PYTORCH",
    "WEIGHTS_FILE",
    "ExportCheckFailed",
    "ExportFigures",
    "ExportFormat",
    "Exporter",
    "LoadedModel",
    "PictureSource",
    "available_formats",
    "check_destination",
    "export_format",
    "export_into_folder",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "library_versions",
    "load_model_folder",
    "model_metadata",
    "recorded_exports",
    "sample_batch",
    "save_export_file",
    "save_export_folder",
    "save_model_folder",
    "save_weights",
    "self_description",
]
