"""Engine layer: the float32 ONNX export (the dynamo exporter, any batch size), loaded
back with onnxruntime.

The class names, preprocessing and calibration travel in the file's own
``metadata_props`` (``finetune_studio.class_names`` and so on, JSON texts), so an
ONNX file alone is enough to classify pictures the way the app does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ExportError
from .checker import Runtime
from .common import LoadedModel, dynamic_batch, example_batch, self_description
from .pictures import PictureSource

METADATA_PREFIX = "finetune_studio."
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def onnxruntime_module() -> Any:
    """onnxruntime, or the error that says which extra installs it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ExportError(
            "ONNX export needs the export extra: pip install 'finetune-studio[export]'."
        ) from exc
    return onnxruntime


def export_float_onnx(loaded: LoadedModel, path: Path) -> None:
    """The bare ONNX graph, without our metadata (int8 starts from it too)."""
    model = loaded.model.eval()
    torch.onnx.export(
        model,
        (example_batch(loaded.preprocessing),),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic_batch(model),
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def add_onnx_metadata(path: Path, loaded: LoadedModel) -> None:
    import onnx

    proto = onnx.load(str(path))
    entries = {f"{METADATA_PREFIX}{key}": text for key, text in self_description(loaded).items()}
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, text in entries.items():
        proto.metadata_props.add(key=key, value=text)
    onnx.save(proto, str(path))


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """Our entries of a file's ``metadata_props``, without the prefix."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {
        p.key.removeprefix(METADATA_PREFIX): p.value
        for p in proto.metadata_props
        if p.key.startswith(METADATA_PREFIX)
    }


def write_onnx(loaded: LoadedModel, path: Path, pictures: PictureSource) -> None:
    onnxruntime_module()  # before the slow conversion: say at once when it is missing
    export_float_onnx(loaded, path)
    add_onnx_metadata(path, loaded)


def load_onnx(path: Path) -> Runtime:
    session = onnxruntime_module().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: batch})[0])

    return run
