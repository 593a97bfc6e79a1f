"""Engine layer: the float32 ONNX export (the dynamo exporter, dynamic batch size),
verified with onnxruntime."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from ..errors import ExportError
from .common import (
    LoadedModel,
    check_parity,
    conversion_errors,
    sample_batch,
    save_export_file,
)


def export_onnx(
    loaded: LoadedModel,
    destination: str | Path,
    images: torch.Tensor | None = None,
    overwrite: bool = False,
) -> float:
    """Export to ONNX with a dynamic batch size, verify with onnxruntime, keep it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ExportError(
            "ONNX export needs the export extra: pip install 'finetune-studio[export]'."
        ) from exc
    batch = sample_batch(loaded.preprocessing, images)
    model = loaded.model.eval()
    with torch.inference_mode():
        reference = model(batch)
    argument = next(iter(inspect.signature(model.forward).parameters))
    result: dict[str, float] = {}

    def write(path: Path) -> None:
        with conversion_errors("ONNX"):
            torch.onnx.export(
                model,
                (batch[:2],),
                str(path),
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes={argument: {0: torch.export.Dim("batch", min=1, max=4096)}},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            outputs = session.run(None, {"image": batch.numpy()})[0]
        result["difference"] = check_parity(reference, outputs, "ONNX")

    save_export_file(Path(destination), write, overwrite)
    return result["difference"]
