"""Engine layer: the ONNX int8 export, onnxruntime's static quantisation.

Weights become int8 per output channel and activations uint8, in the QDQ form every
onnxruntime build reads. The activations' ranges are calibrated on a stratified
sample of the training pictures (``PictureSource.calibration_pictures``), never on
the validation pictures the checker measures with.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .common import LoadedModel
from .onnx_float import INPUT_NAME, add_onnx_metadata, export_float_onnx, onnxruntime_module
from .pictures import PictureSource

CALIBRATION_CHUNK = 16  # pictures' activations held at once while calibrating


class _Pictures:
    """onnxruntime's ``CalibrationDataReader``: one picture per call, then None."""

    def __init__(self, images: np.ndarray) -> None:
        self.batches: Iterator[np.ndarray] = iter(images[i : i + 1] for i in range(len(images)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def write_onnx_int8(loaded: LoadedModel, path: Path, pictures: PictureSource) -> None:
    onnxruntime_module()
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = np.ascontiguousarray(pictures.calibration_pictures.numpy(), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="finetune-studio-int8-") as work:
        float_model = Path(work) / "float.onnx"
        export_float_onnx(loaded, float_model)
        # Shape inference and graph fusion first (onnxruntime asks for it): fused
        # Conv+BN+ReLU quantise as one op, with fewer rounding steps.
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(float_model), str(prepared))
        quantize_static(
            str(prepared),
            str(path),
            _Pictures(images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"CalibMaxIntermediateOutputs": CALIBRATION_CHUNK},
        )
    add_onnx_metadata(path, loaded)
